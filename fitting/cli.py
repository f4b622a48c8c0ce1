"""`hack-fit`: fit the HACK model to 3D head scans.

    hack-fit SCAN... [--model M] [--landmarks FILE] [--out DIR] [--units auto|mm|cm|m]
             [--device cpu|cuda] [--jobs N] [--render] [--overwrite] [--quick]
             [--scheduler tcp://HOST:8786|local [--send-bytes]]
    hack-fit --sequence FRAMES... --out DIR [--no-meshes] [--render] [--jobs N | --scheduler ...]

Per scan NAME it writes NAME_params.npz (forward() arguments plus the similarity
scale/rotation/translation, model -> scan), NAME_fit.obj (the fitted mesh in the scan's
coordinates and units, with UVs and the model's polygons), NAME_report.json and, with
--render, NAME_fit.png, then NAME_manifest.json last (complete scans are skipped on a re-run
unless --overwrite), and summary.csv / summary.json for the whole batch (fitting/batch.py:
output names, manifests, executors). Any error in one scan is its failure row and the rest go
on; the exit code is 1 if any failed, 130 after Ctrl-C. Problems with the command itself are
one line on stderr. --sequence fits the scans as frames of one sequence (fitting/sequence.py);
given several folders, each folder is one sequence (outputs in DIR/FOLDER/), and each
sequence is one task for --jobs / --scheduler; sequence_manifest.json makes re-runs resumable.
"""

from __future__ import annotations

import argparse
import os
import sys
import threading
from collections.abc import Sequence
from pathlib import Path

PROG = "hack-fit"
EXIT_GRACE_S = 10.0  # after Ctrl-C, the longest the interpreter may take to exit


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
        help="device of the fit: the model, correspondences and the solver (default cpu)",
    )
    p.add_argument("--jobs", type=int, default=1, help="worker processes (default 1)")
    p.add_argument(
        "--render", action="store_true", help="also write NAME_fit.png: scan, fit and distance map"
    )
    p.add_argument("--overwrite", action="store_true", help="redo every scan and replace its outputs")
    p.add_argument("--quick", action="store_true", help="a fast rough fit (no hypothesis search): previews")
    p.add_argument(
        "--scheduler",
        default=None,
        metavar="ADDRESS",
        help="fit on Dask distributed: tcp://HOST:8786 (an existing cluster) or 'local' (a LocalCluster)",
    )
    p.add_argument(
        "--send-bytes",
        action="store_true",
        help="send each scan's bytes to the workers (they need not see its path)",
    )
    p.add_argument(
        "--task-timeout", type=float, default=3600.0, help="seconds one scan may take on a cluster"
    )
    p.add_argument(
        "--sequence",
        action="store_true",
        help="the scans are the frames of one sequence (natural sort order): one identity, smooth "
        "motion; several folders: one sequence each",
    )
    p.add_argument("--no-meshes", action="store_true", help="--sequence: skip the per-frame OBJ files")
    return p


def make_executor(args: argparse.Namespace, count: int):
    """In this process (--jobs 1), a process pool (--jobs N) or Dask (--scheduler)."""
    from .batch import DaskExecutor, InProcessExecutor, LocalExecutor

    cores = max(1, os.cpu_count() or 1)
    if args.scheduler:
        return DaskExecutor(
            args.scheduler, workers=args.jobs if args.jobs > 1 else None, task_timeout=args.task_timeout
        )
    if min(args.jobs, count) <= 1:
        return InProcessExecutor(cores)
    jobs = min(args.jobs, count)
    return LocalExecutor(jobs, max(1, cores // jobs))


def sequence_tasks(args: argparse.Namespace) -> list:
    """One task per sequence: each of several folders is a sequence (outputs in OUT/NAME);
    otherwise all the frames given form one sequence (outputs in OUT)."""
    from .batch import Task, output_names
    from .scan_io import find_scans
    from .sequence import natural_key

    def frames_in(folder: Path) -> list[Path]:
        return find_scans([folder])  # an empty folder is a clear error

    given = [Path(raw) for raw in args.scans]
    if len(given) > 1 and all(p.is_dir() for p in given):
        groups = [(name, p, name, frames_in(p)) for p, name in output_names(given)]
    else:
        files: list[Path] = []
        for p in given:
            files.extend(frames_in(p) if p.is_dir() else [p])  # a missing frame is a failed frame
        groups = [(given[0].name if given[0].is_dir() else "sequence", given[0], "", files)]
    options = {
        "model": args.model,
        "device": args.device,
        "render": args.render,
        "units": args.units,
        "no_meshes": args.no_meshes,
        "quick": args.quick,
    }
    tasks = []
    for name, path, folder, files in groups:
        if not files:
            raise ValueError(f"--sequence: no frames in {name or args.scans[0]}")
        files.sort(key=natural_key)
        data = None
        if args.send_bytes:
            data = [p.read_bytes() if p.is_file() else b"" for p in files]
        frames = [str(p) for p in files]
        tasks.append(Task(name, str(path), options, frames=frames, frame_data=data, folder=folder))
    return tasks


def run_sequences(args: argparse.Namespace) -> int:
    """`hack-fit --sequence`: each sequence one task, committed with its manifest."""
    import json

    from .batch import Progress, run_batch, write_summary

    tasks = sequence_tasks(args)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    progress = Progress(len(tasks))
    outcomes, interrupted = run_batch(
        tasks, out, make_executor(args, len(tasks)), args.overwrite, args.render, progress.update
    )
    progress.close()
    skipped_frames = False
    for task, outcome in zip(tasks, outcomes):
        folder, _ = task.target(out)
        if outcome.attempts and outcome.median_mm is not None:  # fitted in this run (maybe doubted)
            report = json.loads((folder / "sequence_report.json").read_text(encoding="utf-8"))
            skipped_frames |= bool(report["skipped"])
            if len(tasks) == 1:
                for fr in report["frames"]:
                    print(
                        f"{fr['frame']:<28} median {fr['median_mm']:.3f} mm  p95 {fr['p95_mm']:.2f} mm  "
                        f"conf {fr['confidence']:.2f}"
                    )
                for name, why in report["skipped"].items():
                    print(f"{name:<28} SKIPPED  {why}")
                per_frame = report["timings_s"]["per_frame"]
                print(f"{outcome.message}; {per_frame:.2f} s per frame")
    if len(tasks) > 1:
        write_summary(out, outcomes)
    if len(tasks) > 1 or any(o.status != "ok" or not o.attempts for o in outcomes):
        print(summary_table(outcomes, len(tasks)).replace(" scans ", " sequences "))
    if interrupted:
        print(f"{PROG}: interrupted; {len(tasks) - len(outcomes)} sequences not fitted", file=sys.stderr)
        return 130
    return 0 if all(o.ok for o in outcomes) and not skipped_frames else 1


def run(args: argparse.Namespace) -> int:
    from .batch import Progress, Task, output_names, run_batch, write_summary
    from .scan_io import find_scans, load_landmarks

    if args.jobs < 1:
        raise ValueError("--jobs must be at least 1")
    if args.device == "cuda":
        import torch

        if not torch.cuda.is_available():
            raise ValueError("--device cuda: CUDA is not available on this machine")
    if args.sequence:
        return run_sequences(args)
    paths = find_scans(args.scans)
    if args.landmarks and len(paths) != 1:
        raise ValueError("--landmarks goes with exactly one scan")
    landmarks = load_landmarks(args.landmarks).tolist() if args.landmarks else None  # fail early
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    options = {
        "model": args.model,
        "device": args.device,
        "render": args.render,
        "units": args.units,
        "landmarks": landmarks,
        "quick": args.quick,
    }
    tasks = [
        Task(name, str(path), options, path.read_bytes() if args.send_bytes else None)
        for path, name in output_names(paths)
    ]
    executor = make_executor(args, len(tasks))
    progress = Progress(len(tasks))
    outcomes, interrupted = run_batch(tasks, out, executor, args.overwrite, args.render, progress.update)
    progress.close()
    write_summary(out, outcomes)
    print(summary_table(outcomes, len(tasks)))
    if interrupted:
        print(f"{PROG}: interrupted; {len(tasks) - len(outcomes)} scans not fitted", file=sys.stderr)
        return 130
    return 0 if all(o.ok for o in outcomes) else 1


def summary_table(outcomes: list, total: int | None = None) -> str:
    lines = [
        f"{'scan':<28} {'status':<7} {'units':<5} {'time s':>7} {'median mm':>9} {'p95 mm':>7} "
        f"{'conf':>5}  message"
    ]
    for o in outcomes:
        fmt = lambda v, f: "-" if v is None else format(v, f)  # noqa: E731
        lines.append(
            f"{o.scan[:28]:<28} {o.status.upper() if o.status == 'failed' else o.status:<7} {o.units:<5} "
            f"{o.seconds:>7.1f} {fmt(o.median_mm, '.3f'):>9} {fmt(o.p95_mm, '.2f'):>7} "
            f"{fmt(o.confidence, '.2f'):>5}  {o.message}"
        )
    total = len(outcomes) if total is None else total
    ok = sum(o.status == "ok" for o in outcomes)
    failed = sum(o.status == "failed" for o in outcomes)
    skipped = sum(o.status == "skipped" for o in outcomes)
    text = f"{ok} of {total} scans fitted"
    if skipped:
        text += f", {skipped} skipped"
    if failed:
        text += f", {failed} failed"
    if len(outcomes) < total:
        text += f", {total - len(outcomes)} not run"
    lines.append(text)
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        code = run(args)
        if code == 130:
            # Interrupted: the workers are stopped and every finished scan is committed. Once
            # (in CI) the interpreter's exit-time joins of the process pool's threads and queues
            # then kept the process alive: if exiting takes longer than EXIT_GRACE_S, leave anyway.
            sys.stdout.flush()
            sys.stderr.flush()
            watchdog = threading.Timer(EXIT_GRACE_S, os._exit, args=(130,))
            watchdog.daemon = True
            watchdog.start()
        return code
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return 130
    except (ValueError, OSError) as err:
        from .batch import one_line

        print(f"{PROG}: error: {one_line(err)}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
