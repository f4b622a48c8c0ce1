"""The model as plain numpy arrays plus metadata, independent of torch.

`ModelData` is what every loader produces and what `HACK` consumes. It has no
behaviour beyond validation and a few derived views, so the Blender add-on and
the file-format code can use it with numpy alone.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

import numpy as np

# The columns of `ModelData.range_of_motion` (degrees): flexion-extension is the total
# sagittal range, lateral bending and axial rotation are to one side. Not bone axes: which
# axis of a bone each motion turns about is `anatomy.BONE_AXIS_OF_MOTION`, and
# `anatomy.pose_limits_rad` is the one conversion from these columns to per-axis limits.
RANGE_OF_MOTION_COLUMNS = ("flexion_extension", "lateral_bending", "axial_rotation")
MOTION_AXES = RANGE_OF_MOTION_COLUMNS  # deprecated name


class ModelDataError(ValueError):
    """A model's arrays are missing, inconsistent or malformed."""


@dataclass
class ModelData:
    """All arrays of one head model. Shapes: V vertices, S shape, E expression,
    J bones, A action units, F polygons, N polygon corners, T texture coordinates."""

    template_vertices: np.ndarray  # [V, 3]
    polygon_vertex_indices: np.ndarray  # [N] int, corners of all polygons, concatenated
    polygon_sizes: np.ndarray  # [F] int, corners per polygon (3 = triangle, 4 = quad)
    shape_directions: np.ndarray  # [S, V, 3], unit-variance coefficients
    expression_directions: np.ndarray  # [E, V, 3]
    expression_names: list[str]  # [E]
    pose_directions: np.ndarray  # [J, 3, 3, V, 3]; the root's rows are unused
    skinning_weights: np.ndarray  # [V, J], rows sum to 1
    bone_names: list[str]  # [J]
    bone_parents: np.ndarray  # [J] int, -1 for the root; parents precede children
    bone_rest_transforms: np.ndarray  # [J, 4, 4] world-space rest frames (bone heads)
    bone_lengths: np.ndarray  # [J]
    # SMPL-style models move their joints with shape: bone heads = regressor @ shaped template.
    joint_regressor: np.ndarray | None = None  # [J, V]
    uv_coords: np.ndarray | None = None  # [T, 2]
    polygon_uv_indices: np.ndarray | None = None  # [N] int into uv_coords
    vertex_uvs: np.ndarray | None = None  # [V, 2], one UV per vertex (larynx sampling)
    larynx_map: np.ndarray | None = None  # [H, W] float in [0, 1]
    larynx_direction: np.ndarray | None = None  # [3], direction times scale (cm)
    landmark_indices: np.ndarray | None = None  # [68] int, Multi-PIE order
    action_unit_names: list[str] = field(default_factory=list)  # [A], "AU12"
    action_unit_descriptions: list[str] = field(default_factory=list)  # [A]
    action_unit_matrix: np.ndarray | None = None  # [A, E] expression weight per AU
    range_of_motion: np.ndarray | None = None  # [J, 3] degrees, see RANGE_OF_MOTION_COLUMNS
    mirror_vertex_map: np.ndarray | None = None  # [V] int, index of the x-mirrored vertex
    vertex_colors: np.ndarray | None = None  # [V, 3] sRGB in [0, 1]: preview albedo (skin, lips, eyes)
    texture_png: np.ndarray | None = None  # [n] uint8: a PNG file, the albedo over uv_coords
    units: str = "cm"
    metadata: dict[str, Any] = field(default_factory=dict)  # name, version, license, source, ...
    extras: dict[str, np.ndarray] = field(default_factory=dict)  # model-specific arrays

    def __post_init__(self) -> None:
        self.expression_names = [str(n) for n in self.expression_names]
        self.bone_names = [str(n) for n in self.bone_names]
        self.action_unit_names = [str(n) for n in self.action_unit_names]
        self.action_unit_descriptions = [str(n) for n in self.action_unit_descriptions]
        if self.action_unit_matrix is None:
            self.action_unit_matrix = np.zeros((0, len(self.expression_names)), np.float32)
        self.validate()

    # ------------------------------------------------------------------ sizes
    @property
    def num_vertices(self) -> int:
        return int(self.template_vertices.shape[0])

    @property
    def num_shape(self) -> int:
        return int(self.shape_directions.shape[0])

    @property
    def num_expression(self) -> int:
        return int(self.expression_directions.shape[0])

    @property
    def num_bones(self) -> int:
        return int(self.bone_parents.shape[0])

    @property
    def has_larynx(self) -> bool:
        return self.larynx_map is not None

    @property
    def name(self) -> str:
        return str(self.metadata.get("name", "unnamed"))

    # ---------------------------------------------------------------- derived
    def triangles(self) -> np.ndarray:
        """Fan triangulation of every polygon. [F_tri, 3] int64."""
        return fan_triangulate(self.polygon_vertex_indices, self.polygon_sizes)

    def triangle_uv_indices(self) -> np.ndarray | None:
        """UV indices matching `triangles()`. [F_tri, 3] or None."""
        if self.polygon_uv_indices is None:
            return None
        return fan_triangulate(self.polygon_uv_indices, self.polygon_sizes)

    def replace(self, **changes: Any) -> ModelData:
        return dataclasses.replace(self, **changes)

    # ------------------------------------------------------------- validation
    def validate(self) -> None:
        """Raise ModelDataError naming the first array that is inconsistent."""
        V = self.num_vertices
        _expect(self.template_vertices, "template_vertices", (None, 3))
        _expect(self.shape_directions, "shape_directions", (None, V, 3))
        _expect(self.expression_directions, "expression_directions", (None, V, 3))
        E = self.num_expression
        if len(self.expression_names) != E:
            raise ModelDataError(
                f"expression_names has {len(self.expression_names)} names for {E} expression_directions"
            )
        if len(set(self.expression_names)) != E:
            raise ModelDataError("expression_names contains duplicates")
        J = self.num_bones
        _expect(self.bone_parents, "bone_parents", (J,))
        if len(self.bone_names) != J:
            raise ModelDataError(f"bone_names has {len(self.bone_names)} names for {J} bones")
        parents = np.asarray(self.bone_parents)
        if J == 0 or parents[0] != -1:
            raise ModelDataError("bone_parents[0] must be -1: the first bone is the root")
        for b in range(1, J):
            if not 0 <= parents[b] < b:
                raise ModelDataError(f"bone_parents[{b}] = {parents[b]}: every parent must precede its child")
        _expect(self.bone_rest_transforms, "bone_rest_transforms", (J, 4, 4))
        _expect(self.bone_lengths, "bone_lengths", (J,))
        _expect(self.pose_directions, "pose_directions", (J, 3, 3, V, 3))
        _expect(self.skinning_weights, "skinning_weights", (V, J))
        sums = self.skinning_weights.sum(axis=1)
        if not np.allclose(sums, 1.0, atol=1e-4):
            bad = int(np.argmax(np.abs(sums - 1.0)))
            raise ModelDataError(
                f"skinning_weights rows must sum to 1 (vertex {bad} sums to {sums[bad]:.6f})"
            )
        if self.joint_regressor is not None:
            _expect(self.joint_regressor, "joint_regressor", (J, V))
        idx = np.asarray(self.polygon_vertex_indices)
        sizes = np.asarray(self.polygon_sizes)
        if idx.ndim != 1 or sizes.ndim != 1 or int(sizes.sum()) != idx.shape[0]:
            raise ModelDataError("polygon_sizes must sum to the length of polygon_vertex_indices")
        if sizes.size and sizes.min() < 3:
            raise ModelDataError("every polygon needs at least 3 corners")
        if idx.size and (idx.min() < 0 or idx.max() >= V):
            raise ModelDataError(f"polygon_vertex_indices must lie in [0, {V})")
        if self.polygon_uv_indices is not None:
            _expect(self.polygon_uv_indices, "polygon_uv_indices", (idx.shape[0],))
            if self.uv_coords is None:
                raise ModelDataError("polygon_uv_indices given without uv_coords")
            _expect(self.uv_coords, "uv_coords", (None, 2))
            uvi = self.polygon_uv_indices
            if uvi.size and (uvi.min() < 0 or uvi.max() >= self.uv_coords.shape[0]):
                raise ModelDataError("polygon_uv_indices out of range of uv_coords")
        if self.vertex_uvs is not None:
            _expect(self.vertex_uvs, "vertex_uvs", (V, 2))
        if (self.larynx_map is None) != (self.larynx_direction is None):
            raise ModelDataError("larynx_map and larynx_direction come together")
        if self.larynx_map is not None:
            _expect(self.larynx_map, "larynx_map", (None, None))
            _expect(self.larynx_direction, "larynx_direction", (3,))
            if self.vertex_uvs is None:
                raise ModelDataError("a larynx_map needs vertex_uvs to be sampled")
        if self.landmark_indices is not None:
            lm = np.asarray(self.landmark_indices)
            if lm.ndim != 1 or (lm.size and (lm.min() < 0 or lm.max() >= V)):
                raise ModelDataError(f"landmark_indices must be a 1-D array of indices in [0, {V})")
        A = len(self.action_unit_names)
        _expect(self.action_unit_matrix, "action_unit_matrix", (A, E))
        if self.action_unit_descriptions and len(self.action_unit_descriptions) != A:
            raise ModelDataError("action_unit_descriptions must match action_unit_names")
        if self.range_of_motion is not None:
            _expect(self.range_of_motion, "range_of_motion", (J, 3))
        if self.mirror_vertex_map is not None:
            _expect(self.mirror_vertex_map, "mirror_vertex_map", (V,))
        if self.vertex_colors is not None:
            _expect(self.vertex_colors, "vertex_colors", (V, 3))
            c = np.asarray(self.vertex_colors, np.float64)
            if not np.isfinite(c).all() or c.min() < 0.0 or c.max() > 1.0:
                raise ModelDataError("vertex_colors must be sRGB values in [0, 1]")
        if self.texture_png is not None:
            t = np.asarray(self.texture_png)
            if t.dtype != np.uint8 or t.ndim != 1 or bytes(t[:8]) != b"\x89PNG\r\n\x1a\n":
                raise ModelDataError("texture_png must be the bytes of a PNG file as a uint8 array [n]")
            if self.uv_coords is None:
                raise ModelDataError("texture_png needs uv_coords")
        for key, value in self.extras.items():
            if not isinstance(value, np.ndarray) or value.dtype == object:
                raise ModelDataError(f"extras[{key!r}] must be a numeric numpy array")


def fan_triangulate(corners: np.ndarray, sizes: np.ndarray) -> np.ndarray:
    """Split polygons (flat corner list + sizes) into triangles (0, i, i+1). [F_tri, 3]."""
    corners = np.asarray(corners, dtype=np.int64)
    sizes = np.asarray(sizes, dtype=np.int64)
    starts = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    num_tris = sizes - 2
    first = np.repeat(starts, num_tris)
    # Position of each triangle within its polygon: 0 .. size-3.
    offset = np.arange(int(num_tris.sum())) - np.repeat(np.cumsum(num_tris) - num_tris, num_tris)
    return np.stack([corners[first], corners[first + offset + 1], corners[first + offset + 2]], axis=1)


def _expect(array: Any, name: str, shape: tuple[int | None, ...]) -> None:
    if not isinstance(array, np.ndarray):
        raise ModelDataError(f"{name} must be a numpy array, got {type(array).__name__}")
    if array.ndim != len(shape) or any(
        want is not None and have != want for have, want in zip(array.shape, shape)
    ):
        want_text = "[" + ", ".join("?" if w is None else str(w) for w in shape) + "]"
        raise ModelDataError(f"{name} must have shape {want_text}, got {list(array.shape)}")
    if array.dtype.kind == "f" and not np.isfinite(array).all():
        raise ModelDataError(f"{name} contains NaN or inf")
