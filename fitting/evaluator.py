"""The model evaluated for fitting: vertices of any subset of the mesh and their
derivatives with respect to every parameter, in float64 (or float32) on any torch device.

It reads only the model's public basis (`HACK.basis`): the posed mesh is the forward
kernel's (`hack_model.core.forward`, the very pass `HACK.forward` runs, in this
evaluator's dtype and device), and the Jacobians use the kernel's functions (rotations,
pose features, kinematics, larynx sampling). Jacobians are cheap: vertices are linear in shape and
expression given the pose, so those columns are the skinned blendshape directions; pose
and larynx columns come from central differences.

The solver needs the derivatives of rows sum_k coef_k . v[corner_k] (point-to-plane
residuals), not of vertices: `row_jacobian` turns each row's weights back into rest space
(coef_k M_v, M_v the vertex's blended skinning rotation) and multiplies them straight into
the directions' rows with one sparse [N, 3V] product, so no per-vertex Jacobian block is
gathered, rotated or stored. Skinning is linear in the bone matrices: the pose columns are
the rows' weights on the bones (sum_k coef_k w_j [u; 1]) against the bones' changes.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
import torch

from hack_model.anatomy import pose_limits_rad
from hack_model.core import kinematics
from hack_model.core.blendshapes import pose_features
from hack_model.core.forward import KernelBasis, evaluate_with_unposed
from hack_model.core.rotations import axis_angle_to_matrix
from hack_model.model import HACK

FD_STEP = 1e-5
LARYNX_FD_STEP = 1e-3


@dataclass
class ModelParams:
    """One frame of model parameters (numpy float64): shape [S], expression [E],
    neck_pose [J, 3], larynx_height and larynx_scale (floats)."""

    shape: np.ndarray
    expression: np.ndarray
    neck_pose: np.ndarray
    larynx_height: float = 0.0
    larynx_scale: float = 1.0

    @classmethod
    def neutral(cls, num_shape: int, num_expression: int, num_bones: int) -> ModelParams:
        return cls(np.zeros(num_shape), np.zeros(num_expression), np.zeros((num_bones, 3)))

    def copy(self) -> ModelParams:
        return ModelParams(
            self.shape.copy(),
            self.expression.copy(),
            self.neck_pose.copy(),
            self.larynx_height,
            self.larynx_scale,
        )

    def key(self) -> bytes:
        """The values as bytes: equal keys, equal parameters (a cache key)."""
        return (
            np.concatenate(
                [
                    self.shape,
                    self.expression,
                    self.neck_pose.reshape(-1),
                    [self.larynx_height, self.larynx_scale],
                ]
            )
            .astype(np.float64)
            .tobytes()
        )

    def forward_arguments(self) -> dict[str, np.ndarray]:
        """Arrays with a batch axis, in the API's names, as `HACK.forward` takes them."""
        args = {
            "expression": self.expression[None].astype(np.float32),
            "neck_pose": self.neck_pose[None].astype(np.float32),
            "larynx_height": np.array([[self.larynx_height]], np.float32),
            "larynx_scale": np.array([[self.larynx_scale]], np.float32),
        }
        if self.shape.size:
            args["shape"] = self.shape[None].astype(np.float32)
        return args


class ModelEvaluator:
    """Vertices and Jacobians of a HACK-layout model.

    anchor="head" poses the neck from the head down: every bone matrix is premultiplied by
    the inverse of the head bone's (oc1's), so the head stays put and the neck pose moves
    only the neck. Fitting uses it because the head carries most of a scan's points and
    features: the similarity then follows the head and the neck pose the neck, instead of a
    twist of the whole chain having to be undone by a counter-rotation of the similarity.
    `head_transform(pose)` converts back to the model's own (root-anchored) frame.

    Models with a joint regressor move their joints with shape (and expression, as smplx
    does): every bone-matrix method then takes the joints [J, 3] of `joints(params)`.

    device, dtype: where and in which precision the evaluation runs (float64 on the CPU by
    default); parameters are numpy float64 arrays, results numpy float64 arrays too, or torch
    tensors on the device from the `*_tensor(s)` methods (what the solver uses).
    """

    def __init__(
        self, model: HACK, anchor: str = "root", device: str | torch.device = "cpu", dtype=torch.float64
    ) -> None:
        if anchor not in ("root", "head"):
            raise ValueError(f"anchor must be 'root' or 'head', got {anchor!r}")
        self.anchor = anchor
        self.device, self.dtype = torch.device(device), dtype
        d = model.data
        basis = model.basis.to(self.device, dtype)
        self.basis = basis
        # Laid out on the host (its index arrays), then moved.
        self.kernel = KernelBasis.from_basis(model.basis.to("cpu", dtype)).to(self.device, dtype)
        V = basis.num_vertices
        self.model = model
        self.num_vertices = V
        self.S, self.E, self.J = basis.shape.count, basis.expression.count, basis.num_bones
        # Shape then expression: one product gives the linear part of every vertex.
        linear = torch.cat([basis.shape.dense(V), basis.expression.dense(V)])  # [K, V, 3]
        self.linear_directions = linear.permute(1, 2, 0).contiguous()  # [V, 3, K]: fast row gathers
        # [V, 3, 9P]: row 3 v + c of the flat view is vertex v's coordinate c (as linear_directions).
        self.pose_directions = basis.pose_correctives.dense(V).permute(1, 2, 0).contiguous()
        self.template = basis.template.T.contiguous()  # [3, V]
        self.weights_by_bone = basis.skinning_weights.T.contiguous()  # [J, V]
        self.rest_frames = basis.rest_frames
        self.relative_rest = basis.relative_rest
        self.joint_template = self.joint_directions = None
        if basis.joints is not None:  # the model's regressed joint blendshapes, rows [shape, expression]
            self.joint_template = basis.joints.template  # [J, 3]
            self.joint_directions = torch.cat(
                [basis.joints.shape_directions, basis.joints.expression_directions]
            )
        self.parents = list(basis.parents)
        self.posed_bones = list(basis.posed_bones)
        self.has_pose_correctives = basis.pose_correctives.vertex_index.numel() > 0
        # The larynx's offsets are piecewise linear in the height, so a coarser central
        # difference is exact within each piece.
        self.has_larynx = basis.larynx is not None
        if self.has_larynx:
            self.larynx_index = basis.larynx.vertex_index.cpu().numpy()
            self._larynx_pos = torch.full((V,), -1, dtype=torch.int64, device=self.device)
            self._larynx_pos[basis.larynx.vertex_index.to(self.device)] = torch.arange(
                len(self.larynx_index), device=self.device
            )
            self._larynx_rest = self.larynx_offsets_raw(self._t([[0.0]]), self._t([[1.0]]))
        rom = d.range_of_motion
        self.pose_limits = pose_limits_rad(rom) if rom is not None else np.full((self.J, 3), np.deg2rad(30.0))
        self.triangles = d.triangles()

    # --------------------------------------------------------------- accessors
    def _t(self, value) -> torch.Tensor:
        return torch.as_tensor(np.asarray(value, np.float64), dtype=self.dtype, device=self.device)

    @property
    def head_weights(self) -> np.ndarray:
        """[V] every vertex's skinning weight on the head bone (the last, oc1)."""
        return self.weights_by_bone[-1].cpu().numpy()

    # ------------------------------------------------------------------ evaluation
    def larynx_offsets_raw(self, height: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
        """[B, V_larynx, 3] larynx offsets of the support vertices (basis.larynx.vertex_index)."""
        return self.basis.larynx.offsets(
            height.to(self.device, self.dtype), scale.to(self.device, self.dtype)
        )

    def larynx_offsets(self, height: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
        """[B, V_larynx, 3] change from the rest larynx for height, scale [B, 1]."""
        return self.larynx_offsets_raw(height, scale) - self._larynx_rest

    def joints(self, p: ModelParams) -> torch.Tensor | None:
        """[J, 3] the joints of p's shape and expression (None when the bones are fixed)."""
        if self.joint_template is None:
            return None
        coef = self._t(np.concatenate([p.shape, p.expression]))
        return self.joint_template + torch.einsum("k,kjc->jc", coef, self.joint_directions[: len(coef)])

    def root_bone_matrices(self, neck_pose: torch.Tensor, joints: torch.Tensor | None = None) -> torch.Tensor:
        """[B, J, 3, 4] the model's own skinning matrices for neck_pose [B, J, 3] (and the
        joints [J, 3] or [B, J, 3] of a model with a joint regressor)."""
        neck_pose = neck_pose.to(self.device, self.dtype)
        rotations = axis_angle_to_matrix(neck_pose)
        if self.joint_template is None:
            rest, relative = self.rest_frames, self.relative_rest
        else:
            if joints is None:
                raise ValueError("this model regresses its joints: pass joints(params)")
            joints = joints.expand(neck_pose.shape[0], -1, -1)
            rest = kinematics.rest_frames_from_joints(joints, self.rest_frames[:, :3, :3])
            relative = kinematics.relative_rest_transforms(rest, self.parents)
        frames = kinematics.forward_kinematics(rotations, relative, self.parents)
        return kinematics.skinning_matrices(frames, rest)

    def bone_matrices(self, neck_pose: torch.Tensor, joints: torch.Tensor | None = None) -> torch.Tensor:
        """[B, J, 3, 4] skinning matrices in this evaluator's anchoring."""
        mats = self.root_bone_matrices(neck_pose, joints)
        return mats if self.anchor == "root" else kinematics.anchor_at_bone(mats, self.J - 1)

    def head_transform(
        self, neck_pose: np.ndarray, joints: torch.Tensor | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Rotation [3, 3] and translation [3] of the head bone (rest -> posed) in the model's frame:
        a head-anchored mesh v' maps to the model's own mesh as R v' + t."""
        if self.anchor == "root":
            return np.eye(3), np.zeros(3)
        A = self.root_bone_matrices(self._t(neck_pose)[None], joints)[0, -1].cpu().double().numpy()
        return A[:, :3], A[:, 3]

    def vertices(self, p: ModelParams, idx: np.ndarray | None = None) -> np.ndarray:
        """[Vs, 3] posed vertices (all when idx is None)."""
        return _numpy(self.vertices_tensor(p, idx))

    def vertices_tensor(self, p: ModelParams, idx: np.ndarray | torch.Tensor | None = None) -> torch.Tensor:
        """[Vs, 3] posed vertices (all when idx is None) on the device."""
        if idx is None:
            return self.posed(p).vertices
        return self.subset(idx).vertices_tensor(p)

    def posed(self, p: ModelParams) -> PosedMesh:
        """The whole mesh at p (what `row_jacobian` differentiates), by the forward kernel."""
        t = self._t
        pose = t(p.neck_pose)
        joints = self.joints(p)
        larynx = {}
        if self.has_larynx:
            larynx = {"larynx_height": t([[p.larynx_height]]), "larynx_scale": t([[p.larynx_scale]])}
        vertices, _, unposed = evaluate_with_unposed(
            self.kernel,
            shape=t(p.shape)[None] if self.S else None,
            expression=t(p.expression)[None] if self.E else None,
            neck_pose=pose[None],
            **larynx,
        )
        vertices = vertices[0]
        mats = self.root_bone_matrices(pose[None], joints)[0]  # [J, 3, 4]
        if self.anchor == "head":
            head = mats[-1]
            vertices = (vertices - head[:, 3]) @ head[:, :3]  # R_h^T (v - t_h), row by row
            mats = kinematics.anchor_at_bone(mats[None], self.J - 1)[0]
        return PosedMesh(p.copy(), vertices, unposed[0], mats, pose, joints)

    def subset(self, idx: np.ndarray | torch.Tensor) -> Subset:
        """Precomputed gathers for repeated evaluations on the vertices idx (numpy or a tensor)."""
        return Subset(self, idx)

    def jacobian(
        self,
        p: ModelParams,
        idx: np.ndarray,
        use_shape: bool,
        use_expression: bool,
        pose_bones: list[int],
        use_larynx: bool,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Vertices [Vs, 3] and d vertices / d (shape, expression, pose of pose_bones, larynx)
        [Vs, 3, P] in that column order (only the blocks asked for)."""
        verts, jac = self.jacobian_tensors(p, idx, use_shape, use_expression, pose_bones, use_larynx)
        return _numpy(verts), _numpy(jac)

    def jacobian_tensors(
        self,
        p: ModelParams,
        idx: np.ndarray | torch.Tensor,
        use_shape: bool,
        use_expression: bool,
        pose_bones: list[int],
        use_larynx: bool,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """`jacobian` as tensors on the device: each vertex coordinate is a row of
        `row_jacobian` with weight 1 on it."""
        idx = torch.as_tensor(idx, dtype=torch.int64, device=self.device).reshape(-1)
        posed = self.posed(p)
        n = len(idx)
        corners = idx.repeat_interleave(3)[:, None].expand(-1, 3)  # [3 n, 3]: vertex v's rows 3 v..3 v + 2
        coef = torch.zeros(3 * n, 3, 3, dtype=self.dtype, device=self.device)
        coef[:, 0] = torch.eye(3, dtype=self.dtype, device=self.device).repeat(n, 1)
        jac = self.row_jacobian(posed, coef, corners, use_shape, use_expression, pose_bones, use_larynx)
        return posed.vertices[idx], jac.view(n, 3, -1)

    def row_jacobian(
        self,
        posed: PosedMesh,
        coef: torch.Tensor,
        corners: torch.Tensor,
        use_shape: bool,
        use_expression: bool,
        pose_bones: list[int],
        use_larynx: bool,
    ) -> torch.Tensor:
        """d rows / d (shape, expression, pose of pose_bones, larynx) [N, P], the blocks asked
        for in that column order, of the rows sum_k coef[n, k] . v[corners[n, k]] at the posed
        mesh: coef [N, 3, 3] (row n's weights on the coordinates of its corner k; a
        point-to-plane row's are bary_k times the plane's normal), corners [N, 3]."""
        N = len(corners)
        corner_weights = self.weights_by_bone[:, corners].permute(1, 0, 2)  # [N, J, 3]
        # Rest-space offsets d of a vertex move it by M_v d (M_v its blended skinning
        # rotation): the rows' weights turned back into rest space act on them directly.
        blended = torch.einsum(  # [N, 3, 3, 4] the corners' skinning maps
            "njk,jq->nkq", corner_weights, posed.bone_matrices.reshape(self.J, 12)
        ).view(N, 3, 3, 4)
        rest_coef = torch.einsum("nka,nkab->nkb", coef, blended[..., :3])  # [N, 3, 3]
        rows = row_matrix(rest_coef, corners, 3 * self.num_vertices)  # sparse [N, 3V]
        blocks = []
        lo = 0 if use_shape else self.S
        hi = self.S + self.E if use_expression else self.S
        if hi > lo:
            # Only the columns asked for: a probe moves the shape alone.
            linear = rows @ self.linear_directions.view(3 * self.num_vertices, -1)[:, lo:hi]
            if posed.joints is not None:
                # Regressed joints move only the bones' translations (the rotations do not depend
                # on the joints), affinely: a unit step of each coefficient gives the exact change.
                moved = posed.joints[None] + self.joint_directions[lo:hi]  # [K, J, 3]
                steps = self.bone_matrices(posed.pose.expand(hi - lo, -1, -1), moved)
                at_pose = self.bone_matrices(posed.pose[None], posed.joints)
                d_translation = (steps - at_pose)[..., 3]  # [K, J, 3]
                on_bones = torch.bmm(corner_weights, coef)  # [N, J, 3]: sum_k coef_k w_j(v_k)
                linear = linear + on_bones.reshape(N, -1) @ d_translation.reshape(hi - lo, -1).T
            blocks.append(linear)
        if pose_bones:
            steps = []
            for b in pose_bones:
                for axis in range(3):
                    for sign in (1.0, -1.0):
                        q = posed.pose.clone()
                        q[b, axis] += sign * FD_STEP
                        steps.append(q)
            steps = torch.stack(steps)
            # Skinning is linear in the bone matrices: a row moves by its weights on the bones
            # (sum_k coef_k w_j(v_k) [u(v_k); 1]) against each bone's change...
            mats = self.bone_matrices(steps, posed.joints)  # [2P, J, 3, 4]
            d_mats = (mats[0::2] - mats[1::2]) / (2 * FD_STEP)  # [P, J, 3, 4]
            unposed = posed.unposed[corners]  # [N, 3, 3]
            homogeneous = torch.cat([unposed, torch.ones_like(unposed[..., :1])], -1)  # [N, 3, 4]
            per_corner = (coef[..., :, None] * homogeneous[..., None, :]).reshape(N, 3, 12)
            d = torch.bmm(corner_weights, per_corner).reshape(N, -1) @ d_mats.reshape(len(d_mats), -1).T
            if self.has_pose_correctives:
                # ...plus the pose correctives' change of the rest shape, carried by the skinning.
                feats = pose_features(axis_angle_to_matrix(steps), self.posed_bones)  # [2P, K]
                d_feats = (feats[0::2] - feats[1::2]) / (2 * FD_STEP)  # [P, K]
                d = d + (rows @ self.pose_directions.view(3 * self.num_vertices, -1)) @ d_feats.T
            blocks.append(d)
        if use_larynx and self.has_larynx:
            # Central differences of the kernel's own unposed mesh (the larynx is piecewise
            # linear in its height: a coarser step is exact within each piece).
            h, sc, step = posed.params.larynx_height, posed.params.larynx_scale, LARYNX_FD_STEP
            t = self._t
            _, _, unposed = evaluate_with_unposed(
                self.kernel,
                larynx_height=t([[h + step], [h - step], [h], [h]]),
                larynx_scale=t([[sc], [sc], [sc + step], [sc - step]]),
                batch_size=4,
            )
            d_rest = torch.stack([unposed[0] - unposed[1], unposed[2] - unposed[3]], -1) / (2 * step)
            blocks.append(rows @ d_rest.reshape(3 * self.num_vertices, 2))
        if blocks:
            return torch.cat(blocks, -1)
        return torch.zeros(N, 0, dtype=self.dtype, device=self.device)


@dataclass(frozen=True)
class PosedMesh:
    """The whole mesh at params, in the evaluator's anchoring (tensors on its device):
    vertices [V, 3]; unposed [V, 3], the rest shape with its pose correctives (before
    skinning); bone_matrices [J, 3, 4], the skinning matrices; pose [J, 3]; joints [J, 3]
    (None when the bones are fixed)."""

    params: ModelParams
    vertices: torch.Tensor
    unposed: torch.Tensor
    bone_matrices: torch.Tensor
    pose: torch.Tensor
    joints: torch.Tensor | None


class Subset:
    """The rest shape of vertices idx (numpy or a tensor), their blendshape rows gathered
    once: what searches over many poses of a few vertices (`alignment.neck_search`) need."""

    def __init__(self, ev: ModelEvaluator, idx: np.ndarray | torch.Tensor) -> None:
        self.ev = ev
        self.idx = idx if isinstance(idx, torch.Tensor) else np.asarray(idx)
        ti = torch.as_tensor(self.idx, device=ev.device)
        self.template = ev.template[:, ti].T.contiguous()  # [Vs, 3]
        self.linear_directions = ev.linear_directions[ti]  # [Vs, 3, K] shape then expression
        self.weights_by_bone = ev.weights_by_bone[:, ti]  # [J, Vs]
        self.larynx_hit = None
        if ev.has_larynx:
            pos = ev._larynx_pos[ti]
            hit = torch.nonzero(pos >= 0)[:, 0]
            if len(hit):
                self.larynx_hit, self.larynx_pos = hit, pos[hit]

    def larynx_delta(self, height: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
        """[B, Vs, 3] larynx offsets from the rest larynx for height, scale [B, 1]."""
        ev = self.ev
        out = torch.zeros(height.shape[0], len(self.idx), 3, dtype=ev.dtype, device=ev.device)
        if self.larynx_hit is not None:
            out[:, self.larynx_hit] = ev.larynx_offsets(height, scale)[:, self.larynx_pos]
        return out

    def rest_vertices(self, p: ModelParams) -> torch.Tensor:
        """[Vs, 3] unposed vertices (template, shape, expression, larynx) without pose correctives."""
        t = self.ev._t
        base = self.template + self.linear_directions @ t(np.concatenate([p.shape, p.expression]))
        if self.larynx_hit is not None:
            base = base + self.larynx_delta(t([[p.larynx_height]]), t([[p.larynx_scale]]))[0]
        return base

    def vertices(self, p: ModelParams) -> np.ndarray:
        """[Vs, 3] posed vertices."""
        return _numpy(self.vertices_tensor(p))

    def vertices_tensor(self, p: ModelParams) -> torch.Tensor:
        """[Vs, 3] posed vertices on the device (of the whole posed mesh: the kernel is fast)."""
        return self.ev.posed(p).vertices[torch.as_tensor(self.idx, device=self.ev.device)]

    def jacobian(
        self, p: ModelParams, use_shape: bool, use_expression: bool, pose_bones: list[int], use_larynx: bool
    ) -> tuple[np.ndarray, np.ndarray]:
        """Vertices [Vs, 3] and d vertices / d (shape, expression, pose of pose_bones, larynx)
        [Vs, 3, P] in that column order (only the blocks asked for)."""
        return self.ev.jacobian(p, self.idx, use_shape, use_expression, pose_bones, use_larynx)


def row_matrix(coef: torch.Tensor, corners: torch.Tensor, columns: int) -> torch.Tensor:
    """coef [N, 3, 3] on the coordinates of corners [N, 3] as a sparse CSR matrix [N, columns]
    (column 3 v + c: vertex v's coordinate c), nine entries a row (duplicates add up)."""
    N = len(corners)
    cols = (3 * corners[:, :, None] + torch.arange(3, device=corners.device)).reshape(N, 9)
    cols, order = cols.sort(1)  # CSR wants each row's columns in order
    values = coef.reshape(N, 9).gather(1, order)
    crow = torch.arange(0, 9 * N + 1, 9, device=corners.device)
    with warnings.catch_warnings():  # "sparse CSR support is in beta": the product is what we use
        warnings.simplefilter("ignore", UserWarning)
        return torch.sparse_csr_tensor(
            crow, cols.reshape(-1), values.reshape(-1), (N, columns), check_invariants=False
        )


def _numpy(x: torch.Tensor) -> np.ndarray:
    return x.detach().to("cpu", torch.float64).numpy()
