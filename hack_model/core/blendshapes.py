"""Linear blendshapes: coefficients times directions, added to a base mesh.

Shape notes: B batch, V vertices, K directions. Meshes are coordinate-major in the
kernel ([B, 3, V]: all x, then y, then z), the layout `skinning.skin_coordinate_major`
reads fastest.
"""

from __future__ import annotations

import torch


def pose_features(rotations: torch.Tensor, posed_bones: list[int]) -> torch.Tensor:
    """(R - I) of the bones that carry pose correctives, flattened.

    rotations [B, J, 3, 3], posed_bones [P] indices -> [B, P * 9].
    """
    eye = torch.eye(3, dtype=rotations.dtype, device=rotations.device)
    return (rotations[:, posed_bones] - eye).flatten(1)


def blend_shapes(base: torch.Tensor, coefficients: torch.Tensor, directions: torch.Tensor) -> torch.Tensor:
    """base + all linear blendshapes in one product, coordinate-major.

    base [3*V] or [B, 3*V], coefficients [B, K], directions [K, 3*V] -> [B, 3, V].
    """
    B = coefficients.shape[0]
    return torch.addmm(base.expand(B, -1), coefficients, directions).view(B, 3, -1)


def add_blend_shapes_to_range(
    mesh: torch.Tensor, coefficients: torch.Tensor, directions: torch.Tensor, start: int
) -> torch.Tensor:
    """Add directions that move only the contiguous vertices [start, start + V_k) of the mesh.

    mesh [B, 3, V] (a fresh tensor: it is changed in place and returned),
    coefficients [B, K] or [1, K], directions [K, 3 * V_k] -> mesh. Vertices outside the
    range cost nothing: this is how the kernel skips the zero rows of sparse directions.
    """
    count = directions.shape[1] // 3
    if count:
        mesh[:, :, start : start + count] += (coefficients @ directions).view(-1, 3, count)
    return mesh
