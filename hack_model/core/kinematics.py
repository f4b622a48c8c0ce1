"""The bone chain: rest frames, forward kinematics and skinning matrices.

Shape notes: B batch, J bones; parents[b] < b, the root's parent is -1.
"""

from __future__ import annotations

import torch


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
    frames = [local[:, 0]]
    for b in range(1, J):
        frames.append(frames[parents[b]] @ local[:, b])
    return torch.stack(frames, 1)


def skinning_matrices(posed_frames: torch.Tensor, rest_frames: torch.Tensor) -> torch.Tensor:
    """Top 3x4 rows of G_b @ inverse(G_rest_b). [B, J, 4, 4], [..., J, 4, 4] -> [B, J, 3, 4]."""
    rot_rest = rest_frames[..., :3, :3]
    inv_rot = rot_rest.transpose(-1, -2)  # rest frames are rigid
    inv_trans = -(inv_rot @ rest_frames[..., :3, 3:])
    rot = posed_frames[..., :3, :3] @ inv_rot
    trans = posed_frames[..., :3, :3] @ inv_trans + posed_frames[..., :3, 3:]
    return torch.cat([rot, trans], -1)


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
