"""The per-scan report (JSON) and picture of a fit."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from hack_model.io.atomic import atomic_output

from .fit import FitResult
from .regions import REGION_NAMES, vertex_regions


def distance_stats(d: np.ndarray) -> dict[str, float | int | None]:
    """mean, median, 95th percentile (mm) and count of distances [N]."""
    d = np.asarray(d, np.float64)
    if d.size == 0:
        return {"mean": None, "median": None, "p95": None, "count": 0}
    return {
        "mean": round(float(d.mean()), 4),
        "median": round(float(np.median(d)), 4),
        "p95": round(float(np.percentile(d, 95)), 4),
        "count": int(d.size),
    }


def _covered(result: FitResult) -> np.ndarray:
    if result.vertex_covered is not None:
        return np.asarray(result.vertex_covered, bool)
    return np.asarray(result.vertex_distances_mm) <= 5.0


def build_report(result: FitResult, model_data, scan_name: str = "scan") -> dict:
    """JSON-ready dict: distances in mm overall and per region, units, iterations, time,
    convergence, confidence and the evidence behind it. Both distances are point-to-surface:
    scan-to-model from scan points to the fitted triangles, model-to-scan from the fitted
    vertices the scan covers to the scan's surface (its triangles, or local planes through
    a point cloud); `covered_fraction` says how much of each region the scan covers."""
    vreg = vertex_regions(model_data)
    s2m, m2s = result.scan_distances_mm, result.vertex_distances_mm
    covered = _covered(result)
    regions = {}
    for k, name in enumerate(REGION_NAMES):
        inside = vreg == k
        regions[name] = {
            "scan_to_model_mm": distance_stats(s2m[result.scan_regions == k]),
            "model_to_scan_mm": distance_stats(m2s[inside & covered]),
            "covered_fraction": round(float(covered[inside].mean()), 4) if inside.any() else None,
        }
    return {
        "scan": scan_name,
        "model": model_data.name,
        "units": result.units,
        "scale_status": result.scale_status,
        "scale_reason": result.scale_reason,
        "failed": bool(result.failed),
        "message": result.message,
        "converged": bool(result.converged),
        "confidence": round(float(result.confidence), 4),
        "evidence": result.evidence,
        "iterations": int(result.iterations),
        "time_s": {k: round(float(v), 3) for k, v in result.timings.items()},
        "scan_to_model_mm": distance_stats(s2m),
        "model_to_scan_mm": distance_stats(m2s[covered]),
        "covered_fraction": round(float(covered.mean()), 4),
        "regions": regions,
        "similarity": {
            "scale": float(result.scale),
            "rotation": np.asarray(result.rotation).round(8).tolist(),
            "translation": np.asarray(result.translation).round(8).tolist(),
            "note": "x_scan = scale * rotation @ x_model + translation (model in cm, scan in its units)",
        },
        "stages": [
            {
                "name": s.name,
                "iterations": s.iterations,
                "median_distance_mm": round(10.0 * s.median_cm, 4),
                "inlier_fraction": round(s.inliers, 4),
            }
            for s in result.stages
            if np.isfinite(s.median_cm)
        ],
    }


def write_report(path: str | os.PathLike, report: dict, *, overwrite: bool = False) -> Path:
    path = Path(path)
    with atomic_output(path, overwrite=overwrite) as tmp:
        tmp.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    return path


def _point_glyphs(points: np.ndarray, size: float) -> tuple[np.ndarray, np.ndarray]:
    """Tiny tetrahedra [4N, 3], [4N, 3] so that a point cloud renders as a surface of dots."""
    offsets = size * np.array([[1, 1, 1], [1, -1, -1], [-1, 1, -1], [-1, -1, 1]], np.float64)
    verts = (points[:, None, :] + offsets[None]).reshape(-1, 3)
    faces = np.array([[0, 1, 2], [0, 3, 1], [0, 2, 3], [1, 3, 2]])
    tris = (faces[None] + 4 * np.arange(len(points))[:, None, None]).reshape(-1, 3)
    return verts, tris


def render_fit(
    result: FitResult,
    model_data,
    scan_points: np.ndarray,
    scan_triangles: np.ndarray | None = None,
    size: int = 512,
    max_mm: float = 5.0,
) -> np.ndarray:
    """Scan | fit | heat map of the fit's distance to the scan (mm), side by side, in the
    model's frame (the face towards the camera). scan_points [N, 3] in the scan's units."""
    from hack_model.images import compose_sheet
    from hack_model.render import bounding_box, render_heatmap, render_mesh

    from .alignment import Similarity

    to_model = Similarity(result.scale, result.rotation, result.translation)
    model_tris = model_data.triangles()
    fit_v = result.model_vertices
    frame = bounding_box(fit_v)
    pts = to_model.inverse_apply(np.asarray(scan_points, np.float64))
    if scan_triangles is not None and len(scan_triangles):
        scan_img = render_mesh(pts, scan_triangles, size=size, frame=frame)
    else:
        rng = np.random.default_rng(0)
        pick = rng.choice(len(pts), min(30_000, len(pts)), replace=False)
        gv, gt = _point_glyphs(pts[pick], 0.08)
        scan_img = render_mesh(gv, gt, size=size, frame=frame)
    fit_img = render_mesh(fit_v, model_tris, size=size, frame=frame)
    # Where the scan has no surface (a hole, a cut) the map is grey, not "bad"; the colours
    # are the report's model-to-scan distances.
    distances = np.asarray(result.vertex_distances_mm, np.float64)
    uncovered = ~_covered(result)
    heat = render_heatmap(
        fit_v,
        model_tris,
        np.where(uncovered, np.nan, distances),
        vmin=0.0,
        vmax=max_mm,
        unit="mm",
        size=size,
        frame=frame,
        label="grey: not covered by the scan" if uncovered.any() else None,
    )
    return compose_sheet([scan_img, fit_img, heat], ["scan", "fit", "fit to scan distance"], columns=3)
