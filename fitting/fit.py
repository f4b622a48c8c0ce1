"""`fit_scan` and `fit_registered`: the public entry points of the fitting package.

A fit runs in four steps, each in its own module:
    prepare   scan_io (ScanData, mesh sampling) and alignment (units); the scan is solved
              about its own median (`_Scan.centre`), outputs are in its own frame
    start     search: rigid hypotheses (a single view's ranked by probes), neck twists,
              head flexion traded against the neck (a single view) and tilts, probed
              and ranked
    solve     optimize: staged Levenberg-Marquardt (`_run_stages`; a single view keeps the
              probe's shape and skips the similarity-only stage), retried from the next
              best hypotheses when the residual stays high
    finish    `_finish`: the mesh through HACK.forward, point-to-surface distances both
              ways and the confidence (confidence.py); a doubted fit is polished while the
              evidence improves (`_polish`), then other rigid basins are tried (a single
              view: a fresh search on another random stream); the scale's status
              (`_scale_status`: units, fitted or cannot tell)
"""

from __future__ import annotations

import dataclasses
import time
import weakref
from dataclasses import dataclass

import numpy as np
import torch

from hack_model.model import HACK

from . import confidence as conf
from .alignment import UNIT_TO_CM, Similarity, detect_units, landmark_alignment, umeyama
from .evaluator import ModelEvaluator, ModelParams
from .geometry import MeshProximity, distance_to_cloud, distance_to_mesh, face_normals
from .optimize import DEFAULT_STAGES, Correspondences, Fitter, Problem, SolveLog, Stage, State
from .parallel import SEQUENTIAL, Workers, fit_threads
from .regions import FACE, REGION_NAMES, vertex_regions
from .result import FitOptions, FitResult
from .scan_io import ScanData, mesh_to_points, valid_triangles
from .search import DEBUG, distinct_states, search_from, search_neck, search_start

_EVALUATORS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()

# A model vertex whose offset to the scan's surface runs sideways by more than this (past
# an edge of the scan, across a hole) is not covered by the scan.
COVERED_LATERAL_CM = 0.05
# A fit whose capped scan-to-model distance (Fitter.score) exceeds this is retried from the
# next best start hypotheses (a good fit of a scan with 0.5 mm noise and 5% outliers: ~0.085).
RETRY_SCORE_CM = 0.092
RETRIES = 2
# Other rigid basins searched when the evidence doubts the fit.
OTHER_BASINS = 1
# Fresh searches (another random stream) for a doubted single view.
SINGLE_VIEW_RESTARTS = 1


def evaluator_for(model: HACK, device: str | torch.device | None = None) -> ModelEvaluator:
    """The (cached) float64 evaluator of a model on device (default: the model's own device).
    The solver runs where its evaluator does, so this is the one place a fit's device is chosen."""
    device = torch.device(model.template.device if device is None else device)
    if device.type == "cuda" and device.index is None:
        device = torch.device("cuda", torch.cuda.current_device())
    per_model = _EVALUATORS.setdefault(model, {})
    ev = per_model.get(device)
    if ev is None:
        ev = per_model[device] = ModelEvaluator(model, anchor="head", device=device)
    return ev


def fit_scan(
    model: HACK,
    scan: ScanData | np.ndarray,
    landmarks: np.ndarray | None = None,
    options: FitOptions | None = None,
    *,
    start: State | None = None,
    extra_rows=None,
) -> FitResult:
    """Fit the model to a scan (points [N, 3], or a ScanData with normals or triangles) in
    any pose, scale (units) and orientation; landmarks [68, 3] (Multi-PIE order, NaN =
    missing) in the scan's coordinates are optional. A mesh scan is sampled here and its
    triangles give the report's model-to-scan distances. Raises ValueError for scans that
    cannot be fitted at all (empty, NaN, no extent); a fit that the evidence doubts comes
    back with failed=True, a low confidence and the reasons in `message`.

    start: a solver state (e.g. a neighbouring frame's `result.state`, same units) to begin
    from instead of the global search; extra_rows(state) -> Correspondences | None adds rows
    to every solve (fitting.sequence's temporal prior)."""
    opts = options or FitOptions()
    with fit_threads(opts.threads) as workers:
        return _fit_scan(model, scan, landmarks, opts, workers, start, extra_rows)


class _Scan:
    """A scan prepared for fitting: points [N, 3] and normals in cm, its units, and the
    surface the report measures to (triangles over vertices in cm, or None)."""

    def __init__(
        self, scan: ScanData | np.ndarray, opts: FitOptions, rng: np.random.Generator, centre: bool = True
    ) -> None:
        if not isinstance(scan, ScanData):
            scan = ScanData(np.asarray(scan, np.float64))
        surface = None
        if scan.has_triangles:
            v = np.asarray(scan.points, np.float64)
            if v.ndim == 2 and v.shape[1] == 3:
                tris = valid_triangles(v, scan.triangles)
                surface = (v, tris) if len(tris) else None
            scan = mesh_to_points(scan, opts.max_points, rng)
        points = np.asarray(scan.points, np.float64)
        if points.ndim != 2 or points.shape[1] != 3:
            raise ValueError(f"scan points must have shape [N, 3], got {list(points.shape)}")
        ok = np.isfinite(points).all(1)
        if ok.sum() < 100:
            raise ValueError(f"the scan has {int(ok.sum())} finite points; at least 100 are needed")
        points = points[ok]
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
        self.units, self.to_cm = units, UNIT_TO_CM[units]
        self.units_given = opts.units != "auto"
        self.points = points * self.to_cm
        lo, hi = np.percentile(self.points, [1, 99], axis=0)
        self.extent_cm = float(np.linalg.norm(hi - lo))
        # The solver turns the scan about its frame's origin, which a scanner may put a metre
        # away: rotation and translation then trade almost one for one, and a frontal view
        # stayed several degrees off. The scan is solved about its own median instead.
        self.centre = np.median(self.points, axis=0) if centre else np.zeros(3)
        self.points = self.points - self.centre
        self.normals = normals
        if float(np.ptp(self.points, axis=0).max()) < 1.0:
            raise ValueError("the scan is smaller than 1 cm across; not a head scan")
        self.surface = None if surface is None else (surface[0] * self.to_cm - self.centre, surface[1])


def _fit_scan(
    model: HACK,
    scan: ScanData | np.ndarray,
    landmarks: np.ndarray | None,
    opts: FitOptions,
    workers: Workers,
    start: State | None = None,
    extra_rows=None,
) -> FitResult:
    t_start, c_start = time.perf_counter(), time.process_time()
    timings: dict[str, float] = {}
    rng = np.random.default_rng(opts.seed)
    # Rows from a caller (extra_rows) are in the scan's own frame: keep it then.
    prepared = _Scan(scan, opts, rng, centre=extra_rows is None)
    scan_cm, normals = prepared.points, prepared.normals
    timings["load"] = time.perf_counter() - t_start

    ev = evaluator_for(model, opts.device)
    fitter = Fitter(ev, rng, sigma_cm=opts.sigma_cm, workers=workers)
    t0 = time.perf_counter()
    extra, pool, alignment = None, [], None
    searched = start is None and landmarks is None  # the global search ran: retries may help
    if start is not None:
        state = _recentred(start, prepared.centre)
    elif landmarks is not None:
        lm_cm = _landmarks_cm(model, landmarks, prepared.to_cm) - prepared.centre
        neutral = ev.vertices(ModelParams.neutral(ev.S, ev.E, ev.J))
        # Rotation and translation from the landmarks; the units fix the scale.
        sim = landmark_alignment(lm_cm, neutral[model.data.landmark_indices], with_scale=False)
        state = State.from_similarity(ModelParams.neutral(ev.S, ev.E, ev.J), sim)
        extra = _landmark_rows(model.data.landmark_indices, lm_cm, opts.landmark_weight)
    else:
        state, pool, alignment = search_start(
            fitter, ev, scan_cm, normals, rng, opts.neck_hypotheses, opts.tilt_hypotheses
        )
    if extra_rows is not None:
        extra = extra_rows if extra is None else _joined(extra, extra_rows)
    timings["align"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    single_view = alignment is not None and alignment.single_view
    best = _Attempt.run(fitter, ev, opts, state, prepared, extra, searched, single_view)
    iterations = best.log.iterations
    if best.score > RETRY_SCORE_CM:
        # A poor residual: fit from other starts too and keep the fit that explains the scan
        # best. After the global search the probe may have picked the wrong basin: the next
        # best hypotheses in other basins. Landmarks place the head, not the neck (from a
        # neutral neck under a head turned and bent far, a fit settled with the shoulders
        # twisted away, 2 cm off, left as outliers): the neck pose probed best for the fitted
        # head, when it explains the scan better than the fit.
        starts: list[State] = []
        if searched:
            starts = distinct_states(pool, state, RETRIES)
        elif landmarks is not None and opts.neck_hypotheses:
            neck = opts.neck_hypotheses
            _, alt = search_neck(fitter, ev, best.state, scan_cm, normals, rng, neck, probed=True)
            starts = [] if alt is best.state else [alt]
        for alt in starts:
            attempt = _Attempt.run(fitter, ev, opts, alt.copy(), prepared, extra, searched, single_view)
            iterations += attempt.log.iterations
            if attempt.score < best.score:
                best = attempt
            if best.score <= RETRY_SCORE_CM:
                break
    timings["optimize"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    result = _finish(model, ev, best.state, prepared, rng, opts, workers)
    timings["report"] = time.perf_counter() - t0
    explained = result.evidence.get("explained", 0.0) >= conf.EXPLAINED[0]
    if opts.polish_doubted and POLISH_FROM < result.confidence < 1.0 and explained:
        # The scan is explained but not yet closely (residual structure): a partial view
        # constrains the surface's sliding weakly and the solve is still creeping (each
        # further iteration still gains). Polish while that lowers the doubt.
        t0 = time.perf_counter()
        best, result, more = _polish(model, ev, fitter, opts, best, result, prepared, extra, rng)
        iterations += more
        timings["polish"] = time.perf_counter() - t0
    if searched and result.failed and alignment is not None and alignment.others and not single_view:
        # Doubted: the rigid search may have picked the wrong basin. Search from the next
        # rigid basins too and keep the fit the evidence trusts most. (A single view's
        # basins were ranked by probes already; searching the next one again rescued none
        # of the benchmark's doubted frontal views and doubled their time.)
        t0 = time.perf_counter()
        for sim in alignment.others[:OTHER_BASINS]:
            alt, _ = search_from(
                fitter, ev, sim, scan_cm, normals, rng, opts.neck_hypotheses, opts.tilt_hypotheses
            )
            best, result, more = _kept(
                model, ev, fitter, opts, alt, prepared, extra, rng, single_view, best, result
            )
            iterations += more
            if not result.failed:
                break
        timings["retry"] = time.perf_counter() - t0
    if searched and result.failed and single_view and SINGLE_VIEW_RESTARTS:
        # A single view's search follows one path through many close hypotheses (which
        # probe wins decides where the next ones start), and a wrong turn early ends in
        # another basin. A fresh search on another random sample takes another path.
        t0 = time.perf_counter()
        for restart in range(1, SINGLE_VIEW_RESTARTS + 1):
            fresh = np.random.default_rng([opts.seed, restart])
            again = Fitter(ev, fresh, sigma_cm=opts.sigma_cm, workers=workers)
            alt, _, _ = search_start(
                again, ev, scan_cm, normals, fresh, opts.neck_hypotheses, opts.tilt_hypotheses
            )
            best, result, more = _kept(
                model, ev, again, opts, alt, prepared, extra, fresh, single_view, best, result
            )
            iterations += more
            if not result.failed:
                break
        timings["restart"] = time.perf_counter() - t0
    result.converged = bool(best.converged)
    result.iterations = iterations
    result.stages = best.log.stages
    result.state = _recentred(best.state, -prepared.centre)  # in the scan's own frame (cm)
    result.scale_status, result.scale_reason = _scale_status(prepared, best.state, result)
    timings["total"] = time.perf_counter() - t_start
    timings["cpu"] = time.process_time() - c_start
    result.timings = timings
    if alignment is not None and alignment.score > 2.0:
        note = f"poor initial alignment (trimmed distance {alignment.score * 10:.1f} mm)"
        result.message = f"{result.message}; {note}" if result.message else note
    return result


def _kept(model, ev, fitter, opts, start, scan, extra, rng, single_view, best, result):
    """(attempt, result, iterations): the stages and report from another searched `start`
    of a single view or another basin, kept over (best, result) when the evidence trusts it
    more (or equally, with a lower capped scan distance)."""
    attempt = _Attempt.run(fitter, ev, opts, start, scan, extra, True, single_view)
    other = _finish(model, ev, attempt.state, scan, rng, opts, fitter.workers)
    if DEBUG:
        print("alternative", round(attempt.score, 4), round(other.confidence, 3))
    if (other.confidence, -attempt.score) > (result.confidence, -best.score):
        return attempt, other, attempt.log.iterations
    return best, result, attempt.log.iterations


# The robust extent (cm) of anything a head scan shows, from a face seen by one camera to a
# whole head with shoulders; outside it the units are doubtful whatever the fit says.
HEAD_EXTENT_CM = (8.0, 90.0)


@dataclass
class Solved:
    """What `solve_from` returns: the solver's state (scan cm, the scan's own frame), the
    stages' log and whether the last stage settled."""

    state: State
    log: SolveLog
    converged: bool

    @property
    def median_mm(self) -> float:
        """The last stage's median scan-to-model distance (mm, model scale)."""
        return 10.0 * self.log.stages[-1].median_cm if self.log.stages else float("inf")


def solve_from(
    model: HACK, scan: ScanData | np.ndarray, start: State, options: FitOptions, extra_rows=None
) -> Solved:
    """The stages of `options` from a solver state, without the global search and without the
    report (distances both ways, confidence): fitting.sequence's tracking step, where the next
    frame needs only the state. `fit_scan(..., start=...)` is the same with the report."""
    opts = options
    with fit_threads(opts.threads) as workers:
        rng = np.random.default_rng(opts.seed)
        prepared = _Scan(scan, opts, rng, centre=False)
        ev = evaluator_for(model, opts.device)
        fitter = Fitter(ev, rng, sigma_cm=opts.sigma_cm, workers=workers)
        state, log, converged = _run_stages(
            fitter, ev, opts.stages, start.copy(), prepared.points, prepared.normals, extra_rows
        )
    return Solved(state, log, converged)


def _scale_status(scan: _Scan, state: State, result: FitResult) -> tuple[str, str]:
    """(scale_status, scale_reason) of a finished fit; see FitResult.scale_status."""
    source = "given" if scan.units_given else "detected"
    lo, hi = HEAD_EXTENT_CM
    if not lo <= scan.extent_cm <= hi:
        return "cannot tell", (
            f"the scan spans {scan.extent_cm / scan.to_cm:.3g} {scan.units} ({source} units), "
            f"{scan.extent_cm:.1f} cm: no head part is that size, so the units are doubtful"
        )
    if result.failed:
        return "cannot tell", (
            f"the fit is doubted, so the size from the {source} units ({scan.units}) is not "
            "confirmed: a scan in other units (inches, a scaled export) fits no head"
        )
    if abs(state.scale - 1.0) > 1e-9:
        return "fitted", f"fitted: {1.0 / state.scale - 1.0:+.1%} from the {source} units ({scan.units})"
    return "units", (
        f"from the {source} units ({scan.units}); the model fits the scan at that size "
        "(heads differ in size through the shape)"
    )


# Polishing a doubted fit: all parameter groups on a fresh sample each iteration, then a
# fixed sample to settle; at most POLISH_ROUNDS rounds, each kept only if the evidence improves.
POLISH_STAGES = (
    dataclasses.replace(DEFAULT_STAGES[-1], name="polish", resample=True),
    dataclasses.replace(DEFAULT_STAGES[-1], name="polish settle", iterations=5),
)
POLISH_ROUNDS = 2
# A fit with no confidence at all is in another basin, not creeping: polishing does not help.
POLISH_FROM = 0.05


def _polish(model, ev, fitter, opts, best, result, scan, extra, rng):
    """(attempt, result, iterations): `best` polished by POLISH_STAGES while that raises the
    confidence (or, at equal confidence, lowers the capped scan distance)."""
    iterations = 0
    for _ in range(POLISH_ROUNDS):
        state, log, converged = _run_stages(
            fitter, ev, POLISH_STAGES, best.state.copy(), scan.points, scan.normals, extra
        )
        iterations += log.iterations
        score = fitter.score(state, scan.points)
        polished = _finish(model, ev, state, scan, rng, opts, fitter.workers)
        if DEBUG:
            print("polish", round(score, 4), round(polished.confidence, 3))
        if (polished.confidence, -score) <= (result.confidence, -best.score):
            break
        log.stages = best.log.stages + log.stages
        log.iterations += best.log.iterations
        best, result = _Attempt(state, log, converged, score), polished
        if result.confidence >= 1.0:
            break
    return best, result, iterations


def _recentred(state: State, centre: np.ndarray) -> State:
    """The state for scan points moved by -centre (y = s R (x - c) + shift')."""
    out = state.copy()
    out.shift = state.shift + state.scale * state.rotation @ centre
    return out


class _Attempt:
    """One run of the stages from a start state: the state, its log, whether the last
    stage converged and its capped scan distance (Fitter.score, cm)."""

    def __init__(self, state: State, log: SolveLog, converged: bool, score: float) -> None:
        self.state, self.log, self.converged, self.score = state, log, converged, score

    @classmethod
    def run(
        cls,
        fitter,
        ev,
        opts: FitOptions,
        state: State,
        scan: _Scan,
        extra,
        reset_shape: bool,
        single_view: bool = False,
    ) -> _Attempt:
        stages = opts.stages
        if single_view:
            # One camera's view: the mean shape fits a face best turned by several degrees
            # (5-6 on the benchmark's frontal views), and a similarity-only stage from the
            # mean shape drags the probe's pose there; the later stages never quite undo it.
            # The probe solved shape and pose together: keep both and skip that stage.
            stages = tuple(st for st in stages if st.shape or st.expression or st.pose or st.larynx)
        elif opts.reset_after_probe and reset_shape:
            # Keep the probe's similarity and neck; its quick shape may have absorbed some
            # misalignment (shape modes can tilt a face), so the stages start from the mean.
            state.params.shape = np.zeros_like(state.params.shape)
        state, log, converged = _run_stages(fitter, ev, stages, state, scan.points, scan.normals, extra)
        score = fitter.score(state, scan.points)
        if DEBUG:
            print("fit score", round(score, 4))
        return cls(state, log, converged, score)


def _joined(first, second):
    """Two extra-row callbacks (state -> Correspondences | None) as one."""

    def rows(state):
        parts = [r for r in (first(state), second(state)) if r is not None]
        return Correspondences.concat(parts) if parts else None

    return rows


def _landmarks_cm(model: HACK, landmarks: np.ndarray, to_cm: float) -> np.ndarray:
    lm = np.asarray(landmarks, np.float64).reshape(-1, 3)
    indices = model.data.landmark_indices
    if indices is None:
        raise ValueError("this model has no landmark vertices; fit without --landmarks")
    if len(lm) != len(indices):
        raise ValueError(f"expected {len(indices)} landmarks, got {len(lm)}")
    return lm * to_cm


def _run_stages(fitter, ev, stages, state, scan_cm, normals, extra) -> tuple[State, SolveLog, bool]:
    """All stages in turn; converged is the last stage's."""
    log = SolveLog()
    converged = False
    for stage in stages:
        state, slog, converged = fitter.run_stage(Problem(ev, stage), state, scan_cm, normals, extra)
        log.stages.append(slog)
        log.iterations += slog.iterations
    return state, log, converged


def _landmark_rows(indices: np.ndarray, lm_cm: np.ndarray, weight: float):
    """Point-to-point landmark rows (three axis-aligned point-to-plane rows each)."""
    ok = np.isfinite(lm_cm).all(1)
    idx = np.asarray(indices)[ok]
    pts = lm_cm[ok]
    n = len(idx)
    corners = np.repeat(np.stack([idx, idx, idx], 1), 3, axis=0)
    bary = np.tile([1.0, 0.0, 0.0], (3 * n, 1))
    normals = np.tile(np.eye(3), (n, 1))
    rows = Correspondences(corners, bary, normals, np.repeat(pts, 3, axis=0), np.full(3 * n, weight))
    return lambda state: rows


def _model_mesh(model: HACK, p: ModelParams) -> np.ndarray:
    """[V, 3] float64: the mesh HACK.forward gives (what the saved parameters reproduce)."""
    with torch.no_grad():
        args = {
            k: torch.as_tensor(v, dtype=model.template.dtype, device=model.template.device)
            for k, v in p.forward_arguments().items()
        }
        return model(**args).vertices[0].double().cpu().numpy()


def _finish(
    model: HACK,
    ev: ModelEvaluator,
    state: State,
    scan: _Scan,
    rng: np.random.Generator,
    opts: FitOptions,
    workers: Workers = SEQUENTIAL,
) -> FitResult:
    """Final mesh through HACK.forward, distances both ways, confidence."""
    p = state.params
    verts_model = _model_mesh(model, p)
    sim_cm = state.similarity()  # head-anchored model -> scan (cm)
    # The model's own mesh is R_h v' + t_h of the head-anchored one: undo that.
    R_h, t_h = ev.head_transform(p.neck_pose, ev.joints(p))
    U, _, Vt = np.linalg.svd(sim_cm.rotation @ R_h.T)  # orthonormal to float64 precision
    sim_cm = Similarity(
        sim_cm.scale,
        U @ Vt,
        sim_cm.translation - sim_cm.scale * sim_cm.rotation @ R_h.T @ t_h,
    )
    to_units = 1.0 / scan.to_cm
    scale = sim_cm.scale * to_units
    translation = (sim_cm.translation + scan.centre) * to_units
    vertices = scale * verts_model @ sim_cm.rotation.T + translation
    verts_cm = sim_cm.apply(verts_model)
    triangles = ev.triangles

    # scan -> model: exact point-to-triangle distances in the model's frame, then to mm.
    scan_cm = scan.points
    pick = rng.choice(len(scan_cm), min(opts.report_points, len(scan_cm)), replace=False)
    y = sim_cm.inverse_apply(scan_cm[pick])
    closest = MeshProximity(verts_model, triangles).query(y, exact=True, workers=workers)
    regions = vertex_regions(model.data)
    tri = triangles[closest.triangle]
    scan_regions = regions[tri[np.arange(len(tri)), closest.bary.argmax(1)]]
    to_mm = 10.0 * sim_cm.scale
    scan_mm = closest.distance * to_mm
    signed_mm = np.einsum("nc,nc->n", y - closest.point, face_normals(verts_model, tri)) * to_mm
    # model -> scan: to the scan's triangles, or local planes through a cloud's points.
    if scan.surface is not None:
        back = distance_to_mesh(verts_cm, scan.surface[0], scan.surface[1], COVERED_LATERAL_CM, workers)
    else:
        back = distance_to_cloud(verts_cm, scan_cm, COVERED_LATERAL_CM)
    vert_mm = back.distance * 10.0
    covered = back.covered & (vert_mm <= 10.0 * conf.INLIER_MM)

    inlier = scan_mm <= conf.INLIER_MM
    noise = conf.scan_noise_mm(scan_cm[pick] * 10.0, np.random.default_rng(1))
    residual = 1.4826 * float(np.median(np.abs(signed_mm[inlier]))) if inlier.any() else float("inf")
    face = regions == FACE
    evidence = conf.Evidence(
        bias_mm=conf.patch_bias_mm(y[inlier], signed_mm[inlier], np.random.default_rng(2)),
        excess_mm=float(np.sqrt(max(residual**2 - noise**2, 0.0))) if np.isfinite(noise) else residual,
        noise_mm=noise,
        explained=float(inlier.mean()),
        face_coverage=float(covered[face].mean()) if face.any() else 0.0,
        scale_offset=float(1.0 / state.scale - 1.0),
        shape_rms=float(np.sqrt(np.mean(p.shape**2))) if p.shape.size else 0.0,
    )
    confidence, reasons = conf.judge(evidence)
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
        vertex_covered=covered,
        scan_sample=(scan_cm[pick] + scan.centre) / scan.to_cm,
        units=scan.units,
        converged=False,
        confidence=confidence,
        iterations=0,
        evidence=evidence.as_dict(),
        failed=confidence < opts.min_confidence,
        message="; ".join(reasons),
    )


def fit_registered(
    model: HACK, vertices: np.ndarray, options: FitOptions | None = None, max_vertices: int = 5000
) -> FitResult:
    """Fast path for a mesh already in the model's topology: vertex-to-vertex.

    vertices [V, 3] in any pose, scale (units) and orientation; NaN rows are ignored."""
    opts = options or FitOptions()
    t_start = time.perf_counter()
    ev = evaluator_for(model, opts.device)
    verts = np.asarray(vertices, np.float64)
    if verts.shape != (ev.num_vertices, 3):
        raise ValueError(
            f"expected vertices [{ev.num_vertices}, 3] in the model's topology, got {list(verts.shape)}"
        )
    ok = np.isfinite(verts).all(1)
    if ok.sum() < 10:
        raise ValueError("fewer than 10 finite vertices")
    tris = ev.triangles[ok[ev.triangles].all(1)]
    scan = ScanData(np.where(ok[:, None], verts, 0.0), None, tris if len(tris) else None)
    rng = np.random.default_rng(opts.seed)
    prepared = _Scan(ScanData(verts[ok]), opts, rng, centre=False)
    if len(tris):
        prepared.surface = (scan.points * prepared.to_cm, tris)
    cm = verts * prepared.to_cm
    neutral = ev.vertices(ModelParams.neutral(ev.S, ev.E, ev.J))
    sim = umeyama(neutral[ok], cm[ok], with_scale=False)
    use = np.nonzero(ok)[0]
    if len(use) > max_vertices:
        use = np.sort(rng.choice(use, max_vertices, replace=False))
    corners = np.repeat(np.stack([use, use, use], 1), 3, axis=0)
    rows = Correspondences(
        corners,
        np.tile([1.0, 0.0, 0.0], (len(corners), 1)),
        np.tile(np.eye(3), (len(use), 1)),
        np.repeat(cm[use], 3, axis=0),
        np.ones(len(corners)),
    )
    state = State.from_similarity(ModelParams.neutral(ev.S, ev.E, ev.J), sim)
    stages = (
        Stage("similarity", 3),
        Stage("shape+neck", 5, shape=True, pose=True),
        Stage("all", 8, shape=True, expression=True, pose=True, larynx=True),
    )
    with fit_threads(opts.threads) as workers:
        fitter = Fitter(ev, rng, sigma_cm=opts.sigma_cm, workers=workers)
        state, log, converged = _run_stages(fitter, ev, stages, state, None, None, lambda s: rows)
        result = _finish(model, ev, state, prepared, rng, opts, workers)
    result.converged, result.iterations, result.stages = bool(converged), log.iterations, log.stages
    result.scale_status, result.scale_reason = _scale_status(prepared, state, result)
    result.timings = {"total": time.perf_counter() - t_start}
    return result


__all__ = [
    "FitOptions",
    "FitResult",
    "ScanData",  # lives in scan_io; importable from here as before
    "fit_registered",
    "fit_scan",
    "evaluator_for",
    "REGION_NAMES",
]
