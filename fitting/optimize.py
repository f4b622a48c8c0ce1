"""Staged Levenberg-Marquardt fitting of a HACK-layout model to scan points.

Everything is solved in model space: the scan is mapped by the inverse similarity
y = scale * rotation @ x + shift (x in scan centimetres), so the priors keep fixed scales. Each iteration
refreshes closest-point correspondences on the current mesh (candidate triangles of nearest
centroid + exact point-triangle test: geometry.TensorProximity), drops correspondences farther than a robust
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

The solver runs where the evaluator does (`ModelEvaluator.device`, its dtype): the sampled scan
points, the correspondences, residuals, robust weights, the Jacobian [N, P] and the normal
equations are torch tensors there. Only the small state (scale, rotation, shift, ModelParams)
and each step's [P] update live in numpy on the host.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from hack_model.core.numpy_math import axis_angle_to_matrix

from .alignment import Similarity
from .evaluator import ModelEvaluator, ModelParams, PosedMesh
from .geometry import TensorProximity, face_normals
from .parallel import SEQUENTIAL, Workers

LARYNX_HEIGHT_SIGMA, LARYNX_SCALE_SIGMA = 0.05, 0.3
LARYNX_HEIGHT_RANGE, LARYNX_SCALE_RANGE = (-0.2, 0.2), (0.3, 2.0)
LOG_SCALE_SIGMA = 0.02
# Hard bounds that keep a bad start from running away: the units fix the scale to within
# head-size variation (the shape absorbs the rest), and coefficients beyond 5 SD are not heads.
SCALE_RANGE = (0.75, 1.33)
SHAPE_BOUND = 5.0
MIN_ROWS = 30
# Posed meshes a Fitter keeps (the state's, a candidate step's and one more).
POSED_KEPT = 3


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

# Short similarity+shape+neck solve used to compare starting hypotheses. Eight iterations,
# not four: after four the score still depended on the random sample (from the true pose
# of a frontal view it ranged 0.18-0.27 cm, above wrong basins at 0.21), after eight it
# settles (0.09-0.10), so the probes rank the basins and the later stages start closer.
PROBE_STAGE = Stage("probe", 8, shape=True, pose=True, points=1200, trim_floor_cm=1.0)


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
    each scan point (or landmark) paired with a point on a model triangle. Numpy arrays (what
    callers build and get back) or torch tensors on the solver's device (`to`)."""

    corners: np.ndarray  # [N, 3] vertex indices
    bary: np.ndarray  # [N, 3]
    normals: np.ndarray  # [N, 3] model space
    points: np.ndarray  # [N, 3] scan points (cm, scan frame)
    weights: np.ndarray  # [N]

    @property
    def on_device(self) -> bool:
        return isinstance(self.points, torch.Tensor)

    def to(self, device: torch.device, dtype: torch.dtype) -> Correspondences:
        """As tensors on device (corners int64, the rest dtype)."""
        return Correspondences(
            torch.as_tensor(self.corners, dtype=torch.int64, device=device),
            *(
                torch.as_tensor(getattr(self, f), dtype=dtype, device=device)
                for f in ("bary", "normals", "points", "weights")
            ),
        )

    def numpy(self) -> Correspondences:
        """As numpy arrays (corners int64, the rest float64)."""
        if not self.on_device:
            return self
        return Correspondences(
            self.corners.cpu().numpy(),
            *(
                getattr(self, f).detach().to("cpu", torch.float64).numpy()
                for f in ("bary", "normals", "points", "weights")
            ),
        )

    @staticmethod
    def concat(parts: list[Correspondences]) -> Correspondences:
        fields = Correspondences.__dataclass_fields__
        cat = torch.cat if parts and parts[0].on_device else np.concatenate
        return Correspondences(*(cat([getattr(p, f) for p in parts]) for f in fields))


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
            R = axis_angle_to_matrix(delta[1:4])
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
        self, state: State, rows: Correspondences, vertices: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """r [N] and z = scale * rotation @ x [N, 3] (tensors on the rows' device) on the mesh
        vertices [V, 3]."""
        like = rows.points
        rotation = torch.as_tensor(state.rotation, dtype=like.dtype, device=like.device)
        shift = torch.as_tensor(state.shift, dtype=like.dtype, device=like.device)
        z = state.scale * rows.points @ rotation.T
        q = torch.einsum("nk,nkc->nc", rows.bary, vertices[rows.corners])
        return ((q - z - shift) * rows.normals).sum(1), z

    def linearize(
        self, state: State, rows: Correspondences, posed: PosedMesh
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Residuals r [N] and Jacobian [N, P] at the posed mesh of state.params
        (`ModelEvaluator.posed`). Tensors on the evaluator's device; numpy rows give numpy
        results."""
        ev, st = self.ev, self.stage
        if not rows.on_device:
            r, J = self.linearize(state, rows.to(ev.device, ev.dtype), posed)
            return _numpy(r), _numpy(J)
        r, z = self.residuals(state, rows, posed.vertices)
        N = len(rows.points)
        n = rows.normals
        J = torch.zeros((N, self.size), dtype=n.dtype, device=n.device)
        if self.sim:
            if self.stage.scale:
                J[:, 0] = -(n * z).sum(1)
            J[:, 1:4] = torch.linalg.cross(n, z)
            J[:, 4:7] = -n
        if self.size > self.offsets[1]:
            J[:, self.offsets[1] :] = ev.row_jacobian(
                posed,
                rows.bary[:, :, None] * n[:, None, :],
                rows.corners,
                st.shape,
                st.expression,
                self.pose_bones,
                st.larynx and ev.has_larynx,
            )
        return r, J


def _numpy(x: torch.Tensor) -> np.ndarray:
    return x.detach().to("cpu", torch.float64).numpy()


class Fitter:
    """Holds the model evaluator and runs the stages on one scan, on the evaluator's device."""

    def __init__(
        self,
        ev: ModelEvaluator,
        rng: np.random.Generator,
        sigma_cm: float = 0.1,
        reference_rows: int = 2000,
        brute_force: bool | None = None,
        workers: Workers = SEQUENTIAL,
    ) -> None:
        self.ev = ev
        self.rng = rng
        self.workers = workers
        self.sigma = sigma_cm
        self.reference_rows = reference_rows
        self.triangles = ev.triangles
        self.device, self.dtype = ev.device, ev.dtype
        self._triangles = torch.as_tensor(ev.triangles, dtype=torch.int64, device=ev.device)
        # None: the k-d tree on the CPU, brute-force candidates on other devices (geometry.TensorProximity).
        self.brute_force = brute_force
        # The last few posed meshes ([key, PosedMesh, proximity or None], newest first): an LM
        # step poses its candidate, and the next iteration (and `score`) needs the same mesh.
        self._posed: list[list] = []

    def _tensor(self, x) -> torch.Tensor:
        return torch.as_tensor(x, dtype=self.dtype, device=self.device)

    def spawn(self, count: int) -> list[Fitter]:
        """`count` fitters on this one's evaluator and workers, each with a random stream of
        its own (seeded from this one's, in order) and its own posed meshes: hypotheses
        solved by them give the same results run one after another or at once."""
        seeds = self.rng.integers(0, 2**63, size=count)
        return [
            Fitter(
                self.ev,
                np.random.default_rng(int(s)),
                self.sigma,
                self.reference_rows,
                self.brute_force,
                self.workers,
            )
            for s in seeds
        ]

    def _entry(self, params: ModelParams) -> list:
        key = params.key()
        for entry in self._posed:
            if entry[0] == key:
                return entry
        entry = [key, self.ev.posed(params), None]
        self._posed = [entry] + self._posed[: POSED_KEPT - 1]
        return entry

    def posed(self, params: ModelParams) -> PosedMesh:
        """The whole mesh at params (`ModelEvaluator.posed`), kept for the next calls."""
        return self._entry(params)[1]

    def _proximity(self, state: State) -> tuple[torch.Tensor, TensorProximity]:
        entry = self._entry(state.params)
        verts = entry[1].vertices
        if entry[2] is None:
            entry[2] = TensorProximity(
                verts, self._triangles, brute_force=self.brute_force, workers=self.workers
            )
        return verts, entry[2]

    def _to_model(self, state: State, points: torch.Tensor) -> torch.Tensor:
        return state.scale * points @ self._tensor(state.rotation).T + self._tensor(state.shift)

    # ----------------------------------------------------------- correspondences
    def correspond(
        self, state: State, points_cm: np.ndarray, scan_normals: np.ndarray | None, trim_floor: float
    ) -> tuple[Correspondences, np.ndarray]:
        """Closest-point rows for scan points [N, 3] (cm, scan frame) and their distances [N] (cm),
        as numpy arrays (`correspond_tensors` keeps them on the device)."""
        normals = None if scan_normals is None else self._tensor(scan_normals)
        rows, dist = self.correspond_tensors(state, self._tensor(points_cm), normals, trim_floor)
        return rows.numpy(), _numpy(dist)

    def correspond_tensors(
        self, state: State, points: torch.Tensor, scan_normals: torch.Tensor | None, trim_floor: float
    ) -> tuple[Correspondences, torch.Tensor]:
        """`correspond` on tensors on the device: rows and distances [N] (cm)."""
        verts, prox = self._proximity(state)
        y = self._to_model(state, points)
        c = prox.query(y)
        corners = self._triangles[c.triangle]
        normals = face_normals(verts, corners)
        dist = c.distance
        # Robust threshold: 3 robust sigmas of the distances, never below the stage's floor.
        # (quantile, not median: torch's median is the lower one, numpy's the mean of two.)
        tau = max(trim_floor, 3.0 * 1.4826 * float(torch.quantile(dist, 0.5)))
        w = (dist <= tau).to(self.dtype)
        if scan_normals is not None:
            # |cos|: scanner meshes do not always wind their faces outwards.
            compat = ((scan_normals @ self._tensor(state.rotation).T) * normals).sum(1).abs()
            w = torch.where(compat < 0.3, torch.zeros_like(w), w)
        # Huber weights on the point-to-plane residual.
        r = ((c.point - y) * normals).sum(1).abs()
        huber = 2.0 * self.sigma
        w = w * torch.where(r <= huber, torch.ones_like(r), huber / r.clamp(min=1e-12))
        return Correspondences(corners, c.bary, normals, points, w), dist

    def score(self, state: State, points_cm: np.ndarray, sample: int = 3000, cap_cm: float = 1.0) -> float:
        """Mean distance (cm) from scan points to the current mesh, each capped at cap_cm: outliers
        cost the same for every hypothesis, while parts of the scan left unexplained (a
        wrongly twisted neck) still count, unlike in a trimmed mean."""
        rng = np.random.default_rng(0)  # the same points for every hypothesis
        pick = rng.choice(len(points_cm), min(sample, len(points_cm)), replace=False)
        _, prox = self._proximity(state)
        d = prox.query(self._to_model(state, self._tensor(points_cm[pick]))).distance
        return float(d.clamp(max=cap_cm).mean())

    # --------------------------------------------------------------------- solve
    def energy(self, problem: Problem, state: State, rows: Correspondences, scale: float) -> float:
        r, _ = problem.residuals(state, rows, self.posed(state.params).vertices)
        off, prec = problem.prior(state)
        data = float((rows.weights * r**2).sum())
        return float(scale * data / self.sigma**2 + (prec * off**2).sum())

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
                    # The sample is drawn on the host (the same random stream on every device).
                    points = self._tensor(scan_cm[pick])
                    normals = None if scan_normals is None else self._tensor(scan_normals[pick])
                rows, dist = self.correspond_tensors(state, points, normals, st.trim_floor_cm)
                median = float(torch.quantile(dist, 0.5))
                inliers = float((rows.weights > 0).to(self.dtype).mean())
                parts = [rows]
            else:
                parts = []
            if extra_rows is not None:
                extra = extra_rows(state)
                if extra is not None:
                    parts.append(extra.to(self.device, self.dtype))
            if not parts:
                break
            rows = Correspondences.concat(parts)
            used = float((rows.weights > 0).sum())
            if used < MIN_ROWS:  # nothing left to fit: stop rather than follow the priors alone
                break
            scale = self.reference_rows / used
            r, J = problem.linearize(state, rows, self.posed(state.params))
            w = rows.weights * (scale / self.sigma**2)
            off, prec = problem.prior(state)
            # The normal equations on the device; the [P, P] solve in float64 whatever the dtype.
            H = (J.T @ (J * w[:, None])).double() + torch.diag(self._host(prec))
            g = (J.T @ (w * r)).double() + self._host(prec * off)
            e0 = float((w * r**2).sum()) + float((prec * off**2).sum())
            accepted = False
            e1 = e0
            for _ in range(6):
                A = H + mu * torch.diag(torch.diagonal(H) + 1e-9)
                # torch, not numpy: numpy's BLAS threads fight torch's spinning OpenMP threads.
                delta, info = torch.linalg.solve_ex(A, -g)
                if int(info) != 0 or not torch.isfinite(delta).all():
                    mu *= 10
                    continue
                cand = problem.apply(state, delta.cpu().numpy())
                e1 = self.energy(problem, cand, rows, scale)
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

    def _host(self, x: np.ndarray) -> torch.Tensor:
        """A small float64 host array as a float64 tensor on the device."""
        return torch.as_tensor(x, dtype=torch.float64, device=self.device)
