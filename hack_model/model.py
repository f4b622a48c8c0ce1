"""`HACK`: the head-and-neck model as a torch module.

The module holds the model's arrays as buffers and nothing about any one
evaluation: every parameter is an argument of `forward`, so any batch size
works with the same module. The maths lives in `hack_model.lbs`.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, fields
from typing import Any

import numpy as np
import torch
from torch import nn

from . import keywords, lbs
from .loading import load_model
from .model_data import ModelData

ParamValue = torch.Tensor | np.ndarray | float | list | None


@dataclass
class HACKOutput(Mapping):
    """The result of `HACK.forward`: a dataclass that also reads as a mapping, like smplx's
    ModelOutput (`out.vertices` or `out["vertices"]`; keys() lists the fields that are set)."""

    vertices: torch.Tensor  # [B, V, 3]
    joints: torch.Tensor  # [B, J, 3] bone heads
    bone_transforms: torch.Tensor  # [B, J, 4, 4] posed world frames of the bones
    landmarks: torch.Tensor | None = None  # [B, 68, 3] when the model has landmarks

    def _set_fields(self) -> list[str]:
        return [f.name for f in fields(self) if getattr(self, f.name) is not None]

    def __getitem__(self, key: str) -> torch.Tensor:
        if key not in self._set_fields():
            raise KeyError(key)
        return getattr(self, key)

    def __iter__(self) -> Iterator[str]:
        return iter(self._set_fields())

    def __len__(self) -> int:
        return len(self._set_fields())

    __eq__ = object.__eq__  # tensors have no single truth value
    __hash__ = None


class HACK(nn.Module):
    """HACK(source=None): the embedded default model, a package `.npz`, an official
    release folder, a smplx-style `.pkl`, or a `ModelData`."""

    def __init__(self, source: str | os.PathLike | ModelData | None = None) -> None:
        super().__init__()
        data = source if isinstance(source, ModelData) else load_model(source)
        self.data = data
        V, E = data.num_vertices, data.num_expression
        self.parents: list[int] = [int(p) for p in data.bone_parents]
        self.posed_bones: list[int] = [b for b, p in enumerate(self.parents) if p >= 0]
        f32 = torch.float32

        def buffer(name: str, value: Any, dtype: torch.dtype = f32) -> None:
            if isinstance(value, torch.Tensor):
                value = value.numpy()
            if value is not None and dtype.is_floating_point:
                # Subnormal floats make CPU arithmetic many times slower; they are zero here.
                value = np.where(np.abs(value) < np.finfo(np.float32).tiny, 0.0, value)
            tensor = None if value is None else torch.as_tensor(np.ascontiguousarray(value), dtype=dtype)
            self.register_buffer(name, tensor, persistent=False)

        # One matrix for every linear blendshape, rows ordered [expression, pose, shape] so
        # that the rows used while the shaped template is cached form one contiguous slice;
        # columns coordinate-major (all x, then y, then z) for the skinning kernel.
        def planes(directions: np.ndarray) -> np.ndarray:  # [K, V, 3] -> [K, 3*V]
            return directions.transpose(0, 2, 1).reshape(len(directions), 3 * V)

        pose_dirs = data.pose_directions[self.posed_bones].reshape(-1, V, 3)
        directions = np.concatenate(
            [planes(data.expression_directions), planes(pose_dirs), planes(data.shape_directions)]
        )
        self.num_dynamic = E + pose_dirs.shape[0]
        buffer("directions", directions)
        buffer("template", data.template_vertices.T.reshape(-1))  # [3*V]
        buffer("skinning_weights_t", data.skinning_weights.T)  # [J, V]
        buffer("rest_frames", data.bone_rest_transforms)
        buffer("joint_regressor", data.joint_regressor)
        buffer("action_unit_matrix", data.action_unit_matrix)
        buffer("triangles", data.triangles(), torch.long)
        buffer("landmark_indices", data.landmark_indices, torch.long)
        if data.joint_regressor is None:
            relative = lbs.relative_rest_transforms(
                torch.as_tensor(data.bone_rest_transforms, dtype=torch.float64), self.parents
            )
            buffer("relative_rest", relative)
        else:
            buffer("relative_rest", None)
        self._setup_larynx(data)
        self._setup_joint_regression(data)
        self._shape_cache: tuple[torch.Tensor, torch.Tensor] | None = None

    def _setup_joint_regression(self, data: ModelData) -> None:
        """Regress the joints' rest template and blendshapes once: per call the joints are then
        a [K] x [K, 3J] product instead of a blend over every vertex."""
        if data.joint_regressor is None:
            self.register_buffer("joint_template", None, persistent=False)
            self.register_buffer("joint_directions", None, persistent=False)
            return
        V, E = data.num_vertices, data.num_expression
        R = torch.as_tensor(data.joint_regressor, dtype=torch.float64).T  # [V, J]
        template = self.template.view(3, V).double() @ R  # [3, J], larynx at rest included
        # smplx counts expression as shape for the joints: rows [expression, shape]
        rows = torch.cat([self.directions[:E], self.directions[self.num_dynamic :]]).double()
        directions = rows.view(len(rows), 3, V) @ R  # [E + S, 3, J]
        self.register_buffer("joint_template", template.float(), persistent=False)
        self.register_buffer("joint_directions", directions.reshape(len(rows), -1).float(), persistent=False)

    def _setup_larynx(self, data: ModelData) -> None:
        """Keep only vertices whose map columns are non-zero: nothing else can ever move."""
        names = ("larynx_map", "larynx_uvs", "larynx_direction", "larynx_index", "larynx_rest_offsets")
        if not data.has_larynx:
            for name in names:
                self.register_buffer(name, None, persistent=False)
            return
        W = data.larynx_map.shape[1]
        u = np.clip(data.vertex_uvs[:, 0], 0.0, 1.0) * (W - 1)
        column_used = np.abs(data.larynx_map).max(axis=0) > 0
        left = np.floor(u).astype(np.int64)
        right = np.minimum(left + 1, W - 1)
        support = np.nonzero(column_used[left] | column_used[right])[0]
        values = (data.larynx_map, data.vertex_uvs[support], data.larynx_direction)
        for name, value in zip(names, values):
            self.register_buffer(name, torch.as_tensor(value, dtype=torch.float32), persistent=False)
        self.register_buffer("larynx_index", torch.as_tensor(support, dtype=torch.long), persistent=False)
        # The rest mesh carries the larynx at height 0 and scale 1, as in the reference.
        neutral = self._larynx_offsets(torch.zeros(1, 1), torch.ones(1, 1))  # [1, V_larynx, 3]
        self.register_buffer("larynx_rest_offsets", neutral, persistent=False)
        planes = self.template.view(3, -1).index_add(1, self.larynx_index, neutral[0].T)
        self.template = planes.reshape(-1)

    def _apply(self, fn, *args, **kwargs):  # .to(), .cuda(), .double(): drop device-bound caches
        self._shape_cache = None
        return super()._apply(fn, *args, **kwargs)

    # ----------------------------------------------------------------- names
    @property
    def expression_names(self) -> list[str]:
        return self.data.expression_names

    @property
    def action_unit_names(self) -> list[str]:
        return self.data.action_unit_names

    @property
    def bone_names(self) -> list[str]:
        return self.data.bone_names

    @property
    def faces(self) -> np.ndarray:
        """[F, 3] int64 triangles (quads split in two), as smplx's `model.faces`."""
        return self.triangles.cpu().numpy()

    @property
    def faces_tensor(self) -> torch.Tensor:
        """[F, 3] long triangles on the model's device."""
        return self.triangles

    @property
    def num_shape(self) -> int:
        return self.data.num_shape

    @property
    def num_expression(self) -> int:
        return self.data.num_expression

    @property
    def num_bones(self) -> int:
        return self.data.num_bones

    @property
    def num_vertices(self) -> int:
        return self.data.num_vertices

    def extra_repr(self) -> str:
        d = self.data
        return (
            f"name={d.name!r}, vertices={d.num_vertices}, shape={d.num_shape}, "
            f"expression={d.num_expression}, bones={d.num_bones}, larynx={d.has_larynx}"
        )

    # --------------------------------------------------------------- forward
    def forward(
        self,
        shape: ParamValue = None,
        expression: ParamValue = None,
        neck_pose: ParamValue = None,
        larynx_height: ParamValue = None,
        larynx_scale: ParamValue = None,
        action_units: Mapping[str, ParamValue] | ParamValue = None,
        global_orient: ParamValue = None,
        transl: ParamValue = None,
        betas: ParamValue = None,
        **unknown: Any,
    ) -> HACKOutput:
        """Evaluate the model; omitted parameters are neutral.

        shape [B, S'] (S' <= num_shape, unit variance), expression [B, E],
        neck_pose [B, J, 3] axis-angle in each bone's rest frame, larynx_height [B, 1],
        larynx_scale [B, 1] (default 1), action_units {"AU12": [B] or float} or
        [B, A] ordered as action_unit_names, global_orient [B, 3] axis-angle about
        the origin, transl [B, 3]. Parameters with batch size 1 broadcast.
        `expression` also takes {"jawOpen": [B] or float}; `betas` is an alias of `shape`.
        """
        keywords.reject_unknown_keywords(
            unknown, _FORWARD_PARAMETERS, self.expression_names, self.action_unit_names
        )
        shape = keywords.resolve_shape_alias(shape, betas)
        E, J, S = self.num_expression, self.num_bones, self.num_shape
        p = _Params(self.template)
        shape = p.take("shape", shape, (None,))
        if shape is not None and shape.shape[1] > S:
            raise ValueError(f"shape has {shape.shape[1]} components; this model has {S}")
        if isinstance(expression, Mapping):
            expression = self._named_weights(p, "expression", expression, self.expression_names)
        expression = p.take("expression", expression, (E,))
        neck_pose = p.take("neck_pose", neck_pose, (J, 3))
        larynx_height = p.take("larynx_height", larynx_height, (1,))
        larynx_scale = p.take("larynx_scale", larynx_scale, (1,))
        au_weights = self._action_unit_weights(p, action_units)
        global_orient = p.take("global_orient", global_orient, (3,))
        transl = p.take("transl", transl, (3,))
        B = p.batch_size
        dtype, device = self.template.dtype, self.template.device

        if au_weights is not None:
            au_expression = au_weights @ self.action_unit_matrix
            expression = au_expression if expression is None else expression + au_expression
        if neck_pose is not None:
            rotations = lbs.axis_angle_to_matrix(neck_pose)  # [B, J, 3, 3]
        else:
            rotations = torch.eye(3, dtype=dtype, device=device).expand(B, J, 3, 3)

        # Coefficients of every linear blendshape in one row per frame.
        zeros = self.template.new_zeros
        coefficients = [
            (expression if expression is not None else zeros(B, E)).expand(B, E),
            lbs.pose_features(rotations, self.posed_bones)
            if neck_pose is not None
            else zeros(B, self.num_dynamic - E),
        ]
        shaped = self._cached_shaped_template(shape)
        if shaped is None and shape is not None:  # shape needs gradients: blend it with the rest
            coefficients.append(torch.nn.functional.pad(shape, (0, S - shape.shape[1])).expand(B, S))
            planes = lbs.blend_shapes(self.template, torch.cat(coefficients, 1), self.directions)
        else:
            base = self.template if shaped is None else shaped
            planes = lbs.blend_shapes(base, torch.cat(coefficients, 1), self.directions[: self.num_dynamic])

        if larynx_height is not None or larynx_scale is not None:
            planes = self._add_larynx(planes, larynx_height, larynx_scale)

        rest_frames, relative_rest = self._rest_frames(shape, coefficients[0], B)
        frames = lbs.forward_kinematics(rotations, relative_rest, self.parents)
        if neck_pose is not None or self.joint_regressor is not None:
            bone_matrices = lbs.skinning_matrices(frames, rest_frames)
            vertices = lbs.skin_vertex_planes(planes, self.skinning_weights_t, bone_matrices)
        else:
            vertices = planes.transpose(1, 2).contiguous()
        if global_orient is not None or transl is not None:
            R = (
                lbs.axis_angle_to_matrix(global_orient)
                if global_orient is not None
                else (torch.eye(3, dtype=dtype, device=device).expand(B, 3, 3))
            )
            t = transl.expand(B, 3) if transl is not None else self.template.new_zeros(B, 3)
            vertices = lbs.rigid_transform(vertices, R.expand(B, 3, 3), t)
            world = self.template.new_zeros(B, 4, 4)
            world[:, :3, :3] = R
            world[:, :3, 3] = t
            world[:, 3, 3] = 1.0
            frames = world[:, None] @ frames
        p.check_finite(vertices, frames)
        vertices = vertices.expand(B, -1, 3)
        landmarks = None if self.landmark_indices is None else vertices[:, self.landmark_indices]
        return HACKOutput(
            vertices=vertices, joints=frames[:, :, :3, 3], bone_transforms=frames, landmarks=landmarks
        )

    # -------------------------------------------------------------- helpers
    def _cached_shaped_template(self, shape: torch.Tensor | None) -> torch.Tensor | None:
        """T + shape offsets, reused while the same shape values come back without gradients."""
        if shape is None:
            return None
        if shape.requires_grad and torch.is_grad_enabled():
            return None
        cache = self._shape_cache
        if (
            cache is not None
            and cache[0].shape == shape.shape
            and cache[0].device == shape.device
            and torch.equal(cache[0], shape)
        ):
            return cache[1]
        S = self.num_shape
        padded = torch.nn.functional.pad(shape.detach(), (0, S - shape.shape[1]))
        shaped = lbs.blend_shapes(self.template, padded, self.directions[self.num_dynamic :])
        shaped = shaped.reshape(len(padded), -1)  # [B_shape, 3*V]
        self._shape_cache = (shape.detach().clone(), shaped)
        return shaped

    def _larynx_offsets(self, height: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
        """[B, V_larynx, 3] offsets of the larynx-support vertices."""
        return lbs.sample_larynx_offsets(
            self.larynx_map, self.larynx_uvs, self.larynx_direction, height, scale
        )

    def _add_larynx(self, planes: torch.Tensor, height, scale) -> torch.Tensor:
        """planes [B, 3, V] plus the change from the rest larynx (height 0, scale 1)."""
        if self.larynx_map is None:
            raise ValueError("larynx_height/larynx_scale given, but this model has no larynx map")
        B = planes.shape[0]
        height = (height if height is not None else planes.new_zeros(1, 1)).expand(B, 1)
        scale = (scale if scale is not None else planes.new_ones(1, 1)).expand(B, 1)
        delta = self._larynx_offsets(height, scale) - self.larynx_rest_offsets  # [B, V_larynx, 3]
        # planes is a fresh result of blend_shapes, so adding in place is safe for autograd.
        return planes.index_add_(2, self.larynx_index, delta.transpose(1, 2))

    def _rest_frames(
        self, shape: torch.Tensor | None, expression: torch.Tensor, B: int
    ) -> tuple[torch.Tensor, torch.Tensor]:
        if self.joint_regressor is None:
            return self.rest_frames, self.relative_rest
        # SMPL-style: joints regressed from the shaped template, before pose offsets
        # (smplx counts expression as shape here).
        S = self.num_shape
        if shape is None:
            shape = self.template.new_zeros(1, S)
        coefficients = torch.cat(
            [expression, torch.nn.functional.pad(shape, (0, S - shape.shape[1])).expand(B, S)], 1
        )
        J = self.joint_template.shape[1]
        joints = (coefficients @ self.joint_directions).view(B, 3, J) + self.joint_template  # [B, 3, J]
        rest = lbs.rest_frames_from_joints(joints.transpose(1, 2), self.rest_frames[:, :3, :3])
        return rest, lbs.relative_rest_transforms(rest, self.parents)

    def _action_unit_weights(self, p: _Params, action_units) -> torch.Tensor | None:
        names = self.action_unit_names
        if action_units is None:
            return None
        if isinstance(action_units, Mapping):
            return self._named_weights(p, "action unit", action_units, names)
        return p.take("action_units", action_units, (len(names),))

    def _named_weights(self, p: _Params, what: str, mapping: Mapping, names: list[str]) -> torch.Tensor:
        """{name: [B] or float} -> weights [B, len(names)], zero where a name is not given."""
        keywords.check_names(what, mapping, names)
        label = what.replace(" ", "_") + ("s" if what == "action unit" else "")
        columns = {}
        for name, value in mapping.items():
            columns[name] = p.take(f"{label}[{name!r}]", value, (), allow_scalar=True)
        B = p.batch_size
        weights = self.template.new_zeros(B, len(names))
        for name, value in columns.items():
            weights[:, names.index(name)] = value.reshape(-1).expand(B)
        return weights

    # ------------------------------------------------------------ utilities
    def neutral_vertices(self) -> np.ndarray:
        """[V, 3] rest mesh (neutral shape, expression, pose and larynx) as numpy."""
        with torch.no_grad():
            return self().vertices[0].cpu().numpy()


_FORWARD_PARAMETERS = (
    "shape",
    "expression",
    "neck_pose",
    "larynx_height",
    "larynx_scale",
    "action_units",
    "global_orient",
    "transl",
)


class _Params:
    """Checks and converts forward() arguments, tracking the batch size they imply."""

    def __init__(self, reference: torch.Tensor) -> None:
        self.reference = reference
        self.sizes: dict[str, int] = {}
        self.values: dict[str, torch.Tensor] = {}

    def check_finite(self, vertices: torch.Tensor, frames: torch.Tensor) -> None:
        """Finite in, finite out: a ValueError naming the parameter(s) whose size made
        the outputs overflow (the largest magnitudes first)."""
        # A finite sum means every element is finite (NaN and inf propagate); only when it is
        # not (also when huge finite values overflow it) is the exact check needed.
        if bool(torch.isfinite(vertices.sum() + frames.sum())):
            return
        if bool(torch.isfinite(vertices).all()) and bool(torch.isfinite(frames).all()):
            return
        which = "vertices" if not bool(torch.isfinite(vertices).all()) else "joints"
        sizes = {k: float(v.detach().abs().max()) for k, v in self.values.items() if v.numel()}
        culprits = sorted(sizes, key=sizes.get, reverse=True)
        if culprits:
            named = ", ".join(f"'{k}' (largest |value| {sizes[k]:.3g})" for k in culprits[:3])
            raise ValueError(
                f"the output {which} are not finite: parameter {named} too large for this model"
            )
        raise ValueError(f"the output {which} are not finite (the model's arrays hold NaN or inf)")

    @property
    def batch_size(self) -> int:
        sizes = set(self.sizes.values()) - {1}
        if len(sizes) > 1:
            detail = ", ".join(f"{k} has {v}" for k, v in self.sizes.items())
            raise ValueError(f"parameters disagree on the batch size: {detail}")
        return sizes.pop() if sizes else 1

    def take(self, name: str, value: ParamValue, trailing: tuple, allow_scalar: bool = False):
        if value is None:
            return None
        ref = self.reference
        if isinstance(value, torch.Tensor):
            if value.device != ref.device:
                raise ValueError(
                    f"{name} is on {value.device} but the model is on {ref.device}; "
                    f"move it with .to({str(ref.device)!r})"
                )
            tensor = value if value.dtype == ref.dtype else value.to(ref.dtype)
        else:
            try:
                tensor = torch.as_tensor(
                    np.asarray(value, dtype=np.float64), dtype=ref.dtype, device=ref.device
                )
            except (TypeError, ValueError):
                raise ValueError(f"{name} must be numeric, got {type(value).__name__}") from None
        if allow_scalar and tensor.ndim <= 1:
            tensor = tensor.reshape(-1)
        else:
            expected = "[B" + "".join(f", {'?' if t is None else t}" for t in trailing) + "]"
            if tensor.ndim != 1 + len(trailing) or any(
                t is not None and have != t for have, t in zip(tensor.shape[1:], trailing)
            ):
                raise ValueError(f"{name} must have shape {expected}, got {list(tensor.shape)}")
        if not torch.isfinite(tensor).all():
            raise ValueError(f"{name} contains NaN or inf")
        if tensor.shape[0] == 0:
            raise ValueError(f"{name} has batch size 0 (shape {list(tensor.shape)}); give at least one frame")
        self.sizes[name] = tensor.shape[0]
        self.values[name] = tensor
        self.batch_size  # noqa: B018 - raise early on a mismatch
        return tensor
