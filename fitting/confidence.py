"""How far a fit can be trusted, from evidence a wrong fit cannot fake.

A fit that is off the true surface by a millimetre still has most scan points within a few
millimetres, so "how much of the scan is explained" alone calls it a success. The evidence
here is in the scan's own units (mm) and compared with what the scan itself shows:

    residual structure  the mean signed scan-to-fit residual over patches of the scan: noise
                        averages out within a patch, a wrong shape, pose or scale does not
    excess residual     the residual's spread beyond the scan's own noise (local planes
                        through each point's neighbours, no model involved)
    explained           the share of the scan within INLIER_MM of the fit
    coverage            the share of the model's face the scan covers
    scale               the fitted scale against the detected units' (heads differ in size
                        through the shape, not through the units)
    shape               the shape coefficients' RMS (beyond about 3 SD it is no head)

Each gives a score in [0, 1] that falls linearly from its "ok" to its "bad" bound; the
confidence is their product and every score below 1 adds a reason to the message. The
bounds are calibrated on benchmarks/fitting.py (good fits: patch bias below ~0.1 mm).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.spatial import cKDTree

INLIER_MM = 3.0
# (ok, bad) bounds of each score.
BIAS_MM = (0.2, 0.4)
EXCESS_MM = (0.25, 0.5)
EXPLAINED = (0.75, 0.45)
FACE_COVERAGE = (0.5, 0.0)
SCALE_OFF = (0.03, 0.06)
SHAPE_RMS = (2.5, 3.5)
PATCHES = 64
PATCH_POINTS = 40
MIN_PATCHES = 4


@dataclass
class Evidence:
    bias_mm: float  # 90th percentile of |mean signed residual| over the scan's patches
    excess_mm: float  # residual spread beyond the scan's own noise
    noise_mm: float  # the scan's own noise (local planes)
    explained: float  # share of scan points within INLIER_MM of the fit
    face_coverage: float  # share of the model's face vertices the scan covers
    scale_offset: float  # fitted scale / the units' scale - 1
    shape_rms: float  # RMS of the shape coefficients (SD)

    def as_dict(self) -> dict[str, float]:
        return {k: round(float(v), 4) for k, v in self.__dict__.items()}


def scan_noise_mm(points_mm: np.ndarray, rng: np.random.Generator, sample: int = 2000) -> float:
    """Robust noise (mm) of a point cloud [N, 3] in mm: the spread of points about the
    plane through their 12 nearest neighbours (without themselves), corrected for the
    plane's own error."""
    if len(points_mm) < 50:
        return float("nan")
    pick = rng.choice(len(points_mm), min(sample, len(points_mm)), replace=False)
    _, idx = cKDTree(points_mm).query(points_mm[pick], k=13)
    d = np.empty(len(pick))
    for start in range(0, len(pick), 500):
        rows = slice(start, start + 500)
        nb = points_mm[idx[rows, 1:]]
        d[rows] = _plane_residual(points_mm[pick[rows]], nb)
    return float(1.4826 * np.median(np.abs(d)) * np.sqrt(12 / 13))


def _plane_residual(points: np.ndarray, nb: np.ndarray) -> np.ndarray:
    centre = nb.mean(1)
    rel = nb - centre[:, None]
    _, vecs = np.linalg.eigh(np.einsum("nki,nkj->nij", rel, rel))
    return np.einsum("nc,nc->n", points - centre, vecs[:, :, 0])


def patch_bias_mm(points: np.ndarray, signed_mm: np.ndarray, rng: np.random.Generator) -> float:
    """90th percentile over patches of the scan (points [N, 3]) of |mean signed residual|."""
    # a sparse scan gets fewer, not emptier, patches (about twice PATCH_POINTS points each):
    # with a fixed count none would be full, and the check would silently pass
    count = min(PATCHES, len(points) // (2 * PATCH_POINTS))
    if count < MIN_PATCHES:
        return float("nan")
    centres = points[rng.choice(len(points), count, replace=False)]
    _, patch = cKDTree(centres).query(points, k=1)
    counts = np.bincount(patch, minlength=len(centres))
    sums = np.bincount(patch, weights=signed_mm, minlength=len(centres))
    means = sums[counts >= PATCH_POINTS] / counts[counts >= PATCH_POINTS]
    return float(np.percentile(np.abs(means), 90)) if means.size else float("nan")


def _score(value: float, bounds: tuple[float, float]) -> float:
    ok, bad = bounds
    if not np.isfinite(value):
        return 1.0
    return float(np.clip((value - bad) / (ok - bad), 0.0, 1.0))


def judge(ev: Evidence) -> tuple[float, list[str]]:
    """Confidence in [0, 1] and the reasons it is below 1."""
    checks = [
        (
            _score(ev.bias_mm, BIAS_MM),
            f"the fit lies {ev.bias_mm:.2f} mm off parts of the scan on one side (residual structure)",
        ),
        (
            _score(ev.excess_mm, EXCESS_MM),
            f"residuals {ev.excess_mm:.2f} mm beyond the scan's own noise ({ev.noise_mm:.2f} mm)",
        ),
        (
            _score(ev.explained, EXPLAINED),
            f"only {ev.explained:.0%} of the scan lies within {INLIER_MM:.0f} mm of the fit",
        ),
        (_score(ev.face_coverage, FACE_COVERAGE), f"the scan covers {ev.face_coverage:.0%} of the face"),
        (
            _score(abs(ev.scale_offset), SCALE_OFF),
            f"the fitted scale is {ev.scale_offset:+.1%} off the units' scale: size and units cannot "
            "be told apart on this scan",
        ),
        (_score(ev.shape_rms, SHAPE_RMS), f"implausible shape (RMS coefficient {ev.shape_rms:.1f} SD)"),
    ]
    confidence = float(np.prod([s for s, _ in checks]))
    return confidence, [why for s, why in checks if s < 1.0]
