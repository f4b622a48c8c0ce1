"""Mesh geometry: exact closest points on triangles, normals, surface sampling (numpy), and
closest points on a mesh held as torch tensors on any device (`TensorProximity`: the k-d
tree on the CPU, candidate triangles from centroid distances computed on the device elsewhere).

Shapes: V vertices, F triangles, N query points.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from scipy.spatial import cKDTree

from .parallel import SEQUENTIAL, Workers

# Query points per thread, at least: fewer cost more in threads than they save.
QUERY_PIECE = 1000


def _cross(u, v):
    """Cross products over the last axis, numpy or torch alike."""
    xp = torch if isinstance(u, torch.Tensor) else np
    x, y, z = u[..., 0], u[..., 1], u[..., 2]
    a, b, c = v[..., 0], v[..., 1], v[..., 2]
    return xp.stack([y * c - z * b, z * a - x * c, x * b - y * a], -1)


def face_normals(vertices, triangles):
    """Unit normals [F, 3] of triangles [F, 3] over vertices [V, 3] (zero for degenerate ones);
    numpy arrays or torch tensors (on their device)."""
    v = vertices[triangles]
    n = _cross(v[:, 1] - v[:, 0], v[:, 2] - v[:, 0])
    length = (n * n).sum(-1, keepdims=True) ** 0.5
    return n / length.clip(1e-12, None)


def triangle_areas(vertices: np.ndarray, triangles: np.ndarray) -> np.ndarray:
    v = vertices[triangles]
    return 0.5 * np.linalg.norm(np.cross(v[:, 1] - v[:, 0], v[:, 2] - v[:, 0]), axis=1)


def sample_surface(
    vertices: np.ndarray, triangles: np.ndarray, count: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Area-uniform random points on a mesh: points [N, 3], triangle index [N], barycentrics [N, 3]."""
    areas = triangle_areas(vertices, triangles)
    if not np.isfinite(areas).all() or areas.sum() <= 0:
        raise ValueError("the mesh has no area to sample")
    face = rng.choice(len(triangles), size=count, p=areas / areas.sum())
    r1, r2 = rng.random(count), rng.random(count)
    s = np.sqrt(r1)
    bary = np.stack([1.0 - s, s * (1.0 - r2), s * r2], 1)
    points = np.einsum("nk,nkd->nd", bary, vertices[triangles[face]])
    return points, face, bary


def closest_point_on_triangles(p, a, b, c):
    """Closest point to each p [..., 3] on triangle (a, b, c) [..., 3] each (Ericson, Real-Time
    Collision Detection 5.1.5), vectorised and broadcast; numpy arrays or torch tensors alike
    (one implementation for the CPU and the device paths). Returns points [..., 3] and
    barycentrics [..., 3]. A degenerate triangle gives the closest point of its segment."""
    xp = torch if isinstance(p, torch.Tensor) else np
    where = xp.where

    def dot(u, v):  # written out: a sum over an axis of three costs three times as much
        return u[..., 0] * v[..., 0] + u[..., 1] * v[..., 1] + u[..., 2] * v[..., 2]

    ab, ac, ap, bp, cp = b - a, c - a, p - a, p - b, p - c
    d1, d2, d3, d4, d5, d6 = dot(ab, ap), dot(ac, ap), dot(ab, bp), dot(ac, bp), dot(ab, cp), dot(ac, cp)
    va = d3 * d6 - d5 * d4
    vb = d5 * d2 - d1 * d6
    vc = d1 * d4 - d3 * d2
    one, zero = xp.ones_like(d1), xp.zeros_like(d1)

    def ratio(num, den):
        return num / where(den == 0, one, den)

    # The inside, then each Voronoi region from the lowest priority to the highest: the last
    # match wins. An edge of zero length is never the answer (its vertices are).
    s = ratio(one, va + vb + vc)
    v, w = vb * s, vc * s
    u = 1 - v - w
    t = ratio(d4 - d3, (d4 - d3) + (d5 - d6))
    regions = [
        ((va <= 0) & (d4 - d3 >= 0) & (d5 - d6 >= 0) & (d4 - d3 + d5 - d6 > 0), zero, 1 - t, t),  # edge bc
    ]
    t = ratio(d2, d2 - d6)
    regions.append(((vb <= 0) & (d2 >= 0) & (d6 <= 0) & (d2 - d6 > 0), 1 - t, zero, t))  # edge ac
    t = ratio(d1, d1 - d3)
    regions.append(((vc <= 0) & (d1 >= 0) & (d3 <= 0) & (d1 - d3 > 0), 1 - t, t, zero))  # edge ab
    regions.append(((d6 >= 0) & (d5 <= d6), zero, zero, one))  # vertex c
    regions.append(((d3 >= 0) & (d4 <= d3), zero, one, zero))  # vertex b
    regions.append(((d1 <= 0) & (d2 <= 0), one, zero, zero))  # vertex a
    for mask, uu, vv, ww in regions:
        u, v, w = where(mask, uu, u), where(mask, vv, v), where(mask, ww, w)
    bary = xp.stack([u, v, w], -1)
    points = bary[..., :1] * a + bary[..., 1:2] * b + bary[..., 2:] * c
    return points, bary


@dataclass
class Closest:
    """Closest points on a mesh: point [N, 3], triangle [N], barycentrics [N, 3], distance [N]."""

    point: np.ndarray
    triangle: np.ndarray
    bary: np.ndarray
    distance: np.ndarray


class MeshProximity:
    """Closest-point queries on one mesh: a k-d tree over triangle centroids proposes
    `candidates` triangles per query, the exact point-triangle test picks the best.

    With exact=True every answer is the true closest point: the triangles are grouped by
    their centroid-to-corner radius (within a factor of two), and a triangle of a group
    outside its k nearest centroids is at least (distance to the k-th centroid - the
    group's largest radius) away; where that bound does not rule a closer one out, the
    query is asked again with more candidates (finally all of the group)."""

    def __init__(self, vertices: np.ndarray, triangles: np.ndarray, candidates: int = 8) -> None:
        self.vertices = v = np.asarray(vertices, np.float64)
        self.triangles = t = np.asarray(triangles, np.int64)
        # Built afresh every solver iteration, so built cheaply: the centroids as three
        # gathers (equal to corners.mean(1), at a third of its time), the radii only for exact
        # queries, and an unbalanced tree (it builds in half the time and answers as fast).
        self.centroids = (v[t[:, 0]] + v[t[:, 1]] + v[t[:, 2]]) / 3.0
        self.tree = cKDTree(self.centroids, balanced_tree=False, compact_nodes=False)
        self.candidates = min(candidates, len(self.triangles))
        self._groups = None
        self._radii = None

    @property
    def radii(self) -> np.ndarray:
        """[F] each triangle's largest centroid-to-corner distance."""
        if self._radii is None:
            corners = self.vertices[self.triangles]  # [F, 3, 3]
            self._radii = np.linalg.norm(corners - self.centroids[:, None], axis=2).max(1)
        return self._radii

    def query(
        self, points: np.ndarray, chunk: int = 50_000, exact: bool = False, workers: Workers = SEQUENTIAL
    ) -> Closest:
        """Closest points for points [N, 3], in pieces of at most `chunk` (bounded memory),
        on the workers' threads (each point's answer is its own: the same for any split)."""
        points = np.asarray(points, np.float64)
        pieces = [
            slice(i + s.start, i + s.stop)
            for i in range(0, len(points), chunk)
            for s in workers.split(min(chunk, len(points) - i), least=QUERY_PIECE)
        ]
        if exact and len(pieces) > 1:
            self._radius_groups()  # built once here, not by every thread at once
        out = workers.map(lambda s: self._query(points[s], exact), pieces) or [self._query(points, exact)]
        return Closest(*(np.concatenate([getattr(o, f) for o in out]) for f in Closest.__dataclass_fields__))

    def _best_of(self, points: np.ndarray, cand: np.ndarray) -> Closest:
        """The closest point of each point [N, 3] among its candidate triangles [N, k]."""
        n, k = cand.shape
        flat = self.triangles[cand].reshape(-1, 3)
        p = np.repeat(points, k, axis=0)
        v = self.vertices
        q, bary = closest_point_on_triangles(p, v[flat[:, 0]], v[flat[:, 1]], v[flat[:, 2]])
        d = np.linalg.norm(q - p, axis=1).reshape(n, k)
        best = np.argmin(d, axis=1)
        rows = np.arange(n)
        sel = rows * k + best
        return Closest(q[sel], cand[rows, best], bary[sel], d[rows, best])

    def _query(self, points: np.ndarray, exact: bool) -> Closest:
        k = min(max(self.candidates, 16) if exact else self.candidates, len(self.triangles))
        _, cand = self.tree.query(points, k=k)
        out = self._best_of(points, np.asarray(cand).reshape(len(points), k))
        if exact and len(points):
            for members, tree, radius in self._radius_groups():
                self._settle(points, out, members, tree, radius)
        return out

    def _radius_groups(self) -> list:
        """(triangle indices, centroid tree, largest radius) per radius class."""
        if self._groups is None:
            r = np.maximum(self.radii, 1e-12)
            level = np.floor(np.log2(r / r.max())).astype(np.int64)
            level = np.maximum(level, -8)  # tiny triangles share one group
            self._groups = []
            for lv in np.unique(level):
                members = np.nonzero(level == lv)[0]
                self._groups.append(
                    (members, cKDTree(self.centroids[members]), float(self.radii[members].max()))
                )
        return self._groups

    def _settle(self, points: np.ndarray, out: Closest, members, tree, radius: float) -> None:
        """Make `out` exact with respect to one radius group of triangles."""
        # Only queries that a triangle of this group could beat: bound by the nearest centroid.
        nearest, _ = tree.query(points, k=1)
        todo = np.nonzero(out.distance > np.asarray(nearest) - radius)[0]
        k = min(self.candidates, len(members))
        while len(todo):
            dist_c, idx = tree.query(points[todo], k=k)
            dist_c = np.asarray(dist_c).reshape(len(todo), k)
            idx = np.asarray(idx).reshape(len(todo), k)
            # Only candidates whose own bound (centroid distance - its radius) could beat the
            # best so far get the exact test: far points (outliers) meet many triangles.
            cand = members[idx]
            hopeful = dist_c - self.radii[cand] < out.distance[todo, None]
            rows, cols = np.nonzero(hopeful)
            if len(rows):
                self._improve(points, out, todo[rows], cand[rows, cols])
            if k == len(members):
                break
            # Some triangle beyond the k-th centroid may still be closer than the best so far.
            todo = todo[out.distance[todo] > dist_c[:, -1] - radius]
            k = min(4 * k, len(members))

    def _improve(self, points: np.ndarray, out: Closest, at: np.ndarray, triangles: np.ndarray) -> None:
        """Replace out's answer for points[at[i]] by triangles[i] where that is closer (pairs)."""
        flat = self.triangles[triangles]
        v = self.vertices
        p = points[at]
        q, bary = closest_point_on_triangles(p, v[flat[:, 0]], v[flat[:, 1]], v[flat[:, 2]])
        d = np.linalg.norm(q - p, axis=1)
        # The closest pair per point: sort by (point, distance), keep each point's first.
        order = np.lexsort((d, at))
        first = order[np.r_[True, at[order][1:] != at[order][:-1]]]
        better = first[d[first] < out.distance[at[first]]]
        rows = at[better]
        out.point[rows], out.triangle[rows] = q[better], triangles[better]
        out.bary[rows], out.distance[rows] = bary[better], d[better]


class TensorProximity:
    """Closest points on a mesh whose vertices [V, 3] and triangles [F, 3] are torch tensors,
    answered as tensors on their device (`Closest` of tensors). On the CPU it is
    MeshProximity's k-d tree; elsewhere (or with brute_force) the `candidates` triangles of
    nearest centroid come from all centroid distances, chunked, on the device, and the exact
    point-triangle test picks the best: the same candidates as the k-d tree's. exact=True
    tests every triangle (chunked brute force), the true closest point."""

    def __init__(
        self,
        vertices: torch.Tensor,
        triangles: torch.Tensor,
        candidates: int = 8,
        brute_force: bool | None = None,
        workers: Workers = SEQUENTIAL,
    ) -> None:
        self.vertices, self.triangles = vertices, triangles
        self.workers = workers
        self.candidates = min(candidates, len(triangles))
        self.brute_force = vertices.device.type != "cpu" if brute_force is None else brute_force
        if self.brute_force:
            self.corners = vertices[triangles]  # [F, 3, 3]
            self.centroids = self.corners.mean(1)
        else:
            self.tree = MeshProximity(vertices.detach().cpu().numpy(), triangles.cpu().numpy(), candidates)

    def query(self, points: torch.Tensor, exact: bool = False, budget: int = 1 << 24) -> Closest:
        """Closest points for points [N, 3]; budget bounds the elements of one chunk's [n, F] work."""
        if not self.brute_force:
            c = self.tree.query(points.detach().cpu().numpy(), exact=exact, workers=self.workers)
            dev, dt = points.device, points.dtype
            return Closest(
                torch.as_tensor(c.point, dtype=dt, device=dev),
                torch.as_tensor(c.triangle, device=dev),
                torch.as_tensor(c.bary, dtype=dt, device=dev),
                torch.as_tensor(c.distance, dtype=dt, device=dev),
            )
        F = len(self.triangles)
        # The exact test's temporaries are ~30 per pair; centroid distances ~1.
        step = max(1, budget // (F * (32 if exact else 1)))
        out = [self._chunk(points[i : i + step], exact) for i in range(0, len(points), step)]
        if not out:
            out = [self._chunk(points, exact)]
        return Closest(*(torch.cat([getattr(o, f) for o in out]) for f in Closest.__dataclass_fields__))

    def _chunk(self, p: torch.Tensor, exact: bool) -> Closest:
        if exact:
            cand = torch.arange(len(self.triangles), device=p.device).expand(len(p), -1)
            v = self.corners[None]  # [1, F, 3, 3], broadcast
        else:
            d = torch.cdist(p, self.centroids)  # [n, F]
            cand = d.topk(self.candidates, dim=1, largest=False).indices  # [n, k]
            v = self.corners[cand]  # [n, k, 3, 3]
        q, bary = closest_point_on_triangles(p[:, None], v[:, :, 0], v[:, :, 1], v[:, :, 2])
        dist = ((q - p[:, None]) ** 2).sum(-1).sqrt()  # [n, k]
        best = dist.argmin(1, keepdim=True)
        take = best[..., None].expand(-1, -1, 3)
        return Closest(
            q.gather(1, take)[:, 0],
            cand.gather(1, best)[:, 0],
            bary.gather(1, take)[:, 0],
            dist.gather(1, best)[:, 0],
        )


@dataclass
class SurfaceDistance:
    """Distances [N] from query points to a surface, and whether each query lies over it
    (`covered`: its offset to the surface is along the surface normal, not sideways past
    an edge of the scan or across a hole)."""

    distance: np.ndarray
    covered: np.ndarray


def distance_to_mesh(
    points: np.ndarray,
    vertices: np.ndarray,
    triangles: np.ndarray,
    lateral: float,
    workers: Workers = SEQUENTIAL,
) -> SurfaceDistance:
    """Exact point-to-triangle distances [N] from points [N, 3] to a mesh; a query is covered
    when the sideways part of its offset (perpendicular to the closest triangle's normal) is
    at most `lateral`."""
    c = MeshProximity(vertices, triangles).query(points, exact=True, workers=workers)
    n = face_normals(vertices, triangles[c.triangle])
    offset = points - c.point
    along = np.einsum("nc,nc->n", offset, n)
    sideways = np.linalg.norm(offset - along[:, None] * n, axis=1)
    return SurfaceDistance(c.distance, sideways <= lateral)


def distance_to_cloud(
    points: np.ndarray, cloud: np.ndarray, lateral: float, neighbours: int = 10
) -> SurfaceDistance:
    """Distances [N] from points [N, 3] to the surface a point cloud [M, 3] samples: the
    plane through each query's `neighbours` nearest cloud points (principal axes), with
    the sideways offset beyond the neighbours' spread added back (so a query past the
    cloud's edge is as far as it looks); covered when that sideways excess is at most
    `lateral`."""
    k = min(neighbours, len(cloud))
    _, idx = cKDTree(cloud).query(points, k=k)
    nb = cloud[np.asarray(idx).reshape(len(points), k)]  # [N, k, 3]
    centre = nb.mean(1)
    rel = nb - centre[:, None]
    _, vecs = np.linalg.eigh(np.einsum("nki,nkj->nij", rel, rel))
    normal = vecs[:, :, 0]  # smallest variance
    offset = points - centre
    along = np.einsum("nc,nc->n", offset, normal)
    side = offset - along[:, None] * normal
    spread = np.sqrt(np.einsum("nkc,nkc->nk", rel, rel).mean(1) * 2.0)  # ~ the neighbourhood's radius
    excess = np.maximum(np.linalg.norm(side, axis=1) - spread, 0.0)
    return SurfaceDistance(np.hypot(along, excess), excess <= lateral)
