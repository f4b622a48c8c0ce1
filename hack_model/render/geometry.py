"""Mesh geometry for rendering: smooth normals and boxes (numpy/scipy, no GL)."""

from __future__ import annotations

import numpy as np

from ..core import numpy_math


def vertex_face_incidence(triangles: np.ndarray, num_vertices: int):
    """Sparse [V, F] vertex-face incidence (scipy CSR); sums face normals onto vertices."""
    from scipy import sparse

    rows = triangles.reshape(-1)
    cols = np.repeat(np.arange(len(triangles)), 3)
    data = np.ones(rows.shape[0], np.float32)
    return sparse.csr_matrix((data, (rows, cols)), shape=(num_vertices, len(triangles)))


def vertex_normals(vertices: np.ndarray, triangles: np.ndarray, incidence=None) -> np.ndarray:
    """Area-weighted smooth vertex normals [V, 3] float32 (unit; +z for unused vertices):
    `numpy_math.vertex_normals`, with `vertex_face_incidence` for speed.

    vertices [V, 3], triangles [F, 3] counter-clockwise seen from outside.
    """
    tri = np.asarray(triangles, np.int64)
    if incidence is None:
        incidence = vertex_face_incidence(tri, len(vertices))
    normals = numpy_math.vertex_normals(vertices, tri, incidence).astype(np.float32)
    normals[np.linalg.norm(normals, axis=1) < 0.5] = (0.0, 0.0, 1.0)  # no (or degenerate) triangles
    return normals


def bounding_box(vertices: np.ndarray) -> np.ndarray:
    """Axis-aligned box [2, 3] (min corner, max corner) of [V, 3] or [B, V, 3] vertices;
    pass it as `frame=` to keep one camera for a whole sequence."""
    v = np.asarray(vertices, np.float64).reshape(-1, 3)
    return np.stack([v.min(0), v.max(0)])


def box_corners(box: np.ndarray) -> np.ndarray:
    lo, hi = box
    return np.array([[x, y, z] for x in (lo[0], hi[0]) for y in (lo[1], hi[1]) for z in (lo[2], hi[2])])
