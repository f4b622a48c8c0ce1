"""Fitting benchmark: synthetic scans with known truth, fitted without landmarks.

Each scan is the model's surface at random parameters (shape within 2 SD, sparse
expressions, neck pose within the ranges of motion, random larynx), 100,000 points, 0.5 mm
noise, 5% outliers, 20% of the surface removed in one to three holes, a random rotation,
translation and units (mm, cm or m). Reported per scan and summarised:

    mean distance   from the fitted surface to the true surface over the part the scan covers (mm)
    v2v             median vertex-to-vertex error (mm)
    success         mean distance <= 0.5 mm

Targets: success in >= 19 of 20, median mean distance <= 0.3 mm, median v2v <= 1.5 mm,
median time <= 10 s. Optionally (--ict) fits the model to the ICT-FaceKit heads and
reports per-region distances.

    python benchmarks/fitting.py [--model M ...] [--scans 20] [--seed 0] [--ict]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from fitting import FitOptions, fit_scan  # noqa: E402
from fitting.fit import evaluator_for  # noqa: E402
from fitting.geometry import MeshProximity  # noqa: E402
from fitting.regions import REGION_NAMES  # noqa: E402
from fitting.synthetic_scans import make_scan  # noqa: E402
from hack_model import HACK  # noqa: E402

UNIT_MM = {"mm": 1.0, "cm": 10.0, "m": 1000.0}


def shared_data() -> Path:
    return Path(os.environ.get("HACK_SHARED_DATA", REPO.parent / "shared" / "data"))


def load_models(names: list[str] | None) -> list[tuple[str, HACK]]:
    if names:
        return [(n, HACK(None if n == "default" else n)) for n in names]
    models = []
    default = HACK()
    if default.num_shape > 0:
        models.append(("default", default))
    else:
        print("note: the embedded default model has no shape components yet; skipping it")
    release = shared_data() / "hack-release"
    if release.is_dir():
        models.append(("hack-release", HACK(release)))
    return models


def bench_model(
    name: str, model: HACK, scans: int, seed: int, points: int, only: list[int] | None = None
) -> dict:
    ev = evaluator_for(model)
    rows = []
    print(f"\n== {name}: {model.num_vertices} vertices, {model.num_shape} shape components; {scans} scans")
    print(
        f"{'scan':>4} {'units':>8} {'time s':>7} {'mean mm':>8} {'v2v mm':>7} "
        f"{'conf':>5} {'conv':>5} {'ok':>3}"
    )
    for i in range(scans):
        if only and i not in only:
            continue
        rng = np.random.default_rng(seed * 1000 + i)
        scan = make_scan(ev, rng, points=points)
        t0 = time.perf_counter()
        result = fit_scan(model, scan.points, options=FitOptions(seed=i))
        elapsed = time.perf_counter() - t0
        mm = UNIT_MM[scan.units]
        covered = np.unique(ev.triangles[scan.kept_triangles])
        truth = MeshProximity(scan.true_vertices, ev.triangles)
        mean_mm = float(truth.query(result.vertices[covered]).distance.mean() * mm)
        v2v = float(np.median(np.linalg.norm(result.vertices - scan.true_vertices, axis=1)) * mm)
        ok = mean_mm <= 0.5
        rows.append((elapsed, mean_mm, v2v, ok))
        units = f"{scan.units}->{result.units}"
        print(
            f"{i:>4} {units:>8} {elapsed:>7.2f} {mean_mm:>8.3f} {v2v:>7.3f} {result.confidence:>5.2f} "
            f"{str(result.converged):>5} {'yes' if ok else 'NO':>3}",
            flush=True,
        )
    t, mean, v2v, ok = (np.array(c) for c in zip(*rows))
    summary = {
        "success": int(ok.sum()),
        "scans": len(rows),
        "median_mean_mm": float(np.median(mean)),
        "median_v2v_mm": float(np.median(v2v)),
        "median_time_s": float(np.median(t)),
    }
    print(
        f"summary {name}: success {summary['success']}/{summary['scans']} (target >= 95%), "
        f"median mean distance {summary['median_mean_mm']:.3f} mm (<= 0.3), "
        f"median v2v {summary['median_v2v_mm']:.3f} mm (<= 1.5), "
        f"median time {summary['median_time_s']:.2f} s (<= 10), load {os.getloadavg()[0]:.2f}"
    )
    return summary


def bench_ict(model: HACK) -> None:
    """Fit the model to ICT-FaceKit heads (face+head+neck vertices 0-11247 as the scan)."""
    from hack_model.io.mesh import read_obj
    from hack_model.model_data import fan_triangulate

    folder = shared_data() / "ict-facekit" / "FaceXModel"
    if not folder.is_dir():
        print(f"ICT-FaceKit not found at {folder}; skipped")
        return
    print(f"\n== ICT-FaceKit heads fitted with {model.data.name} (distances in mm)")
    header = "mesh                    time s  conf   " + "  ".join(
        f"{r + ' s->m':>16} {r + ' m->s':>16}" for r in REGION_NAMES
    )
    print(header)
    for name in ("generic_neutral_mesh.obj", "identity000.obj", "identity001.obj"):
        mesh = read_obj(folder / name)
        tris = fan_triangulate(mesh.polygon_vertex_indices, mesh.polygon_sizes)
        keep = (tris < 11248).all(1)
        verts = mesh.vertices[:11248]
        # Sample the surface so that density does not follow the kit's vertex spacing.
        from fitting.geometry import sample_surface

        points, _, _ = sample_surface(verts, tris[keep], 100_000, np.random.default_rng(0))
        t0 = time.perf_counter()
        result = fit_scan(model, points)
        elapsed = time.perf_counter() - t0
        cells = []
        regions = result.scan_regions
        from fitting.regions import vertex_regions

        vreg = vertex_regions(model.data)
        for k in range(len(REGION_NAMES)):
            s2m = result.scan_distances_mm[regions == k]
            m2s = result.vertex_distances_mm[vreg == k]
            cells.append(f"{_stat(s2m):>16} {_stat(m2s):>16}")
        print(f"{name:<22} {elapsed:>7.2f} {result.confidence:>5.2f}   " + "  ".join(cells))
    print("(each cell: mean / 95th percentile; model->scan includes model parts the kit lacks)")


def _stat(d: np.ndarray) -> str:
    if d.size == 0:
        return "-"
    return f"{d.mean():.2f} / {np.percentile(d, 95):.2f}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", action="append", help="model path or 'default' (repeatable)")
    parser.add_argument("--scans", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--points", type=int, default=100_000)
    parser.add_argument("--only", type=int, action="append", help="run only this scan index (repeatable)")
    parser.add_argument("--threads", type=int, default=2, help="torch threads outside the fit")
    parser.add_argument("--ict", action="store_true", help="also fit the ICT-FaceKit heads")
    parser.add_argument("--no-synthetic", action="store_true", help="skip the synthetic scans")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    print(f"load before: {os.getloadavg()}")
    models = load_models(args.model)
    if not args.no_synthetic:
        for name, model in models:
            bench_model(name, model, args.scans, args.seed, args.points, args.only)
    if args.ict:
        bench_ict(models[0][1] if models else HACK())
    print(f"load after: {os.getloadavg()}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
