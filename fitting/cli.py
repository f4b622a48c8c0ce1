"""`hack-fit`: fit the HACK model to 3D head scans.

    hack-fit SCAN... [--model M] [--landmarks FILE] [--out DIR] [--units auto|mm|cm|m]
             [--device cpu|cuda] [--jobs N] [--render] [--overwrite]

Per scan NAME it writes NAME_params.npz (forward() arguments plus the similarity
scale/rotation/translation, model -> scan), NAME_fit.obj (the fitted mesh in the scan's
coordinates and units, with UVs and the model's polygons), NAME_report.json and, with
--render, NAME_fit.png. A scan that fails is reported and the rest go on; the exit code is
non-zero if any failed. Problems with the command itself are one line on stderr.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path

PROG = "hack-fit"
OUTPUT_SUFFIXES = ("_params.npz", "_fit.obj", "_report.json")


@dataclass
class Outcome:
    scan: str
    ok: bool
    message: str
    seconds: float = 0.0
    median_mm: float | None = None
    p95_mm: float | None = None
    confidence: float | None = None
    units: str = "-"


def build_parser() -> argparse.ArgumentParser:
    from hack_model import __version__

    p = argparse.ArgumentParser(prog=PROG, description="Fit the HACK head-and-neck model to 3D scans.")
    p.add_argument("--version", action="version", version=f"{PROG} {__version__}")
    p.add_argument(
        "scans", nargs="+", metavar="SCAN", help="scan files (PLY, OBJ, STL, OFF, GLB, XYZ, NPY) or folders"
    )
    p.add_argument("--model", default=None, help="model (.npz, release folder); default: the embedded model")
    p.add_argument(
        "--landmarks",
        default=None,
        help="68 Multi-PIE landmarks (TXT, NPY, JSON; NaN = missing); one scan only",
    )
    p.add_argument("--out", default=".", help="output folder (created if missing; default: .)")
    p.add_argument(
        "--units", default="auto", choices=("auto", "mm", "cm", "m"), help="scan units (default: detect)"
    )
    p.add_argument(
        "--device",
        default="cpu",
        choices=("cpu", "cuda"),
        help="device of the model's final evaluation; the solver itself runs on the CPU",
    )
    p.add_argument("--jobs", type=int, default=1, help="worker processes (default 1)")
    p.add_argument(
        "--render", action="store_true", help="also write NAME_fit.png: scan, fit and distance map"
    )
    p.add_argument("--overwrite", action="store_true", help="replace existing outputs")
    return p


def outputs_for(out_dir: Path, name: str, render: bool) -> list[Path]:
    suffixes = OUTPUT_SUFFIXES + (("_fit.png",) if render else ())
    return [out_dir / f"{name}{s}" for s in suffixes]


# --------------------------------------------------------------------- workers
_MODEL = None


def _init_worker(model_path: str | None, device: str, threads: int) -> None:
    global _MODEL
    import torch

    torch.set_num_threads(threads)
    from hack_model import HACK

    _MODEL = HACK(model_path).to(device)


def fit_one(scan_path: str, name: str, args_dict: dict) -> Outcome:
    """Fit one scan and write its outputs; never raises (the outcome says what went wrong)."""
    t0 = time.perf_counter()
    try:
        return _fit_one(scan_path, name, args_dict, t0)
    except (ValueError, OSError, FileExistsError, RuntimeError) as err:
        return Outcome(name, False, _one_line(err), time.perf_counter() - t0)


def _fit_one(scan_path: str, name: str, a: dict, t0: float) -> Outcome:
    import numpy as np

    from hack_model.io.mesh import PolygonMesh, write_obj
    from hack_model.params import save_params

    from .fit import FitOptions, fit_scan
    from .report import build_report, render_fit, write_report
    from .scan_io import load_landmarks, load_scan, scan_points

    model = _MODEL
    out_dir = Path(a["out"])
    targets = outputs_for(out_dir, name, a["render"])
    if not a["overwrite"]:
        existing = [str(p) for p in targets if p.exists()]
        if existing:
            raise FileExistsError(f"{existing[0]} already exists (use --overwrite to replace it)")
    raw = load_scan(scan_path)
    scan = scan_points(raw, 200_000, np.random.default_rng(0))
    landmarks = load_landmarks(a["landmarks"]) if a["landmarks"] else None
    result = fit_scan(model, scan, landmarks=landmarks, options=FitOptions(units=a["units"]))
    report = build_report(result, model.data, Path(scan_path).name)
    params_path, obj_path, report_path = targets[:3]
    save_params(params_path, result.parameter_arrays(), overwrite=a["overwrite"])
    d = model.data
    mesh = PolygonMesh(
        result.vertices, d.polygon_vertex_indices, d.polygon_sizes, d.uv_coords, d.polygon_uv_indices
    )
    write_obj(obj_path, mesh, overwrite=a["overwrite"])
    if a["render"]:
        try:
            from hack_model.images import save_png

            image = render_fit(
                result,
                d,
                raw.points[np.isfinite(raw.points).all(1)] if raw.triangles is None else raw.points,
                raw.triangles,
            )
            if targets[3].exists() and not a["overwrite"]:
                raise FileExistsError(f"{targets[3]} already exists (use --overwrite to replace it)")
            save_png(targets[3], image)
        except ImportError as err:
            report["render_error"] = f"rendering unavailable ({err}); install hack-model[render]"
        except RuntimeError as err:  # no OpenGL context and the like
            report["render_error"] = _one_line(err)
    write_report(report_path, report, overwrite=a["overwrite"])
    s2m = report["scan_to_model_mm"]
    message = "ok" if not result.failed else f"failed fit: {result.message or 'low confidence'}"
    return Outcome(
        name,
        not result.failed,
        message,
        time.perf_counter() - t0,
        s2m["median"],
        s2m["p95"],
        result.confidence,
        result.units,
    )


def _one_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return text[0] if text else type(err).__name__


# ------------------------------------------------------------------------ main
class _Progress:
    def __init__(self, total: int) -> None:
        self.total, self.done = total, 0
        try:
            from tqdm import tqdm

            self.bar = tqdm(total=total, unit="scan", file=sys.stderr, leave=True)
        except ImportError:
            self.bar = None

    def update(self, outcome: Outcome) -> None:
        self.done += 1
        status = "ok" if outcome.ok else "FAILED"
        if self.bar is not None:
            self.bar.set_postfix_str(f"{outcome.scan}: {status}")
            self.bar.update(1)
        else:
            print(
                f"[{self.done}/{self.total}] {outcome.scan}: {status} ({outcome.seconds:.1f} s)",
                file=sys.stderr,
            )

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def _names(paths: list[Path]) -> list[str]:
    """Output names: the file stems, made unique when two scans share a stem."""
    seen: dict[str, int] = {}
    names = []
    for p in paths:
        stem = p.stem
        seen[stem] = seen.get(stem, 0) + 1
        names.append(stem if seen[stem] == 1 else f"{stem}_{seen[stem]}")
    return names


def summary_table(outcomes: list[Outcome]) -> str:
    lines = [
        f"{'scan':<28} {'status':<7} {'units':<5} {'time s':>7} {'median mm':>9} {'p95 mm':>7} "
        f"{'conf':>5}  message"
    ]
    for o in outcomes:
        fmt = lambda v, f: "-" if v is None else format(v, f)  # noqa: E731
        lines.append(
            f"{o.scan[:28]:<28} {'ok' if o.ok else 'FAILED':<7} {o.units:<5} {o.seconds:>7.1f} "
            f"{fmt(o.median_mm, '.3f'):>9} {fmt(o.p95_mm, '.2f'):>7} "
            f"{fmt(o.confidence, '.2f'):>5}  {o.message}"
        )
    failed = sum(not o.ok for o in outcomes)
    lines.append(
        f"{len(outcomes) - failed} of {len(outcomes)} scans fitted" + (f", {failed} failed" if failed else "")
    )
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    from .scan_io import find_scans, load_landmarks

    if args.jobs < 1:
        raise ValueError("--jobs must be at least 1")
    paths = find_scans(args.scans)
    if args.landmarks and len(paths) != 1:
        raise ValueError("--landmarks goes with exactly one scan")
    if args.landmarks:
        load_landmarks(args.landmarks)  # fail early, for the whole command
    if args.device == "cuda":
        import torch

        if not torch.cuda.is_available():
            raise ValueError("--device cuda: CUDA is not available on this machine")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    a = {
        "out": str(out),
        "render": args.render,
        "overwrite": args.overwrite,
        "units": args.units,
        "landmarks": args.landmarks,
    }
    names = _names(paths)
    jobs = min(args.jobs, len(paths))
    progress = _Progress(len(paths))
    outcomes: dict[str, Outcome] = {}
    if jobs == 1:
        _init_worker(args.model, args.device, max(1, os.cpu_count() or 1))
        for path, name in zip(paths, names):
            outcome = fit_one(str(path), name, a)
            outcomes[name] = outcome
            progress.update(outcome)
    else:
        import multiprocessing

        threads = max(1, (os.cpu_count() or 1) // jobs)
        ctx = multiprocessing.get_context("spawn")  # no forked OpenMP state
        with ProcessPoolExecutor(
            jobs, mp_context=ctx, initializer=_init_worker, initargs=(args.model, args.device, threads)
        ) as pool:
            futures = {pool.submit(fit_one, str(p), n, a): n for p, n in zip(paths, names)}
            for future in as_completed(futures):
                name = futures[future]
                try:
                    outcome = future.result()
                except Exception as err:  # a worker that died
                    outcome = Outcome(name, False, f"worker error: {_one_line(err)}")
                outcomes[name] = outcome
                progress.update(outcome)
    progress.close()
    ordered = [outcomes[n] for n in names]
    print(summary_table(ordered))
    return 0 if all(o.ok for o in ordered) else 1


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return run(args)
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return 130
    except (ValueError, OSError) as err:
        print(f"{PROG}: error: {_one_line(err)}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
