"""Tests of fitting partial scans: the single-view rigid search, the batched ICP, scale
recovery from face-only and frontal scans in any units, and scale_status when the size
cannot be told. Fits run on the embedded default model with small scans and fixed seeds."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.spatial import cKDTree
from scipy.spatial.transform import Rotation

from fitting import FitOptions, fit_registered, fit_scan
from fitting.alignment import (
    SINGLE_VIEW,
    Similarity,
    neck_search,
    rigid_icp,
    rigid_icp_batch,
    rotation_angle,
    view_direction,
    view_starts,
)
from fitting.confidence import PATCH_POINTS, patch_bias_mm
from fitting.evaluator import ModelParams
from fitting.fit import HEAD_EXTENT_CM, _scale_status
from fitting.geometry import MeshProximity, face_normals, sample_surface
from fitting.optimize import PROBE_STAGE, Fitter, State
from fitting.report import build_report
from fitting.search import (
    RACE_ITERATIONS,
    RACE_MARGIN,
    SAME_BASIN_DEGREES,
    distinct_states,
    probe_all,
    tilted,
)
from fitting.synthetic_scans import RecordedFrames, Scanner, make_kind_scan, make_scan


@pytest.fixture(scope="module")
def frames(shared_data) -> RecordedFrames:
    return RecordedFrames.load(shared_data / "hack-release" / "data")


def _sphere_points(rng, n=4000, cap_deg=180.0):
    """Points on a unit sphere (radius 10 cm) within cap_deg of +z."""
    v = rng.normal(size=(4 * n, 3))
    v /= np.linalg.norm(v, axis=1, keepdims=True)
    v = v[v[:, 2] >= np.cos(np.deg2rad(cap_deg))][:n]
    return 10.0 * v


def test_view_direction_tells_a_single_view_from_a_closed_surface():
    rng = np.random.default_rng(3)
    R = Rotation.random(random_state=3).as_matrix()
    cap = _sphere_points(rng, cap_deg=35.0) @ R.T
    d, strength = view_direction(cap, np.random.default_rng(0))
    assert strength >= SINGLE_VIEW
    assert abs(d @ R[:, 2]) > np.cos(np.deg2rad(5.0))  # the cap's axis, either sign
    _, closed = view_direction(_sphere_points(rng) @ R.T, np.random.default_rng(0))
    assert closed < 0.45


def test_frontal_scan_is_a_single_view_and_others_are_not(ev, frames):
    strengths = {}
    for kind in ("full", "face", "frontal"):
        scan = make_kind_scan(ev, np.random.default_rng([7, len(kind)]), kind, frames, points=20_000)
        strengths[kind] = view_direction(scan.points, np.random.default_rng(0))[1]
    assert strengths["frontal"] >= SINGLE_VIEW, strengths
    assert strengths["full"] < SINGLE_VIEW and strengths["face"] < SINGLE_VIEW, strengths


def test_rigid_icp_batch_matches_one_at_a_time():
    """With nothing trimmed the batched ICP is the same computation as rigid_icp."""
    rng = np.random.default_rng(5)
    model_points = rng.normal(size=(2000, 3)) * [8.0, 11.0, 6.0]
    tree = cKDTree(model_points)
    true = Similarity(1.0, Rotation.random(random_state=5).as_matrix(), np.array([3.0, -2.0, 1.0]))
    scan = true.apply(model_points[:300]) + rng.normal(0.0, 0.02, (300, 3))
    starts = [
        Similarity(
            1.0, Rotation.from_rotvec(rng.normal(0.0, 0.2, 3)).as_matrix() @ true.rotation, true.translation
        )
        for _ in range(4)
    ]
    R, t, score = rigid_icp_batch(
        scan,
        tree,
        model_points,
        np.array([s.rotation for s in starts]),
        np.array([s.translation for s in starts]),
        5,
        1.0,
    )
    for i, s0 in enumerate(starts):
        one, one_score = rigid_icp(scan, tree, model_points, s0, 5, 1.0)
        assert np.allclose(R[i], one.rotation, atol=1e-9)
        assert np.allclose(t[i], one.translation, atol=1e-7)
        assert score[i] == pytest.approx(one_score, rel=1e-9)


def test_view_starts_cover_the_camera_cone(ev):
    """For a face seen from within 30 degrees yaw / 20 degrees pitch of its front, with any
    roll, one start lies within 25 degrees of the true orientation."""
    neutral = ev.vertices(ModelParams.neutral(ev.S, ev.E, ev.J))
    pts, face, _ = sample_surface(neutral, ev.triangles, 3000, np.random.default_rng(0))
    normals = face_normals(neutral, ev.triangles)[face]
    rng = np.random.default_rng(11)
    for _ in range(5):
        true = Rotation.random(random_state=rng).as_matrix()
        yaw, pitch = rng.uniform(-30, 30), rng.uniform(-20, 20)
        camera = true @ Rotation.from_euler("yx", [yaw, pitch], degrees=True).apply([0.0, 0.0, 1.0])
        Rs, _ = view_starts(camera, np.zeros(3), pts, normals)
        assert min(rotation_angle(R, true) for R in Rs) < np.deg2rad(25.0)


class _Prepared:
    def __init__(self, extent_cm, units="cm", given=False):
        self.extent_cm, self.units, self.units_given = extent_cm, units, given
        self.to_cm = {"mm": 0.1, "cm": 1.0, "m": 100.0}[units]


class _Result:
    def __init__(self, failed):
        self.failed = failed


class _State:
    scale = 1.0


def test_distinct_states_skip_the_chosen_basin():
    def state(degrees, neck_x=0.0):
        params = ModelParams.neutral(3, 2, 8)
        params.neck_pose[1:4, 0] = neck_x / 3.0  # a total flexion shared by three bones
        R = Rotation.from_euler("y", degrees, degrees=True).as_matrix()
        return State(params, 1.0, R, np.zeros(3))

    chosen = state(0.0)
    near = state(0.5 * SAME_BASIN_DEGREES)  # the chosen basin, settled a little apart
    turned = state(3.0 * SAME_BASIN_DEGREES)
    near_turned = state(3.5 * SAME_BASIN_DEGREES)
    flexed = state(0.0, neck_x=0.5)  # the head in place, the neck bent
    pool = [(0.10, chosen), (0.11, near), (0.12, near_turned), (0.13, turned), (0.14, flexed)]
    assert distinct_states(pool, chosen, 2) == [near_turned, flexed]
    assert distinct_states(pool, chosen, 1) == [near_turned]
    assert distinct_states([(0.1, chosen), (0.2, near)], chosen, 2) == []


def test_scale_status_says_when_the_size_cannot_be_told():
    lo, hi = HEAD_EXTENT_CM
    assert _scale_status(_Prepared(25.0), _State(), _Result(False))[0] == "units"
    status, reason = _scale_status(_Prepared(25.0, "mm"), _State(), _Result(True))
    assert status == "cannot tell" and "doubted" in reason
    status, reason = _scale_status(_Prepared(lo / 2, "m", given=True), _State(), _Result(False))
    assert status == "cannot tell" and "given" in reason and "m" in reason
    assert _scale_status(_Prepared(2 * hi), _State(), _Result(False))[0] == "cannot tell"
    moved = _State()
    moved.scale = 1.0 / 1.03
    status, reason = _scale_status(_Prepared(25.0), moved, _Result(False))
    assert status == "fitted" and "+3.0%" in reason


def test_report_carries_the_scale_status(model, ev):
    rng = np.random.default_rng(2)
    p = ModelParams(np.clip(rng.normal(size=ev.S), -1, 1), np.zeros(ev.E), np.zeros((ev.J, 3)))
    verts = ev.vertices(p) * 10.0  # mm
    result = fit_registered(model, verts)
    report = build_report(result, model.data, "registered")
    assert report["scale_status"] == result.scale_status == "units"
    assert "mm" in report["scale_reason"]


def _surface_error_mm(scan, result, ev) -> float:
    mm = {"mm": 1.0, "cm": 10.0, "m": 1000.0}[scan.units]
    covered = np.unique(ev.triangles[scan.kept_triangles])
    fitted = MeshProximity(result.vertices, ev.triangles)
    return float(fitted.query(scan.true_vertices[covered], exact=True).distance.mean() * mm)


@pytest.mark.slow
@pytest.mark.parametrize(("kind", "units"), [("face", "m"), ("frontal", "mm")])
def test_partial_scans_recover_the_scale_in_any_units(model, ev, frames, kind, units):
    """A face-only or a frontal scan in m or mm: the fit's scale is the truth's within 2%,
    or it says it cannot tell; a fit it trusts is never more than 1 mm off."""
    rng = np.random.default_rng([2027, len(kind), len(units)])
    scan = make_kind_scan(ev, rng, kind, frames, points=30_000, units=units)
    result = fit_scan(model, scan.points)
    assert result.units == units
    if result.scale_status == "cannot tell":
        assert result.scale_reason
    else:
        assert result.scale == pytest.approx(scan.transform.scale, rel=0.02)
    if not result.failed:
        assert _surface_error_mm(scan, result, ev) < 1.0
    else:
        assert result.message and result.scale_status == "cannot tell"


@pytest.mark.slow
def test_a_sphere_is_no_head_and_its_size_is_not_claimed(model):
    import trimesh

    sphere = trimesh.creation.icosphere(3, radius=100.0)  # mm
    points, _, _ = sample_surface(sphere.vertices, sphere.faces, 20_000, np.random.default_rng(0))
    result = fit_scan(model, points, options=FitOptions(units="mm"))
    assert result.failed and result.scale_status == "cannot tell"
    assert "given" in result.scale_reason


RAISED_CHIN_SEEDS = range(8)
RAISED_CHIN_FITTED = 3  # of 8, measured 2026-12-03 (issue 12 wants all); the floor, not the goal


@pytest.mark.slow
def test_a_frontal_view_from_below_a_raised_chin_is_fitted_or_flagged(model, ev, frames):
    """The chin raised 30 degrees, one camera a little below the face: the view shows much of
    the neck, and the rigid search fits a straight model turned as a whole (the head ~20-25
    degrees off). Head flexion traded against a re-searched neck (search.HEAD_NECK_TRADES)
    often finds the truth, not always: over eight scans every fit reported as a success lies
    within 0.5 mm of the true surface, and at least RAISED_CHIN_FITTED are. (Two fixed seeds
    passed on one default head and failed on the next; over eight, both heads fit three.)"""
    fitted, false_successes = [], []
    for seed in RAISED_CHIN_SEEDS:
        rng = np.random.default_rng([2027, 5, seed])
        p = ModelParams.neutral(ev.S, ev.E, ev.J)
        p.shape = rng.normal(0.0, 0.8, ev.S)
        recorded = frames.expression[rng.integers(len(frames.expression))]
        p.expression[: min(ev.E, len(recorded))] = recorded[: ev.E]
        limits = ev.pose_limits[1:, 0]
        p.neck_pose[1:, 0] = -np.deg2rad(30.0) * limits / limits.sum()
        placement = Similarity(10.0, Rotation.random(random_state=rng).as_matrix(), rng.normal(0.0, 300.0, 3))
        scanner = Scanner("mm", placement, float(rng.uniform(-20.0, 20.0)), 10.0)
        scan = make_kind_scan(ev, rng, "frontal", frames, points=30_000, params=p, scanner=scanner)
        result = fit_scan(model, scan.points)
        if result.failed:
            continue
        error = _surface_error_mm(scan, result, ev)
        (fitted if error < 0.5 else false_successes).append((seed, round(error, 2)))
    assert not false_successes, f"reported as fitted but off the true surface (seed, mm): {false_successes}"
    assert len(fitted) >= RAISED_CHIN_FITTED, fitted


def _head_similarity(ev, scan) -> Similarity:
    """The true similarity of the head-anchored model frame -> the scan (cm scans)."""
    R, t = ev.head_transform(scan.params.neck_pose, ev.joints(scan.params))
    sim = scan.transform
    return Similarity(sim.scale, sim.rotation @ R, sim.scale * sim.rotation @ t + sim.translation)


def test_residual_structure_is_measured_on_a_sparse_scan_too():
    """A few hundred points (a small patch, a sparse cloud) still get patches full enough to
    average the noise out, so a fit lying off one side of the scan is seen, not skipped."""
    rng = np.random.default_rng(4)
    for count in (400, 2000, 20_000):
        points = np.column_stack([rng.uniform(0, 60, count), rng.uniform(0, 60, count), np.zeros(count)])
        noise = rng.normal(0.0, 0.5, count)
        clean = patch_bias_mm(points, noise, np.random.default_rng(0))
        off = patch_bias_mm(points, noise + np.where(points[:, 0] > 30, 0.6, 0.0), np.random.default_rng(0))
        assert clean < 0.2 and off > 0.4, (count, clean, off)
    assert np.isnan(patch_bias_mm(points[: 2 * PATCH_POINTS], noise[: 2 * PATCH_POINTS], rng))


def test_probe_race_stops_only_the_clearly_worse_early(ev, monkeypatch):
    """search.probe_all: every hypothesis gets the probe's first iterations, only those within
    RACE_MARGIN of the best go on; the right start wins whichever place it has."""
    rng = np.random.default_rng(5)
    truth = ModelParams.neutral(ev.S, ev.E, ev.J)
    truth.shape[:] = rng.normal(0.0, 0.5, ev.S)
    scan = make_scan(ev, rng, points=20_000, units="cm", params=truth)
    neutral = ModelParams.neutral(ev.S, ev.E, ev.J)
    right = State.from_similarity(neutral, _head_similarity(ev, scan))
    wrong = tilted(right, 1, 90.0)  # the face turned to one side
    run_stage = Fitter.run_stage
    for order in ([right, wrong], [wrong, right]):
        fitter = Fitter(ev, np.random.default_rng(0))
        stages = []

        def counting(self, problem, state, *args, _stages=stages, **kwargs):
            _stages.append(problem.stage.iterations)
            return run_stage(self, problem, state, *args, **kwargs)

        monkeypatch.setattr(Fitter, "run_stage", counting)  # the hypotheses' own fitters run them
        scored = probe_all(fitter, ev, [s.copy() for s in order], scan.points, None)
        head, tail = RACE_ITERATIONS, PROBE_STAGE.iterations - RACE_ITERATIONS
        assert stages == [head, head, tail]  # both started, one finished
        best = min(scored, key=lambda x: x[0])
        assert order[best[1]] is right
        assert best[0] < 0.12  # cm: the scan's noise and outliers, capped
        other = max(scored, key=lambda x: x[0])[0]
        assert other > RACE_MARGIN * best[0]


def test_neck_search_coarse_pass_keeps_the_exhaustive_choice(ev, frames, monkeypatch):
    """neck_search scores every hypothesis on a quarter of its points and only the best share
    on all: it picks what scoring all of them on all points picks, near the true neck."""
    import fitting.alignment as alignment

    for seed in (11, 12):
        scan = make_kind_scan(ev, np.random.default_rng(seed), "full", frames, points=20_000, units="cm")
        sim = _head_similarity(ev, scan)
        sim = Similarity(sim.scale, sim.rotation, sim.translation)
        fast = neck_search(ev, sim, scan.points, np.random.default_rng(0), top=3)
        monkeypatch.setattr(alignment, "NECK_REFINED", 1.0)
        slow = neck_search(ev, sim, scan.points, np.random.default_rng(0), top=3)
        monkeypatch.undo()
        assert [f[2] for f in fast] == pytest.approx([s[2] for s in slow])
        for f, s in zip(fast, slow):
            np.testing.assert_allclose(f[0], s[0])
        limits = ev.pose_limits[1:].sum(0)
        step = 1.8 * limits / (np.array([5, 9, 5]) - 1)  # the grid's steps
        error = np.abs(fast[0][0].sum(0) - scan.params.neck_pose.sum(0))
        assert (error <= step).all(), (error, step)


def test_workers_map_in_order_split_evenly_and_never_nest():
    """fitting.parallel.Workers: map keeps the items' order, split covers [0, n) in
    contiguous pieces (one when the pieces would be too short), and a map called from one of
    its own threads runs inline instead of waiting on the pool it runs in."""
    import threading

    from fitting.parallel import Workers

    with Workers(2) as workers:
        assert workers.map(lambda x: x * x, range(7)) == [x * x for x in range(7)]
        pieces = workers.split(9, least=2)
        assert len(pieces) == 2 and [i for s in pieces for i in range(9)[s]] == list(range(9))
        assert workers.split(3, least=2) == [slice(0, 3)]
        outer = threading.get_ident()
        inner = workers.map(lambda _: workers.map(lambda _: threading.get_ident(), range(3)), range(2))
        for ids in inner:  # each nested map ran on one thread: the worker's own, not the caller's
            assert len(set(ids)) == 1 and ids[0] != outer
    assert Workers(1).split(100) == [slice(0, 100)]


@pytest.mark.slow
def test_a_fit_is_the_same_on_any_number_of_threads(model, ev, frames):
    """A frontal view (view starts, rigid candidates raced, neck searches, head-neck trades,
    tilts) fitted on one thread and on two: the same mesh, distances and verdict, bit for bit
    (every hypothesis has a random stream of its own; queries split by points)."""
    scan = make_kind_scan(ev, np.random.default_rng([2026, 7]), "frontal", frames, points=20_000)
    one = fit_scan(model, scan.points, options=FitOptions(threads=1))
    two = fit_scan(model, scan.points, options=FitOptions(threads=2))
    np.testing.assert_array_equal(one.vertices, two.vertices)
    np.testing.assert_array_equal(one.scan_distances_mm, two.scan_distances_mm)
    np.testing.assert_array_equal(one.vertex_distances_mm, two.vertex_distances_mm)
    assert (one.confidence, one.failed, one.message) == (two.confidence, two.failed, two.message)
