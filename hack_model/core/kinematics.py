"""The bone chain: rest frames, forward kinematics and skinning matrices.

Shape notes: B batch, J bones; parents[b] < b, the root's parent is -1.
"""

from __future__ import annotations

import functools

import torch

from .rotations import quaternion_forms


def rest_frames_from_joints(joints: torch.Tensor, rest_rotations: torch.Tensor) -> torch.Tensor:
    """World rest frames from bone heads (SMPL-style models move joints with shape).

    joints [B, J, 3], rest_rotations [J, 3, 3] -> [B, J, 4, 4].
    """
    B, J = joints.shape[:2]
    frames = joints.new_zeros(B, J, 4, 4)
    frames[:, :, :3, :3] = rest_rotations
    frames[:, :, :3, 3] = joints
    frames[:, :, 3, 3] = 1.0
    return frames


def relative_rest_transforms(rest_frames: torch.Tensor, parents: list[int]) -> torch.Tensor:
    """Each bone's rest frame relative to its parent's (the root's is its world frame).

    rest_frames [..., J, 4, 4] -> [..., J, 4, 4].
    """
    parent_frames = rest_frames[..., [max(p, 0) for p in parents], :, :]
    relative = torch.linalg.solve(parent_frames, rest_frames)
    is_root = torch.tensor([p < 0 for p in parents], device=rest_frames.device)
    return torch.where(is_root[:, None, None], rest_frames, relative)


def forward_kinematics(
    rotations: torch.Tensor, relative_rest: torch.Tensor, parents: list[int]
) -> torch.Tensor:
    """World frames of the posed chain: G_b = G_parent @ L_b @ R_b.

    rotations [B, J, 3, 3] (in each bone's rest frame), relative_rest [J, 4, 4]
    or [B, J, 4, 4], parents with parents[b] < b -> world frames [B, J, 4, 4].
    """
    B, J = rotations.shape[:2]
    relative_rest = relative_rest.expand(B, J, 4, 4)
    top = torch.cat([relative_rest[..., :3, :3] @ rotations, relative_rest[..., :3, 3:]], -1)
    local = torch.cat([top, relative_rest[..., 3:, :]], -2)  # [L | t] @ [R | 0]
    return chain_products(local, parents)


def chain_products(local: torch.Tensor, parents: list[int] | tuple[int, ...]) -> torch.Tensor:
    """Each bone's transform composed with its ancestors': G_b = G_parent(b) @ local_b.

    local [B, J, 4, 4] -> [B, J, 4, 4]. Pointer jumping: log2(depth) batched matmuls
    instead of one per bone (a chain of 8 bones takes 3).
    """
    G = local
    for targets, sources in _jumps(tuple(parents)):
        if isinstance(targets, slice):  # a suffix of bones: no index tensors
            G = torch.cat([G[:, : targets.start], G[:, sources] @ G[:, targets]], 1)
        else:
            t = torch.tensor(targets, device=G.device)
            G = G.index_copy(1, t, G[:, sources] @ G[:, targets])
    return G


@functools.lru_cache(maxsize=64)
def _jumps(parents: tuple[int, ...]) -> tuple:
    """Per pointer-jumping step (targets, sources): bone targets[i] takes its 2^k-th
    ancestor sources[i]; both slices when they are ranges ending at the last bone."""
    J = len(parents)
    ancestor = list(parents)
    steps = []
    while any(a >= 0 for a in ancestor):
        targets = [b for b in range(J) if ancestor[b] >= 0]
        sources = [ancestor[b] for b in targets]
        t0, s0 = targets[0], sources[0]
        if targets == list(range(t0, J)) and sources == list(range(s0, s0 + len(targets))):
            steps.append((slice(t0, J), slice(s0, s0 + len(targets))))
        else:
            steps.append((targets, sources))
        ancestor = [ancestor[a] if a >= 0 else -1 for a in ancestor]
    return tuple(steps)


def local_rotation_forms(relative_rest: torch.Tensor) -> torch.Tensor:
    """Maps from quaternion products to each bone's local transform L_b @ [[R, 0], [0, 1]]
    (its rest frame relative to its parent's, then its rotation R): the forward pass
    turns all the bones' rotations into local transforms with one matmul.

    relative_rest [..., J, 4, 4] -> [..., J, 16, 16]; `quaternion_products(q_b) @ result[b]`
    is that 4x4 matrix, row-major.
    """
    forms = quaternion_forms("homogeneous", relative_rest.dtype, relative_rest.device).reshape(16, 4, 4)
    return (relative_rest[..., None, :, :] @ forms).flatten(-2)


def rigid_inverse(frames: torch.Tensor) -> torch.Tensor:
    """[..., 4, 4] rigid frames [R | t] -> their inverses [R^T | -R^T t]."""
    rot_t = frames[..., :3, :3].transpose(-1, -2)
    bottom = frames[..., 3:, :]  # (0, 0, 0, 1)
    return torch.cat([torch.cat([rot_t, -(rot_t @ frames[..., :3, 3:])], -1), bottom], -2)


def skinning_matrices(posed_frames: torch.Tensor, rest_frames: torch.Tensor) -> torch.Tensor:
    """Top 3x4 rows of G_b @ inverse(G_rest_b). [B, J, 4, 4], [..., J, 4, 4] -> [B, J, 3, 4]."""
    return posed_frames[..., :3, :] @ rigid_inverse(rest_frames)  # rest frames are rigid


def anchor_at_bone(matrices: torch.Tensor, bone: int) -> torch.Tensor:
    """Skinning matrices [B, J, 3, 4] premultiplied by the inverse of bone's: that bone then
    stays at rest and the others move relative to it."""
    anchor = matrices[:, bone : bone + 1]  # [B, 1, 3, 4]
    R_inv = anchor[..., :3].transpose(-1, -2)
    return torch.cat([R_inv @ matrices[..., :3], R_inv @ (matrices[..., 3:] - anchor[..., 3:])], -1)


def rigid_transform(points: torch.Tensor, rotation: torch.Tensor, translation: torch.Tensor) -> torch.Tensor:
    """points [B, N, 3] -> R @ p + t with rotation [B, 3, 3], translation [B, 3]."""
    return points @ rotation.transpose(1, 2) + translation[:, None]


def rigid_frame(rotation: torch.Tensor, translation: torch.Tensor) -> torch.Tensor:
    """[B, 4, 4] homogeneous matrix of rotation [B, 3, 3] and translation [B, 3]."""
    B = rotation.shape[0]
    frame = rotation.new_zeros(B, 4, 4)
    frame[:, :3, :3] = rotation
    frame[:, :3, 3] = translation
    frame[:, 3, 3] = 1.0
    return frame
