"""Sequence fitting: one identity for all frames of a 4D capture, smooth motion.

    from fitting import fit_sequence
    seq = fit_sequence(HACK(), [load_scan(p) for p in frames])
    seq.shape, seq.parameter_arrays()  # shape [S]; expression [T, 55], neck_pose [T, J, 3], ...

1. The first frame that loads is fitted alone, with the global search (`fit_scan`). Frames
   before the first fit the evidence trusts (a view the global search cannot place alone) are
   tracked backwards from it once it is found (`_track_back`), nearest first, until one
   loses the track.
2. Tracking: every further frame starts from its neighbour's solution and moves expression,
   neck pose, larynx and the similarity, and its shape too: with the first frame's identity
   held fixed, its small errors showed as residual structure that grew from frame to frame
   until tracking was lost; the one identity is set in step 3. A temporal
   prior pulls `prior_vertices` neck and head vertices towards where the two previous frames
   put them at constant velocity (2 x_{t-1} - x_{t-2}; x_{t-1} for the second frame): each
   coordinate counts like one scan point, with weight (sigma / temporal_mm)^2 (sigma =
   FitOptions.sigma_cm): a change of velocity of temporal_mm per frame costs as much as one
   scan point off by the scan noise. The prior is robust (Cauchy, scale temporal_mm): a vertex
   d off its prediction weighs 1 / (1 + (d / temporal_mm)^2) of that, so it smooths jitter
   without holding back a turn the constant-velocity guess missed (a turn of 16 degrees per
   frame: median vertex error 0.31-0.52 mm per frame with a quadratic prior, 0.15-0.21 robust).
   A frame whose tracking solve ends with a median scan-to-model distance above `relock_mm`
   has lost tracking: it is fitted again with the global search, and starts a new
   segment (no velocity is carried across the jump).
3. The identity is refined jointly over the fitted frames (`identity_frames` of them; by
   default all of a short sequence, IDENTITY_FRAMES spread evenly over a long one: the shape
   is one vector, and more frames of the same person cost time without telling more):
   Gauss-Newton steps on `shape` alone over the stacked frames' scan rows, with the shape prior once.
4. Every frame is polished from its tracked state with the refined identity (and the prior).

Frames that fail to load or fit are reported and skipped; the rest go on.
"""

from __future__ import annotations

import os
import re
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch

from hack_model.model import HACK

from .alignment import UNIT_TO_CM
from .fit import FitOptions, FitResult, ScanData, evaluator_for, fit_scan, mesh_to_points, solve_from
from .optimize import Correspondences, Fitter, Problem, Stage, State

IDENTITY_FRAMES = 16
IDENTITY_POINTS = 2000  # scan points per frame in each identity step
POLISH_REPORT_POINTS = 10_000  # scan points each frame's report measures (a single fit: 20,000)

# From a neighbour's solution a short solve suffices (a stage stops once its energy settles);
# the polish after the identity refinement gives the final fit on a fixed, larger sample.
TRACK_STAGES = (
    # the identity is known from the neighbour: a frame first moves pose and expression alone,
    # else the shape absorbs a turn of the head before the pose has followed it
    Stage("follow", 4, expression=True, pose=True, larynx=True, points=3000, trim_floor_cm=0.8),
    Stage("track", 8, shape=True, expression=True, pose=True, larynx=True, points=3000, trim_floor_cm=0.4),
)
POLISH_STAGES = (
    Stage(
        "polish", 3, expression=True, pose=True, larynx=True, points=5000, trim_floor_cm=0.3, resample=False
    ),
)


@dataclass
class SequenceResult:
    """One identity `shape` [S] and, per fitted frame, a FitResult (in its scan's units)."""

    shape: np.ndarray
    names: list[str]  # fitted frames, in order
    frames: list[FitResult]
    failed: dict[str, str] = field(default_factory=dict)  # frame -> why it was skipped
    relocked: list[str] = field(default_factory=list)  # frames where tracking was lost (global search again)
    timings: dict[str, float] = field(default_factory=dict)

    def parameter_arrays(self) -> dict[str, np.ndarray]:
        """API names with a leading frame axis: shape [S], expression [T, E], neck_pose [T, J, 3],
        larynx_height [T, 1], larynx_scale [T, 1], scale [T], rotation [T, 3, 3], translation [T, 3]."""
        per = [f.parameter_arrays() for f in self.frames]
        out = {"shape": np.asarray(self.shape, np.float64)}
        for key in ("expression", "neck_pose", "larynx_height", "larynx_scale"):
            if key in per[0]:
                out[key] = np.concatenate([p[key] for p in per]).astype(np.float64)
        out["scale"] = np.array([float(p["scale"]) for p in per])
        out["rotation"] = np.stack([p["rotation"] for p in per])
        out["translation"] = np.stack([p["translation"] for p in per])
        return out


def natural_key(path: str | os.PathLike) -> list:
    """frame2 < frame10."""
    return [int(t) if t.isdigit() else t.casefold() for t in re.split(r"(\d+)", str(path))]


def _temporal_rows(target_cm: np.ndarray, idx: np.ndarray, weight: float, place, scale_cm: float):
    """Point-to-point rows pulling model vertices idx towards target_cm [K, 3] (scan cm).

    Robust (Cauchy): a vertex d off its target weighs weight / (1 + (d / scale_cm)^2), with d
    where place(state) puts it at the current solve; jitter is smoothed, while a motion the
    scans plainly show (a turn the constant-velocity guess missed) is not held back."""
    n = len(idx)
    corners = np.repeat(np.stack([idx, idx, idx], 1), 3, axis=0)
    bary, normals = np.tile([1.0, 0.0, 0.0], (3 * n, 1)), np.tile(np.eye(3), (n, 1))
    points = np.repeat(target_cm, 3, axis=0)

    def rows(state: State) -> Correspondences:
        off = np.linalg.norm(place(state) - target_cm, axis=1)
        w = weight / (1.0 + (off / scale_cm) ** 2)
        return Correspondences(corners, bary, normals, points, np.repeat(w, 3))

    return rows


def _prior_points(ev, state: State, idx: np.ndarray) -> np.ndarray:
    """Where a solver state puts the prior vertices idx: [K, 3] scan cm."""
    return state.similarity().apply(ev.vertices(state.params, idx))


def _predicted(done: list[np.ndarray]) -> np.ndarray:
    """Where the prior vertices [K, 3] (scan cm) would be at constant velocity, from the
    previous frames' positions: the prior penalises a change of velocity, so steady motion is
    not held back."""
    if len(done) >= 2:
        return 2.0 * done[-1] - done[-2]
    return done[-1]


def _scan_cm(scan: ScanData, units: str, count: int, rng: np.random.Generator) -> np.ndarray:
    if scan.triangles is not None and len(scan.triangles):
        scan = mesh_to_points(scan, count, rng)
    pts = np.asarray(scan.points, np.float64)
    pts = pts[np.isfinite(pts).all(1)]
    if len(pts) > count:
        pts = pts[rng.choice(len(pts), count, replace=False)]
    return pts * UNIT_TO_CM[units]


def _refine_identity(
    model: HACK,
    frames: list[State],
    scans_cm: list[np.ndarray],
    sigma_cm: float,
    iterations: int,
    rng: np.random.Generator,
) -> np.ndarray:
    """Gauss-Newton on shape alone over all given frames (their other parameters fixed)."""
    ev = evaluator_for(model)
    fitter = Fitter(ev, rng, sigma_cm=sigma_cm)
    problem = Problem(
        ev, Stage("identity", 1, shape=True, points=IDENTITY_POINTS, trim_floor_cm=0.3), move_similarity=False
    )
    shape = np.mean([f.params.shape for f in frames], axis=0)  # the tracked frames' own shapes
    for _ in range(iterations):
        H = np.eye(ev.S)  # the shape prior, once for the sequence
        g = shape.copy()
        for tracked, pts in zip(frames, scans_cm):
            state = tracked.copy()
            state.params.shape = shape
            count = IDENTITY_POINTS
            pick = pts if len(pts) <= count else pts[rng.choice(len(pts), count, replace=False)]
            rows, _ = fitter.correspond(state, pick, None, 0.3)
            used = float((rows.weights > 0).sum())
            if used < 10:
                continue
            r, J = problem.linearize(state, rows, fitter.posed(state.params))
            w = rows.weights * (fitter.reference_rows / used) / sigma_cm**2
            Jt = torch.from_numpy(J)
            H += (Jt.T @ (Jt * torch.from_numpy(w)[:, None])).numpy()
            g += J.T @ (w * r)
        shape = shape - np.linalg.solve(H + 1e-9 * np.eye(ev.S), g)
    return shape


def fit_sequence(
    model: HACK,
    scans: list,
    options: FitOptions | None = None,
    *,
    names: list[str] | None = None,
    temporal_mm: float = 5.0,
    prior_vertices: int = 200,
    relock_mm: float = 1.5,
    identity_frames: list[int] | None = None,
    identity_iterations: int = 2,
    identity_rounds: int = 2,
) -> SequenceResult:
    """Fit frames (ScanData, point arrays [N, 3], or paths) of one person with one identity.

    temporal_mm: frame-to-frame displacement of a neck/head vertex that costs as much as one
    scan point off by the noise (see the module doc; 0 switches the prior off); relock_mm:
    median scan-to-fit distance (mm) above which a tracked frame runs the global search again;
    identity_frames: indices (into the fitted frames) used to refine the identity (default: all,
    or IDENTITY_FRAMES spread evenly when there are more);
    identity_rounds: identity refinement + polish rounds (each round costs a polish of every frame).
    The identity is solved with each frame's pose held, so a second round, from the poses
    polished with it, removes what the first one absorbed of their mismatch (a 3-frame test
    sequence: median vertex error 0.42-0.56 mm after one round, 0.31-0.39 after two)."""
    from .scan_io import load_scan

    opts = options or FitOptions()
    t_start = time.perf_counter()
    ev = evaluator_for(model)
    rng = np.random.default_rng(opts.seed)
    names = (
        list(names)
        if names is not None
        else [
            Path(s).stem if isinstance(s, (str, os.PathLike)) else f"frame{i:04d}"
            for i, s in enumerate(scans)
        ]
    )
    if len(names) != len(scans):
        raise ValueError(f"names has {len(names)} entries for {len(scans)} scans")
    # neck and head vertices (not the torso root)
    head_like = np.nonzero(ev.weights_by_bone[1:].sum(0).cpu().numpy() > 0.5)[0]
    if len(head_like) == 0:
        head_like = np.arange(ev.num_vertices)
    prior_idx = np.sort(rng.choice(head_like, min(prior_vertices, len(head_like)), replace=False))
    weight = 0.0 if temporal_mm <= 0 else (opts.sigma_cm / (temporal_mm / 10.0)) ** 2

    def prior_rows(trail: list[np.ndarray]):
        """The temporal prior's rows after the frames placed as trail (the nearest last)."""
        if weight <= 0:
            return None
        return _temporal_rows(_predicted(trail), prior_idx, weight, place, temporal_mm / 10.0)

    def place(state: State) -> np.ndarray:
        """Where a state puts the prior vertices."""
        return _prior_points(ev, state, prior_idx)

    failed: dict[str, str] = {}
    relocked: list[str] = []
    kept: list[tuple[str, ScanData]] = []
    states: list[State] = []  # tracked solver states, one per kept frame
    placed: list[np.ndarray] = []  # where each puts the prior vertices (scan cm)
    units = None
    track_opts = replace(opts, stages=TRACK_STAGES)
    t_track = time.perf_counter()
    segment_start, segment_starts = 0, {0}
    leading: list[tuple[str, ScanData]] = []  # frames before the first fit, doubted alone
    for name, scan in zip(names, scans):
        lost = False
        try:
            if isinstance(scan, (str, os.PathLike)):
                scan = load_scan(scan)
            elif not isinstance(scan, ScanData):
                scan = ScanData(np.asarray(scan, np.float64))
            if not states:
                result = fit_scan(model, scan, options=opts)
                if result.failed:
                    leading.append((name, scan))  # tracked back once a later frame fits
                    raise ValueError(f"the first fit failed ({result.message})")
                units = result.units
                track_opts = replace(track_opts, units=units)
                state = result.state
            else:
                extra = prior_rows(placed[segment_start:])
                # Tracking needs the state only: each frame's report comes with the polish.
                solved = solve_from(model, scan, states[-1], track_opts, extra)
                state = solved.state
                if solved.median_mm > relock_mm:
                    relocked.append(name)
                    lost = True
                    again = fit_scan(model, scan, options=replace(opts, units=units))
                    if again.failed:
                        raise ValueError(f"tracking lost and the global search failed ({again.message})")
                    state = again.state
        except Exception as err:  # noqa: BLE001 - one bad frame is reported and skipped
            failed[name] = _one_line(err)
            continue
        if lost:  # the motion jumped: no velocity is carried across (track and polish alike)
            segment_start = len(states)
            segment_starts.add(segment_start)
        states.append(state)
        placed.append(place(state))
        kept.append((name, scan))
    if states and leading:
        # The prior's trail runs backwards in time: the nearest frame last.
        trail = [placed[1], placed[0]] if len(placed) > 1 and 1 not in segment_starts else [placed[0]]
        back = _track_back(model, leading, states[0], trail, track_opts, prior_rows, place, relock_mm)
        for name, _ in back.kept:
            failed.pop(name)
        states, placed, kept = back.states + states, back.placed + placed, back.kept + kept
        segment_starts = {0} | {k + len(back.kept) for k in segment_starts}
        for name, why in back.lost.items():
            failed[name] += f"; not tracked back either ({why})"
    timings = {"track": time.perf_counter() - t_track}
    if not states:
        raise ValueError(
            "no frame of the sequence could be fitted: "
            + "; ".join(f"{k}: {v}" for k, v in list(failed.items())[:3])
        )

    use = (
        np.unique(np.linspace(0, len(states) - 1, min(len(states), IDENTITY_FRAMES)).round().astype(int))
        if identity_frames is None
        else [i for i in identity_frames if 0 <= i < len(states)]
    )
    scans_cm = [_scan_cm(kept[i][1], units, 20_000, rng) for i in use]
    polish_opts = replace(
        opts, stages=POLISH_STAGES, units=units, report_points=POLISH_REPORT_POINTS, polish_doubted=False
    )
    timings["identity"] = timings["polish"] = 0.0
    for _ in range(max(1, identity_rounds)):
        # Identity over the frames, then every frame polished with it (alternating rounds).
        t0 = time.perf_counter()
        shape = _refine_identity(
            model, [states[i] for i in use], scans_cm, opts.sigma_cm, identity_iterations, rng
        )
        timings["identity"] += time.perf_counter() - t0
        t0 = time.perf_counter()
        final: list[FitResult] = []
        placed = []
        for i, (_, scan) in enumerate(kept):
            st = states[i].copy()
            st.params.shape = shape.copy()
            since = max(k for k in segment_starts if k <= i)
            extra = prior_rows(placed[since:]) if i > since else None
            final.append(fit_scan(model, scan, options=polish_opts, start=st, extra_rows=extra))
            placed.append(place(final[-1].state))
        states = [f.state for f in final]
        timings["polish"] += time.perf_counter() - t0
    timings["total"] = time.perf_counter() - t_start
    timings["per_frame"] = timings["total"] / max(1, len(final))
    return SequenceResult(shape, [n for n, _ in kept], final, failed, relocked, timings)


@dataclass
class _Tracked:
    """Frames tracked backwards, in time order: their states, prior points and (name, scan);
    lost: frame -> why it was not tracked."""

    states: list[State] = field(default_factory=list)
    placed: list[np.ndarray] = field(default_factory=list)
    kept: list[tuple[str, ScanData]] = field(default_factory=list)
    lost: dict[str, str] = field(default_factory=dict)


def _track_back(model, leading, state, trail, track_opts, prior_rows, place, relock_mm) -> _Tracked:
    """The frames before the first one fitted (each doubted alone: a view the global search
    cannot place) tracked backwards from its state, nearest first, until one loses the track.
    trail: where the frames after them put the prior vertices (the nearest last);
    prior_rows(trail): the temporal prior's rows; place(state): where a state puts them."""
    out = _Tracked()
    trail = list(trail)
    for i, (name, scan) in enumerate(reversed(leading)):
        extra = prior_rows(trail)
        try:
            solved = solve_from(model, scan, state, track_opts, extra)
        except Exception as err:  # noqa: BLE001 - reported with the frame
            solved, why = None, _one_line(err)
        else:
            why = f"median {solved.median_mm:.2f} mm from the next frame's fit, over {relock_mm} mm"
        if solved is None or solved.median_mm > relock_mm:
            out.lost = {n: f"the track was lost at {name}" for n, _ in leading[: len(leading) - i - 1]}
            out.lost[name] = why
            break
        state = solved.state
        trail.append(place(state))
        out.states.insert(0, state)
        out.placed.insert(0, trail[-1])
        out.kept.insert(0, (name, scan))
    return out


def _one_line(err: BaseException) -> str:
    from .batch import one_line

    return one_line(err)


def sequence_report(seq: SequenceResult) -> dict:
    frames = []
    for name, f in zip(seq.names, seq.frames):
        d = f.scan_distances_mm
        frames.append(
            {
                "frame": name,
                "median_mm": round(float(np.median(d)), 4),
                "p95_mm": round(float(np.percentile(d, 95)), 4),
                "confidence": round(float(f.confidence), 4),
                "failed": bool(f.failed),
                "message": f.message,
                "seconds": round(float(f.timings.get("total", 0.0)), 3),
            }
        )
    return {
        "frames": frames,
        "skipped": seq.failed,
        "tracking_lost": seq.relocked,
        "timings_s": {k: round(v, 3) for k, v in seq.timings.items()},
        "units": seq.frames[0].units if seq.frames else None,
    }


def sequence_task(task, tmp: Path, t0: float):
    """A whole sequence as one batch task (fitting/batch.py): fit it, and return its outcome
    and the outputs' bytes (sequence_params.npz, sequence_report.json, FRAME_fit.obj per
    fitted frame unless options["no_meshes"], sequence.mp4 with options["render"])."""
    import json

    from hack_model.io.mesh import PolygonMesh, write_obj
    from hack_model.params import save_params

    from .batch import Outcome, cached_model, frame_names, quick_options

    a = task.options
    model = cached_model(a.get("model"), a.get("device", "cpu"))
    names = frame_names(task.frames)
    frames = list(task.frames)
    if task.frame_data is not None:  # the frames' bytes, written under their own names
        (tmp / "frames").mkdir()
        frames = [str(tmp / "frames" / f"{n}{Path(f).suffix.lower()}") for n, f in zip(names, task.frames)]
        for f, data in zip(frames, task.frame_data):
            Path(f).write_bytes(data)
    options = FitOptions(units=a.get("units", "auto"))
    if a.get("quick"):  # a rough first frame (no hypothesis search): previews and tests
        options = quick_options(options)
    seq = fit_sequence(model, frames, options, names=names)
    report = sequence_report(seq)
    save_params(tmp / "sequence_params.npz", seq.parameter_arrays())
    wanted = ["sequence_params.npz"]
    if not a.get("no_meshes"):
        d = model.data
        for name, f in zip(seq.names, seq.frames):
            mesh = PolygonMesh(
                f.vertices, d.polygon_vertex_indices, d.polygon_sizes, d.uv_coords, d.polygon_uv_indices
            )
            write_obj(tmp / f"{name}_fit.obj", mesh)
            wanted.append(f"{name}_fit.obj")
    if a.get("render"):
        try:
            _render_video(tmp / "sequence.mp4", seq, model, dict(zip(names, frames)))
            wanted.append("sequence.mp4")
        except (ImportError, RuntimeError) as err:
            report["render_error"] = _one_line(err)
    (tmp / "sequence_report.json").write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    wanted.append("sequence_report.json")
    medians = [fr["median_mm"] for fr in report["frames"]]
    message = f"{len(seq.frames)} of {len(names)} frames fitted, one identity"
    if seq.failed:
        message += "; skipped " + ", ".join(seq.failed)
    # a sequence with a doubted frame is doubted, as a single doubted fit is (batch._fit_task)
    doubted = [(name, f.message) for name, f in zip(seq.names, seq.frames) if f.failed]
    if doubted:
        message += f"; {len(doubted)} doubted: " + ", ".join(name for name, _ in doubted)
        message += f" ({doubted[0][0]}: {doubted[0][1]})"
    outcome = Outcome(
        task.name,
        "failed" if doubted else "ok",
        message,
        time.perf_counter() - t0,
        float(np.median(medians)),
        max(fr["p95_mm"] for fr in report["frames"]),
        min(float(f.confidence) for f in seq.frames),
        seq.frames[0].units,
    )
    return outcome, {f: (tmp / f).read_bytes() for f in wanted}


def _render_video(path: Path, seq: SequenceResult, model: HACK, files: dict[str, str]) -> None:
    """scan | fit | distance per frame (the single-scan panel of fitting.report) as an MP4;
    files: frame name -> its scan file."""
    import imageio.v2 as imageio

    from .report import render_fit
    from .scan_io import load_scan

    with imageio.get_writer(str(path), fps=10, codec="libx264", quality=7, macro_block_size=1) as writer:
        for name, f in zip(seq.names, seq.frames):
            raw = load_scan(files[name])
            pts = raw.points[np.isfinite(raw.points).all(1)] if raw.triangles is None else raw.points
            frame = np.asarray(render_fit(f, model.data, pts, raw.triangles))
            writer.append_data(frame[..., :3] if frame.ndim == 3 and frame.shape[2] == 4 else frame)
