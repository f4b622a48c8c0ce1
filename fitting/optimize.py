"""Staged Levenberg-Marquardt fitting of a HACK-layout model to scan points.

Everything is solved in model space: the scan is mapped by the inverse similarity
y = scale * rotation @ x + shift (x in scan centimetres), so the priors keep fixed scales. Each iteration
refreshes closest-point correspondences on the current mesh (k-d tree over triangle
centroids + exact point-triangle test), drops correspondences farther than a robust
threshold (partial scans, outliers, hair), weights the rest with Huber weights and takes one
LM step on the point-to-plane residuals and the priors:

    shape       beta_k ~ N(0, 1) (unit-variance coefficients: the Mahalanobis distance)
    expression  weak N(0, 1), projected onto [0, 1]
    neck pose   N(0, limit^2) per axis, projected into the range of motion
    larynx      height N(0, 0.05^2), scale N(1, 0.3^2)
    scale       fixed by the detected units (a head's size is in its shape); a Stage with
                scale=True moves it under log scale ~ N(0, 0.02^2)

The root bone (c7t1) turns everything about its head, like the similarity does, so it is
left at zero and its rotation is absorbed into the similarity.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import scipy.sparse
import torch

from .alignment import Similarity
from .evaluator import ModelEvaluator, ModelParams, Subset
from .geometry import MeshProximity, face_normals

LARYNX_HEIGHT_SIGMA, LARYNX_SCALE_SIGMA = 0.05, 0.3
LARYNX_HEIGHT_RANGE, LARYNX_SCALE_RANGE = (-0.2, 0.2), (0.3, 2.0)
LOG_SCALE_SIGMA = 0.02
# Hard bounds that keep a bad start from running away: the units fix the scale to within
# head-size variation (the shape absorbs the rest), and coefficients beyond 5 SD are not heads.
SCALE_RANGE = (0.75, 1.33)
SHAPE_BOUND = 5.0
MIN_ROWS = 30


@dataclass
class Stage:
    """One stage of the optimisation: which parameter groups move and for how long."""

    name: str
    iterations: int
    shape: bool = False
    expression: bool = False
    pose: bool = False
    larynx: bool = False
    points: int = 4000
    # The units fix the scale: a head's size is in its shape, and a free scale trades
    # against the shape's size modes (fits drifted 3-8% in scale with the surface still
    # within 0.1 mm). A stage with scale=True moves it under its prior LOG_SCALE_SIGMA.
    scale: bool = False
    trim_floor_cm: float = 0.5  # correspondences within this distance are never trimmed
    # A fresh scan sample each iteration shakes early stages out of shallow minima; a fixed
    # one lets the energy settle, so the last stage can tell that it converged.
    resample: bool = True


DEFAULT_STAGES = (
    Stage("similarity", 5, points=2000, trim_floor_cm=1.5),
    Stage("shape+neck", 8, shape=True, pose=True, points=3000, trim_floor_cm=0.8),
    Stage(
        "+expression+larynx",
        10,
        shape=True,
        expression=True,
        pose=True,
        larynx=True,
        points=4000,
        trim_floor_cm=0.5,
    ),
    Stage(
        "all",
        10,
        shape=True,
        expression=True,
        pose=True,
        larynx=True,
        points=8000,
        trim_floor_cm=0.3,
        resample=False,
    ),
)

# Short similarity+neck solve used to compare starting hypotheses.
PROBE_STAGE = Stage("probe", 4, shape=True, pose=True, points=1200, trim_floor_cm=1.0)


@dataclass
class State:
    """Model parameters and the scan -> model map y = scale * rotation @ x + shift
    (x in scan cm, y in the head-anchored model frame): the inverse of the similarity
    `similarity()` returns."""

    params: ModelParams
    scale: float  # scan cm -> model cm; 1 when the detected units are right
    rotation: np.ndarray  # [3, 3]
    shift: np.ndarray  # [3] model cm

    def copy(self) -> State:
        return State(self.params.copy(), self.scale, self.rotation.copy(), self.shift.copy())

    def to_model(self, points_cm: np.ndarray) -> np.ndarray:
        return self.scale * points_cm @ self.rotation.T + self.shift

    @classmethod
    def from_similarity(cls, params: ModelParams, sim: Similarity) -> State:
        """From a model->scan(cm) similarity x = s R m + t."""
        rotation = sim.rotation.T
        scale = 1.0 / sim.scale
        return cls(params, scale, rotation, -scale * rotation @ sim.translation)

    def similarity(self) -> Similarity:
        """model -> scan (cm)."""
        return Similarity(1.0 / self.scale, self.rotation.T, -(self.rotation.T @ self.shift) / self.scale)


@dataclass
class Correspondences:
    """Point-to-plane residual rows n . (sum_k bary_k v[corner_k] - y(point)) with weights:
    each scan point (or landmark) paired with a point on a model triangle."""

    corners: np.ndarray  # [N, 3] vertex indices
    bary: np.ndarray  # [N, 3]
    normals: np.ndarray  # [N, 3] model space
    points: np.ndarray  # [N, 3] scan points (cm, scan frame)
    weights: np.ndarray  # [N]

    @staticmethod
    def concat(parts: list[Correspondences]) -> Correspondences:
        fields = Correspondences.__dataclass_fields__
        return Correspondences(*(np.concatenate([getattr(p, f) for p in parts]) for f in fields))


@dataclass
class StageLog:
    name: str
    iterations: int
    energy: float
    median_cm: float
    inliers: float


@dataclass
class SolveLog:
    stages: list[StageLog] = field(default_factory=list)
    iterations: int = 0


def _skew(v: np.ndarray) -> np.ndarray:
    return np.array([[0, -v[2], v[1]], [v[2], 0, -v[0]], [-v[1], v[0], 0]])


def _rotation(omega: np.ndarray) -> np.ndarray:
    theta = float(np.linalg.norm(omega))
    K = _skew(omega / theta) if theta > 1e-12 else np.zeros((3, 3))
    return np.eye(3) + np.sin(theta) * K + (1 - np.cos(theta)) * K @ K


class Problem:
    """The parameter vector of one stage: [log-scale, rotation (3), translation (3)] then the
    model blocks that move in this stage."""

    def __init__(self, ev: ModelEvaluator, stage: Stage, move_similarity: bool = True) -> None:
        self.ev, self.stage = ev, stage
        self.sim = move_similarity
        self.pose_bones = list(range(1, ev.J)) if stage.pose else []
        sizes = [
            7 if move_similarity else 0,
            ev.S if stage.shape else 0,
            ev.E if stage.expression else 0,
            3 * len(self.pose_bones),
            2 if stage.larynx and ev.has_larynx else 0,
        ]
        self.offsets = np.concatenate([[0], np.cumsum(sizes)])
        self.size = int(self.offsets[-1])

    def prior(self, state: State) -> tuple[np.ndarray, np.ndarray]:
        """Diagonal Gaussian priors: residual-weighted offsets g [P] and precisions h [P]
        (energy sum h * (x - mean)^2 with x - mean given as the offset)."""
        p, o = state.params, self.offsets
        off, prec = np.zeros(self.size), np.zeros(self.size)
        if self.sim:
            off[0], prec[0] = np.log(state.scale), 1.0 / LOG_SCALE_SIGMA**2
        if self.stage.shape and self.ev.S:
            off[o[1] : o[2]], prec[o[1] : o[2]] = p.shape, 1.0
        if self.stage.expression:
            off[o[2] : o[3]], prec[o[2] : o[3]] = p.expression, 1.0
        if self.pose_bones:
            lim = np.maximum(self.ev.pose_limits[self.pose_bones], 1e-3)
            off[o[3] : o[4]] = p.neck_pose[self.pose_bones].reshape(-1)
            prec[o[3] : o[4]] = 1.0 / lim.reshape(-1) ** 2
        if o[5] > o[4]:
            off[o[4]] = p.larynx_height
            prec[o[4]] = 1.0 / LARYNX_HEIGHT_SIGMA**2
            off[o[4] + 1] = p.larynx_scale - 1.0
            prec[o[4] + 1] = 1.0 / LARYNX_SCALE_SIGMA**2
        return off, prec

    def apply(self, state: State, delta: np.ndarray) -> State:
        """state + delta, projected onto the parameters' valid ranges."""
        new = state.copy()
        o, p = self.offsets, new.params
        if self.sim:
            new.scale = float(np.clip(state.scale * float(np.exp(delta[0])), *SCALE_RANGE))
            R = _rotation(delta[1:4])
            new.rotation = R @ state.rotation
            new.shift = state.shift + delta[4:7]
        if self.stage.shape and self.ev.S:
            p.shape = np.clip(p.shape + delta[o[1] : o[2]], -SHAPE_BOUND, SHAPE_BOUND)
        if self.stage.expression:
            p.expression = np.clip(p.expression + delta[o[2] : o[3]], 0.0, 1.0)
        if self.pose_bones:
            pose = p.neck_pose.copy()
            lim = self.ev.pose_limits[self.pose_bones]
            pose[self.pose_bones] = np.clip(
                pose[self.pose_bones] + delta[o[3] : o[4]].reshape(-1, 3), -lim, lim
            )
            p.neck_pose = pose
        if o[5] > o[4]:
            p.larynx_height = float(np.clip(p.larynx_height + delta[o[4]], *LARYNX_HEIGHT_RANGE))
            p.larynx_scale = float(np.clip(p.larynx_scale + delta[o[4] + 1], *LARYNX_SCALE_RANGE))
        return new

    def residuals(
        self, state: State, rows: Correspondences, verts: np.ndarray, pos: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """r [N] and z = scale * rotation @ x [N, 3]; verts [U, 3] of the unique corners, pos
        maps vertex -> row of verts."""
        z = state.scale * rows.points @ state.rotation.T
        q = np.einsum("nk,nkc->nc", rows.bary, verts[pos[rows.corners]])
        return np.einsum("nc,nc->n", rows.normals, q - z - state.shift), z

    def linearize(
        self, state: State, rows: Correspondences, subset: Subset, pos: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """Residuals r [N] and Jacobian [N, P]; subset holds the rows' unique corner vertices,
        pos maps a vertex to its place in the subset."""
        ev, st = self.ev, self.stage
        verts, jv = subset.jacobian(
            state.params, st.shape, st.expression, self.pose_bones, st.larynx and ev.has_larynx
        )
        r, z = self.residuals(state, rows, verts, pos)
        N = len(rows.points)
        J = np.zeros((N, self.size))
        n = rows.normals
        if self.sim:
            if self.stage.scale:
                J[:, 0] = -np.einsum("nc,nc->n", n, z)
            J[:, 1:4] = np.cross(n, z)
            J[:, 4:7] = -n
        if jv.shape[2]:
            # Row i is sum_k bary_ik * n_i . dv[corner_ik]: a sparse [N, 3U] matrix (9 entries a
            # row) times the stacked vertex Jacobians [3U, P].
            U = jv.shape[0]
            cols = (3 * pos[rows.corners][:, :, None] + np.arange(3)).reshape(N, 9)
            vals = (rows.bary[:, :, None] * n[:, None, :]).reshape(N, 9)
            S = scipy.sparse.csr_matrix(
                (vals.ravel(), cols.ravel(), np.arange(0, 9 * N + 1, 9)), shape=(N, 3 * U)
            )
            J[:, self.offsets[1] :] = S @ jv.reshape(3 * U, -1)
        return r, J


class Fitter:
    """Holds the model evaluator and runs the stages on one scan."""

    def __init__(
        self, ev: ModelEvaluator, rng: np.random.Generator, sigma_cm: float = 0.1, reference_rows: int = 2000
    ) -> None:
        self.ev = ev
        self.rng = rng
        self.sigma = sigma_cm
        self.reference_rows = reference_rows
        self.triangles = ev.triangles

    # ----------------------------------------------------------- correspondences
    def correspond(
        self, state: State, points_cm: np.ndarray, scan_normals: np.ndarray | None, trim_floor: float
    ) -> tuple[Correspondences, np.ndarray]:
        """Closest-point rows for scan points [N, 3] (cm, scan frame) and their distances [N] (cm)."""
        verts = self.ev.vertices(state.params)
        prox = MeshProximity(verts, self.triangles)
        y = state.to_model(points_cm)
        c = prox.query(y)
        normals = face_normals(verts, self.triangles[c.triangle])
        dist = c.distance
        # Robust threshold: 3 robust sigmas of the distances, never below the stage's floor.
        tau = max(trim_floor, 3.0 * 1.4826 * float(np.median(dist)))
        w = (dist <= tau).astype(np.float64)
        if scan_normals is not None:
            # |cos|: scanner meshes do not always wind their faces outwards.
            compat = np.abs(np.einsum("nc,nc->n", scan_normals @ state.rotation.T, normals))
            w[compat < 0.3] = 0.0
        # Huber weights on the point-to-plane residual.
        r = np.abs(np.einsum("nc,nc->n", normals, c.point - y))
        huber = 2.0 * self.sigma
        w *= np.where(r <= huber, 1.0, huber / np.maximum(r, 1e-12))
        rows = Correspondences(self.triangles[c.triangle], c.bary, normals, points_cm, w)
        return rows, dist

    def score(self, state: State, points_cm: np.ndarray, sample: int = 3000, cap_cm: float = 1.0) -> float:
        """Mean distance (cm) from scan points to the current mesh, each capped at cap_cm: outliers
        cost the same for every hypothesis, while parts of the scan left unexplained (a
        wrongly twisted neck) still count, unlike in a trimmed mean."""
        rng = np.random.default_rng(0)  # the same points for every hypothesis
        pick = rng.choice(len(points_cm), min(sample, len(points_cm)), replace=False)
        verts = self.ev.vertices(state.params)
        d = MeshProximity(verts, self.triangles).query(state.to_model(points_cm[pick])).distance
        return float(np.minimum(d, cap_cm).mean())

    # --------------------------------------------------------------------- solve
    def energy(
        self, problem: Problem, state: State, rows: Correspondences, scale: float, subset: Subset, pos
    ) -> float:
        r, _ = problem.residuals(state, rows, subset.vertices(state.params), pos)
        off, prec = problem.prior(state)
        return float(scale * (rows.weights * r**2).sum() / self.sigma**2 + (prec * off**2).sum())

    def run_stage(
        self,
        problem: Problem,
        state: State,
        scan_cm: np.ndarray,
        scan_normals: np.ndarray | None,
        extra_rows=None,
    ) -> tuple[State, StageLog, bool]:
        """LM iterations of one stage; correspondences refreshed every iteration.
        extra_rows(state) -> Correspondences or None adds fixed rows (landmarks, registered vertices)."""
        st = problem.stage
        mu = 1e-3
        converged = False
        energy = np.inf
        median = inliers = float("nan")
        pick = None
        for it in range(st.iterations):
            if scan_cm is not None and len(scan_cm):
                if pick is None or st.resample:
                    pick = (
                        np.arange(len(scan_cm))
                        if len(scan_cm) <= st.points
                        else self.rng.choice(len(scan_cm), st.points, replace=False)
                    )
                normals = None if scan_normals is None else scan_normals[pick]
                rows, dist = self.correspond(state, scan_cm[pick], normals, st.trim_floor_cm)
                median = float(np.median(dist))
                inliers = float((rows.weights > 0).mean())
                parts = [rows]
            else:
                parts = []
            if extra_rows is not None:
                extra = extra_rows(state)
                if extra is not None:
                    parts.append(extra)
            rows = Correspondences.concat(parts)
            used = float((rows.weights > 0).sum())
            if used < MIN_ROWS:  # nothing left to fit: stop rather than follow the priors alone
                break
            scale = self.reference_rows / used
            unique = np.unique(rows.corners)
            pos = np.full(self.ev.num_vertices, -1, np.int64)
            pos[unique] = np.arange(len(unique))
            subset = self.ev.subset(unique)
            r, J = problem.linearize(state, rows, subset, pos)
            w = rows.weights * scale / self.sigma**2
            off, prec = problem.prior(state)
            Jt, wt = torch.from_numpy(J), torch.from_numpy(w)
            H = (Jt.T @ (Jt * wt[:, None])).numpy() + np.diag(prec)
            g = (Jt.T @ (wt * torch.from_numpy(r))).numpy() + prec * off
            e0 = float((w * r**2).sum() + (prec * off**2).sum())
            accepted = False
            e1 = e0
            for _ in range(6):
                A = torch.from_numpy(H + mu * np.diag(np.diag(H) + 1e-9))
                # torch, not numpy: numpy's BLAS threads fight torch's spinning OpenMP threads.
                delta, info = torch.linalg.solve_ex(A, torch.from_numpy(-g))
                if int(info) != 0 or not torch.isfinite(delta).all():
                    mu *= 10
                    continue
                delta = delta.numpy()
                cand = problem.apply(state, delta)
                e1 = self.energy(problem, cand, rows, scale, subset, pos)
                if e1 < e0:
                    state, accepted = cand, True
                    mu = max(mu / 3.0, 1e-7)
                    break
                mu *= 10.0
            energy = e0
            # Correspondences and weights are refreshed every iteration, so the energy never
            # settles exactly: converged means less than 0.2% left to gain in a step.
            # converged: the energy settled in the last iteration run (not in some earlier one).
            converged = not accepted or (e0 - e1) < 2e-3 * max(e0, 1e-12)
            if converged and it >= 1:
                break
        return state, StageLog(st.name, it + 1, energy, median, inliers), converged


def torch_threads(threads: int | None):
    """Context: limit torch threads (worker processes share the cores)."""

    class _Guard:
        def __enter__(self):
            self.old = torch.get_num_threads()
            if threads:
                torch.set_num_threads(threads)

        def __exit__(self, *exc):
            torch.set_num_threads(self.old)

    return _Guard()
