"""A float64 evaluation of a HACK-layout model for fitting: vertices of any subset of the
mesh and their derivatives with respect to every parameter.

It mirrors `HACK.forward` (tests compare the two) but works on a vertex subset and returns
Jacobians cheaply: vertices are linear in shape and expression given the pose, so those
columns are the skinned blendshape directions; pose and larynx columns come from central
differences in float64.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from hack_model import lbs
from hack_model.anatomy import pose_limits_rad
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
    extra: dict = field(default_factory=dict)

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
    """

    def __init__(self, model: HACK, anchor: str = "root") -> None:
        if anchor not in ("root", "head"):
            raise ValueError(f"anchor must be 'root' or 'head', got {anchor!r}")
        self.anchor = anchor
        d = model.data
        f64 = torch.float64
        V = d.num_vertices
        self.model = model
        self.num_vertices = V
        self.S, self.E, self.J = d.num_shape, d.num_expression, d.num_bones
        directions = model.directions.detach().to("cpu", f64).view(-1, 3, V)
        # Shape then expression, contiguous: one product gives the linear part of every vertex.
        self.linear_dirs = torch.cat([directions[model.num_dynamic :], directions[: self.E]]).contiguous()
        self.linear_dirs_vm = self.linear_dirs.permute(2, 1, 0).contiguous()  # [V, 3, K]: fast row gathers
        self.pose_dirs = directions[self.E : model.num_dynamic]  # [P9, 3, V]
        self.template = model.template.detach().to("cpu", f64).view(3, V)
        self.weights_t = model.skinning_weights_t.detach().to("cpu", f64)  # [J, V]
        self.rest_frames = model.rest_frames.detach().to("cpu", f64)
        relative = model.relative_rest
        self.relative_rest = None if relative is None else relative.detach().to("cpu", f64)
        self.joint_template = self.joint_dirs = None
        if model.joint_regressor is not None:  # the model's regressed joint blendshapes
            J, E = d.num_bones, self.E
            self.joint_template = model.joint_template.detach().to("cpu", f64).T.contiguous()  # [J, 3]
            rows = model.joint_directions.detach().to("cpu", f64).view(-1, 3, J)  # [expression, shape]
            self.joint_dirs = torch.cat([rows[E:], rows[:E]]).transpose(1, 2).contiguous()  # [K, J, 3]
        self.parents = model.parents
        self.posed_bones = model.posed_bones
        self.has_pose_correctives = bool(self.pose_dirs.abs().max() > 0) if self.pose_dirs.numel() else False
        # The larynx goes through the model's own sampling (float32; its offsets are piecewise
        # linear in the height, so a coarser central difference is exact within each piece).
        self.has_larynx = getattr(model, "larynx_index", None) is not None
        if self.has_larynx:
            self.larynx_index = model.larynx_index.cpu().numpy()
            self._larynx_pos = np.full(V, -1, np.int64)
            self._larynx_pos[self.larynx_index] = np.arange(len(self.larynx_index))
            self._larynx_rest = self.larynx_offsets_raw(torch.zeros(1, 1), torch.ones(1, 1))
        rom = d.range_of_motion
        self.pose_limits = pose_limits_rad(rom) if rom is not None else np.full((self.J, 3), np.deg2rad(30.0))
        self.triangles = d.triangles()

    # ------------------------------------------------------------------ evaluation
    def larynx_offsets_raw(self, height: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
        """[B, V_larynx, 3] float64 larynx offsets of the support vertices (model.larynx_index)."""
        m = self.model
        dev, dt = m.template.device, m.template.dtype
        with torch.no_grad():
            out = m._larynx_offsets(height.to(dev, dt), scale.to(dev, dt))
        return out.to("cpu", torch.float64)

    def larynx_offsets(self, height: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
        """[B, V_larynx, 3] change from the rest larynx for height, scale [B, 1]."""
        return self.larynx_offsets_raw(height, scale) - self._larynx_rest

    def _larynx_delta(self, idx: np.ndarray, height: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
        """[B, 3, Vs] larynx offsets (from the rest larynx) of the vertices idx."""
        out = torch.zeros(height.shape[0], 3, len(idx), dtype=torch.float64)
        if not self.has_larynx:
            return out
        pos = self._larynx_pos[idx]
        hit = np.nonzero(pos >= 0)[0]
        if hit.size:
            out[:, :, hit] = self.larynx_offsets(height, scale)[:, pos[hit]].transpose(1, 2)
        return out

    def joints(self, p: ModelParams) -> torch.Tensor | None:
        """[J, 3] the joints of p's shape and expression (None when the bones are fixed)."""
        if self.joint_template is None:
            return None
        coef = torch.as_tensor(np.concatenate([p.shape, p.expression]))
        return self.joint_template + torch.einsum("k,kjc->jc", coef, self.joint_dirs)

    def root_bone_matrices(self, neck_pose: torch.Tensor, joints: torch.Tensor | None = None) -> torch.Tensor:
        """[B, J, 3, 4] the model's own skinning matrices for neck_pose [B, J, 3] (and the
        joints [J, 3] or [B, J, 3] of a model with a joint regressor)."""
        rotations = lbs.axis_angle_to_matrix(neck_pose)
        if self.joint_template is None:
            rest, relative = self.rest_frames, self.relative_rest
        else:
            if joints is None:
                raise ValueError("this model regresses its joints: pass joints(params)")
            joints = joints.expand(neck_pose.shape[0], -1, -1)
            rest = lbs.rest_frames_from_joints(joints, self.rest_frames[:, :3, :3])
            relative = lbs.relative_rest_transforms(rest, self.parents)
        frames = lbs.forward_kinematics(rotations, relative, self.parents)
        return lbs.skinning_matrices(frames, rest)

    def bone_matrices(self, neck_pose: torch.Tensor, joints: torch.Tensor | None = None) -> torch.Tensor:
        """[B, J, 3, 4] skinning matrices in this evaluator's anchoring."""
        mats = self.root_bone_matrices(neck_pose, joints)
        if self.anchor == "root":
            return mats
        head = mats[:, -1:]  # [B, 1, 3, 4]
        R_inv = head[..., :3].transpose(-1, -2)
        rot = R_inv @ mats[..., :3]
        trans = R_inv @ (mats[..., 3:] - head[..., 3:])
        return torch.cat([rot, trans], -1)

    def head_transform(
        self, neck_pose: np.ndarray, joints: torch.Tensor | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Rotation [3, 3] and translation [3] of the head bone (rest -> posed) in the model's frame:
        a head-anchored mesh v' maps to the model's own mesh as R v' + t."""
        pose = torch.as_tensor(np.asarray(neck_pose, np.float64))[None]
        A = self.root_bone_matrices(pose, joints)[0, -1].numpy()
        if self.anchor == "root":
            return np.eye(3), np.zeros(3)
        return A[:, :3], A[:, 3]

    def unposed(self, p: ModelParams, idx: np.ndarray) -> torch.Tensor:
        """[3, Vs] template + shape + expression + larynx (no pose correctives) at idx."""
        t = torch.as_tensor
        coef = t(np.concatenate([p.shape, p.expression]))
        full = self.template + (coef @ self.linear_dirs.view(len(coef), -1)).view(3, -1)
        base = full[:, idx]
        base += self._larynx_delta(idx, t([[p.larynx_height]]), t([[p.larynx_scale]]))[0]
        return base

    def _pose(
        self, base: torch.Tensor, neck_pose: torch.Tensor, idx: np.ndarray, joints: torch.Tensor | None
    ) -> torch.Tensor:
        """Pose correctives + skinning of base [3, Vs] or [B, 3, Vs] for neck_pose [B, J, 3] -> [B, Vs, 3]."""
        B = neck_pose.shape[0]
        planes = base.expand(B, 3, len(idx))
        if self.has_pose_correctives:
            feats = lbs.pose_features(lbs.axis_angle_to_matrix(neck_pose), self.posed_bones)
            planes = planes + torch.einsum("bk,kcv->bcv", feats, self.pose_dirs[:, :, idx])
        return lbs.skin_vertex_planes(
            planes.contiguous(), self.weights_t[:, idx], self.bone_matrices(neck_pose, joints)
        )

    def vertices(self, p: ModelParams, idx: np.ndarray | None = None) -> np.ndarray:
        """[Vs, 3] posed vertices (all when idx is None)."""
        idx = np.arange(self.num_vertices) if idx is None else idx
        base = self.unposed(p, idx)
        return self._pose(base, torch.as_tensor(p.neck_pose)[None], idx, self.joints(p))[0].numpy()

    def subset(self, idx: np.ndarray) -> Subset:
        """Precomputed gathers for repeated evaluations on the vertices idx."""
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
    """Evaluation restricted to vertices idx, with their blendshape rows gathered once."""

    def __init__(self, ev: ModelEvaluator, idx: np.ndarray) -> None:
        self.ev = ev
        self.idx = np.asarray(idx)
        ti = torch.as_tensor(self.idx)
        self.template = ev.template[:, ti].T.contiguous()  # [Vs, 3]
        self.dirs = ev.linear_dirs_vm[ti]  # [Vs, 3, K]
        self.weights = ev.weights_t[:, ti]  # [J, Vs]
        self.pose_dirs = ev.pose_dirs[:, :, ti] if ev.has_pose_correctives else None
        self.larynx_hit = None
        if ev.has_larynx:
            pos = ev._larynx_pos[self.idx]
            hit = np.nonzero(pos >= 0)[0]
            if hit.size:
                self.larynx_hit = torch.as_tensor(hit)
                self.larynx_pos = torch.as_tensor(pos[hit])

    def larynx_delta(self, height: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
        """[B, Vs, 3] larynx offsets from the rest larynx for height, scale [B, 1]."""
        out = torch.zeros(height.shape[0], len(self.idx), 3, dtype=torch.float64)
        if self.larynx_hit is not None:
            out[:, self.larynx_hit] = self.ev.larynx_offsets(height, scale)[:, self.larynx_pos]
        return out

    def _rest(self, p: ModelParams) -> torch.Tensor:
        """[Vs, 3] unposed vertices without pose correctives."""
        t = torch.as_tensor
        coef = t(np.concatenate([p.shape, p.expression]))
        base = self.template + self.dirs @ coef
        if self.larynx_hit is not None:
            base = base + self.larynx_delta(t([[p.larynx_height]]), t([[p.larynx_scale]]))[0]
        return base

    def _planes(self, rest: torch.Tensor, pose: torch.Tensor) -> torch.Tensor:
        """[Vs, 3] rest + pose correctives for one pose [J, 3]."""
        if self.pose_dirs is None:
            return rest
        feats = lbs.pose_features(lbs.axis_angle_to_matrix(pose[None]), self.ev.posed_bones)[0]
        return rest + torch.einsum("k,kcv->vc", feats, self.pose_dirs)

    def _blend(self, pose: torch.Tensor, joints: torch.Tensor | None) -> torch.Tensor:
        """[Vs, 3, 4] blended skinning matrices."""
        A = self.ev.bone_matrices(pose[None], joints)[0]  # [J, 3, 4]
        return (A.reshape(-1, 12).T @ self.weights).T.reshape(-1, 3, 4)

    def _through_bones(self, dA: torch.Tensor, planes: torch.Tensor) -> torch.Tensor:
        """Change of the vertices [Vs, 3, P] for changes of the bone matrices dA [P, J, 3, 4]."""
        P = len(dA)
        per_vertex = (dA.reshape(P, -1, 12).permute(0, 2, 1) @ self.weights).view(P, 3, 4, -1)
        d = per_vertex[:, :, 3] + sum(per_vertex[:, :, k] * planes[:, k] for k in range(3))  # [P, 3, Vs]
        return d.permute(2, 1, 0)

    def vertices(self, p: ModelParams) -> np.ndarray:
        pose = torch.as_tensor(p.neck_pose)
        planes = self._planes(self._rest(p), pose)
        B = self._blend(pose, self.ev.joints(p))
        return _apply(B, planes).numpy()

    def jacobian(
        self, p: ModelParams, use_shape: bool, use_expression: bool, pose_bones: list[int], use_larynx: bool
    ) -> tuple[np.ndarray, np.ndarray]:
        ev = self.ev
        t = torch.as_tensor
        pose = t(p.neck_pose)
        joints = ev.joints(p)
        rest = self._rest(p)
        planes = self._planes(rest, pose)
        blended = self._blend(pose, joints)
        M = blended[:, :, :3]
        verts = _apply(blended, planes)
        blocks = []
        lo = 0 if use_shape else ev.S
        hi = ev.S + ev.E if use_expression else ev.S
        if hi > lo:
            linear = _rotate_columns(M, self.dirs[:, :, lo:hi])
            if joints is not None:
                # Regressed joints move only the bones' translations (the rotations do not depend
                # on the joints), affinely: a unit step of each coefficient gives the exact change.
                moved = joints[None] + ev.joint_dirs[lo:hi]  # [K, J, 3]
                steps = ev.bone_matrices(pose.expand(hi - lo, -1, -1), moved)
                d_translation = (steps - ev.bone_matrices(pose[None], joints))[..., 3]  # [K, J, 3]
                linear = linear + torch.einsum("kjc,jv->vck", d_translation, self.weights)
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
            d = self._through_bones((mats[0::2] - mats[1::2]) / (2 * FD_STEP), planes)  # [Vs, 3, P]
            if self.pose_dirs is not None:
                # ...plus the pose correctives' change of the rest shape, carried by the skinning.
                feats = lbs.pose_features(lbs.axis_angle_to_matrix(steps), ev.posed_bones)  # [2P, K]
                d_feats = (feats[0::2] - feats[1::2]) / (2 * FD_STEP)  # [P, K]
                d_rest = torch.einsum("pk,kcv->vcp", d_feats, self.pose_dirs)  # [Vs, 3, P]
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
        jac = torch.cat(blocks, -1) if blocks else torch.zeros(len(self.idx), 3, 0, dtype=torch.float64)
        return verts.numpy(), jac.numpy()


def _apply(blended: torch.Tensor, planes: torch.Tensor) -> torch.Tensor:
    """Per-vertex affine maps [Vs, 3, 4] applied to points [Vs, 3] -> [Vs, 3] (no tiny bmm)."""
    return blended[:, :, 3] + sum(blended[:, :, k] * planes[:, k : k + 1] for k in range(3))


def _rotate_columns(M: torch.Tensor, cols: torch.Tensor) -> torch.Tensor:
    """M [Vs, 3, 3] @ cols [Vs, 3, K] -> [Vs, 3, K] as three broadcasts (bmm is slow for 3x3)."""
    return sum(M[:, :, k : k + 1] * cols[:, k : k + 1, :] for k in range(3))
