"""`HACK`: the head-and-neck model as a torch module.

The module holds the model's arrays as buffers and nothing about any one
evaluation: every parameter is an argument of `forward`, so any batch size
works with the same module. The maths lives in `hack_model.core`: the arrays are one
read-only `ModelBasis` (`HACK.basis`) and the forward pass is `core.forward.evaluate`
(on CUDA, small batches without gradients replay it as CUDA graphs: `core.cuda_graphs`).
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, fields
from typing import Any

import numpy as np
import torch
from torch import nn

from . import keywords
from .core.basis import ModelBasis, build_basis
from .core.cuda_graphs import GraphedEvaluate
from .core.forward import KernelBasis, evaluate, shaped_template
from .loading import load_model
from .model_data import ModelData
from .params import PARAMETER_NAMES

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
    release folder, a smplx-style `.pkl`, or a `ModelData`.

    cuda_graphs: on CUDA, replay small batches that need no gradient as CUDA graphs
    (`hack_model.core.cuda_graphs`: the same numbers, a fraction of the launch time)."""

    def __init__(
        self, source: str | os.PathLike | ModelData | None = None, *, cuda_graphs: bool = True
    ) -> None:
        super().__init__()
        data = source if isinstance(source, ModelData) else load_model(source)
        self.data = data
        self.parents: list[int] = [int(p) for p in data.bone_parents]
        self.posed_bones: list[int] = [b for b, p in enumerate(self.parents) if p >= 0]
        # The model's arrays, public and read-only as `basis`, laid out for the kernel.
        self._kernel = KernelBasis.from_basis(build_basis(data))
        au = data.action_unit_matrix
        self.register_buffer("action_unit_matrix", torch.as_tensor(au, dtype=torch.float32), persistent=False)
        self.register_buffer(
            "triangles", torch.as_tensor(data.triangles(), dtype=torch.long), persistent=False
        )
        landmarks = data.landmark_indices
        landmarks = None if landmarks is None else torch.as_tensor(landmarks, dtype=torch.long)
        self.register_buffer("landmark_indices", landmarks, persistent=False)
        self._shape_cache: tuple[torch.Tensor, torch.Tensor] | None = None
        self._graphs = GraphedEvaluate(self._kernel) if cuda_graphs else None

    @property
    def basis(self) -> ModelBasis:
        """The model's arrays (template, blendshapes by kind with their names, skinning
        weights, rest frames, larynx, joint regressor) on the model's device and dtype, in the
        model's vertex order: see `hack_model.core.basis.ModelBasis`. Read-only."""
        return self._kernel.basis

    @property
    def template(self) -> torch.Tensor:
        """[V, 3] the rest mesh (as `basis.template`)."""
        return self._kernel.basis.template

    def _apply(self, fn, *args, **kwargs):  # .to(), .cuda(), .double(): move the basis, drop caches
        self._shape_cache = None
        result = super()._apply(fn, *args, **kwargs)
        self._kernel = _map_tensors(self._kernel, fn).derived()
        if self._graphs is not None:  # graphs hold the old arrays' addresses
            self._graphs = GraphedEvaluate(self._kernel, self._graphs.capacity)
        return result

    @property
    def cuda_graph_count(self) -> int:
        """How many CUDA graphs of the forward pass this model holds now (0 off CUDA)."""
        return 0 if self._graphs is None else self._graphs.graph_count

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
            unknown, PARAMETER_NAMES, self.expression_names, self.action_unit_names
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

        if au_weights is not None:
            au_expression = au_weights @ self.action_unit_matrix
            expression = au_expression if expression is None else expression + au_expression
        parameters = {
            "shape": shape,
            "expression": expression,
            "neck_pose": neck_pose,
            "larynx_height": larynx_height,
            "larynx_scale": larynx_scale,
            "global_orient": global_orient,
            "transl": transl,
        }
        graphed = None
        if self._graphs is not None and self._graphs.applies(parameters, B):
            graphed = self._graphs(parameters, B)
        if graphed is not None:  # the graph checked finiteness: only a failure costs more
            vertices, frames = graphed.vertices, graphed.frames
            if not graphed.inputs_finite:
                p.check_inputs_finite()
            if not graphed.outputs_finite:
                p.check_finite(vertices, frames)
        else:
            p.check_inputs_finite()
            vertices, frames = evaluate(
                self._kernel, **parameters, batch_size=B, shaped=self._cached_shaped_template(shape)
            )
            p.check_finite(vertices, frames)
        vertices = vertices.expand(B, -1, 3)
        landmarks = None if self.landmark_indices is None else vertices[:, self.landmark_indices]
        return HACKOutput(
            vertices=vertices, joints=frames[:, :, :3, 3], bone_transforms=frames, landmarks=landmarks
        )

    # -------------------------------------------------------------- helpers
    def _cached_shaped_template(self, shape: torch.Tensor | None) -> torch.Tensor | None:
        """T + shape offsets (kernel layout), reused while the same shape values come back
        without gradients; None when shape needs gradients (the kernel then blends it)."""
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
        shaped = shaped_template(self._kernel, shape.detach())  # [B_shape, 3*V]
        self._shape_cache = (shape.detach().clone(), shaped)
        return shaped

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
            raise ValueError(f"the output {which} are not finite: parameter {named} too large for this model")
        raise ValueError(f"the output {which} are not finite (the model's arrays hold NaN or inf)")

    def check_inputs_finite(self) -> None:
        """A ValueError naming the first parameter that holds NaN or inf. One check over
        all of them (a few ops, one sync), then one per parameter only when it fails."""
        values = list(self.values.values())
        if not values:
            return
        with torch.no_grad():
            flat = torch.cat([v.reshape(-1) for v in values]) if len(values) > 1 else values[0]
            if bool(torch.isfinite(flat).all()):
                return
        for name, value in self.values.items():
            if not bool(torch.isfinite(value).all()):
                raise ValueError(f"{name} contains NaN or inf")

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
        if tensor.shape[0] == 0:
            raise ValueError(f"{name} has batch size 0 (shape {list(tensor.shape)}); give at least one frame")
        self.sizes[name] = tensor.shape[0]
        self.values[name] = tensor
        self.batch_size  # noqa: B018 - raise early on a mismatch
        return tensor


def _map_tensors(value, fn):
    """value with fn applied to every tensor inside (frozen dataclasses rebuilt)."""
    if isinstance(value, torch.Tensor):
        return fn(value)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return type(value)(
            **{f.name: _map_tensors(getattr(value, f.name), fn) for f in dataclasses.fields(value)}
        )
    return value
