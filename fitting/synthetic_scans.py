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
from .geometry import sample_surface, triangle_areas


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
    lo, hi = verts.min(0), verts.max(0)
    pad = 0.1 * (hi - lo)
    stray = rng.uniform(lo - pad, hi + pad, (n_out, 3))
    cloud = np.concatenate([surface, stray])
    outlier = np.r_[np.zeros(len(surface), bool), np.ones(n_out, bool)]
    order = rng.permutation(len(cloud))
    cloud, outlier = cloud[order], outlier[order]
    units = str(rng.choice(list(UNIT_TO_CM))) if units is None else units
    to_units = 1.0 / UNIT_TO_CM[units]
    R = Rotation.random(random_state=rng).as_matrix() if rotate else np.eye(3)
    t = rng.normal(0.0, 30.0, 3) * to_units  # scan origin anywhere within a metre or so
    sim = Similarity(to_units, R, t)
    return SyntheticScan(sim.apply(cloud), units, params, sim, sim.apply(verts), keep, outlier)
