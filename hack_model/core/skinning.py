"""Linear blend skinning. Shape notes: B batch, V vertices, J bones."""

from __future__ import annotations

import torch


def linear_blend_skinning(
    vertices: torch.Tensor, weights: torch.Tensor, bone_matrices: torch.Tensor
) -> torch.Tensor:
    """Textbook LBS. vertices [B, V, 3], weights [V, J], bone_matrices [B, J, 3, 4] -> [B, V, 3]."""
    return skin_coordinate_major(vertices.transpose(1, 2), weights.T, bone_matrices)


def skin_coordinate_major(
    mesh: torch.Tensor,
    weights_by_bone: torch.Tensor,
    bone_matrices: torch.Tensor,
    chunk_elements: int = 1 << 19,
) -> torch.Tensor:
    """LBS of a coordinate-major mesh. mesh [B, 3, V], weights_by_bone [J, V],
    bone_matrices [B, J, 3, 4] -> [B, V, 3] (see `skin_planes`)."""
    return skin_planes(mesh, weights_by_bone, bone_matrices, chunk_elements).transpose(1, 2).contiguous()


def skin_planes(
    mesh: torch.Tensor,
    weights_by_bone: torch.Tensor,
    bone_matrices: torch.Tensor,
    chunk_elements: int = 1 << 19,
) -> torch.Tensor:
    """LBS, coordinate-major in and out: blend the bones' 3x4 matrices with one matmul
    per vertex chunk, then transform.

    mesh [B, 3, V], weights_by_bone [J, V], bone_matrices [B, J, 3, 4] -> [B, 3, V].
    Chunks keep the blended matrices ([B, 12, chunk]) small enough to stay in
    cache instead of allocating (and page-faulting) B*V*12 floats per call.
    """
    B, J = bone_matrices.shape[:2]
    V = mesh.shape[-1]
    per_bone = bone_matrices.reshape(B, J, 12).transpose(1, 2)  # [B, 12, J]
    step = max(256, chunk_elements // (12 * B))
    pieces = []
    for start in range(0, V, step):
        blended = (per_bone @ weights_by_bone[:, start : start + step]).view(B, 3, 4, -1)  # [B, 3, 4, C]
        p = mesh[:, :, start : start + step]
        out = torch.addcmul(blended[:, :, 3], blended[:, :, 0], p[:, 0:1])
        out.addcmul_(blended[:, :, 1], p[:, 1:2])  # in place: one fresh tensor per chunk
        out.addcmul_(blended[:, :, 2], p[:, 2:3])  # [B, 3, C]
        pieces.append(out)
    return torch.cat(pieces, 2) if len(pieces) > 1 else pieces[0]


def skin_rigid_range(mesh: torch.Tensor, bone_matrix: torch.Tensor) -> torch.Tensor:
    """Vertices carried by one bone alone (weight 1): one affine map, no blend.

    mesh [B, 3, V], bone_matrix [B, 3, 4] -> [B, V, 3] (see `rigid_planes`).
    """
    return rigid_planes(mesh, bone_matrix).transpose(1, 2)


def rigid_planes(mesh: torch.Tensor, bone_matrix: torch.Tensor) -> torch.Tensor:
    """One affine map of a coordinate-major mesh. mesh [B, 3, V], bone_matrix [B, 3, 4] -> [B, 3, V]."""
    return torch.baddbmm(bone_matrix[:, :, 3:], bone_matrix[:, :, :3], mesh)
