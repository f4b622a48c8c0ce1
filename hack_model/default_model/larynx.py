"""Larynx map of the default model: a smooth thyroid-prominence bump in UV space.

Semantics as the official model: the map is sampled (bilinear, border clamp,
corner-aligned pixel centres) at image position x = u, y = (1 - v) + tau, and
the sampled value times `larynx_direction` times the larynx scale alpha is the
offset. The skin grid's v grows with arc length up the front of the neck
(`head_mesh.build_uvs`), so tau = 0.05 moves the bump by several centimetres.
"""

from __future__ import annotations

import numpy as np

from ..core.numpy_math import sample_larynx_map

MAP_SIZE = 256
PROMINENCE_Y = -10.4  # cm, thyroid prominence at rest, in the middle of the throat
DIRECTION = np.array([0.0, -0.45, 0.89])
MAGNITUDE = 0.7  # cm, peak displacement at scale 1


def larynx_direction() -> np.ndarray:
    """Offset direction times its magnitude (cm). [3]"""
    return DIRECTION / np.linalg.norm(DIRECTION) * MAGNITUDE


def larynx_map(vertex_uvs: np.ndarray, P: np.ndarray, front_ids: np.ndarray) -> np.ndarray:
    """The [MAP_SIZE, MAP_SIZE] float32 bump, centred where the neck's front column
    (vertex ids front_ids, bottom to top) passes PROMINENCE_Y."""
    y = P[front_ids, 1]
    v = vertex_uvs[front_ids, 1]
    v0 = float(np.interp(PROMINENCE_Y, y, v))
    # cm per unit of v along the front, to size the bump in centimetres
    arc = np.linalg.norm(np.diff(P[front_ids], axis=0), axis=1).sum()
    cm_per_v = arc / (v.max() - v.min())
    u0 = 0.5
    sigma_u = 0.08  # the front columns are dense: about 1.4 cm
    sigma_v = 1.1 / cm_per_v
    xs = np.linspace(0.0, 1.0, MAP_SIZE)  # pixel centres at corners (align_corners)
    ys = np.linspace(0.0, 1.0, MAP_SIZE)
    X, Y = np.meshgrid(xs, ys)
    g = np.exp(-0.5 * (((X - u0) / sigma_u) ** 2 + ((Y - (1 - v0)) / sigma_v) ** 2))
    g[g < 1e-3] = 0.0
    return (g / g.max()).astype(np.float32)


def sample_map(m: np.ndarray, uv: np.ndarray, tau: float = 0.0) -> np.ndarray:
    """Bilinear, border-clamped, corner-aligned sampling at (u, 1 - v + tau). [V]"""
    return sample_larynx_map(m, uv, tau)
