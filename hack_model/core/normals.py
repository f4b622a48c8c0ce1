"""Vertex normals in torch (the numpy version is `numpy_math.vertex_normals`)."""

from __future__ import annotations

import torch


def vertex_normals(vertices: torch.Tensor, triangles: torch.Tensor) -> torch.Tensor:
    """Unit area-weighted vertex normals. vertices [B, V, 3], triangles [F, 3] long -> [B, V, 3]."""
    a, b, c = (vertices[:, triangles[:, k]] for k in range(3))
    face = torch.cross(b - a, c - a, dim=-1)  # [B, F, 3], twice the area
    out = torch.zeros_like(vertices)
    for k in range(3):
        out.index_add_(1, triangles[:, k], face)
    return torch.nn.functional.normalize(out, dim=-1, eps=1e-12)
