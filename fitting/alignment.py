"""Units and the initial similarity transform, without landmarks, from any orientation.

The scan is brought to centimetres (units from its extent), then rotated onto the model by
a multi-hypothesis search: the 24 proper rotations that map the scan's principal axes onto
the model's (every axis permutation and sign), each refined by a few iterations of trimmed
rigid ICP on subsampled points and scored by a trimmed Chamfer distance. Landmarks, when
given, replace the search by a Umeyama fit to the model's landmark vertices.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np
from scipy.spatial import cKDTree

from hack_model.core.numpy_math import axis_angle_to_matrix

from .parallel import SEQUENTIAL, Workers

UNIT_TO_CM = {"mm": 0.1, "cm": 1.0, "m": 100.0}
# A scan whose local normals have this share of their scatter along one direction (about
# 1/3 for a closed head, ~0.4 for a face cut out of one, ~0.8 for one camera's view) is a
# single view.
SINGLE_VIEW = 0.6
# View starts that go on to the coarse ICP, and distinct rigid candidates a single view's
# probes rank (a probe costs ~0.15 s; with 5 the benchmark's frontal views often had none
# within the probe's ~10 degree basin).
VIEW_SURVIVORS = 48
VIEW_CANDIDATES = 12
# The share of neck_search's hypotheses scored again on all its points.
NECK_REFINED = 0.2
# Rigid ICP starts per thread, at least.
ICP_PIECE = 4


def detect_units(points: np.ndarray) -> str:
    """'mm', 'cm' or 'm' from the robust extent of points [N, 3] (a head and neck spans
    about 15-60 cm: 150-600 in mm, 0.15-0.6 in m)."""
    lo, hi = np.percentile(points, [1, 99], axis=0)
    extent = float(np.linalg.norm(hi - lo))
    if not np.isfinite(extent) or extent <= 0:
        raise ValueError("the scan has no extent; cannot detect its units")
    if extent < 0.03 or extent > 60_000:  # under 3 cm in metres, over 60 m in mm
        raise ValueError(
            f"the scan spans {extent:.3g} units across; that is no head in mm, cm or m "
            f"(in km? in inches?): convert it or pass --units"
        )
    if extent < 3.0:
        return "m"
    if extent < 150.0:
        return "cm"
    return "mm"


@dataclass
class Similarity:
    """x_scan = scale * rotation @ x_model + translation; the inverse maps the scan to the model."""

    scale: float
    rotation: np.ndarray  # [3, 3]
    translation: np.ndarray  # [3]

    def apply(self, points: np.ndarray) -> np.ndarray:
        """model space [N, 3] -> scan space."""
        return self.scale * points @ self.rotation.T + self.translation

    def inverse_apply(self, points: np.ndarray) -> np.ndarray:
        """scan space [N, 3] -> model space."""
        return ((points - self.translation) @ self.rotation) / self.scale


def umeyama(source: np.ndarray, target: np.ndarray, with_scale: bool = True) -> Similarity:
    """Least-squares similarity taking source [N, 3] onto target [N, 3] (Umeyama 1991)."""
    mu_s, mu_t = source.mean(0), target.mean(0)
    s, t = source - mu_s, target - mu_t
    cov = t.T @ s / len(source)
    U, D, Vt = np.linalg.svd(cov)
    sign = np.ones(3)
    if np.linalg.det(U) * np.linalg.det(Vt) < 0:
        sign[2] = -1.0
    R = U @ np.diag(sign) @ Vt
    var = (s**2).sum() / len(source)
    scale = float((D * sign).sum() / var) if with_scale and var > 0 else 1.0
    return Similarity(scale, R, mu_t - scale * R @ mu_s)


def _principal_axes(points: np.ndarray) -> np.ndarray:
    centred = points - points.mean(0)
    _, vecs = np.linalg.eigh(centred.T @ centred)
    return vecs[:, ::-1]  # columns: largest variance first


def _axis_rotations() -> list[np.ndarray]:
    """The 24 signed permutation matrices with determinant +1."""
    out = []
    for perm in itertools.permutations(range(3)):
        for signs in itertools.product((1.0, -1.0), repeat=3):
            P = np.zeros((3, 3))
            P[range(3), perm] = signs
            if np.linalg.det(P) > 0:
                out.append(P)
    return out


def rotation_angle(R1: np.ndarray, R2: np.ndarray) -> float:
    """The angle (radians) of the rotation taking R1 [3, 3] to R2 [3, 3]."""
    return float(np.arccos(np.clip((np.trace(R1.T @ R2) - 1.0) / 2.0, -1.0, 1.0)))


def _trimmed_mean(d: np.ndarray, keep: float) -> float:
    k = max(1, int(len(d) * keep))
    return float(np.partition(d, k - 1)[:k].mean())


@dataclass
class Alignment:
    transform: Similarity  # model -> scan (scan already in cm)
    score: float  # trimmed scan-to-model distance, cm
    hypotheses: int
    others: list  # the next best distinct transforms (other basins to try when a fit is doubted)
    single_view: bool = False  # the scan faces one way (one camera): `others` are candidates to probe


def rigid_icp(
    scan: np.ndarray, tree: cKDTree, model_points: np.ndarray, start: Similarity, iterations: int, keep: float
) -> tuple[Similarity, float]:
    """Trimmed point-to-point ICP of scan points (cm) onto model points, rotation and translation
    only (the units fix the scale). Returns the model->scan transform and its score."""
    inv = start
    for _ in range(iterations):
        moved = inv.inverse_apply(scan)
        d, j = tree.query(moved, k=1)
        cut = np.quantile(d, keep)
        sel = d <= cut
        # Solve for the transform taking model points onto their scan partners.
        inv = umeyama(model_points[j[sel]], scan[sel], with_scale=False)
    d, _ = tree.query(inv.inverse_apply(scan), k=1)
    return inv, _trimmed_mean(d, keep)


def view_direction(
    points: np.ndarray, rng: np.random.Generator, sample: int = 500, k: int = 16
) -> tuple[np.ndarray, float]:
    """The direction a single-view scan was taken from, up to its sign, and how strongly the
    scan's surface faces it: the main axis d of the scatter of local surface normals (planes
    through each point's k nearest neighbours) and its share of that scatter, the mean of
    (n . d)^2: about 1/3 for a closed surface, near 1 when every normal faces one way."""
    pts = points[rng.choice(len(points), min(6000, len(points)), replace=False)]
    if len(pts) < 4 * k:
        return np.array([0.0, 0.0, 1.0]), 0.0
    query = pts[: min(sample, len(pts))]
    _, idx = cKDTree(pts).query(query, k=k)
    nb = pts[idx] - pts[idx].mean(1, keepdims=True)
    _, vecs = np.linalg.eigh(np.einsum("nki,nkj->nij", nb, nb))
    normals = vecs[:, :, 0]
    vals, axes = np.linalg.eigh(normals.T @ normals / len(normals))
    return axes[:, -1], float(vals[-1])


def _about(axis: int, degrees: float) -> np.ndarray:
    omega = np.zeros(3)
    omega[axis] = np.deg2rad(degrees)
    return axis_angle_to_matrix(omega)


def view_starts(
    direction: np.ndarray,
    scan_centre: np.ndarray,
    model_points: np.ndarray,
    model_normals: np.ndarray,
    forward: tuple[float, float, float] = (0.0, 0.0, 1.0),
    yaws: tuple[float, ...] = (-40.0, -20.0, 0.0, 20.0, 40.0),
    pitches: tuple[float, ...] = (-30.0, 0.0, 30.0),
    rolls: int = 12,
    facing_deg: float = 45.0,
) -> tuple[np.ndarray, np.ndarray]:
    """Rigid starts (rotations [H, 3, 3], translations [H, 3], model -> scan) for a scan seen
    from `direction` (either sign): the model's face (`forward`) turned towards the camera
    within a grid of yaws and pitches, every roll about the view axis, and the centre of the
    model surface that faces that camera (normals within facing_deg) put on the scan's centre."""
    rotations, translations = [], []
    forward = np.asarray(forward, np.float64) / np.linalg.norm(forward)
    cos_facing = np.cos(np.deg2rad(facing_deg))
    for sign in (1.0, -1.0):
        d = sign * direction / np.linalg.norm(direction)
        base = _rotation_between(forward, d)
        for yaw in yaws:
            for pitch in pitches:
                tilt = _about(1, yaw) @ _about(0, pitch)
                seen = model_normals @ (tilt @ forward) >= cos_facing
                centre = model_points[seen].mean(0) if seen.sum() >= 20 else model_points.mean(0)
                for r in range(rolls):
                    R = base @ _about(2, 360.0 * r / rolls) @ tilt.T
                    rotations.append(R)
                    translations.append(scan_centre - R @ centre)
    return np.array(rotations), np.array(translations)


def _rotation_between(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """A rotation taking unit vector a onto unit vector b."""
    v = np.cross(a, b)
    c = float(a @ b)
    if np.linalg.norm(v) < 1e-9:
        if c > 0:
            return np.eye(3)
        perp = np.cross(a, [1.0, 0.0, 0.0] if abs(a[0]) < 0.9 else [0.0, 1.0, 0.0])
        return axis_angle_to_matrix(np.pi * perp / np.linalg.norm(perp))
    return axis_angle_to_matrix(v / np.linalg.norm(v) * np.arctan2(np.linalg.norm(v), c))


def rigid_icp_batch(
    scan: np.ndarray,
    tree: cKDTree,
    model_points: np.ndarray,
    rotations: np.ndarray,
    translations: np.ndarray,
    iterations: int,
    keep: float,
    workers: Workers = SEQUENTIAL,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """rigid_icp for many starts at once (rotations [H, 3, 3], translations [H, 3], model ->
    scan): one k-d tree query and one batched Umeyama step per iteration, the starts split
    among the workers' threads (each start's result is its own). Returns the rotations,
    translations and trimmed scores [H] (cm)."""
    pieces = workers.split(len(rotations), least=ICP_PIECE)
    parts = workers.map(
        lambda s: _rigid_icp_starts(
            scan, tree, model_points, rotations[s], translations[s], iterations, keep
        ),
        pieces,
    )
    return tuple(np.concatenate([p[k] for p in parts]) for k in range(3))


def _rigid_icp_starts(scan, tree, model_points, rotations, translations, iterations: int, keep: float):
    """`rigid_icp_batch` of some starts on this thread."""
    R, t = rotations.copy(), translations.copy()
    H, n = len(R), len(scan)
    k = max(1, int(n * keep))
    for it in range(iterations + 1):
        moved = np.einsum("hji,hnj->hni", R, scan[None] - t[:, None])  # R^T (x - t)
        d, j = tree.query(moved.reshape(-1, 3), k=1)
        d, j = d.reshape(H, n), j.reshape(H, n)
        order = np.argpartition(d, k - 1, axis=1)[:, :k]
        if it == iterations:
            return R, t, np.take_along_axis(d, order, 1).mean(1)
        src = model_points[np.take_along_axis(j, order, 1)]  # [H, k, 3]
        dst = scan[order]
        mu_s, mu_t = src.mean(1), dst.mean(1)
        cov = np.einsum("hni,hnj->hij", dst - mu_t[:, None], src - mu_s[:, None])
        U, _, Vt = np.linalg.svd(cov)
        sign = np.sign(np.linalg.det(U @ Vt))
        U[:, :, 2] *= sign[:, None]
        R = U @ Vt
        t = mu_t - np.einsum("hij,hj->hi", R, mu_s)
    raise AssertionError("unreachable")


def initial_alignment(
    scan_cm: np.ndarray,
    model_points: np.ndarray,
    rng: np.random.Generator,
    sample: int = 1500,
    iterations: int = 12,
    keep: float = 0.8,
    head: np.ndarray | None = None,
    face: np.ndarray | None = None,
    parts: list[np.ndarray] | None = None,
    coarse_sample: int = 400,
    coarse_iterations: int = 8,
    survivors: int = 6,
    model_normals: np.ndarray | None = None,
    workers: Workers = SEQUENTIAL,
) -> Alignment:
    """Model -> scan similarity (scale 1: the scan is in cm) from any starting orientation.

    scan_cm [N, 3]; model_points [M, 3] samples of the neutral model surface; face [M] bool
    marks the samples on the face (a second set of PCA hypotheses for face-only scans), and
    each mask of `parts` another part a partial scan may show alone;
    head [M] bool marks the samples on the head: the best hypothesis is refined on those alone, because a
    bent neck makes the whole-model fit a compromise that tilts the head.
    model_normals [M, 3]: the samples' normals; with them a scan that faces one way (a single
    view, `view_direction`) also gets `view_starts`: the principal axes of a partial view
    do not follow the head's, the direction it was seen from does.

    Coarse to fine: every start is first run on `coarse_sample` points for
    `coarse_iterations` (a very large set of starts first on a few points for a few
    iterations); only the best `survivors` distinct ones go on with `sample` points.
    A single view matches the neutral model in more than one orientation about as well
    (a trimmed distance cannot tell them apart until the shape and expression are fitted),
    so its Alignment lists the best distinct candidates for the probes to rank.
    """
    pts = scan_cm[rng.choice(len(scan_cm), size=min(sample, len(scan_cm)), replace=False)]
    few = pts[: min(coarse_sample, len(pts))]  # pts is a random sample: its head is one too
    tree = cKDTree(model_points)
    E_scan, c_scan = _principal_axes(pts), pts.mean(0)
    # Whole scans match the whole model's principal frame, face-only scans the face's.
    frames = [(_principal_axes(model_points), model_points.mean(0))]
    for part in ([face] if face is not None else []) + list(parts or []):
        if part.sum() >= 100:
            frames.append((_principal_axes(model_points[part]), model_points[part].mean(0)))
    rotations = [E_scan @ P @ E_model.T for E_model, _ in frames for P in _axis_rotations()]
    translations = [c_scan - R @ frames[i // 24][1] for i, R in enumerate(rotations)]
    Rs, ts = np.array(rotations), np.array(translations)
    single_view = False
    if model_normals is not None:
        direction, strength = view_direction(scan_cm, rng)
        single_view = strength >= SINGLE_VIEW
        if single_view:
            Rv, tv = view_starts(direction, c_scan, model_points, model_normals)
            # The many view starts: a few iterations on a few points pick the promising ones.
            Rv, tv, sv = rigid_icp_batch(
                few[: min(150, len(few))], tree, model_points, Rv, tv, 3, keep, workers
            )
            top = np.argsort(sv)[:VIEW_SURVIVORS]
            Rs, ts = np.concatenate([Rs, Rv[top]]), np.concatenate([ts, tv[top]])
    hypotheses = len(Rs) if not single_view else len(Rs) - VIEW_SURVIVORS + len(Rv)
    R, t, sc = rigid_icp_batch(few, tree, model_points, Rs, ts, coarse_iterations, keep, workers)
    coarse = [(Similarity(1.0, R[i], t[i]), float(sc[i])) for i in range(len(R))]
    kept = _distinct(coarse, 2 * survivors if single_view else survivors)
    results = _batch(pts, tree, model_points, kept, iterations, keep, workers)
    results.sort(key=lambda r: r[1])
    more = scan_cm[rng.choice(len(scan_cm), size=min(3 * sample, len(scan_cm)), replace=False)]
    if head is None or head.sum() < 100:
        refined = sorted(
            _batch(more, tree, model_points, [r[0] for r in results[:3]], 2 * iterations, keep, workers),
            key=lambda r: r[1],
        )
        return Alignment(
            refined[0][0], refined[0][1], hypotheses, _distinct(refined, 3, degrees=20.0)[1:], single_view
        )
    # A bent neck and an unusual head shape make the whole-model fit a compromise that can
    # be tens of degrees off, and ICP on the head alone stalls near it. The head's trimmed
    # distance does rank orientations correctly, so search: perturb the best whole-model
    # results about each axis, refine on the head alone, keep the lowest score.
    head_points = model_points[head]
    head_tree = cKDTree(head_points)
    centre = head_points.mean(0)
    starts = []
    for sim, _ in results[:3]:
        starts.append(sim)
        for axis in range(3):
            for angle in (-50.0, -25.0, 25.0, 50.0):
                R = sim.rotation @ _about(axis, angle)  # turn the model about its head's centre
                starts.append(Similarity(1.0, R, sim.apply(centre[None])[0] - R @ centre))
    head_keep = 0.6
    # The head's ranking needs more iterations than the whole model's (ICP slides slowly
    # over a small frontal view), on a medium sample.
    medium = pts[: min(3 * coarse_sample // 2, len(pts))]
    middle = _batch(medium, head_tree, head_points, starts, 2 * coarse_iterations, head_keep, workers)
    kept = _distinct(middle, 4)  # the best few distinct orientations
    refined = sorted(
        _batch(more, head_tree, head_points, kept, 2 * iterations, head_keep, workers), key=lambda r: r[1]
    )
    if single_view:
        # Candidates for the probes: the head's best, then the whole model's other basins,
        # then the coarse search's (its ranking of a single view is weak).
        pool = refined + [(s, 1e9 + i) for i, (s, _) in enumerate(results)]
        pool += [(s, 2e9 + i) for i, s in enumerate(_distinct(coarse, 2 * VIEW_CANDIDATES, degrees=10.0))]
        others = _distinct(pool, VIEW_CANDIDATES, degrees=12.0)[1:]
    else:
        others = _distinct(refined + [(s, 1e9) for s in _distinct(middle, 8)], 4, degrees=20.0)[1:]
    return Alignment(refined[0][0], refined[0][1], hypotheses + len(starts), others, single_view)


def _batch(
    points, tree, model_points, sims: list[Similarity], iterations: int, keep: float, workers: Workers
):
    """rigid_icp_batch over a list of similarities: [(Similarity, score)]."""
    if not sims:
        return []
    R, t, sc = rigid_icp_batch(
        points,
        tree,
        model_points,
        np.array([s.rotation for s in sims]),
        np.array([s.translation for s in sims]),
        iterations,
        keep,
        workers,
    )
    return [(Similarity(1.0, R[i], t[i]), float(sc[i])) for i in range(len(R))]


def _distinct(results: list[tuple[Similarity, float]], count: int, degrees: float = 8.0) -> list[Similarity]:
    """The best `count` transforms of (transform, score) pairs that differ by more than
    `degrees` in rotation."""
    kept: list[Similarity] = []
    for sim, _ in sorted(results, key=lambda r: r[1]):
        if all(rotation_angle(sim.rotation, k.rotation) > np.deg2rad(degrees) for k in kept):
            kept.append(sim)
        if len(kept) == count:
            break
    return kept


def _neck_fit(
    neck_pts: np.ndarray,
    rest_of_scan: np.ndarray,
    scan_tree: cKDTree,
    cap: float = 3.0,
    workers: Workers = SEQUENTIAL,
) -> np.ndarray:
    """[H] how badly each hypothesis' neck points [H, S, 3] and the scan explain each other:
    the trimmed mean distances (cm, each capped at cap: missing parts cost the same for
    every hypothesis) from the scan points the head leaves unexplained to the neck, plus
    from the neck to the scan. The hypotheses are split among the workers' threads."""

    def fit(hypotheses: slice) -> np.ndarray:
        pts = neck_pts[hypotheses]
        # The trees need not look farther than cap (beyond it they answer inf). Model to
        # scan: one query for every hypothesis; scan to model: a tree per hypothesis.
        d_model = scan_tree.query(pts.reshape(-1, 3), k=1, distance_upper_bound=cap)[0]
        d_model = np.minimum(d_model, cap).reshape(len(pts), -1)
        out = np.empty(len(pts))
        for h in range(len(pts)):
            d_scan = cKDTree(pts[h]).query(rest_of_scan, k=1, distance_upper_bound=cap)[0]
            out[h] = _trimmed_mean(np.minimum(d_scan, cap), 0.9) + _trimmed_mean(d_model[h], 0.8)
        return out

    return np.concatenate(workers.map(fit, workers.split(len(neck_pts), least=ICP_PIECE)))


def landmark_alignment(
    scan_landmarks: np.ndarray, model_landmarks: np.ndarray, with_scale: bool = True
) -> Similarity:
    """Similarity (model -> scan) from corresponding landmarks [68, 3]; NaN rows are skipped."""
    ok = np.isfinite(scan_landmarks).all(1) & np.isfinite(model_landmarks).all(1)
    if ok.sum() < 4:
        raise ValueError(f"only {int(ok.sum())} usable landmarks; need at least 4")
    return umeyama(model_landmarks[ok], scan_landmarks[ok], with_scale=with_scale)


def neck_search(
    ev,
    sim: Similarity,
    scan_cm: np.ndarray,
    rng: np.random.Generator,
    steps: tuple[int, int, int] = (5, 9, 5),
    samples: int = 1500,
    scan_sample: int = 3000,
    top: int = 1,
    workers: Workers = SEQUENTIAL,
) -> list[tuple[np.ndarray, Similarity, float]]:
    """Grid search over the neck's total flexion, axial rotation and lateral bending, keeping
    the head where `sim` put it: returns neck_pose [J, 3], the similarity that keeps the
    head in place, and the score (cm, lower is better), for the `top` best hypotheses.

    A rigid alignment of a neutral model to a posed scan follows the head (most of the
    points), leaving the neck base twisted by up to the whole chain's range; closest-point
    iterations cannot undo that twist on the nearly cylindrical neck, so it is searched
    here: each total is shared among bones 1.. by their ranges, points on the neck are posed
    and carried by the inverse head motion, and each hypothesis is scored by the trimmed
    Chamfer distance between the scan and (head points + posed neck points).
    """
    import torch

    from .evaluator import ModelParams
    from .geometry import sample_surface
    from .regions import head_weights

    J = ev.J
    head_w = head_weights(ev.model.data)
    tris = ev.triangles
    neck_tris = tris[(head_w[tris] < 0.5).any(1)]
    if len(neck_tris) == 0 or len(scan_cm) < 10:
        return [(np.zeros((J, 3)), sim, 0.0)]
    limits = ev.pose_limits[1:]  # [J-1, 3] per axis x, y, z
    share = limits / np.maximum(limits.sum(0, keepdims=True), 1e-9)
    totals = limits.sum(0)
    grids = [np.linspace(-0.9 * totals[a], 0.9 * totals[a], steps[a]) for a in range(3)]
    combos = np.stack(np.meshgrid(*grids, indexing="ij"), -1).reshape(-1, 3)  # [H, 3] x, y, z totals
    H = len(combos)
    poses = np.zeros((H, J, 3))
    poses[:, 1:] = combos[:, None, :] * share[None]

    neutral_p = ModelParams.neutral(ev.S, ev.E, ev.J)
    rest = ev.vertices(neutral_p)
    corners = np.unique(neck_tris)
    sub = ev.subset(corners)
    rest_c = sub.rest_vertices(neutral_p)  # [C, 3]
    pose_t = torch.as_tensor(poses)
    mats = ev.bone_matrices(pose_t, ev.joints(neutral_p))  # [H, J, 3, 4]
    blended = torch.einsum("hjk,jv->hvk", mats.reshape(H, J, 12), sub.weights_by_bone).reshape(H, -1, 3, 4)
    # The 3x3 products as three broadcasts: a batched matmul of 3x3 blocks is slow.
    posed_c = blended[..., 3] + sum(blended[..., k] * rest_c[None, :, k : k + 1] for k in range(3))
    posed_c = posed_c.cpu().numpy()  # [H, C, 3]
    _, face, bary = sample_surface(rest, neck_tris, samples, rng)
    local = np.searchsorted(corners, neck_tris[face])  # [S, 3] rows of posed_c
    posed = np.einsum("sk,hskc->hsc", bary, posed_c[:, local])  # [H, S, 3]
    head = mats[:, -1].cpu().numpy()  # [H, 3, 4]: rest -> posed for the head's vertices
    R_h, t_h = head[:, :, :3], head[:, :, 3]
    # Carry the posed neck back by the head's motion: x = sim(R_h^T (v - t_h)).
    back = (posed - t_h[:, None]) @ R_h  # R_h^T (v - t_h) for every row
    neck_pts = sim.apply(back.reshape(-1, 3)).reshape(H, -1, 3)

    head_idx = np.nonzero(head_w >= 0.5)[0]
    head_pts = sim.apply(rest[rng.choice(head_idx, min(3000, len(head_idx)), replace=False)])
    scan = scan_cm[rng.choice(len(scan_cm), min(scan_sample, len(scan_cm)), replace=False)]
    d_head = cKDTree(head_pts).query(scan, k=1)[0]
    # Only the scan points the head does not explain tell the hypotheses apart.
    rest_of_scan = scan[d_head > 0.8]
    if len(rest_of_scan) < 50:
        return [(np.zeros((J, 3)), sim, 0.0)]
    # The totals of per-bone poses uniform within their ranges have these deviations; a mild
    # prior on them breaks near-ties of the twist on a nearly round neck.
    sigma = np.sqrt((limits**2).sum(0) / 3.0)
    score = 0.01 * ((combos / sigma) ** 2).sum(1)
    # Coarse to fine: every hypothesis is scored on a quarter of the points, the best
    # NECK_REFINED share again on all of them (the grid's steps differ by far more than a
    # quarter sample's noise); the others rank after those.
    few_scan = cKDTree(scan[: max(50, len(scan) // 4)])
    few_rest = rest_of_scan[: max(50, len(rest_of_scan) // 4)]
    coarse = score + _neck_fit(neck_pts[:, : max(1, samples // 4)], few_rest, few_scan, workers=workers)
    fine = np.argsort(coarse)[: max(4 * top, int(np.ceil(NECK_REFINED * H)))]
    score[fine] += _neck_fit(neck_pts[fine], rest_of_scan, cKDTree(scan), workers=workers)
    rest = np.setdiff1d(np.arange(H), fine)
    score[rest] = coarse[rest] + 1e6
    out: list[tuple[np.ndarray, Similarity, float]] = []
    chosen: list[np.ndarray] = []
    step = np.array([g[1] - g[0] if len(g) > 1 else 1.0 for g in grids])
    for best in np.argsort(score):
        if len(out) == top:
            break
        # Keep the hypotheses apart: nothing within one grid step of one already taken.
        if any((np.abs(combos[best] - c) <= step * 1.01).all() for c in chosen):
            continue
        chosen.append(combos[best])
        R, t = R_h[best], t_h[best]
        # New similarity: x = sim(R^T (v - t)) for every posed vertex v.
        new = Similarity(sim.scale, sim.rotation @ R.T, sim.translation - sim.scale * sim.rotation @ R.T @ t)
        out.append((poses[best], new, float(score[best])))
    return out
