"""Fitting on --device: the same synthetic scans fitted with the whole solver on the CPU and,
when there is one, on CUDA (fitting.FitOptions.device). Per scan and device it prints the time,
the truth error (mean distance of the covered true vertices to the fitted surface, mm, as in
benchmarks/fitting.py) and, for CUDA, the largest vertex difference from the CPU's fit.

    python benchmarks/fitting_device.py [--kind full] [--count 2] [--points 100000]
                                        [--devices cpu,cuda] [--threads 1] [--seed 0]

The first use of a device (CUDA context, kernels) is warmed up outside the timings.
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
from fitting.alignment import Similarity  # noqa: E402
from fitting.evaluator import ModelParams  # noqa: E402
from fitting.fit import evaluator_for  # noqa: E402
from fitting.geometry import MeshProximity  # noqa: E402
from fitting.optimize import Fitter, State  # noqa: E402
from fitting.synthetic_scans import KINDS, RecordedFrames, make_kind_scan, make_scan  # noqa: E402
from hack_model import HACK  # noqa: E402

UNIT_MM = {"mm": 1.0, "cm": 10.0, "m": 1000.0}


def truth_error_mm(scan, result, ev) -> float:
    """Mean distance (mm) from the true vertices the scan covers to the fitted surface."""
    covered = np.unique(ev.triangles[scan.kept_triangles])
    fitted = MeshProximity(result.vertices, ev.triangles)
    return float(fitted.query(scan.true_vertices[covered], exact=True).distance.mean() * UNIT_MM[scan.units])


def warm_up(model: HACK, device: str) -> None:
    """Create the device's evaluator and run one closest-point query there (untimed)."""
    ev = evaluator_for(model, device)
    p = ModelParams.neutral(ev.S, ev.E, ev.J)
    state = State.from_similarity(p, Similarity(1.0, np.eye(3), np.zeros(3)))
    Fitter(ev, np.random.default_rng(0)).score(state, ev.vertices(p), sample=500)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--kind", default="full", choices=("generator",) + KINDS)
    parser.add_argument("--count", type=int, default=2)
    parser.add_argument("--points", type=int, default=100_000)
    parser.add_argument("--devices", default="cpu,cuda", help="comma-separated; cuda is skipped without one")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    devices = [d for d in args.devices.split(",") if d]
    if "cuda" in devices and not torch.cuda.is_available():
        print("note: CUDA is not available here; only the CPU is measured")
        devices = [d for d in devices if d != "cuda"]
    print(f"load before: {os.getloadavg()}")
    model = HACK()
    ev = evaluator_for(model)
    frames = None
    if args.kind != "generator":
        data = (
            Path(os.environ.get("HACK_SHARED_DATA", REPO.parent / "shared" / "data"))
            / "hack-release"
            / "data"
        )
        if not data.is_dir():
            print(f"{data} not found: the recorded frames are needed for kind {args.kind}")
            return 1
        frames = RecordedFrames.load(data)
    for d in devices:
        warm_up(model, d)
    header = ("kind", 9), ("#", 3), ("device", 7), ("time s", 7), ("optimize s", 10), ("truth mm", 8)
    print(" ".join(f"{h:>{w}}" for h, w in header + (("vs cpu mm", 9),)))
    times: dict[str, list[float]] = {d: [] for d in devices}
    for i in range(args.count):
        rng = np.random.default_rng([args.seed, i])
        if args.kind == "generator":
            scan = make_scan(ev, rng, points=args.points)
        else:
            scan = make_kind_scan(ev, rng, args.kind, frames, points=args.points)
        reference = None
        for d in devices:
            t0 = time.perf_counter()
            result = fit_scan(model, scan.points, options=FitOptions(seed=i, device=d, threads=args.threads))
            elapsed = time.perf_counter() - t0
            times[d].append(elapsed)
            err = truth_error_mm(scan, result, ev)
            diff = "-"
            if reference is None:
                reference = result.vertices
            else:
                diff = f"{np.abs(result.vertices - reference).max() * UNIT_MM[scan.units]:.3f}"
            print(
                f"{args.kind:>9} {i:>3} {d:>7} {elapsed:>7.2f} {result.timings.get('optimize', 0):>10.2f} "
                f"{err:>8.3f} {diff:>9}",
                flush=True,
            )
    print(
        "median s per scan: "
        + ", ".join(f"{d} {np.median(t):.2f}" for d, t in times.items())
        + f"; load {os.getloadavg()[0]:.2f}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
