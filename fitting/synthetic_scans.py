"""Synthetic head scans made from a model, with known truth, for tests and benchmarks.

A scan is the model's surface at random parameters (shape within 2 standard deviations,
sparse expressions, neck pose within the ranges of motion, larynx), sampled at random
points, with Gaussian noise, outliers, holes, a random similarity transform and units.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.spatial.transform import Rotation

from .alignment import UNIT_TO_CM, Similarity
from .evaluator import ModelEvaluator, ModelParams
from .geometry import face_normals, sample_surface, triangle_areas


@dataclass
class SyntheticScan:
    points: np.ndarray  # [N, 3] scan units
    units: str
    params: ModelParams  # truth
    transform: Similarity  # model (cm) -> scan (scan units), truth
    true_vertices: np.ndarray  # [V, 3] true mesh in scan coordinates
    kept_triangles: np.ndarray  # [F] bool, triangles the scan covers
    outlier: np.ndarray  # [N] bool


def random_params(
    ev: ModelEvaluator, rng: np.random.Generator, expressions: int | None = None
) -> ModelParams:
    """Shape ~ N(0, 1) clipped to +-2, 2-5 random expressions at 0.2-1, neck pose uniform
    within the ranges of motion, larynx height +-0.05 and scale 0.7-1.3."""
    shape = np.clip(rng.normal(size=ev.S), -2.0, 2.0)
    expression = np.zeros(ev.E)
    k = int(rng.integers(2, 6)) if expressions is None else expressions
    if ev.E and k:
        expression[rng.choice(ev.E, size=min(k, ev.E), replace=False)] = rng.uniform(0.2, 1.0, min(k, ev.E))
    pose = rng.uniform(-1.0, 1.0, (ev.J, 3)) * ev.pose_limits
    return ModelParams(shape, expression, pose, float(rng.uniform(-0.05, 0.05)), float(rng.uniform(0.7, 1.3)))


def cut_holes(
    vertices: np.ndarray, triangles: np.ndarray, fraction: float, holes: int, rng: np.random.Generator
) -> np.ndarray:
    """Mask [F] of triangles kept after removing about `fraction` of the area in `holes`
    round patches (the triangles nearest to random centres)."""
    keep = np.ones(len(triangles), bool)
    if fraction <= 0 or holes <= 0:
        return keep
    areas = triangle_areas(vertices, triangles)
    centroids = vertices[triangles].mean(1)
    shares = rng.dirichlet(np.ones(holes)) * fraction * areas.sum()
    for share in shares:
        centre = centroids[rng.choice(len(triangles), p=areas / areas.sum())]
        order = np.argsort(np.linalg.norm(centroids - centre, axis=1))
        order = order[keep[order]]
        take = order[: int(np.searchsorted(np.cumsum(areas[order]), share)) + 1]
        keep[take] = False
    return keep


def _model_vertices(model, params: ModelParams) -> np.ndarray:
    """[V, 3] the model's own mesh (HACK.forward, root-anchored) in float64."""
    import torch

    with torch.no_grad():
        args = {k: torch.as_tensor(v) for k, v in params.forward_arguments().items()}
        return model(**args).vertices[0].double().numpy()


def make_scan(
    ev: ModelEvaluator,
    rng: np.random.Generator,
    points: int = 100_000,
    noise_mm: float = 0.5,
    outliers: float = 0.05,
    hole_fraction: float = 0.2,
    units: str | None = None,
    rotate: bool = True,
    params: ModelParams | None = None,
) -> SyntheticScan:
    """A random scan of the model (see the module docstring)."""
    params = random_params(ev, rng) if params is None else params
    verts = _model_vertices(ev.model, params)
    tris = ev.triangles
    keep = cut_holes(verts, tris, hole_fraction, int(rng.integers(1, 4)), rng)
    n_out = int(round(points * outliers))
    surface, _, _ = sample_surface(verts, tris[keep], points - n_out, rng)
    surface += rng.normal(0.0, noise_mm / 10.0, surface.shape)
    cloud, outlier, units, sim = _in_scanner_frame(surface, verts, n_out, units, rotate, rng)
    return SyntheticScan(cloud, units, params, sim, sim.apply(verts), keep, outlier)


@dataclass(frozen=True)
class Scanner:
    """One scanner set-up, for scans taken alike (a sequence's frames): its units, its pose
    (model cm -> scan units) and, for frontal views, the camera's yaw and pitch (degrees)
    from the face's front."""

    units: str
    placement: Similarity
    yaw_deg: float
    pitch_deg: float

    @classmethod
    def random(cls, rng: np.random.Generator, units: str | None = None) -> Scanner:
        """As make_kind_scan draws them: any units and rotation, the origin within a metre or
        so, the camera within +-30 deg of yaw and +-20 deg of pitch."""
        units = str(rng.choice(list(UNIT_TO_CM))) if units is None else units
        to_units = 1.0 / UNIT_TO_CM[units]
        R = Rotation.random(random_state=rng).as_matrix()
        placement = Similarity(to_units, R, rng.normal(0.0, 30.0, 3) * to_units)
        return cls(units, placement, float(rng.uniform(-30, 30)), float(rng.uniform(-20, 20)))


def _in_scanner_frame(surface, box_points, n_out, units, rotate, rng, placement: Similarity | None = None):
    """Add n_out stray points in the padded box of box_points, shuffle, and place the cloud
    in a random scanner frame and units (or `placement`, in `units`): (cloud [N, 3], outlier
    [N] bool, units, Similarity)."""
    lo, hi = box_points.min(0), box_points.max(0)
    pad = 0.1 * (hi - lo)
    stray = rng.uniform(lo - pad, hi + pad, (n_out, 3))
    cloud = np.concatenate([surface, stray])
    outlier = np.r_[np.zeros(len(surface), bool), np.ones(n_out, bool)]
    order = rng.permutation(len(cloud))
    cloud, outlier = cloud[order], outlier[order]
    if placement is not None:
        return placement.apply(cloud), outlier, units, placement
    units = str(rng.choice(list(UNIT_TO_CM))) if units is None else units
    to_units = 1.0 / UNIT_TO_CM[units]
    R = Rotation.random(random_state=rng).as_matrix() if rotate else np.eye(3)
    t = rng.normal(0.0, 30.0, 3) * to_units  # scan origin anywhere within a metre or so
    sim = Similarity(to_units, R, t)
    return sim.apply(cloud), outlier, units, sim


# ------------------------------------------------------------- scans of the kinds people have
KINDS = ("full", "holes", "face", "frontal")


@dataclass
class RecordedFrames:
    """Recorded parameter sequences to draw frames from: neck_pose [T, J, 3], larynx_height
    [T], larynx_scale [T] (one frame of a sequence each) and expression [T', E]."""

    neck_pose: np.ndarray
    larynx_height: np.ndarray
    larynx_scale: np.ndarray
    expression: np.ndarray

    @classmethod
    def load(cls, folder) -> RecordedFrames:
        """From a release's data folder (theta_list, tau_list, alpha_list, bsw_list .npy)."""
        from pathlib import Path

        folder = Path(folder)

        def arr(name):
            return np.load(folder / f"{name}_list.npy", allow_pickle=False).astype(np.float64)

        return cls(arr("theta"), arr("tau").reshape(-1), arr("alpha").reshape(-1), arr("bsw"))


def recorded_params(
    ev: ModelEvaluator, rng: np.random.Generator, frames: RecordedFrames, shape_sd: float = 0.8
) -> ModelParams:
    """Shape ~ N(0, shape_sd^2); neck pose and larynx of one random recorded frame, the
    expression weights of another."""
    t = int(rng.integers(len(frames.neck_pose)))
    e = int(rng.integers(len(frames.expression)))
    expression = np.zeros(ev.E)
    n = min(ev.E, frames.expression.shape[1])
    expression[:n] = frames.expression[e, :n]
    pose = np.zeros((ev.J, 3))
    j = min(ev.J, frames.neck_pose.shape[1])
    pose[:j] = frames.neck_pose[t, :j]
    return ModelParams(
        rng.normal(0.0, shape_sd, ev.S),
        expression,
        pose,
        float(frames.larynx_height[t]),
        float(frames.larynx_scale[t]),
    )


def _visible_from(points: np.ndarray, direction: np.ndarray, cell: float, depth_tol: float) -> np.ndarray:
    """Mask [N] of points not hidden from an orthographic camera looking along -direction
    (a z-buffer on a grid of `cell` cm: within depth_tol of the front-most in its cell)."""
    d = direction / np.linalg.norm(direction)
    u = np.cross(d, [0.0, 1.0, 0.0] if abs(d[1]) < 0.9 else [1.0, 0.0, 0.0])
    u /= np.linalg.norm(u)
    w = np.cross(d, u)
    depth = points @ d
    ij = np.floor(np.stack([points @ u, points @ w], 1) / cell).astype(np.int64)
    ij -= ij.min(0)
    key = ij[:, 0] * (ij[:, 1].max() + 1) + ij[:, 1]
    front = np.full(key.max() + 1, -np.inf)
    np.maximum.at(front, key, depth)
    return depth >= front[key] - depth_tol


def make_kind_scan(
    ev: ModelEvaluator,
    rng: np.random.Generator,
    kind: str,
    frames: RecordedFrames | None = None,
    points: int = 100_000,
    noise_mm: float = 0.5,
    outliers: float = 0.03,
    shape_sd: float = 0.8,
    facing_deg: float = 35.0,
    units: str | None = None,
    params: ModelParams | None = None,
    scanner: Scanner | None = None,
) -> SyntheticScan:
    """A scan of one kind, with known truth:

    full     the whole surface
    holes    20% of the surface removed in one to three holes
    face     the face alone (the front of the head above the neck, FACE region)
    frontal  what one camera sees: the camera turned by a random yaw (+-30 deg) and pitch
             (+-20 deg) from the face's front, and only the unoccluded surface whose normal
             faces it within `facing_deg`

    Parameters come from recorded frames (or random_params without them; or `params`), then
    noise, uniform outliers around the surface, a random rotation, translation and units (or
    those of `scanner`, with its camera for the frontal kind)."""
    from .regions import FACE, vertex_regions

    if kind not in KINDS:
        raise ValueError(f"unknown scan kind {kind!r} (use {', '.join(KINDS)})")
    if params is None:
        params = recorded_params(ev, rng, frames, shape_sd) if frames is not None else random_params(ev, rng)
    verts = _model_vertices(ev.model, params)
    tris = ev.triangles
    n_out = int(round(points * outliers))
    n_surf = points - n_out
    if kind in ("full", "holes", "face"):
        if kind == "full":
            keep = np.ones(len(tris), bool)
        elif kind == "holes":
            keep = cut_holes(verts, tris, 0.2, int(rng.integers(1, 4)), rng)
        else:
            keep = (vertex_regions(ev.model.data)[tris] == FACE).all(1)
        surface, _, _ = sample_surface(verts, tris[keep], n_surf, rng)
    else:
        if scanner is None:
            yaw, pitch = np.deg2rad(rng.uniform(-30, 30)), np.deg2rad(rng.uniform(-20, 20))
        else:
            yaw, pitch = np.deg2rad(scanner.yaw_deg), np.deg2rad(scanner.pitch_deg)
        toward = Rotation.from_euler("yx", [yaw, pitch]).apply([0.0, 0.0, 1.0])  # +z: the face's front
        dense, face_idx, _ = sample_surface(verts, tris, 6 * n_surf, rng)
        n = face_normals(verts, tris)
        facing = n[face_idx] @ toward >= np.cos(np.deg2rad(facing_deg))
        seen = facing & _visible_from(dense, toward, cell=0.15, depth_tol=0.3)
        keep = np.zeros(len(tris), bool)
        keep[face_idx[seen]] = True
        idx = np.nonzero(seen)[0]
        surface = dense[rng.choice(idx, min(n_surf, len(idx)), replace=False)]
    surface = surface + rng.normal(0.0, noise_mm / 10.0, surface.shape)
    if scanner is not None:
        units = scanner.units
    placement = None if scanner is None else scanner.placement
    cloud, outlier, units, sim = _in_scanner_frame(surface, surface, n_out, units, True, rng, placement)
    return SyntheticScan(cloud, units, params, sim, sim.apply(verts), keep, outlier)
