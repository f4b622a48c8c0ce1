"""Batch fitting: output names, per-scan tasks, executors (local process pool, Dask) and the
client that owns the output folder.

Workers are pure: a task (a scan's path or its bytes, and the fit options) goes in, the
outputs' bytes and an outcome come back; only the client writes into the output folder. A
scan's outputs are committed by moving finished files into place and then writing
NAME_manifest.json last, atomically, with every file's size and SHA-256. A scan is complete
when its manifest lists files that exist with those sizes, and a re-run skips it.

Output names (deterministic for any input set): a scan's name is its file stem; when several
inputs share a stem (compared case-insensitively), each of them is named by its path relative
to the common parent folder of all inputs, without the suffix, with '/' replaced by '__'
(A/head.ply -> A__head); if that still collides, the suffix is kept (A__head_ply); a name
that still collides gets _2, _3, ... in the order of the resolved paths. The same file given
twice is fitted once.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import signal
import socket
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

OUTPUT_SUFFIXES = ("_params.npz", "_fit.obj", "_report.json")
# A sequence's outputs (fitting/sequence.py), in its own folder with sequence_manifest.json.
SEQUENCE_STEM = "sequence"
SEQUENCE_OUTPUTS = ("sequence_params.npz", "sequence_report.json")
RENDER_SUFFIX = "_fit.png"
MANIFEST_SUFFIX = "_manifest.json"
MANIFEST_VERSION = 1


# ------------------------------------------------------------------------------ names
def output_names(paths: list[Path]) -> list[tuple[Path, str]]:
    """(path, output name) for each distinct input file, in input order; see the module doc."""
    unique: list[Path] = []
    seen_paths: set[Path] = set()
    for p in paths:
        r = Path(os.path.abspath(p))
        if r not in seen_paths:
            seen_paths.add(r)
            unique.append(r)
    if not unique:
        return []
    parent = Path(os.path.commonpath([str(p.parent) for p in unique]))

    def relative(p: Path, keep_suffix: bool) -> str:
        rel = p.relative_to(parent)
        parts = list(rel.parent.parts) + [
            rel.stem + (f"_{rel.suffix[1:]}" if keep_suffix and rel.suffix else "")
        ]
        return "__".join(parts)

    stems: dict[str, int] = {}
    for p in unique:
        stems[p.stem.casefold()] = stems.get(p.stem.casefold(), 0) + 1
    names = {p: p.stem if stems[p.stem.casefold()] == 1 else relative(p, False) for p in unique}
    counts: dict[str, int] = {}
    for n in names.values():
        counts[n.casefold()] = counts.get(n.casefold(), 0) + 1
    for p in unique:
        if counts[names[p].casefold()] > 1:
            names[p] = relative(p, True)
    taken: set[str] = set()
    for p in sorted(unique):
        n, k = names[p], 1
        while n.casefold() in taken:
            k += 1
            n = f"{names[p]}_{k}"
        taken.add(n.casefold())
        names[p] = n
    return [(p, names[p]) for p in unique]


def output_suffixes(render: bool) -> tuple[str, ...]:
    return OUTPUT_SUFFIXES + ((RENDER_SUFFIX,) if render else ())


# --------------------------------------------------------------------------- manifest
def manifest_path(out_dir: Path, name: str) -> Path:
    return out_dir / f"{name}{MANIFEST_SUFFIX}"


def is_complete(
    out_dir: Path, name: str, render: bool = False, required: tuple[str, ...] | None = None
) -> bool:
    """True when the scan's manifest exists and lists its outputs (parameters, mesh, report;
    the picture when it could be rendered; or `required`), all present with their sizes."""
    try:
        m = json.loads(manifest_path(out_dir, name).read_text(encoding="utf-8"))
        files = m["files"]
        # The picture is optional (no OpenGL).
        wanted = set(required) if required is not None else {f"{name}{s}" for s in OUTPUT_SUFFIXES}
        if m.get("version") != MANIFEST_VERSION or not wanted <= set(files):
            return False
        return all((out_dir / f).stat().st_size == int(info["size"]) for f, info in files.items())
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return False


def existing_outputs(
    out_dir: Path, name: str, render: bool, candidates: list[str] | None = None
) -> list[Path]:
    files = candidates if candidates is not None else [f"{name}{s}" for s in output_suffixes(render)]
    paths = [out_dir / f for f in files] + [manifest_path(out_dir, name)]
    return [p for p in paths if p.exists()]


class deferred_signals:
    """Context: SIGINT/SIGTERM wait until the block is done (a commit is never half-done)."""

    SIGNALS = {signal.SIGINT, signal.SIGTERM}

    def __enter__(self):
        self.old = signal.pthread_sigmask(signal.SIG_BLOCK, self.SIGNALS)

    def __exit__(self, *exc):
        signal.pthread_sigmask(signal.SIG_SETMASK, self.old)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _write_tmp(out_dir: Path, fname: str, data: bytes) -> Path:
    """A temporary file beside `fname` holding data, with the usual permissions."""
    fd, tmp = tempfile.mkstemp(prefix=f".{fname}.", suffix=".tmp", dir=out_dir)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.chmod(tmp, 0o666 & ~_umask())
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return Path(tmp)


def commit(out_dir: Path, name: str, files: dict[str, bytes], summary: dict) -> None:
    """Write a scan's outputs (temporary file + rename each), then its manifest, last and atomically.
    Signals are held until it is done; on an error nothing temporary is left behind."""
    tmps: list[Path] = []
    with deferred_signals():
        try:
            manifest_path(out_dir, name).unlink(
                missing_ok=True
            )  # an old manifest never vouches for new files
            listing = {}
            for fname, data in files.items():
                tmps.append(_write_tmp(out_dir, fname, data))
                os.replace(tmps[-1], out_dir / fname)
                tmps.pop()
                listing[fname] = {"size": len(data), "sha256": hashlib.sha256(data).hexdigest()}
            manifest = {"version": MANIFEST_VERSION, "name": name, "files": listing, "summary": summary}
            text = json.dumps(manifest, indent=2).encode("utf-8")
            tmps.append(_write_tmp(out_dir, f"{name}{MANIFEST_SUFFIX}", text))
            os.replace(tmps[-1], manifest_path(out_dir, name))
            tmps.pop()
        finally:
            for t in tmps:
                t.unlink(missing_ok=True)


# ------------------------------------------------------------------------------ tasks
@dataclass
class Outcome:
    scan: str  # output name
    status: str  # ok | failed | skipped
    message: str
    seconds: float = 0.0
    median_mm: float | None = None
    p95_mm: float | None = None
    confidence: float | None = None
    units: str = "-"
    worker: str = "-"
    attempts: int = 0
    path: str = ""

    @property
    def ok(self) -> bool:
        return self.status != "failed"


@dataclass
class Task:
    """One scan, or one whole sequence (`frames`: its frames' paths, `path` the sequence)."""

    name: str
    path: str
    options: dict
    data: bytes | None = None  # the scan file's bytes (sent to workers that cannot read `path`)
    attempts: int = field(default=0)
    frames: list[str] | None = None
    frame_data: list[bytes] | None = None  # the frames' bytes (--send-bytes)
    folder: str = ""  # a sequence's outputs go to OUT/folder ('' = OUT itself)

    @property
    def is_sequence(self) -> bool:
        return self.frames is not None

    def target(self, out_dir: Path) -> tuple[Path, str]:
        """(folder, manifest stem) of this task's outputs."""
        if self.is_sequence:
            return (out_dir / self.folder if self.folder else out_dir), SEQUENCE_STEM
        return out_dir, self.name

    def is_complete(self, out_dir: Path, render: bool) -> bool:
        folder, stem = self.target(out_dir)
        return is_complete(folder, stem, render, SEQUENCE_OUTPUTS if self.is_sequence else None)

    def existing_outputs(self, out_dir: Path, render: bool) -> list[Path]:
        folder, stem = self.target(out_dir)
        if not self.is_sequence:
            return existing_outputs(folder, stem, render)
        frames = [f"{n}_fit.obj" for n in frame_names(self.frames)]
        videos = ["sequence.mp4"] if render else []
        return existing_outputs(folder, stem, render, [*SEQUENCE_OUTPUTS, *frames, *videos])

    def commit(self, out_dir: Path, files: dict[str, bytes], summary: dict) -> None:
        folder, stem = self.target(out_dir)
        folder.mkdir(parents=True, exist_ok=True)
        commit(folder, stem, files, summary)


def frame_names(frames: list[str]) -> list[str]:
    """A sequence's frame names (output_names: the stems, made unique)."""
    names = dict(output_names([Path(f) for f in frames]))
    return [names[Path(os.path.abspath(f))] for f in frames]


_MODELS: dict = {}
_CURRENT_TMP: list[str] = []


def worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def cached_model(path: str | None, device: str):
    """The worker's HACK for (model path, device), loaded once per process."""
    key = (path, device)
    if key not in _MODELS:
        from hack_model import HACK

        _MODELS[key] = HACK(path).to(device)
    return _MODELS[key]


def _on_sigterm(signum, frame):  # pragma: no cover - runs in a worker that is being stopped
    import shutil

    for d in _CURRENT_TMP:
        shutil.rmtree(d, ignore_errors=True)
    os._exit(128 + signum)


def init_local_worker(threads: int, pids=None) -> None:
    """Process-pool initializer: leave SIGINT to the client, die cleanly on SIGTERM."""
    import torch

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, _on_sigterm)
    torch.set_num_threads(threads)
    if pids is not None:
        pids.put(os.getpid())


def fit_task(task: Task) -> tuple[Outcome, dict[str, bytes]]:
    """Fit one scan; never raises for anything the scan or the fit does: every exception is the
    scan's failure outcome. Returns the outcome and the output files' bytes (empty on failure)."""
    t0 = time.perf_counter()
    tmp = tempfile.mkdtemp(prefix="hack-fit-")
    _CURRENT_TMP.append(tmp)
    try:
        outcome, files = _fit_task(task, Path(tmp), t0)
    except MemoryError:
        outcome, files = Outcome(task.name, "failed", "out of memory", time.perf_counter() - t0), {}
    except Exception as err:  # noqa: BLE001 - one scan's failure, whatever it is, is its row
        outcome, files = Outcome(task.name, "failed", one_line(err), time.perf_counter() - t0), {}
    finally:
        import shutil

        shutil.rmtree(tmp, ignore_errors=True)
        _CURRENT_TMP.remove(tmp)
    outcome.worker, outcome.path = worker_id(), task.path
    return outcome, files


def _fit_task(task: Task, tmp: Path, t0: float) -> tuple[Outcome, dict[str, bytes]]:
    if task.is_sequence:
        from .sequence import sequence_task

        return sequence_task(task, tmp, t0)
    import numpy as np

    from hack_model.io.mesh import PolygonMesh, write_obj
    from hack_model.params import save_params

    from .fit import FitOptions, fit_scan
    from .report import build_report, render_fit, write_report
    from .scan_io import load_scan

    a = task.options
    model = cached_model(a.get("model"), a.get("device", "cpu"))
    scan_file = task.path
    if task.data is not None:
        scan_file = str(tmp / f"scan{Path(task.path).suffix.lower()}")
        Path(scan_file).write_bytes(task.data)
    raw = load_scan(scan_file)
    raw.name = Path(task.path).stem
    options = FitOptions(units=a.get("units", "auto"))
    if a.get("quick"):
        options = quick_options(options)
    landmarks = a.get("landmarks")
    result = fit_scan(  # the loaded scan: fit_scan samples a mesh and keeps its triangles
        model, raw, landmarks=None if landmarks is None else np.asarray(landmarks), options=options
    )
    report = build_report(result, model.data, Path(task.path).name)
    name = task.name
    save_params(tmp / f"{name}_params.npz", result.parameter_arrays())
    d = model.data
    mesh = PolygonMesh(
        result.vertices, d.polygon_vertex_indices, d.polygon_sizes, d.uv_coords, d.polygon_uv_indices
    )
    write_obj(tmp / f"{name}_fit.obj", mesh)
    if a.get("render"):
        try:
            from hack_model.images import save_png

            pts = raw.points[np.isfinite(raw.points).all(1)] if raw.triangles is None else raw.points
            save_png(tmp / f"{name}{RENDER_SUFFIX}", render_fit(result, d, pts, raw.triangles))
        except ImportError as err:
            report["render_error"] = f"rendering unavailable ({err}); install hack-model[render]"
        except RuntimeError as err:  # no OpenGL context and the like
            report["render_error"] = one_line(err)
    write_report(tmp / f"{name}_report.json", report)
    # Without an OpenGL context the picture is missing (its report says why); the rest is kept.
    wanted = [f"{name}{s}" for s in output_suffixes(bool(a.get("render")))]
    files = {f: (tmp / f).read_bytes() for f in wanted if (tmp / f).exists()}
    s2m = report["scan_to_model_mm"]
    message = "ok" if not result.failed else f"failed fit: {result.message or 'low confidence'}"
    outcome = Outcome(
        name,
        "failed" if result.failed else "ok",
        message,
        time.perf_counter() - t0,
        s2m["median"],
        s2m["p95"],
        result.confidence,
        result.units,
    )
    return outcome, files


def quick_options(options):
    """A fast, rough fit (no hypothesis search, two short stages): previews and tests."""
    from dataclasses import replace

    from .optimize import Stage

    return replace(
        options,
        neck_hypotheses=0,
        tilt_hypotheses=False,
        stages=(
            Stage("similarity", 3, points=1500, trim_floor_cm=1.5),
            Stage("all", 4, shape=True, expression=True, pose=True, larynx=True, points=2500),
        ),
    )


def one_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    first = text[0] if text else ""
    return (
        f"{type(err).__name__}: {first}"
        if not isinstance(err, (ValueError, OSError))
        else (first or type(err).__name__)
    )


# -------------------------------------------------------------------------- executors
class Executor:
    """Runs tasks; yields (task, outcome, files) as they finish, in any order."""

    def run(self, tasks: list[Task]) -> Iterator[tuple[Task, Outcome, dict[str, bytes]]]:
        raise NotImplementedError

    def stop(self) -> None:
        """Stop all workers now (after SIGINT); nothing they still return is used."""

    def close(self) -> None:
        pass


class InProcessExecutor(Executor):
    """One scan after the other in this process (--jobs 1)."""

    def __init__(self, threads: int) -> None:
        self.threads = threads

    def run(self, tasks):
        from .parallel import torch_threads

        for task in tasks:
            task.attempts += 1
            with torch_threads(self.threads):
                outcome, files = fit_task(task)
            yield task, outcome, files


class LocalExecutor(Executor):
    """A pool of worker processes (spawned: no forked OpenMP state), what --jobs N does."""

    def __init__(self, jobs: int, threads: int) -> None:
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        ctx = multiprocessing.get_context("spawn")
        self.pids = ctx.SimpleQueue()
        self.pool = ProcessPoolExecutor(
            jobs, mp_context=ctx, initializer=init_local_worker, initargs=(threads, self.pids)
        )

    def run(self, tasks):
        from concurrent.futures import as_completed

        futures = {}
        for task in tasks:
            task.attempts += 1
            futures[self.pool.submit(fit_task, task)] = task
        for future in as_completed(futures):
            task = futures[future]
            try:
                outcome, files = future.result()
            except Exception as err:  # noqa: BLE001 - the worker process died
                outcome, files = Outcome(task.name, "failed", f"worker died: {one_line(err)}"), {}
            yield task, outcome, files

    def stop(self) -> None:
        self.pool.shutdown(wait=False, cancel_futures=True)
        while not self.pids.empty():
            pid = self.pids.get()
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        self.pool.shutdown(wait=True)

    def close(self) -> None:
        self.pool.shutdown(wait=True)


class DaskExecutor(Executor):
    """Tasks on a Dask distributed cluster: an existing scheduler (tcp://HOST:8786) or a
    LocalCluster started here ('local'). A task whose worker dies is resubmitted once, then
    reported failed; no wait is unbounded (connect_timeout, task_timeout)."""

    def __init__(
        self,
        scheduler: str,
        workers: int | None = None,
        threads: int = 1,
        connect_timeout: float = 30.0,
        task_timeout: float = 3600.0,
        retries: int = 1,
    ) -> None:
        try:
            import dask
            from distributed import Client, LocalCluster
        except ImportError:
            raise ValueError(
                '--scheduler needs Dask distributed: pip install "hack-model[cluster]"'
            ) from None
        self.cluster = None
        self.retries, self.task_timeout = retries, task_timeout
        if scheduler == "local":
            # A killed worker marks its task failed at once; this client resubmits it `retries` times.
            dask.config.set({"distributed.scheduler.allowed-failures": 0})
            self.cluster = LocalCluster(
                n_workers=workers or max(1, (os.cpu_count() or 1) // max(threads, 1)),
                threads_per_worker=1,
                processes=True,
                host="127.0.0.1",
                dashboard_address=None,
            )
            self.client = Client(self.cluster, timeout=connect_timeout)
        else:
            try:
                self.client = Client(scheduler, timeout=connect_timeout)
            except (OSError, TimeoutError) as err:
                raise ValueError(f"--scheduler {scheduler}: cannot connect ({one_line(err)})") from None
        self.threads = threads

    def run(self, tasks):
        from distributed import as_completed

        def submit(task):
            task.attempts += 1
            return self.client.submit(
                _dask_fit_task,
                task,
                self.threads,
                key=f"hack-fit-{task.name}-{task.attempts}-{os.getpid()}",
                pure=False,
            )

        futures = {submit(t): t for t in tasks}
        pending = as_completed(list(futures))
        deadline = time.monotonic() + self.task_timeout * max(1, len(tasks))
        while futures:
            try:
                batch = pending.next_batch(block=True) if hasattr(pending, "next_batch") else [next(pending)]
            except StopIteration:
                break
            for future in batch:
                task = futures.pop(future)
                try:
                    outcome, files = future.result(timeout=self.task_timeout)
                except Exception as err:  # noqa: BLE001 - KilledWorker, lost connection, timeout
                    if task.attempts <= self.retries:
                        nf = submit(task)
                        futures[nf] = task
                        pending.add(nf)
                        continue
                    outcome = Outcome(
                        task.name, "failed", f"worker failed {task.attempts} times: {one_line(err)}"
                    )
                    files = {}
                outcome.attempts = task.attempts
                yield task, outcome, files
            if time.monotonic() > deadline:
                for future, task in futures.items():
                    future.cancel()
                    yield task, Outcome(task.name, "failed", "timed out"), {}
                break

    def stop(self) -> None:
        self.close()

    def close(self) -> None:
        try:
            self.client.close(timeout=10)
        finally:
            if self.cluster is not None:
                self.cluster.close(timeout=10)
                self.cluster = None


def _dask_fit_task(task: Task, threads: int):
    import torch

    torch.set_num_threads(threads)
    return fit_task(task)


# ---------------------------------------------------------------------------- summary
SUMMARY_FIELDS = (
    "scan",
    "status",
    "message",
    "seconds",
    "median_mm",
    "p95_mm",
    "confidence",
    "units",
    "worker",
    "attempts",
    "path",
)


def write_summary(out_dir: Path, outcomes: list[Outcome]) -> None:
    """summary.csv and summary.json (one row per scan), each atomically."""
    rows = [{k: asdict(o)[k] for k in SUMMARY_FIELDS} for o in outcomes]
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=SUMMARY_FIELDS)
    writer.writeheader()
    writer.writerows(rows)
    counts = {s: sum(o.status == s for o in outcomes) for s in ("ok", "failed", "skipped")}
    payload = {"counts": counts, "scans": rows}
    with deferred_signals():
        for fname, text in (("summary.csv", buf.getvalue()), ("summary.json", json.dumps(payload, indent=2))):
            tmp = _write_tmp(out_dir, fname, text.encode("utf-8"))
            try:
                os.replace(tmp, out_dir / fname)
            finally:
                tmp.unlink(missing_ok=True)


class Progress:
    """A tqdm bar on a terminal; one line per finished scan otherwise."""

    def __init__(self, total: int, stream=None) -> None:
        self.stream = stream or sys.stderr
        self.total, self.done, self.bar = total, 0, None
        if getattr(self.stream, "isatty", lambda: False)():
            try:
                from tqdm import tqdm

                self.bar = tqdm(total=total, unit="scan", file=self.stream, leave=True)
            except ImportError:
                pass

    def update(self, outcome: Outcome) -> None:
        self.done += 1
        if self.bar is not None:
            self.bar.set_postfix_str(f"{outcome.scan}: {outcome.status}")
            self.bar.update(1)
        else:
            print(
                f"[{self.done}/{self.total}] {outcome.scan}: {outcome.status} ({outcome.seconds:.1f} s)",
                file=self.stream,
            )

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def run_batch(
    tasks: list[Task],
    out_dir: Path,
    executor: Executor,
    overwrite: bool,
    render: bool,
    on_outcome: Callable[[Outcome], None] | None = None,
) -> tuple[list[Outcome], bool]:
    """Skip complete scans (unless overwrite), run the rest, commit each as it finishes.
    Returns the outcomes in task order and whether the run was interrupted (SIGINT)."""
    outcomes: dict[str, Outcome] = {}
    todo = []
    for task in tasks:
        if not overwrite and task.is_complete(out_dir, render):
            outcomes[task.name] = Outcome(task.name, "skipped", "complete outputs exist", path=task.path)
        elif not overwrite and task.existing_outputs(out_dir, render):
            first = task.existing_outputs(out_dir, render)[0]
            outcomes[task.name] = Outcome(
                task.name, "skipped", f"{first.name} exists (use --overwrite to redo)", path=task.path
            )
        else:
            todo.append(task)
    for o in outcomes.values():
        if on_outcome:
            on_outcome(o)
    interrupted = False
    try:
        for task, outcome, files in executor.run(todo):
            if task.name in outcomes:  # never committed twice
                continue
            if outcome.status != "failed" or files:
                try:
                    task.commit(out_dir, files, {k: asdict(outcome)[k] for k in SUMMARY_FIELDS})
                except OSError as err:
                    outcome = Outcome(
                        task.name,
                        "failed",
                        f"cannot write outputs: {one_line(err)}",
                        outcome.seconds,
                        worker=outcome.worker,
                        path=task.path,
                    )
            outcome.attempts = max(outcome.attempts, task.attempts)
            outcomes[task.name] = outcome
            if on_outcome:
                on_outcome(outcome)
    except KeyboardInterrupt:
        interrupted = True
        executor.stop()
    finally:
        executor.close()
    ordered = [outcomes[t.name] for t in tasks if t.name in outcomes]
    return ordered, interrupted
