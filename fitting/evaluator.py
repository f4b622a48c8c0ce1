"""The model evaluated for fitting: vertices of any subset of the mesh and their
derivatives with respect to every parameter, in float64 (or float32) on any torch device.

It reads only the model's public basis (`HACK.basis`) and evaluates it with the kernel's
own functions (`hack_model.core`: rotations, pose features, kinematics, larynx sampling);
tests compare it with `HACK.forward`. Jacobians are cheap: vertices are linear in shape and
expression given the pose, so those columns are the skinned blendshape directions; pose
and larynx columns come from central differences.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from hack_model.anatomy import pose_limits_rad
from hack_model.core import kinematics
from hack_model.core.blendshapes import pose_features
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
        V = basis.num_vertices
        self.model = model
        self.num_vertices = V
        self.S, self.E, self.J = basis.shape.count, basis.expression.count, basis.num_bones
        # Shape then expression: one product gives the linear part of every vertex.
        linear = torch.cat([basis.shape.dense(V), basis.expression.dense(V)])  # [K, V, 3]
        self.linear_directions = linear.permute(1, 2, 0).contiguous()  # [V, 3, K]: fast row gathers
        self.pose_directions = basis.pose_correctives.dense(V).transpose(1, 2).contiguous()  # [9P, 3, V]
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
        self._everything: Subset | None = None

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
            if self._everything is None:  # kept: the whole mesh is posed every solver iteration
                self._everything = Subset(self, torch.arange(self.num_vertices, device=self.device))
            return self._everything.vertices_tensor(p)
        return self.subset(idx).vertices_tensor(p)

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
        return self.subset(idx).jacobian(p, use_shape, use_expression, pose_bones, use_larynx)


class Subset:
    """Evaluation restricted to vertices idx (numpy or a tensor), with their blendshape rows
    gathered once."""

    def __init__(self, ev: ModelEvaluator, idx: np.ndarray | torch.Tensor) -> None:
        self.ev = ev
        self.idx = idx if isinstance(idx, torch.Tensor) else np.asarray(idx)
        ti = torch.as_tensor(self.idx, device=ev.device)
        self.template = ev.template[:, ti].T.contiguous()  # [Vs, 3]
        self.linear_directions = ev.linear_directions[ti]  # [Vs, 3, K] shape then expression
        self.weights_by_bone = ev.weights_by_bone[:, ti]  # [J, Vs]
        self.pose_directions = (
            ev.pose_directions[:, :, ti] if ev.has_pose_correctives else None
        )  # [9P, 3, Vs]
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

    def _unposed(self, rest: torch.Tensor, pose: torch.Tensor) -> torch.Tensor:
        """[Vs, 3] rest + pose correctives for one pose [J, 3]."""
        if self.pose_directions is None:
            return rest
        feats = pose_features(axis_angle_to_matrix(pose[None]), self.ev.posed_bones)[0]
        return rest + torch.einsum("k,kcv->vc", feats, self.pose_directions)

    def _blend(self, pose: torch.Tensor, joints: torch.Tensor | None) -> torch.Tensor:
        """[Vs, 3, 4] blended skinning matrices."""
        A = self.ev.bone_matrices(pose[None], joints)[0]  # [J, 3, 4]
        return (A.reshape(-1, 12).T @ self.weights_by_bone).T.reshape(-1, 3, 4)

    def _through_bones(self, dA: torch.Tensor, unposed: torch.Tensor) -> torch.Tensor:
        """Change of the vertices [Vs, 3, P] for changes of the bone matrices dA [P, J, 3, 4]."""
        P = len(dA)
        per_vertex = (dA.reshape(P, -1, 12).permute(0, 2, 1) @ self.weights_by_bone).view(P, 3, 4, -1)
        d = per_vertex[:, :, 3] + sum(per_vertex[:, :, k] * unposed[:, k] for k in range(3))  # [P, 3, Vs]
        return d.permute(2, 1, 0)

    def vertices(self, p: ModelParams) -> np.ndarray:
        """[Vs, 3] posed vertices."""
        return _numpy(self.vertices_tensor(p))

    def vertices_tensor(self, p: ModelParams) -> torch.Tensor:
        """[Vs, 3] posed vertices on the device."""
        pose = self.ev._t(p.neck_pose)
        unposed = self._unposed(self.rest_vertices(p), pose)
        blended = self._blend(pose, self.ev.joints(p))
        return _apply(blended, unposed)

    def jacobian(
        self, p: ModelParams, use_shape: bool, use_expression: bool, pose_bones: list[int], use_larynx: bool
    ) -> tuple[np.ndarray, np.ndarray]:
        """Vertices [Vs, 3] and d vertices / d (shape, expression, pose of pose_bones, larynx)
        [Vs, 3, P] in that column order (only the blocks asked for)."""
        verts, jac = self.jacobian_tensors(p, use_shape, use_expression, pose_bones, use_larynx)
        return _numpy(verts), _numpy(jac)

    def jacobian_tensors(
        self, p: ModelParams, use_shape: bool, use_expression: bool, pose_bones: list[int], use_larynx: bool
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """`jacobian` as tensors on the device."""
        ev = self.ev
        t = ev._t
        pose = t(p.neck_pose)
        joints = ev.joints(p)
        unposed = self._unposed(self.rest_vertices(p), pose)
        blended = self._blend(pose, joints)
        M = blended[:, :, :3]
        verts = _apply(blended, unposed)
        blocks = []
        lo = 0 if use_shape else ev.S
        hi = ev.S + ev.E if use_expression else ev.S
        if hi > lo:
            linear = _rotate_columns(M, self.linear_directions[:, :, lo:hi])
            if joints is not None:
                # Regressed joints move only the bones' translations (the rotations do not depend
                # on the joints), affinely: a unit step of each coefficient gives the exact change.
                moved = joints[None] + ev.joint_directions[lo:hi]  # [K, J, 3]
                steps = ev.bone_matrices(pose.expand(hi - lo, -1, -1), moved)
                d_translation = (steps - ev.bone_matrices(pose[None], joints))[..., 3]  # [K, J, 3]
                linear = linear + torch.einsum("kjc,jv->vck", d_translation, self.weights_by_bone)
            blocks.append(linear)
        if pose_bones:
            steps = []
            for b in pose_bones:
                for axis in range(3):
                    for sign in (1.0, -1.0):
                        q = pose.clone()
                        q[b, axis] += sign * FD_STEP
                        steps.append(q)
            steps = torch.stack(steps)
            # LBS is linear in the bone matrices: differentiate those only...
            mats = ev.bone_matrices(steps, joints)  # [2P, J, 3, 4]
            d = self._through_bones((mats[0::2] - mats[1::2]) / (2 * FD_STEP), unposed)  # [Vs, 3, P]
            if self.pose_directions is not None:
                # ...plus the pose correctives' change of the rest shape, carried by the skinning.
                feats = pose_features(axis_angle_to_matrix(steps), ev.posed_bones)  # [2P, K]
                d_feats = (feats[0::2] - feats[1::2]) / (2 * FD_STEP)  # [P, K]
                d_rest = torch.einsum("pk,kcv->vcp", d_feats, self.pose_directions)  # [Vs, 3, P]
                d = d + _rotate_columns(M, d_rest)
            blocks.append(d)
        if use_larynx and ev.has_larynx:
            h, s = p.larynx_height, p.larynx_scale
            step = LARYNX_FD_STEP
            heights = t([[h + step], [h - step], [h], [h]])
            scales = t([[s], [s], [s + step], [s - step]])
            delta = self.larynx_delta(heights, scales)  # [4, Vs, 3]
            d_rest = torch.stack([delta[0] - delta[1], delta[2] - delta[3]], -1) / (2 * step)  # [Vs, 3, 2]
            blocks.append(_rotate_columns(M, d_rest))
        if blocks:
            jac = torch.cat(blocks, -1)
        else:
            jac = torch.zeros(len(self.idx), 3, 0, dtype=ev.dtype, device=ev.device)
        return verts, jac


def _numpy(x: torch.Tensor) -> np.ndarray:
    return x.detach().to("cpu", torch.float64).numpy()


def _apply(blended: torch.Tensor, points: torch.Tensor) -> torch.Tensor:
    """Per-vertex affine maps [Vs, 3, 4] applied to points [Vs, 3] -> [Vs, 3] (no tiny bmm)."""
    return blended[:, :, 3] + sum(blended[:, :, k] * points[:, k : k + 1] for k in range(3))


def _rotate_columns(M: torch.Tensor, cols: torch.Tensor) -> torch.Tensor:
    """M [Vs, 3, 3] @ cols [Vs, 3, K] -> [Vs, 3, K] as three broadcasts (bmm is slow for 3x3)."""
    return sum(M[:, :, k : k + 1] * cols[:, k : k + 1, :] for k in range(3))
