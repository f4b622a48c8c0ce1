"""The global start of a fit without landmarks: rigid hypotheses, neck twists and small
tilts (and for a single view, head flexion traded against the neck), each given a short
similarity+shape+neck solve (the probe) and ranked by how well it explains the scan. The
probes of one set of hypotheses race (`probe_all`): the clearly worse stop early."""

from __future__ import annotations

import os
from dataclasses import replace

import numpy as np
from scipy.spatial.transform import Rotation

from .alignment import Alignment, initial_alignment, neck_search, rotation_angle
from .evaluator import ModelEvaluator, ModelParams
from .geometry import face_normals, sample_surface
from .optimize import PROBE_STAGE, Fitter, Problem, State
from .regions import FACE, head_weights, vertex_regions

# FIT_DEBUG=1 prints the hypothesis scores.
DEBUG = bool(os.environ.get("FIT_DEBUG"))
# Rounds of the tilt search (each continues from the previous round's winner, when that
# won by TILT_GAIN: a tilt that wins by less settled in the same basin, 0.3-0.6% lower on
# the benchmark's face views, and a further round from it only costs four probes).
TILT_ROUNDS = 3
TILT_GAIN = 0.02
# Head flexions (degrees) tried against a neck searched anew for each (see search_from),
# in 10 degree steps: a probe recovers about 10 degrees, and with 15 degree steps frontal
# views of a flexed neck (rigid starts 15-25 degrees off in pitch) stayed in the wrong basin.
# Its grid is finer in flexion than the first neck search's (9 steps: with 5, a raised
# chin was still missed) and coarser in axial turn and lateral bend: 135 hypotheses, 0.3 s.
HEAD_NECK_TRADES = (-30.0, -20.0, -10.0, 10.0, 20.0, 30.0)
TRADE_NECK_STEPS = (9, 5, 3)
# Probed states closer than this (head rotation in degrees, and each axis of the neck's
# total pose in radians) settled in one basin: fitting both again gains nothing.
SAME_BASIN_DEGREES = 5.0
SAME_BASIN_NECK = 0.1
# Probes race: each hypothesis gets the probe's first RACE_ITERATIONS, and only those then
# scoring within RACE_MARGIN of the best go on to the probe's end. On the benchmark's scans
# (107 races, 470 hypotheses) a margin of 1.5 stopped half of them early and never lost
# the final winner by more than 1.1% of its score; 1.3 lost one by 61%.
RACE_ITERATIONS = 3
RACE_MARGIN = 1.5


def search_start(
    fitter: Fitter,
    ev: ModelEvaluator,
    scan_cm: np.ndarray,
    normals: np.ndarray | None,
    rng: np.random.Generator,
    neck_hypotheses: int = 4,
    tilts: bool = True,
) -> tuple[State, list[tuple[float, State]], Alignment]:
    """The best probed start state, every probed hypothesis (score, state) and the rigid
    alignment (its trimmed distance, and the other rigid basins)."""
    neutral_params = ModelParams.neutral(ev.S, ev.E, ev.J)
    neutral = ev.vertices(neutral_params)
    model_samples, face, _ = sample_surface(neutral, ev.triangles, 5000, rng)
    head_weight = head_weights(ev.model.data)[ev.triangles[face]].mean(1)
    on_face = (vertex_regions(ev.model.data)[ev.triangles[face]] == FACE).all(1)
    # What a frontal camera sees: the head's surface facing the front (+z) within 45 degrees.
    facing = face_normals(neutral, ev.triangles)[face][:, 2] >= np.cos(np.deg2rad(45.0))
    alignment = initial_alignment(
        scan_cm,
        model_samples,
        rng,
        head=head_weight >= 0.5,
        face=on_face,
        parts=[facing & (head_weight >= 0.5)],
        model_normals=face_normals(neutral, ev.triangles)[face],
        workers=fitter.workers,
    )
    probed = None
    if alignment.single_view and alignment.others:
        # A single view: the rigid distance cannot rank its candidates (the neutral face
        # fits a shaped, expressive one nearly as well turned by tens of degrees); a probe
        # fits shape and neck first. The losers stay the other basins to try on doubt.
        candidates = [alignment.transform] + list(alignment.others)
        starts = [State.from_similarity(neutral_params, sim) for sim in candidates]
        scored = probe_all(fitter, ev, starts, scan_cm, normals)
        scored.sort(key=lambda x: (x[0], x[1]))
        if DEBUG:
            print("rigid candidates probed", [(round(x[0], 4), x[1]) for x in scored])
        probed = scored[0][2]
        alignment.transform = candidates[scored[0][1]]
        alignment.others = [candidates[i] for _, i, _ in scored[1:]]
    state, pool = search_from(
        fitter,
        ev,
        alignment.transform,
        scan_cm,
        normals,
        rng,
        neck_hypotheses,
        tilts,
        probed=probed,
        trades=alignment.single_view,
    )
    return state, pool, alignment


def search_from(
    fitter: Fitter,
    ev: ModelEvaluator,
    sim,
    scan_cm: np.ndarray,
    normals: np.ndarray | None,
    rng: np.random.Generator,
    neck_hypotheses: int = 4,
    tilts: bool = True,
    probed: State | None = None,
    trades: bool = False,
) -> tuple[State, list[tuple[float, State]]]:
    """The best probed state around one rigid start `sim` (model -> scan cm), or around an
    already `probed` state, and every probed hypothesis (score, state).

    trades: also try the head flexed by HEAD_NECK_TRADES, each with the neck searched anew
    for it. One camera below a raised chin sees much of the neck: the rigid search fits a
    straight model turned as a whole (the head 15-25 degrees off, the neck's extension
    taken by the head), and the neck search keeps that head."""
    neutral_params = ModelParams.neutral(ev.S, ev.E, ev.J)
    pool: list[tuple[float, State]] = []
    # The rigid start, then neck twist/bend hypotheses for it: each gets a short
    # similarity+shape+neck solve, which tells them apart far better than rigid scores.
    if probed is not None:
        score, state = fitter.score(probed, scan_cm), probed
        pool.append((score, state))
    else:
        start = State.from_similarity(neutral_params, sim)
        score, state = best_probe(fitter, ev, [start], scan_cm, normals, pool=pool)
    if neck_hypotheses:
        score, state = search_neck(fitter, ev, state, scan_cm, normals, rng, neck_hypotheses, True, pool)
    if trades:
        # Each trade searches its neck on a random stream of its own: they run at once.
        streams = [np.random.default_rng(int(s)) for s in rng.integers(0, 2**63, len(HEAD_NECK_TRADES))]

        def trade(k: int) -> State:
            flexed = tilted(state, 0, HEAD_NECK_TRADES[k])
            pose, sim_h, _ = neck_search(
                ev, flexed.similarity(), scan_cm, streams[k], steps=TRADE_NECK_STEPS, workers=fitter.workers
            )[0]
            return _with_neck(flexed, pose, sim_h)

        states = [state] + fitter.workers.map(trade, range(len(HEAD_NECK_TRADES)))
        score, state = best_probe(fitter, ev, states, scan_cm, normals, skip_first=True, pool=pool)
    if tilts:
        # The rigid head fit can stay ~10-30 degrees off; probe small tilts of the best,
        # and again from a tilt that won (a descent over tilts in 10 degree steps).
        for _ in range(TILT_ROUNDS):
            states = [state] + [tilted(state, axis, angle) for axis in (0, 1) for angle in (-10.0, 10.0)]
            probe = best_probe(fitter, ev, states, scan_cm, normals, skip_first=True, pool=pool)
            new_score, new_state = probe
            if new_state is state:
                break
            state, gained = new_state, new_score < (1.0 - TILT_GAIN) * score
            score = new_score
            if not gained:
                break
    return state, pool


def search_neck(
    fitter: Fitter,
    ev: ModelEvaluator,
    state: State,
    scan_cm: np.ndarray,
    normals: np.ndarray | None,
    rng: np.random.Generator,
    hypotheses: int,
    probed: bool,
    pool: list | None = None,
) -> tuple[float, State]:
    """(score, state) of the best probe among `state` and the `hypotheses` best neck poses
    `neck_search` finds for it, each keeping the head where `state` has it. probed: `state`
    is scored as it is (it was probed, or fitted), not probed again."""
    states = [state]
    for pose, sim_h, _ in neck_search(
        ev, state.similarity(), scan_cm, rng, top=hypotheses, workers=fitter.workers
    ):
        states.append(_with_neck(state, pose, sim_h))
    return best_probe(fitter, ev, states, scan_cm, normals, skip_first=probed, pool=pool)


def best_probe(
    fitter: Fitter,
    ev: ModelEvaluator,
    states: list[State],
    scan_cm: np.ndarray,
    normals,
    skip_first=False,
    pool: list | None = None,
) -> tuple[float, State]:
    """Run the probe stage from each state (the first as it is when skip_first: it was probed);
    return (score, state) of the one whose capped scan distance is lowest."""
    scored = probe_all(fitter, ev, states, scan_cm, normals, skip_first)
    if DEBUG:
        print("probe scores", [round(x[0], 4) for x in scored])
    if pool is not None:
        pool.extend((x[0], x[2]) for x in scored[1 if skip_first else 0 :])
    score, _, best = min(scored, key=lambda x: (x[0], x[1]))
    return score, best


def probe_all(
    fitter: Fitter,
    ev: ModelEvaluator,
    states: list[State],
    scan_cm: np.ndarray,
    normals,
    skip_first=False,
) -> list[tuple[float, int, State]]:
    """(score, index, probed state) for each state, in their order: a race. Every state gets
    the probe's first RACE_ITERATIONS (the first none when skip_first: it was probed); only
    those then within RACE_MARGIN of the best score go on to the probe's end (the others
    keep their short probe's state and score). Each hypothesis is solved by a fitter of its
    own (`Fitter.spawn`), on the fit's threads."""
    head = replace(PROBE_STAGE, iterations=RACE_ITERATIONS)
    tail = replace(PROBE_STAGE, iterations=PROBE_STAGE.iterations - RACE_ITERATIONS)
    fitters = fitter.spawn(len(states))

    def probe(i: int, cand: State, stage) -> tuple[float, int, State]:
        if stage is not None:
            cand, _, _ = fitters[i].run_stage(Problem(ev, stage), cand, scan_cm, normals)
        return fitters[i].score(cand, scan_cm), i, cand

    done = 0 if skip_first else -1  # the state probed already
    scored = fitter.workers.map(
        lambda i: probe(i, states[i], None if i == done else head), range(len(states))
    )
    best = min(x[0] for x in scored)
    out = fitter.workers.map(
        lambda x: x if x[1] == done or x[0] > RACE_MARGIN * best else probe(x[1], x[2], tail), scored
    )
    if DEBUG:
        print("race", [(round(a[0], 4), round(b[0], 4)) for a, b in zip(scored, out)])
    return out


def distinct_states(pool: list[tuple[float, State]], chosen: State, count: int) -> list[State]:
    """The best-scored `count` probed states of `pool` (score, state) in basins other than
    `chosen`'s and each other's (see SAME_BASIN_DEGREES)."""
    kept = [chosen]
    for _, st in sorted(pool, key=lambda x: x[0]):
        if len(kept) > count:
            break
        if not any(_same_basin(st, k) for k in kept):
            kept.append(st)
    return kept[1:]


def _same_basin(a: State, b: State) -> bool:
    neck = np.abs(a.params.neck_pose.sum(0) - b.params.neck_pose.sum(0)).max()
    return rotation_angle(a.rotation, b.rotation) < np.deg2rad(SAME_BASIN_DEGREES) and neck < SAME_BASIN_NECK


def _with_neck(state: State, neck_pose: np.ndarray, sim) -> State:
    """state's parameters with another neck pose [J, 3], at the similarity that keeps its head."""
    p = state.params.copy()
    p.neck_pose = neck_pose
    return State.from_similarity(p, sim)


def tilted(state: State, axis: int, degrees: float) -> State:
    """The state with its model turned about a model axis through the model's head bone."""
    omega = np.zeros(3)
    omega[axis] = np.deg2rad(degrees)
    R = Rotation.from_rotvec(omega).as_matrix()
    # y = s Q x + b -> the model frame turned by R: y' = R y (about the origin, near the head).
    new = state.copy()
    new.rotation = R @ state.rotation
    new.shift = R @ state.shift
    return new
