"""The forward pass as one pure function of (kernel layout, parameters).

`KernelBasis.from_basis` lays a `ModelBasis` out for speed, once:
- vertices are reordered so that each kind of blendshape moves one contiguous range
  (expressions [expression_start, +V_e), pose correctives [pose_start, +V_p)): the
  zero rows of sparse directions are never stored nor multiplied, and no scatter is
  needed;
- vertices carried by one bone alone (weight 1) form runs skinned by that bone's matrix,
  without a blend (on the CPU; a GPU blends all vertices in one pass, and multiplies sparse
  expressions densely over their range: fewer launches);
- meshes are coordinate-major ([B, 3, V]: x of every vertex, then y, then z).
`evaluate` returns the vertices in the model's own order.

Shape notes: B batch, V vertices, J bones, S shape, E expression, P posed bones.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np
import torch

from . import kinematics
from .basis import ModelBasis
from .blendshapes import BlockSparse, add_blend_shapes_to_range, add_block_sparse_blend_shapes
from .larynx import RowProfiles, larynx_columns, sample_row_profiles
from .rotations import axis_angle_to_matrix, axis_angle_to_quaternion, quaternion_forms, quaternion_products
from .skinning import rigid_planes, skin_planes


@dataclass(frozen=True)
class SkinningRun:
    """Kernel vertices [start, stop) skinned by one bone (bone >= 0) or blended (bone = -1);
    weights_by_bone [J, stop - start] for a blended run."""

    start: int
    stop: int
    bone: int


@dataclass(frozen=True)
class KernelBasis:
    """A `ModelBasis` laid out for the forward kernel (see the module's docstring).

    order [V]: kernel vertex p is model vertex order[p]; model_position [V]: where model
    vertex v sits in the kernel (order's inverse). template [3 * V]; shape_directions
    [S, 3 * V]; expression_directions [E, 3 * V_e] from expression_start;
    expression_blocks: the same as `BlockSparse` (None when that saves little);
    pose_directions [9 P, 3 * V_p] from pose_start; weights_by_bone [J, V]; runs: the
    skinning runs covering [0, V); larynx_start, larynx_profiles [V_r]: the
    kernel vertices [larynx_start, +V_r) that span the larynx, with their map columns
    (zero for the others in the span); minus_larynx_rest [V_r]: minus the value at rest
    (the template carries that); output_index [3 * V]: where model vertex v's
    coordinate c sits in a flattened [3, V] kernel mesh (index 3 v + c);
    posed: the posed bones as a slice when they are a range. Derived from the basis's
    frames in its dtype (`derived`; None when joints are regressed: the frames then
    change with shape): local_forms [J, 16, 16] (`kinematics.local_rotation_forms`),
    rest_inverse [J, 4, 4].
    """

    basis: ModelBasis
    order: torch.Tensor
    model_position: torch.Tensor
    template: torch.Tensor
    shape_directions: torch.Tensor
    expression_directions: torch.Tensor
    expression_start: int
    expression_blocks: BlockSparse | None
    pose_directions: torch.Tensor
    pose_start: int
    weights_by_bone: torch.Tensor
    runs: tuple[SkinningRun, ...]
    output_index: torch.Tensor
    posed: slice | list[int]
    larynx_start: int
    larynx_profiles: RowProfiles | None
    minus_larynx_rest: torch.Tensor | None
    local_forms: torch.Tensor | None = None
    rest_inverse: torch.Tensor | None = None

    @staticmethod
    def layout(basis: ModelBasis) -> tuple[np.ndarray, tuple[SkinningRun, ...], int, int]:
        """(order [V], runs, expression_start, pose_start) of a basis (numpy, once)."""
        V, J = basis.num_vertices, basis.num_bones
        in_expr = np.zeros(V, bool)
        in_expr[basis.expression.vertex_index.cpu().numpy()] = True
        in_pose = np.zeros(V, bool)
        in_pose[basis.pose_correctives.vertex_index.cpu().numpy()] = True
        w = basis.skinning_weights.cpu().numpy()
        rigid_bone = np.where(((w != 0).sum(1) == 1) & (w.max(1) == 1.0), w.argmax(1), -1)
        # Groups keep both supports contiguous: [expression only, both, pose only, neither].
        group = np.select([in_expr & ~in_pose, in_expr & in_pose, in_pose], [0, 1, 2], 3)
        # Inside the groups blended vertices sit next to each other across group borders:
        # last in group 0, first in the others; rigid ones by bone.
        blended_key = np.where(group == 0, J, -1)
        sub = np.where(rigid_bone >= 0, rigid_bone, blended_key)
        # Within each (group, sub) vertices moved by the same expressions sit together:
        # the blocks of `BlockSparse` then store few directions each.
        order = np.lexsort((np.arange(V), _expression_pattern(basis), sub, group))
        labels = rigid_bone[order]
        runs, start = [], 0
        for p in range(1, V + 1):
            if p == V or labels[p] != labels[start]:
                runs.append(SkinningRun(start, p, int(labels[start])))
                start = p
        expression_start = int(np.searchsorted(group[order], 0))
        pose_start = int(np.searchsorted(group[order], 1))
        return order, tuple(runs), expression_start, pose_start

    @classmethod
    def from_basis(cls, basis: ModelBasis) -> KernelBasis:
        V = basis.num_vertices
        order, runs, expression_start, pose_start = cls.layout(basis)
        position = np.empty(V, np.int64)
        position[order] = np.arange(V)

        def coordinate_major(kind, start) -> torch.Tensor:  # [K, V_k, 3] -> [K, 3 * V_k] in kernel order
            index = kind.vertex_index.cpu().numpy()
            if index.size == 0:
                return kind.directions.new_zeros(kind.count, 0)
            rows = np.argsort(position[index])  # kernel order within the range
            if not np.array_equal(position[index][rows], np.arange(start, start + len(index))):
                raise AssertionError("blendshape support is not contiguous in the kernel layout")
            return (
                kind.directions[:, torch.as_tensor(rows)].transpose(1, 2).reshape(kind.count, -1).contiguous()
            )

        t_order = torch.as_tensor(order)
        output_index = (torch.as_tensor(position)[:, None] + torch.arange(3) * V).reshape(-1)
        posed = list(basis.posed_bones)
        if posed and posed == list(range(posed[0], posed[-1] + 1)):  # a slice: no index op per call
            posed = slice(posed[0], posed[-1] + 1)
        shape = basis.shape.dense(V)[:, t_order]
        expression = coordinate_major(basis.expression, expression_start)
        larynx = basis.larynx
        larynx_start, profiles, rest = 0, None, None
        if larynx is not None:
            # One slice of the kernel mesh, not a scatter: the span of the larynx vertices.
            at = position[larynx.vertex_index.cpu().numpy()]
            larynx_start, stop = int(at.min()), int(at.max()) + 1
            if stop - larynx_start > 0.75 * V:  # nearly all: all, and the larynx makes the fresh mesh
                larynx_start, stop = 0, V
            H = max(larynx.map.shape[0], 2)
            columns = larynx.map.new_zeros(stop - larynx_start, H)
            row0 = larynx.map.new_zeros(len(columns))
            index = torch.as_tensor(at - larynx_start, device=columns.device)
            columns[index] = larynx_columns(larynx.map, larynx.vertex_uvs)
            row0[index] = (1.0 - larynx.vertex_uvs[:, 1]) * (H - 1)
            profiles = RowProfiles.from_columns(columns, row0)
            rest = sample_row_profiles(profiles, row0.new_zeros(1, 1))[0]  # what the template carries
        return cls(
            basis=basis,
            order=t_order,
            model_position=torch.as_tensor(position),
            template=basis.template[t_order].T.reshape(-1).contiguous(),
            shape_directions=shape.transpose(1, 2).reshape(basis.shape.count, -1).contiguous(),
            expression_directions=expression,
            expression_start=expression_start,
            expression_blocks=BlockSparse.from_directions(expression, expression_start, V - expression_start),
            pose_directions=coordinate_major(basis.pose_correctives, pose_start),
            pose_start=pose_start,
            weights_by_bone=basis.skinning_weights[t_order].T.contiguous(),
            runs=runs,
            output_index=output_index,
            posed=posed,
            larynx_start=larynx_start,
            larynx_profiles=profiles,
            minus_larynx_rest=None if rest is None else -rest,
        ).derived()

    def derived(self) -> KernelBasis:
        """This layout with the arrays derived from the basis's frames computed again in
        its current dtype and device (cast ones would carry float32 rounding into float64)."""
        if self.basis.joints is not None:
            return dataclasses.replace(self, local_forms=None, rest_inverse=None)
        return dataclasses.replace(
            self,
            local_forms=kinematics.local_rotation_forms(self.basis.relative_rest),
            rest_inverse=kinematics.rigid_inverse(self.basis.rest_frames),
        )

    def to(self, device=None, dtype: torch.dtype | None = None) -> KernelBasis:
        def move(x):
            if isinstance(x, torch.Tensor):
                return x.to(device=device, dtype=dtype if x.is_floating_point() else None)
            if isinstance(x, (RowProfiles, BlockSparse)):
                return type(x)(**{k: move(v) for k, v in vars(x).items()})
            return x

        fields = {k: move(v) for k, v in vars(self).items()}
        fields["basis"] = self.basis.to(device, dtype)
        return KernelBasis(**fields).derived()


def _expression_pattern(basis: ModelBasis) -> np.ndarray:
    """[V] rank of each vertex's set of moving expressions (lexicographic, the most
    common expression first); 0 for vertices no expression moves."""
    V = basis.num_vertices
    pattern = np.zeros(V, np.int64)
    index = basis.expression.vertex_index.cpu().numpy()
    if index.size == 0:
        return pattern
    moving = (basis.expression.directions != 0).any(-1).cpu().numpy().T  # [V_e, E]
    moving = moving[:, np.argsort(-moving.sum(0), kind="stable")]
    _, rank = np.unique(~moving, axis=0, return_inverse=True)
    pattern[index] = rank.reshape(-1) + 1
    return pattern


def shaped_template(kernel: KernelBasis, shape: torch.Tensor) -> torch.Tensor:
    """Template + shape offsets, kernel layout: shape [B, S'] (S' <= S) -> [B, 3 * V]."""
    S = kernel.shape_directions.shape[0]
    padded = torch.nn.functional.pad(shape, (0, S - shape.shape[1]))
    return torch.addmm(kernel.template.expand(len(padded), -1), padded, kernel.shape_directions)


def evaluate(kernel: KernelBasis, **parameters) -> tuple[torch.Tensor, torch.Tensor]:
    """The model's vertices [B, V, 3] (model order) and posed bone frames [B, J, 4, 4]; the
    parameters are `_evaluate`'s."""
    vertices, frames, _ = _evaluate(kernel, want_unposed=False, **parameters)
    return vertices, frames


def evaluate_with_unposed(
    kernel: KernelBasis, **parameters
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """`evaluate` plus the mesh before skinning [B', V, 3] (model order; every blendshape and
    the pose correctives applied; B' is 1 when nothing in it varies over the batch): what
    fitting's Jacobians need. The parameters are `_evaluate`'s."""
    return _evaluate(kernel, want_unposed=True, **parameters)


def _evaluate(
    kernel: KernelBasis,
    shape: torch.Tensor | None = None,
    expression: torch.Tensor | None = None,
    neck_pose: torch.Tensor | None = None,
    larynx_height: torch.Tensor | None = None,
    larynx_scale: torch.Tensor | None = None,
    global_orient: torch.Tensor | None = None,
    transl: torch.Tensor | None = None,
    batch_size: int = 1,
    shaped: torch.Tensor | None = None,
    want_unposed: bool = False,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """The model's vertices [B, V, 3] (model order), posed bone frames [B, J, 4, 4] and, when
    wanted, the mesh before skinning (else None).

    shape [B, S'], expression [B, E], neck_pose [B, J, 3] axis-angle in each bone's rest
    frame, larynx_height / larynx_scale [B, 1], global_orient [B, 3] axis-angle about
    the origin, transl [B, 3]; None is neutral, batch size 1 broadcasts to batch_size.
    shaped: `shaped_template(kernel, shape)` computed earlier (a cache; shape is then
    used for the joints only). Pose correctives are linear in R - I of the posed bones;
    the larynx is sampled from its map at height and replaces the rest larynx.
    """
    basis = kernel.basis
    B = batch_size
    template = kernel.template
    dtype, device = template.dtype, template.device
    J = basis.num_bones
    V = basis.num_vertices

    if shaped is None and shape is not None:
        shaped = shaped_template(kernel, shape)
    base = (template if shaped is None else shaped).view(-1, 3, V)
    mesh = None  # a fresh [B, 3, V] mesh that the blendshapes are added to in place
    if larynx_height is not None or larynx_scale is not None:
        mesh = _add_larynx(kernel, base, larynx_height, larynx_scale)
    if mesh is None or mesh.shape[0] != B:
        mesh = (base if mesh is None else mesh).expand(B, 3, V).clone()
    # On a GPU launches, not arithmetic, set the time: one dense product, one blended skinning.
    on_cpu = device.type == "cpu"
    if expression is not None and kernel.expression_blocks is not None and on_cpu:
        add_block_sparse_blend_shapes(mesh, expression, kernel.expression_blocks)
    elif expression is not None:
        add_blend_shapes_to_range(mesh, expression, kernel.expression_directions, kernel.expression_start)
    if neck_pose is not None:
        # Unit quaternions' products: R - I and the bones' local transforms are each one
        # matmul of them.
        qq = quaternion_products(axis_angle_to_quaternion(neck_pose))  # [B', J, 16]
        features = qq[:, kernel.posed] @ quaternion_forms("minus_identity", dtype, device)  # [B', P, 9]
        add_blend_shapes_to_range(mesh, features.flatten(1), kernel.pose_directions, kernel.pose_start)
        forms, rest_inverse = kernel.local_forms, kernel.rest_inverse
        if forms is None:  # joints regressed: the rest frames follow the shape
            rest = _rest_frames(basis, shape, expression, B)
            forms = kinematics.local_rotation_forms(kinematics.relative_rest_transforms(rest, basis.parents))
            rest_inverse = kinematics.rigid_inverse(rest)
        local = (qq[..., None, :] @ forms).view(-1, J, 4, 4)  # L_b @ R_b
        frames = kinematics.chain_products(local, basis.parents)
        if frames.shape[0] != B:
            frames = frames.expand(B, J, 4, 4).contiguous()
        planes = _skin(kernel, mesh, frames[..., :3, :] @ rest_inverse)
    else:
        frames = _rest_frames(basis, shape, expression, B).expand(B, J, 4, 4).clone()  # not the basis's
        planes = mesh
    unposed = _model_order(kernel, mesh) if want_unposed else None
    vertices = _model_order(kernel, planes)

    if global_orient is not None or transl is not None:
        R = (
            axis_angle_to_matrix(global_orient).expand(B, 3, 3)
            if global_orient is not None
            else torch.eye(3, dtype=dtype, device=device).expand(B, 3, 3)
        )
        t = transl.expand(B, 3) if transl is not None else template.new_zeros(B, 3)
        vertices = kinematics.rigid_transform(vertices, R, t)
        frames = kinematics.rigid_frame(R, t)[:, None] @ frames
    return vertices, frames, unposed


def _model_order(kernel: KernelBasis, mesh: torch.Tensor) -> torch.Tensor:
    """mesh [B, 3, V] (kernel order) -> [B, V, 3] (model order): one gather."""
    B, _, V = mesh.shape
    return mesh.reshape(B, 3 * V).index_select(1, kernel.output_index).view(B, V, 3)


GPU_SKINNING_CHUNK = 1 << 26  # blended-matrix elements per chunk on a GPU (256 MB in float32)


def _skin(kernel: KernelBasis, mesh: torch.Tensor, bone_matrices: torch.Tensor) -> torch.Tensor:
    """mesh [B, 3, V] (kernel order), bone_matrices [B, J, 3, 4] -> [B, 3, V] (kernel order).
    On the CPU each one-bone run is one affine map; on a GPU every vertex is blended in one
    pass (a one-bone vertex's weights are exactly 1 and 0, so the same numbers), fewer launches."""
    if mesh.device.type != "cpu":
        return skin_planes(mesh, kernel.weights_by_bone, bone_matrices, GPU_SKINNING_CHUNK)
    pieces = []
    for run in kernel.runs:
        part = mesh[:, :, run.start : run.stop]
        if run.bone >= 0:
            pieces.append(rigid_planes(part, bone_matrices[:, run.bone]))
        else:
            weights = kernel.weights_by_bone[:, run.start : run.stop]
            pieces.append(skin_planes(part, weights, bone_matrices))
    return torch.cat(pieces, 2) if len(pieces) > 1 else pieces[0]


def _add_larynx(kernel: KernelBasis, base: torch.Tensor, height, scale) -> torch.Tensor:
    """base [B', 3, V] plus the change from the rest larynx (height 0, scale 1): a new
    tensor, unless the larynx spans only part of the mesh (then a copy changed in place)."""
    larynx = kernel.basis.larynx
    if larynx is None:
        raise ValueError("larynx_height/larynx_scale given, but this model has no larynx map")
    profiles = kernel.larynx_profiles
    value = sample_row_profiles(profiles, height if height is not None else base.new_zeros(1, 1))
    if scale is not None:
        delta = torch.addcmul(kernel.minus_larynx_rest, value, scale)
    else:
        delta = value + kernel.minus_larynx_rest
    start, count = kernel.larynx_start, len(profiles.row0)
    direction = larynx.direction[:, None]
    if count == base.shape[-1]:
        return torch.addcmul(base, delta[:, None, :], direction)
    mesh = base.expand(len(delta), -1, -1).clone()
    mesh[:, :, start : start + count].addcmul_(delta[:, None, :], direction)
    return mesh


def _rest_frames(
    basis: ModelBasis, shape: torch.Tensor | None, expression: torch.Tensor | None, B: int
) -> torch.Tensor:
    """World rest frames ([J or B, J, 4, 4])."""
    joints = basis.joints
    if joints is None:
        return basis.rest_frames
    # SMPL-style: joints regressed from the shaped template, before pose offsets
    # (smplx counts expression as shape here).
    position = joints.template.expand(B, -1, -1)
    if shape is not None:
        S = shape.shape[1]
        position = position + torch.einsum("bk,kjc->bjc", shape.expand(B, -1), joints.shape_directions[:S])
    if expression is not None:
        position = position + torch.einsum(
            "bk,kjc->bjc", expression.expand(B, -1), joints.expression_directions
        )
    return kinematics.rest_frames_from_joints(position, basis.rest_frames[:, :3, :3])
