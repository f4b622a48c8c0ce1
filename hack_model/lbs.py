"""The forward pass as small pure, batched, differentiable functions.

Shape notes: B batch, V vertices, J bones, K blendshape directions.
Nothing here holds state; `hack_model.model.HACK` owns the buffers.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def axis_angle_to_matrix(axis_angle: torch.Tensor) -> torch.Tensor:
    """Rodrigues' formula. [..., 3] -> [..., 3, 3]; smooth (and exact) at zero angle."""
    angle_sq = (axis_angle * axis_angle).sum(-1, keepdim=True)[..., None]  # [..., 1, 1]
    small = angle_sq < 1e-8
    safe_sq = torch.where(small, torch.ones_like(angle_sq), angle_sq)
    angle = safe_sq.sqrt()
    # sin(t)/t and (1-cos(t))/t^2 with Taylor fallbacks so gradients stay finite at 0.
    sinc = torch.where(small, 1.0 - angle_sq / 6.0, torch.sin(angle) / angle)
    cosc = torch.where(small, 0.5 - angle_sq / 24.0, (1.0 - torch.cos(angle)) / safe_sq)
    x, y, z = axis_angle.unbind(-1)
    zero = torch.zeros_like(x)
    skew = torch.stack([zero, -z, y, z, zero, -x, -y, x, zero], -1).view(*x.shape, 3, 3)
    eye = torch.eye(3, dtype=axis_angle.dtype, device=axis_angle.device)
    return eye + sinc * skew + cosc * (skew @ skew)


def pose_features(rotations: torch.Tensor, posed_bones: torch.Tensor) -> torch.Tensor:
    """(R - I) of the bones that carry pose correctives, flattened.

    rotations [B, J, 3, 3], posed_bones [P] indices -> [B, P * 9].
    """
    eye = torch.eye(3, dtype=rotations.dtype, device=rotations.device)
    return (rotations[:, posed_bones] - eye).flatten(1)


def blend_shapes(base: torch.Tensor, coefficients: torch.Tensor, directions: torch.Tensor) -> torch.Tensor:
    """base + all linear blendshapes in one product, coordinate-major.

    base [3*V] or [B, 3*V], coefficients [B, K], directions [K, 3*V] -> [B, 3, V]
    (x of every vertex, then y, then z: the layout `skin_vertex_planes` reads fastest).
    """
    B = coefficients.shape[0]
    return torch.addmm(base.expand(B, -1), coefficients, directions).view(B, 3, -1)


def sample_larynx_offsets(
    larynx_map: torch.Tensor,
    vertex_uvs: torch.Tensor,
    direction: torch.Tensor,
    height: torch.Tensor,
    scale: torch.Tensor,
) -> torch.Tensor:
    """Larynx displacement per vertex.

    The map [H, W] is sampled bilinearly (border clamp, corner-aligned pixel
    centres) at image position (u, 1 - v + height) of each vertex; the value is
    multiplied by direction [3] and scale. vertex_uvs [V, 2], height and scale
    [B, 1] -> [B, V, 3].
    """
    B = height.shape[0]
    u = vertex_uvs[:, 0].expand(B, -1)
    y = (1.0 - vertex_uvs[:, 1]) + height  # [B, V]
    # grid_sample wants [-1, 1] coordinates; with align_corners=True -1 and 1 are pixel centres.
    grid = torch.stack([u * 2.0 - 1.0, y * 2.0 - 1.0], -1)[:, None]  # [B, 1, V, 2]
    image = larynx_map[None, None].expand(B, 1, -1, -1)
    value = F.grid_sample(image, grid, mode="bilinear", padding_mode="border", align_corners=True)
    return (value[:, 0, 0, :, None] * scale[:, :, None]) * direction  # [B, V, 3]


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


def linear_blend_skinning(
    vertices: torch.Tensor, weights: torch.Tensor, bone_matrices: torch.Tensor
) -> torch.Tensor:
    """Textbook LBS. vertices [B, V, 3], weights [V, J], bone_matrices [B, J, 3, 4] -> [B, V, 3]."""
    return skin_vertex_planes(vertices.transpose(1, 2), weights.T, bone_matrices)


def skin_vertex_planes(
    planes: torch.Tensor, weights_t: torch.Tensor, bone_matrices: torch.Tensor, chunk_elements: int = 1 << 19
) -> torch.Tensor:
    """LBS on coordinate-major vertices: blend the bones' 3x4 matrices with one
    matmul per vertex chunk, then transform.

    planes [B, 3, V], weights_t [J, V], bone_matrices [B, J, 3, 4] -> [B, V, 3].
    Chunks keep the blended matrices ([B, 12, chunk]) small enough to stay in
    cache instead of allocating (and page-faulting) B*V*12 floats per call.
    """
    B, J = bone_matrices.shape[:2]
    V = planes.shape[-1]
    per_bone = bone_matrices.reshape(B, J, 12).transpose(1, 2)  # [B, 12, J]
    step = max(256, chunk_elements // (12 * B))
    pieces = []
    for start in range(0, V, step):
        blended = (per_bone @ weights_t[:, start : start + step]).view(B, 3, 4, -1)  # [B, 3, 4, C]
        p = planes[:, :, start : start + step]
        out = torch.addcmul(blended[:, :, 3], blended[:, :, 0], p[:, 0:1])
        out = torch.addcmul(out, blended[:, :, 1], p[:, 1:2])
        out = torch.addcmul(out, blended[:, :, 2], p[:, 2:3])  # [B, 3, C]
        pieces.append(out.transpose(1, 2))
    return torch.cat(pieces, 1) if len(pieces) > 1 else pieces[0].contiguous()


def rigid_transform(points: torch.Tensor, rotation: torch.Tensor, translation: torch.Tensor) -> torch.Tensor:
    """points [B, N, 3] -> R @ p + t with rotation [B, 3, 3], translation [B, 3]."""
    return points @ rotation.transpose(1, 2) + translation[:, None]
