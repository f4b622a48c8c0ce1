"""Sequence-fitting benchmark: recorded motion, one random identity per sequence, known truth.

Each sequence is --frames consecutive frames of the recorded data (bsw_list, theta_list,
tau_list, alpha_list of the shared release folder; without it, a smooth random walk of the
neck pose) with one random identity, scanned as benchmarks/fitting.py does
(fitting.synthetic_scans.make_kind_scan: 0.5 mm noise, 3% outliers) by one scanner per
sequence (fitting.synthetic_scans.Scanner: random units, pose and camera), in two views:
'full' and 'frontal' (what the one camera sees: surface facing it within 35 degrees, not
occluded). Each sequence is fitted with fitting.fit_sequence and, for comparison, every
--single-every'th frame alone with fit_scan (in the same run). Printed per sequence:

    frame mean mm   mean distance of the true vertices the scan covers to the fitted surface
                    (benchmarks/fitting.py's truth error; median and worst frame)
    id mm           identity error: median vertex distance between the neutral heads of the
                    fitted and the true shape after the best similarity (the scale is free in a
                    fit); the sequence's one identity and the median single-frame fit
    jitter deg      RMS of the frame-to-frame change of the neck pose minus the truth's change
    s/frame         time per frame (sequence) against a single-scan fit

Targets: every frame <= 0.5 mm; identity closer than the median single-frame fit; time per
frame <= 1/4 of a single-scan fit.

    python benchmarks/fitting_sequence.py [--model default|hack-release|PATH ...] [--count 1]
        [--frames 60] [--points 100000] [--views full frontal] [--seed 0] [--single-every 10]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from fitting import FitOptions, fit_scan  # noqa: E402
from fitting.alignment import UNIT_TO_CM, umeyama  # noqa: E402
from fitting.evaluator import ModelParams  # noqa: E402
from fitting.fit import evaluator_for  # noqa: E402
from fitting.geometry import MeshProximity  # noqa: E402
from fitting.sequence import fit_sequence  # noqa: E402
from fitting.synthetic_scans import Scanner, make_kind_scan  # noqa: E402
from hack_model import HACK  # noqa: E402


def shared_data() -> Path:
    return Path(os.environ.get("HACK_SHARED_DATA", REPO.parent / "shared" / "data"))


def recorded_motion(ev, frames: int, rng: np.random.Generator) -> list[ModelParams]:
    """`frames` consecutive recorded frames (or a smooth random walk) with one random identity."""
    data = shared_data() / "hack-release" / "data"
    shape = np.clip(rng.normal(size=ev.S), -2.0, 2.0)
    out = []
    if (data / "theta_list.npy").exists():
        theta = np.load(data / "theta_list.npy", allow_pickle=False)
        tau = np.load(data / "tau_list.npy", allow_pickle=False).reshape(-1)
        alpha = np.load(data / "alpha_list.npy", allow_pickle=False).reshape(-1)
        bsw = np.load(data / "bsw_list.npy", allow_pickle=False)
        start = int(rng.integers(0, len(theta) - frames + 1))
        for t in range(start, start + frames):
            pose = np.zeros((ev.J, 3))
            k = min(ev.J, theta.shape[1])
            pose[:k] = theta[t, :k]
            expr = np.zeros(ev.E)
            expr[: min(ev.E, bsw.shape[1])] = np.clip(bsw[t, : ev.E], 0.0, 1.0)
            out.append(ModelParams(shape, expr, pose, float(tau[t]), float(alpha[t])))
        return out
    pose = np.zeros((ev.J, 3))
    for _ in range(frames):
        pose = np.clip(pose + rng.normal(0, 0.02, pose.shape), -ev.pose_limits, ev.pose_limits)
        out.append(ModelParams(shape, np.zeros(ev.E), pose.copy(), 0.0, 1.0))
    return out


def make_sequence(ev, params: list[ModelParams], rng, points: int, view: str):
    """Scans (SyntheticScan) of the frames by one scanner, and its units."""
    scanner = Scanner.random(rng)
    return [make_kind_scan(ev, rng, view, points=points, params=p, scanner=scanner) for p in params], (
        scanner.units
    )


def truth_mm(ev, scan, vertices: np.ndarray) -> float:
    """Mean distance (mm) from the true vertices the scan covers to the fitted surface."""
    covered = np.unique(ev.triangles[scan.kept_triangles])
    d = MeshProximity(vertices, ev.triangles).query(scan.true_vertices[covered], exact=True).distance
    return float(d.mean() * UNIT_TO_CM[scan.units] * 10.0)


def neutral(ev, shape) -> np.ndarray:
    return ev.vertices(ModelParams(shape, np.zeros(ev.E), np.zeros((ev.J, 3)), 0.0, 1.0))


def identity_mm(ev, shape, true_neutral) -> float:
    """Median vertex distance (mm) of the neutral heads after the best similarity: the scan's
    scale is free in a fit, so only the identity's form is compared."""
    v = neutral(ev, shape)
    return float(np.median(np.linalg.norm(umeyama(v, true_neutral).apply(v) - true_neutral, axis=1)) * 10)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", nargs="*", default=None)
    ap.add_argument("--count", type=int, default=1, help="sequences per model and view")
    ap.add_argument("--frames", type=int, default=60)
    ap.add_argument("--points", type=int, default=100_000)
    ap.add_argument("--views", nargs="*", default=["full", "frontal"])
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--no-single", action="store_true", help="skip the frame-by-frame comparison")
    ap.add_argument("--single-every", type=int, default=10, help="fit every N-th frame alone (default 10)")
    args = ap.parse_args(argv)
    names = args.model or ["default"] + (
        ["hack-release"] if (shared_data() / "hack-release").is_dir() else []
    )
    ok_all = True
    for name in names:
        model = HACK(
            shared_data() / "hack-release"
            if name == "hack-release"
            else (None if name == "default" else name)
        )
        ev = evaluator_for(model)
        if ev.S == 0:
            print(f"{name}: no shape components; skipped")
            continue
        for view in args.views:
            for k in range(args.count):
                rng = np.random.default_rng(args.seed * 1000 + k)
                truth = recorded_motion(ev, args.frames, rng)
                recorded = (shared_data() / "hack-release" / "data" / "theta_list.npy").exists()
                scans, units = make_sequence(ev, truth, rng, args.points, view)
                t0 = time.perf_counter()
                try:
                    seq = fit_sequence(model, [s.points for s in scans], FitOptions())
                except ValueError as err:  # no frame could be fitted: the sequence failed
                    print(f"{name:<13} {view:<7} seq {k}: FAILED, {str(err)[:300]}", flush=True)
                    ok_all = False
                    continue
                seq_time = (time.perf_counter() - t0) / len(scans)
                idx = {n: i for i, n in enumerate(f"frame{i:04d}" for i in range(len(scans)))}
                frame_mm = [truth_mm(ev, scans[idx[n]], f.vertices) for n, f in zip(seq.names, seq.frames)]
                true_neutral = neutral(ev, truth[0].shape)
                id_seq = identity_mm(ev, seq.shape, true_neutral)
                fitted = [idx[n] for n in seq.names]
                pose_fit = np.stack([f.params.neck_pose for f in seq.frames])
                pose_true = np.stack([truth[i].neck_pose for i in fitted])
                jitter = (
                    float(
                        np.degrees(
                            np.sqrt(np.mean((np.diff(pose_fit, axis=0) - np.diff(pose_true, axis=0)) ** 2))
                        )
                    )
                    if len(fitted) > 1
                    else float("nan")
                )
                single_t, id_single = [], []
                if not args.no_single:
                    for scan in scans[:: max(1, args.single_every)]:
                        t1 = time.perf_counter()
                        r = fit_scan(model, scan.points, options=FitOptions())
                        single_t.append(time.perf_counter() - t1)
                        id_single.append(identity_mm(ev, r.params.shape, true_neutral))
                fm = np.array(frame_mm)
                line = (
                    f"{name:<13} {view:<7} seq {k} ({'recorded' if recorded else 'random-walk'} motion): "
                    f"{len(seq.frames)}/{len(scans)} frames, units {units}, "
                    f"frame mean mm median {np.median(fm):.3f} worst {fm.max():.3f} (<= 0.5); "
                    f"id mm {id_seq:.3f}"
                )
                if id_single:
                    line += f" vs single-frame median {np.median(id_single):.3f} ({len(id_single)} frames)"
                line += f"; jitter {jitter:.3f} deg; {seq_time:.2f} s/frame"
                if single_t:
                    ratio = seq_time / np.median(single_t)
                    line += f" vs single {np.median(single_t):.2f} s (ratio {ratio:.2f}, <= 0.25)"
                line += f"; tracking lost {len(seq.relocked)}, skipped {len(seq.failed)}"
                print(line, flush=True)
                ok_all &= bool(fm.max() <= 0.5)
    print(f"load {os.getloadavg()[0]:.2f}")
    return 0 if ok_all else 1


if __name__ == "__main__":
    raise SystemExit(main())
