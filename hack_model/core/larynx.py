"""The larynx: a displacement map sampled in UV space, moved up and down the neck.

Shape notes: B batch, V vertices (only those the map can reach, see `larynx_support`).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F


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
    [B, 1] -> [B, V, 3]. The numpy twin is `numpy_math.larynx_offsets`.
    """
    B = height.shape[0]
    u = vertex_uvs[:, 0].expand(B, -1)
    y = (1.0 - vertex_uvs[:, 1]) + height  # [B, V]
    # grid_sample wants [-1, 1] coordinates; with align_corners=True -1 and 1 are pixel centres.
    grid = torch.stack([u * 2.0 - 1.0, y * 2.0 - 1.0], -1)[:, None]  # [B, 1, V, 2]
    image = larynx_map[None, None].expand(B, 1, -1, -1)
    value = F.grid_sample(image, grid, mode="bilinear", padding_mode="border", align_corners=True)
    return (value[:, 0, 0, :, None] * scale[:, :, None]) * direction  # [B, V, 3]


def larynx_support(larynx_map: np.ndarray, vertex_uvs: np.ndarray) -> np.ndarray:
    """Vertices [V_larynx] whose map columns (at their u, bilinear neighbours included)
    are non-zero somewhere: no height can move any other vertex."""
    W = larynx_map.shape[1]
    u = np.clip(vertex_uvs[:, 0], 0.0, 1.0) * (W - 1)
    column_used = np.abs(larynx_map).max(axis=0) > 0
    left = np.floor(u).astype(np.int64)
    right = np.minimum(left + 1, W - 1)
    return np.nonzero(column_used[left] | column_used[right])[0]
