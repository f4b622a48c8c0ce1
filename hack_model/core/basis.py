"""The model's arrays as one read-only object: what the forward pass, a solver or an
exporter needs, in the model's vertex order, with names that say what they hold.

Shape notes: V vertices, J bones, S shape, E expression, A action units.
Each kind of blendshape is stored over only the vertices it moves (`vertex_index`):
a direction's other rows are zero and cost nothing.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from . import kinematics
from .larynx import RowProfiles, larynx_row_profiles, larynx_support, sample_larynx_offsets


@dataclass(frozen=True)
class Blendshapes:
    """One kind of linear blendshape (shape, expression or pose correctives).

    names [K]; vertex_index [V_k] long, increasing: the vertices any direction moves;
    directions [K, V_k, 3]: the offsets of those vertices per unit coefficient.
    """

    names: tuple[str, ...]
    vertex_index: torch.Tensor
    directions: torch.Tensor

    @property
    def count(self) -> int:
        return len(self.names)

    def dense(self, num_vertices: int) -> torch.Tensor:
        """[K, V, 3] with zero rows for the vertices outside vertex_index."""
        out = self.directions.new_zeros(self.count, num_vertices, 3)
        out[:, self.vertex_index] = self.directions
        return out


@dataclass(frozen=True)
class LarynxBasis:
    """The larynx map and the vertices it can move.

    map [H, W]; vertex_index [V_l] long; vertex_uvs [V_l, 2]; direction [3] (times the
    magnitude, cm); rest_offsets [V_l, 3]: the offsets at height 0, scale 1, which the
    template already carries; profiles: the map interpolated at each vertex's u
    (`larynx.RowProfiles`, what sampling reads).
    """

    map: torch.Tensor
    vertex_index: torch.Tensor
    vertex_uvs: torch.Tensor
    direction: torch.Tensor
    rest_offsets: torch.Tensor
    profiles: RowProfiles | None = None

    def offsets(self, height: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
        """[B, V_l, 3] larynx offsets (not relative to the rest larynx) for height, scale [B, 1]."""
        return sample_larynx_offsets(self.map, self.vertex_uvs, self.direction, height, scale, self.profiles)


@dataclass(frozen=True)
class JointBasis:
    """Joints regressed from the unposed mesh (SMPL-style models), as blendshapes of their own.

    regressor [J, V]; template [J, 3]: the joints of the rest mesh;
    shape_directions [S, J, 3], expression_directions [E, J, 3] (smplx counts
    expression as shape for the joints).
    """

    regressor: torch.Tensor
    template: torch.Tensor
    shape_directions: torch.Tensor
    expression_directions: torch.Tensor


@dataclass(frozen=True)
class ModelBasis:
    """Everything the model evaluates, in the model's vertex order (read-only).

    template [V, 3]: the rest mesh (neutral shape, expression and pose, rest larynx).
    shape, expression, pose_correctives: `Blendshapes`; pose correctives have 9 rows per
    posed bone (row-major R - I) in the order of posed_bones.
    skinning_weights [V, J]; parents [J] (-1 for the root); posed_bones: the bones
    with pose correctives (all but the root); rest_frames [J, 4, 4] world rest frames;
    relative_rest [J, 4, 4] each rest frame relative to its parent's (None when joints
    are regressed, see `joints`); larynx: `LarynxBasis` or None; joints: `JointBasis`
    or None; action_unit_matrix [A, E].
    """

    template: torch.Tensor
    shape: Blendshapes
    expression: Blendshapes
    pose_correctives: Blendshapes
    skinning_weights: torch.Tensor
    parents: tuple[int, ...]
    posed_bones: tuple[int, ...]
    bone_names: tuple[str, ...]
    rest_frames: torch.Tensor
    relative_rest: torch.Tensor | None
    larynx: LarynxBasis | None
    joints: JointBasis | None
    action_unit_matrix: torch.Tensor

    @property
    def num_vertices(self) -> int:
        return self.template.shape[0]

    @property
    def num_bones(self) -> int:
        return len(self.parents)

    def to(self, device=None, dtype: torch.dtype | None = None) -> ModelBasis:
        """A copy on device / in dtype (floating tensors only)."""

        def move(x):
            if isinstance(x, torch.Tensor):
                return x.to(device=device, dtype=dtype if x.is_floating_point() else None)
            if isinstance(x, (Blendshapes, LarynxBasis, RowProfiles, JointBasis, ModelBasis)):
                return type(x)(**{k: move(v) for k, v in vars(x).items()})
            return x

        return move(self)


def _nonzero_vertices(directions: np.ndarray) -> np.ndarray:
    """[V_k] vertices where any direction [K, V, 3] is non-zero."""
    if directions.size == 0:
        return np.zeros(0, np.int64)
    return np.nonzero(np.abs(directions).max(axis=(0, 2)) > 0)[0]


def _blendshapes(names, directions: np.ndarray, dtype) -> Blendshapes:
    index = _nonzero_vertices(directions)
    return Blendshapes(
        tuple(names),
        torch.as_tensor(index, dtype=torch.long),
        torch.as_tensor(np.ascontiguousarray(directions[:, index]), dtype=dtype),
    )


def _flush_subnormals(value: np.ndarray) -> np.ndarray:
    # Subnormal floats make CPU arithmetic many times slower; they are zero here.
    value = np.asarray(value)
    return np.where(np.abs(value) < np.finfo(np.float32).tiny, 0.0, value)


def build_basis(data, dtype: torch.dtype = torch.float32) -> ModelBasis:
    """The `ModelBasis` of a `ModelData` (float32 by default; computed in float64)."""
    V = data.num_vertices
    f = _flush_subnormals
    parents = tuple(int(p) for p in data.bone_parents)
    posed = tuple(b for b, p in enumerate(parents) if p >= 0)
    pose_names = tuple(f"{data.bone_names[b]}_R{i}{j}" for b in posed for i in range(3) for j in range(3))
    pose_dirs = f(data.pose_directions[list(posed)].reshape(-1, V, 3))
    template = np.asarray(data.template_vertices, np.float64).copy()

    larynx = None
    if data.has_larynx:
        support = larynx_support(data.larynx_map, data.vertex_uvs)
        lmap = torch.as_tensor(data.larynx_map, dtype=torch.float32)
        uvs = torch.as_tensor(data.vertex_uvs[support], dtype=torch.float32)
        direction = torch.as_tensor(data.larynx_direction, dtype=torch.float32)
        # The rest mesh carries the larynx at height 0 and scale 1, as in the reference
        # (sampled in float32, as the forward pass samples it).
        profiles = larynx_row_profiles(lmap, uvs)
        rest = sample_larynx_offsets(lmap, uvs, direction, torch.zeros(1, 1), torch.ones(1, 1), profiles)[0]
        template = (
            (torch.as_tensor(template, dtype=torch.float32).index_add(0, torch.as_tensor(support), rest))
            .double()
            .numpy()
        )
        larynx = LarynxBasis(
            lmap.to(dtype),
            torch.as_tensor(support, dtype=torch.long),
            uvs.to(dtype),
            direction.to(dtype),
            rest.to(dtype),
            profiles.to(dtype=dtype),
        )

    rest_frames = torch.as_tensor(data.bone_rest_transforms, dtype=torch.float64)
    joints = relative = None
    if data.joint_regressor is None:
        relative = kinematics.relative_rest_transforms(rest_frames, list(parents)).to(dtype)
    else:
        R = np.asarray(data.joint_regressor, np.float64)  # [J, V]
        # Regressed once: per call the joints are a [K] x [K, J, 3] product, not a blend over V.
        template32 = np.asarray(template, np.float32).astype(np.float64)
        joints = JointBasis(
            torch.as_tensor(f(R), dtype=dtype),
            torch.as_tensor(R @ template32, dtype=dtype),
            torch.as_tensor(
                np.einsum("jv,kvc->kjc", R, f(data.shape_directions).astype(np.float32)), dtype=dtype
            ),
            torch.as_tensor(
                np.einsum("jv,kvc->kjc", R, f(data.expression_directions).astype(np.float32)), dtype=dtype
            ),
        )
    return ModelBasis(
        template=torch.as_tensor(np.asarray(template, np.float32), dtype=dtype),
        shape=_blendshapes(
            [f"shape_{k:03d}" for k in range(data.num_shape)], f(data.shape_directions), dtype
        ),
        expression=_blendshapes(data.expression_names, f(data.expression_directions), dtype),
        pose_correctives=_blendshapes(pose_names, pose_dirs, dtype),
        skinning_weights=torch.as_tensor(f(data.skinning_weights), dtype=dtype),
        parents=parents,
        posed_bones=posed,
        bone_names=tuple(data.bone_names),
        rest_frames=rest_frames.to(dtype),
        relative_rest=relative,
        larynx=larynx,
        joints=joints,
        action_unit_matrix=torch.as_tensor(data.action_unit_matrix, dtype=dtype),
    )
