"""`fit_scan` and `fit_registered`: the public entry points of the fitting package."""

from __future__ import annotations

import os
import time
import weakref
from dataclasses import dataclass, field

import numpy as np
import torch
from scipy.spatial import cKDTree

from hack_model.model import HACK

from .alignment import (
    UNIT_TO_CM,
    Similarity,
    detect_units,
    initial_alignment,
    landmark_alignment,
    neck_search,
    umeyama,
)
from .evaluator import ModelEvaluator, ModelParams
from .geometry import MeshProximity, sample_surface
from .optimize import (
    DEFAULT_STAGES,
    PROBE_STAGE,
    Fitter,
    Problem,
    Rows,
    SolveLog,
    Stage,
    State,
    torch_threads,
)
from .regions import FACE, REGION_NAMES, vertex_regions

# FIT_DEBUG=1 prints the hypothesis scores and the final residual of each fit.
_DEBUG = bool(os.environ.get("FIT_DEBUG"))
_EVALUATORS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()

# A scan point within this distance of the fitted surface counts as explained by the fit.
INLIER_CM = 0.3
# A model vertex within this distance of a scan point counts as covered by the scan.
COVERAGE_CM = 0.5
# A fit whose capped scan-to-model distance (Fitter.score) exceeds this is retried from the
# next best start hypotheses (a good fit of a scan with 0.5 mm noise and 5% outliers: ~0.085).
RETRY_SCORE_CM = 0.092
RETRIES = 2
# Rounds of the tilt search (each continues from the previous round's winner).
TILT_ROUNDS = 3


def evaluator_for(model: HACK) -> ModelEvaluator:
    """The (cached) float64 evaluator of a model."""
    ev = _EVALUATORS.get(model)
    if ev is None:
        ev = ModelEvaluator(model, anchor="head")
        _EVALUATORS[model] = ev
    return ev


@dataclass
class ScanData:
    """A scan: points [N, 3] in its own units, optional normals [N, 3] and triangles [F, 3]."""

    points: np.ndarray
    normals: np.ndarray | None = None
    triangles: np.ndarray | None = None
    name: str = "scan"


@dataclass
class FitOptions:
    units: str = "auto"  # auto | mm | cm | m
    max_points: int = 200_000  # scans are subsampled to this many points first
    stages: tuple[Stage, ...] = DEFAULT_STAGES
    sigma_cm: float = 0.1  # expected scan noise, sets the data weight against the priors
    landmark_weight: float = 1.0  # each landmark counts like this many (noise-free) scan points
    seed: int = 0
    report_points: int = 50_000  # scan points used for the distances in the report
    neck_hypotheses: int = 4  # neck twist/bend hypotheses tried after the rigid alignment (0: none)
    reset_after_probe: bool = True
    tilt_hypotheses: bool = True
    threads: int | None = 1  # torch threads during the fit: its many small ops run fastest on one
    min_confidence: float = 0.5  # below this the fit is flagged as failed


@dataclass
class FitResult:
    """Model parameters (API names), the similarity model (cm) -> scan (scan units)
    x_scan = scale * rotation @ x_model + translation, the fitted mesh and diagnostics."""

    params: ModelParams
    scale: float
    rotation: np.ndarray  # [3, 3]
    translation: np.ndarray  # [3]
    vertices: np.ndarray  # [V, 3] fitted mesh in scan coordinates and units
    model_vertices: np.ndarray  # [V, 3] fitted mesh in model space (cm)
    scan_distances_mm: np.ndarray  # [N'] each (sub-sampled) scan point to the fitted surface
    scan_regions: np.ndarray  # [N'] region of the closest model triangle
    vertex_distances_mm: np.ndarray  # [V] each fitted vertex to the nearest scan point
    units: str
    converged: bool
    confidence: float
    iterations: int
    timings: dict[str, float] = field(default_factory=dict)
    stages: list = field(default_factory=list)
    failed: bool = False
    message: str = ""
    state: State | None = None  # the solver's final state (a start for a neighbouring frame)

    def parameter_arrays(self) -> dict[str, np.ndarray]:
        """What `hack_model.params.save_params` writes: forward() arguments with a batch axis
        plus scale, rotation and translation (model -> scan)."""
        out = self.params.forward_arguments()
        out["scale"] = np.array(self.scale, np.float64)
        out["rotation"] = self.rotation.astype(np.float64)
        out["translation"] = self.translation.astype(np.float64)
        return out


def mesh_to_points(scan: ScanData, count: int, rng: np.random.Generator) -> ScanData:
    """A mesh scan as `count` area-uniform surface samples with face normals (a scanner
    mesh's vertex density is uneven); a scan without triangles comes back unchanged."""
    if scan.triangles is None or len(scan.triangles) == 0:
        return scan
    from .geometry import face_normals

    v = np.asarray(scan.points, np.float64)
    tris = np.asarray(scan.triangles, np.int64)
    tris = tris[np.isfinite(v[tris]).all((1, 2))]
    if len(tris) == 0:
        return ScanData(v, None, None, scan.name)
    try:
        points, face, _ = sample_surface(v, tris, count, rng)
    except ValueError:  # no area: use the vertices as points
        return ScanData(v, None, None, scan.name)
    return ScanData(points, face_normals(v, tris)[face], None, scan.name)


def _clean_points(points: np.ndarray) -> np.ndarray:
    pts = np.asarray(points, np.float64)
    if pts.ndim != 2 or pts.shape[1] != 3:
        raise ValueError(f"scan points must have shape [N, 3], got {list(pts.shape)}")
    return np.isfinite(pts).all(1)


def fit_scan(
    model: HACK,
    scan: ScanData | np.ndarray,
    landmarks: np.ndarray | None = None,
    options: FitOptions | None = None,
    *,
    start: State | None = None,
    extra_rows=None,
) -> FitResult:
    """Fit the model to a scan (points [N, 3], or a ScanData with normals/triangles) in any
    pose, scale (units) and orientation; landmarks [68, 3] (Multi-PIE order, NaN = missing)
    in the scan's coordinates are optional. Raises ValueError for scans that cannot be fitted
    at all (empty, NaN, no extent); a fit that does not explain the scan comes back with
    failed=True and a low confidence.

    start: a solver state (e.g. a neighbouring frame's `result.state`, same units) to begin
    from instead of the global search; extra_rows(state) -> Rows | None adds rows to every
    solve (used by fitting.sequence for its temporal prior)."""
    opts = options or FitOptions()
    with torch_threads(opts.threads):
        return _fit_scan(model, scan, landmarks, opts, start, extra_rows)


def _fit_scan(
    model: HACK,
    scan: ScanData | np.ndarray,
    landmarks: np.ndarray | None,
    opts: FitOptions,
    start_state: State | None = None,
    extra_rows=None,
) -> FitResult:
    t_start = time.perf_counter()
    timings: dict[str, float] = {}
    if not isinstance(scan, ScanData):
        scan = ScanData(np.asarray(scan, np.float64))
    rng = np.random.default_rng(opts.seed)
    if scan.triangles is not None and len(scan.triangles):
        scan = mesh_to_points(scan, opts.max_points, rng)
    ok = _clean_points(scan.points)
    if ok.sum() < 100:
        raise ValueError(f"the scan has {int(ok.sum())} finite points; at least 100 are needed")
    points = np.asarray(scan.points, np.float64)[ok]
    normals = None if scan.normals is None else np.asarray(scan.normals, np.float64)[ok]
    if len(points) > opts.max_points:  # bounded memory and time for huge scans
        pick = rng.choice(len(points), opts.max_points, replace=False)
        points = points[pick]
        normals = None if normals is None else normals[pick]
    if normals is not None:
        length = np.linalg.norm(normals, axis=1, keepdims=True)
        normals = np.where(length > 0, normals / np.maximum(length, 1e-12), 0.0)
    units = detect_units(points) if opts.units == "auto" else opts.units
    if units not in UNIT_TO_CM:
        raise ValueError(f"unknown units {units!r} (use auto, mm, cm or m)")
    to_cm = UNIT_TO_CM[units]
    scan_cm = points * to_cm
    if float(np.ptp(scan_cm, axis=0).max()) < 1.0:
        raise ValueError("the scan is smaller than 1 cm across; not a head scan")
    timings["load"] = time.perf_counter() - t_start

    ev = evaluator_for(model)
    data = model.data
    neutral = ev.vertices(ModelParams.neutral(ev.S, ev.E, ev.J))
    t0 = time.perf_counter()
    lm_cm = None
    if start_state is not None:
        sim, align_score = start_state.similarity(), float("nan")
    elif landmarks is not None:
        lm = np.asarray(landmarks, np.float64).reshape(-1, 3)
        if data.landmark_indices is None:
            raise ValueError("this model has no landmark vertices; fit without --landmarks")
        if len(lm) != len(data.landmark_indices):
            raise ValueError(f"expected {len(data.landmark_indices)} landmarks, got {len(lm)}")
        lm_cm = lm * to_cm
        # Rotation and translation from the landmarks; the units fix the scale.
        sim = landmark_alignment(lm_cm, neutral[data.landmark_indices], with_scale=False)
        align_score = float("nan")
    else:
        model_samples, face, _ = sample_surface(neutral, ev.triangles, 5000, rng)
        head_weight = ev.weights_t[-1].numpy()[ev.triangles[face]].mean(1)
        on_face = (vertex_regions(data)[ev.triangles[face]] == FACE).all(1)
        alignment = initial_alignment(scan_cm, model_samples, rng, head=head_weight >= 0.5, face=on_face)
        sim, align_score, candidates = alignment.transform, alignment.score, alignment.candidates
    fitter = Fitter(ev, rng, sigma_cm=opts.sigma_cm)
    start = ModelParams.neutral(ev.S, ev.E, ev.J)
    state = State.from_similarity(start, sim) if start_state is None else start_state.copy()
    pool: list = []  # every probed hypothesis with its score
    if lm_cm is None and start_state is None:
        # Rigid candidates, then neck twist/bend hypotheses for the best: each gets a short
        # similarity+shape+neck solve, which tells them apart far better than rigid scores.
        state = _best_probe(
            fitter, ev, [State.from_similarity(start, s) for s in candidates], scan_cm, normals, pool=pool
        )
        if opts.neck_hypotheses:
            states = [state]
            for pose, sim_h, _ in neck_search(ev, state.similarity(), scan_cm, rng, top=opts.neck_hypotheses):
                p = state.params.copy()
                p.neck_pose = pose
                states.append(State.from_similarity(p, sim_h))
            state = _best_probe(fitter, ev, states, scan_cm, normals, skip_first=True, pool=pool)
        if opts.tilt_hypotheses:
            # The rigid head fit can stay ~10-30 degrees off; probe small tilts of the best,
            # and again from a tilt that won (a descent over tilts in 10 degree steps).
            for _ in range(TILT_ROUNDS):
                states = [state] + [_tilted(state, axis, angle) for axis in (0, 1) for angle in (-10.0, 10.0)]
                new_state = _best_probe(fitter, ev, states, scan_cm, normals, skip_first=True, pool=pool)
                if new_state is state:
                    break
                state = new_state
        if opts.reset_after_probe:
            # Keep the probe's similarity and neck; its quick shape may have absorbed some
            # misalignment (shape modes can tilt a face), so the stages start from the mean.
            state.params.shape = np.zeros_like(state.params.shape)
    timings["align"] = time.perf_counter() - t0

    extra = None
    if lm_cm is not None:
        extra = _landmark_rows(data.landmark_indices, lm_cm, opts.landmark_weight)
    if extra_rows is not None:
        extra = extra_rows if extra is None else _joined(extra, extra_rows)
    t0 = time.perf_counter()
    chosen = state
    state, log, converged = _run_stages(fitter, ev, opts, state, scan_cm, normals, extra)
    final = fitter.score(state, scan_cm)
    extra_iterations = 0
    if _DEBUG:
        print("final score", round(final, 4))
    if lm_cm is None and start_state is None and final > RETRY_SCORE_CM:
        # A poor residual: the probe may have picked the wrong basin. Fit from the next best
        # distinct hypotheses too and keep the fit that explains the scan best.
        alternatives = [st for sc, st in sorted(pool, key=lambda x: x[0]) if st is not chosen]
        for alt in alternatives[:RETRIES]:
            alt = alt.copy()
            if opts.reset_after_probe:
                alt.params.shape = np.zeros_like(alt.params.shape)
            s2, log2, conv2 = _run_stages(fitter, ev, opts, alt, scan_cm, normals, extra)
            f2 = fitter.score(s2, scan_cm)
            if _DEBUG:
                print("retry score", round(f2, 4))
            extra_iterations += log2.iterations
            if f2 < final:
                state, log, converged, final = s2, log2, conv2, f2
            if final <= RETRY_SCORE_CM:
                break
    timings["optimize"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    result = _finish(model, ev, state, scan_cm, units, rng, opts)
    result.converged = bool(converged)
    result.iterations = log.iterations + extra_iterations
    result.stages = log.stages
    result.state = state
    timings["report"] = time.perf_counter() - t0
    timings["total"] = time.perf_counter() - t_start
    result.timings = timings
    if lm_cm is None and np.isfinite(align_score) and align_score > 2.0:
        result.message = f"poor initial alignment (trimmed distance {align_score * 10:.1f} mm)"
    if lm_cm is None and final > RETRY_SCORE_CM:
        note = f"high residual (capped mean scan distance {final * 10:.2f} mm): check the alignment"
        result.message = f"{result.message}; {note}" if result.message else note
    return result


def _run_stages(fitter, ev, opts, state, scan_cm, normals, extra):
    log = SolveLog()
    converged = False
    for stage in opts.stages:
        state, slog, converged = fitter.run_stage(Problem(ev, stage), state, scan_cm, normals, extra)
        log.stages.append(slog)
        log.iterations += slog.iterations
    return state, log, converged


def _best_probe(
    fitter: Fitter,
    ev: ModelEvaluator,
    states: list[State],
    scan_cm: np.ndarray,
    normals,
    skip_first=False,
    pool: list | None = None,
) -> State:
    """Run the probe stage from each state (the first as it is when skip_first: it was probed);
    return the one whose trimmed scan distance is lowest."""
    scored = []
    for i, cand in enumerate(states):
        if not (skip_first and i == 0):
            cand, _, _ = fitter.run_stage(Problem(ev, PROBE_STAGE), cand, scan_cm, normals)
        scored.append((fitter.score(cand, scan_cm), i, cand))
    if _DEBUG:
        print("probe scores", [round(x[0], 4) for x in scored])
    if pool is not None:
        pool.extend((x[0], x[2]) for x in scored[1 if skip_first else 0 :])
    return min(scored, key=lambda x: (x[0], x[1]))[2]


def _tilted(state: State, axis: int, degrees: float) -> State:
    """The state with its model turned about a model axis through the model's head bone."""
    from .optimize import _rotation

    omega = np.zeros(3)
    omega[axis] = np.deg2rad(degrees)
    R = _rotation(omega)
    # y = a Q x + b -> the model frame turned by R: y' = R y (about the origin, near the head).
    new = state.copy()
    new.Q = R @ state.Q
    new.b = R @ state.b
    return new


def _joined(first, second):
    """Two extra-row callbacks as one."""

    def rows(state):
        parts = [r for r in (first(state), second(state)) if r is not None]
        return Rows.concat(parts) if parts else None

    return rows


def _landmark_rows(indices: np.ndarray, lm_cm: np.ndarray, weight: float):
    """Point-to-point landmark rows (three axis-aligned point-to-plane rows each)."""
    ok = np.isfinite(lm_cm).all(1)
    idx = np.asarray(indices)[ok]
    pts = lm_cm[ok]
    n = len(idx)
    corners = np.repeat(np.stack([idx, idx, idx], 1), 3, axis=0)
    bary = np.tile([1.0, 0.0, 0.0], (3 * n, 1))
    normals = np.tile(np.eye(3), (n, 1))
    rows = Rows(corners, bary, normals, np.repeat(pts, 3, axis=0), np.full(3 * n, weight))
    return lambda state: rows


def _finish(
    model: HACK,
    ev: ModelEvaluator,
    state: State,
    scan_cm: np.ndarray,
    units: str,
    rng: np.random.Generator,
    opts: FitOptions,
) -> FitResult:
    """Final mesh through HACK.forward (what the saved parameters reproduce), distances, confidence."""
    p = state.params
    with torch.no_grad():
        args = {
            k: torch.as_tensor(v, dtype=model.template.dtype, device=model.template.device)
            for k, v in p.forward_arguments().items()
        }
        verts_model = model(**args).vertices[0].double().cpu().numpy()
    sim_cm = state.similarity()  # head-anchored model -> scan (cm)
    # The model's own mesh is R_h v' + t_h of the head-anchored one: undo that.
    R_h, t_h = ev.head_transform(p.neck_pose, ev.joints(p))
    sim_cm = Similarity(
        sim_cm.scale,
        sim_cm.rotation @ R_h.T,
        sim_cm.translation - sim_cm.scale * sim_cm.rotation @ R_h.T @ t_h,
    )
    to_units = 1.0 / UNIT_TO_CM[units]
    scale = sim_cm.scale * to_units
    translation = sim_cm.translation * to_units
    vertices = scale * verts_model @ sim_cm.rotation.T + translation

    pick = rng.choice(len(scan_cm), min(opts.report_points, len(scan_cm)), replace=False)
    y = sim_cm.inverse_apply(scan_cm[pick])  # into the model's own frame
    closest = MeshProximity(verts_model, ev.triangles).query(y)
    regions = vertex_regions(model.data)
    tri = ev.triangles[closest.triangle]
    scan_regions = regions[tri[np.arange(len(tri)), closest.bary.argmax(1)]]
    scan_mm = closest.distance * 10.0 * sim_cm.scale  # model space -> scan cm -> mm
    vert_mm = cKDTree(y).query(verts_model, k=1)[0] * 10.0 * sim_cm.scale
    confidence, message = _confidence(scan_mm, vert_mm, regions, p)
    return FitResult(
        params=p,
        scale=float(scale),
        rotation=sim_cm.rotation,
        translation=translation,
        vertices=vertices,
        model_vertices=verts_model,
        scan_distances_mm=scan_mm,
        scan_regions=scan_regions,
        vertex_distances_mm=vert_mm,
        units=units,
        converged=False,
        confidence=confidence,
        iterations=0,
        failed=confidence < opts.min_confidence,
        message=message,
    )


def _confidence(
    scan_mm: np.ndarray, vert_mm: np.ndarray, regions: np.ndarray, p: ModelParams
) -> tuple[float, str]:
    """0..1: how much of the scan the fit explains, how much of the face the scan covers, and
    whether the shape stayed plausible. A sphere or a box fits badly on at least one count."""
    inliers = float((scan_mm <= INLIER_CM * 10).mean())
    face = regions == FACE
    coverage = float((vert_mm[face] <= COVERAGE_CM * 10).mean()) if face.any() else 0.0
    mahalanobis = float(np.sqrt(np.mean(p.shape**2))) if p.shape.size else 0.0
    s_in = np.clip((inliers - 0.4) / 0.4, 0.0, 1.0)
    s_cov = np.clip(coverage / 0.5, 0.0, 1.0)
    s_shape = np.clip((4.0 - mahalanobis) / 2.0, 0.0, 1.0)
    confidence = float(s_in * s_cov * s_shape)
    reasons = []
    if s_in < 1:
        reasons.append(f"only {inliers:.0%} of the scan lies within {INLIER_CM * 10:.0f} mm of the fit")
    if s_cov < 1:
        reasons.append(f"the scan covers {coverage:.0%} of the face")
    if s_shape < 1:
        reasons.append(f"implausible shape (RMS coefficient {mahalanobis:.1f} SD)")
    return confidence, "; ".join(reasons)


def fit_registered(
    model: HACK, vertices: np.ndarray, options: FitOptions | None = None, max_vertices: int = 5000
) -> FitResult:
    """Fast path for a mesh already in the model's topology: vertex-to-vertex.

    vertices [V, 3] in any pose, scale (units) and orientation; NaN rows are ignored."""
    opts = options or FitOptions()
    t_start = time.perf_counter()
    ev = evaluator_for(model)
    verts = np.asarray(vertices, np.float64)
    if verts.shape != (ev.num_vertices, 3):
        raise ValueError(
            f"expected vertices [{ev.num_vertices}, 3] in the model's topology, got {list(verts.shape)}"
        )
    ok = np.isfinite(verts).all(1)
    if ok.sum() < 10:
        raise ValueError("fewer than 10 finite vertices")
    units = detect_units(verts[ok]) if opts.units == "auto" else opts.units
    cm = verts * UNIT_TO_CM[units]
    neutral = ev.vertices(ModelParams.neutral(ev.S, ev.E, ev.J))
    sim = umeyama(neutral[ok], cm[ok], with_scale=False)
    rng = np.random.default_rng(opts.seed)
    use = np.nonzero(ok)[0]
    if len(use) > max_vertices:
        use = np.sort(rng.choice(use, max_vertices, replace=False))
    corners = np.repeat(np.stack([use, use, use], 1), 3, axis=0)
    rows = Rows(
        corners,
        np.tile([1.0, 0.0, 0.0], (len(corners), 1)),
        np.tile(np.eye(3), (len(use), 1)),
        np.repeat(cm[use], 3, axis=0),
        np.ones(len(corners)),
    )
    state = State.from_similarity(ModelParams.neutral(ev.S, ev.E, ev.J), sim)
    fitter = Fitter(ev, rng, sigma_cm=opts.sigma_cm)
    stages = (
        Stage("similarity", 3),
        Stage("shape+neck", 5, shape=True, pose=True),
        Stage("all", 8, shape=True, expression=True, pose=True, larynx=True),
    )
    converged, iterations, logs = False, 0, []
    for stage in stages:
        state, slog, converged = fitter.run_stage(Problem(ev, stage), state, None, None, lambda s: rows)
        logs.append(slog)
        iterations += slog.iterations
    pts = cm[ok]
    result = _finish(model, ev, state, pts, units, rng, opts)
    result.converged, result.iterations, result.stages = bool(converged), iterations, logs
    result.timings = {"total": time.perf_counter() - t_start}
    return result


__all__ = [
    "FitOptions",
    "FitResult",
    "ScanData",
    "fit_registered",
    "fit_scan",
    "evaluator_for",
    "REGION_NAMES",
]
