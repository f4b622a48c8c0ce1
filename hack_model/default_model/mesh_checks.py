"""Mesh quality checks: self-intersections, triangle angles, manifoldness.

`self_intersections` finds pairs of triangles that cross each other, skipping
pairs that share a vertex (neighbours always touch). Candidates come from a
cKDTree over triangle bounding spheres; each candidate pair is tested exactly
with six segment-triangle tests (an edge of one triangle piercing the other),
which covers every non-coplanar crossing.
"""

from __future__ import annotations

import numpy as np
from scipy.spatial import cKDTree


def triangle_min_angles(V: np.ndarray, tris: np.ndarray) -> np.ndarray:
    """Smallest interior angle of each triangle, degrees. [F]"""
    a, b, c = V[tris[:, 0]], V[tris[:, 1]], V[tris[:, 2]]

    def ang(p: np.ndarray, q: np.ndarray, r: np.ndarray) -> np.ndarray:
        u, w = q - p, r - p
        cos = (u * w).sum(1) / np.maximum(np.linalg.norm(u, axis=1) * np.linalg.norm(w, axis=1), 1e-20)
        return np.degrees(np.arccos(np.clip(cos, -1.0, 1.0)))

    return np.minimum(np.minimum(ang(a, b, c), ang(b, c, a)), ang(c, a, b))


def _edges_and_uses(tris: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Undirected edges [E, 2] and how many triangles use each [E]."""
    e = np.sort(np.concatenate([tris[:, [0, 1]], tris[:, [1, 2]], tris[:, [2, 0]]]), axis=1)
    return np.unique(e, axis=0, return_counts=True)


def edge_use_counts(tris: np.ndarray) -> np.ndarray:
    """How many triangles use each undirected edge (1 = boundary, 2 = interior)."""
    return _edges_and_uses(tris)[1]


def boundary_vertices(tris: np.ndarray) -> np.ndarray:
    """Vertices on an edge that only one triangle uses (sorted)."""
    edges, uses = _edges_and_uses(tris)
    return np.unique(edges[uses == 1])


def _segment_hits_triangle(p0, p1, a, b, c, eps: float = 1e-9) -> np.ndarray:
    """Does segment p0-p1 cross triangle abc (strictly inside both)? Vectorised. [K]"""
    d = p1 - p0
    e1, e2 = b - a, c - a
    h = np.cross(d, e2)
    det = (e1 * h).sum(1)
    ok = np.abs(det) > eps
    inv = np.where(ok, 1.0 / np.where(ok, det, 1.0), 0.0)
    s = p0 - a
    u = (s * h).sum(1) * inv
    q = np.cross(s, e1)
    v = (d * q).sum(1) * inv
    t = (e2 * q).sum(1) * inv
    tol = 1e-7
    return ok & (u >= -tol) & (v >= -tol) & (u + v <= 1 + tol) & (t >= -tol) & (t <= 1 + tol)


def candidate_pairs(V: np.ndarray, tris: np.ndarray, subset: np.ndarray | None = None) -> np.ndarray:
    """Pairs (i, j) of triangles whose bounding spheres overlap and that share no vertex
    (only pairs involving `subset`, when given)."""
    T = V[tris]
    cen = T.mean(1)
    rad = np.linalg.norm(T - cen[:, None], axis=2).max(1)
    if subset is None:
        return _all_candidate_pairs(tris, cen, rad)
    tree = cKDTree(cen)
    rmax = float(rad.max())
    query = np.asarray(subset)
    lists = tree.query_ball_point(cen[query], rad[query] + rmax)
    ii = np.repeat(query, [len(x) for x in lists])
    jj = np.concatenate([np.asarray(x, dtype=np.int64) for x in lists]) if len(lists) else ii
    keep = ii != jj
    pairs = _overlapping_unshared(tris, cen, rad, np.stack([ii[keep], jj[keep]], 1))
    return np.unique(np.sort(pairs, axis=1), axis=0)


def _all_candidate_pairs(tris: np.ndarray, cen: np.ndarray, rad: np.ndarray) -> np.ndarray:
    """Every overlapping pair, fast: pairs of the 99% small triangles (radius <= r) come from
    one query_pairs(2 r); each larger triangle is queried on its own."""
    r = float(np.percentile(rad, 99.0))
    big = rad > r
    small = np.nonzero(~big)[0]
    pairs = small[cKDTree(cen[small]).query_pairs(2 * r, output_type="ndarray")].reshape(-1, 2)
    ids = np.nonzero(big)[0]
    if len(ids):
        lists = cKDTree(cen).query_ball_point(cen[ids], rad[ids] + rad.max())
        ii = np.repeat(ids, [len(x) for x in lists])
        jj = np.concatenate([np.asarray(x, np.int64) for x in lists])
        keep = (ii != jj) & (~big[jj] | (ii < jj))  # big-big pairs are found from both ends
        pairs = np.concatenate([pairs, np.stack([ii[keep], jj[keep]], 1)])
    return _overlapping_unshared(tris, cen, rad, pairs)


def _overlapping_unshared(
    tris: np.ndarray, cen: np.ndarray, rad: np.ndarray, pairs: np.ndarray
) -> np.ndarray:
    """The pairs [K, 2] whose bounding spheres overlap and that share no vertex."""
    i, j = pairs[:, 0], pairs[:, 1]
    pairs = pairs[np.linalg.norm(cen[i] - cen[j], axis=1) <= rad[i] + rad[j]]
    a, b = tris[pairs[:, 0]], tris[pairs[:, 1]]
    return pairs[~(a[:, :, None] == b[:, None, :]).any(axis=(1, 2))]


def self_intersections(
    V: np.ndarray, tris: np.ndarray, subset: np.ndarray | None = None, chunk: int = 200_000
) -> np.ndarray:
    """Pairs of triangles [K, 2] that intersect (optionally only pairs involving `subset`)."""
    V = np.asarray(V, np.float64)
    pairs = candidate_pairs(V, tris, subset)
    hits = []
    for s in range(0, len(pairs), chunk):
        p = pairs[s : s + chunk]
        A, B = V[tris[p[:, 0]]], V[tris[p[:, 1]]]
        hit = np.zeros(len(p), bool)
        for X, Y in ((A, B), (B, A)):
            for k in range(3):
                hit |= _segment_hits_triangle(X[:, k], X[:, (k + 1) % 3], Y[:, 0], Y[:, 1], Y[:, 2])
        hits.append(p[hit])
    return np.concatenate(hits) if hits else np.zeros((0, 2), np.int64)


def moved_triangles(tris: np.ndarray, displacement: np.ndarray, tol: float = 1e-6) -> np.ndarray:
    """Triangles with at least one vertex that moves (to check deformations locally)."""
    moved = np.linalg.norm(displacement, axis=1) > tol
    return np.nonzero(moved[tris].any(axis=1))[0]
