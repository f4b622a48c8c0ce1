"""Writing an evaluated model as a mesh file people can open anywhere.

.obj: polygons (quads kept), UVs, vertex normals, preview colours and an MTL beside it;
.ply: triangles with UVs, normals and colours; .glb/.gltf: triangles with normals, UVs and
colours, optionally (`rig=`) the bones as a skin and the expressions as morph targets.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .io.mesh import EXPORT_SUFFIXES, PolygonMesh, write_mtl, write_obj, write_ply
from .texture import preview_albedo


@dataclass
class Similarity:
    """x = scale * rotation @ v + translation (a fit's model -> scan transform)."""

    scale: float
    rotation: np.ndarray  # [3, 3]
    translation: np.ndarray  # [3]

    def points(self, v: np.ndarray) -> np.ndarray:  # [..., 3]
        return self.scale * v @ self.rotation.T + self.translation

    def directions(self, d: np.ndarray) -> np.ndarray:  # offsets scale and turn, never move
        return self.scale * d @ self.rotation.T

    def frames(self, m: np.ndarray) -> np.ndarray:  # [J, 4, 4] rigid frames, positions scaled
        out = np.array(m, np.float64)
        out[..., :3, :3] = self.rotation @ out[..., :3, :3]
        out[..., :3, 3] = self.points(out[..., :3, 3])
        return out


def similarity_from_params(params: dict) -> list[Similarity] | None:
    """The per-frame similarities stored in a fit's parameter file, or None without one."""
    keys = ("scale", "rotation", "translation")
    if not any(k in params for k in keys):
        return None
    missing = [k for k in keys if k not in params]
    if missing:
        raise ValueError(f"parameter file has {', '.join(k for k in keys if k in params)} but not "
                         f"{', '.join(missing)}: a fit's similarity needs all three")  # fmt: skip
    scale = np.asarray(params["scale"], np.float64).reshape(-1)
    rotation = np.asarray(params["rotation"], np.float64).reshape(-1, 3, 3)
    translation = np.asarray(params["translation"], np.float64).reshape(-1, 3)
    count = max(len(scale), len(rotation), len(translation))
    for name, value in (("scale", scale), ("rotation", rotation), ("translation", translation)):
        if len(value) not in (1, count):
            raise ValueError(f"the fit's {name} has {len(value)} frames, others have {count}")
        if not np.isfinite(value).all():
            raise ValueError(f"the fit's {name} contains NaN or inf")
    return [
        Similarity(
            float(scale[min(i, len(scale) - 1)]),
            rotation[min(i, len(rotation) - 1)],
            translation[min(i, len(translation) - 1)],
        )  # fmt: skip
        for i in range(count)
    ]


@dataclass
class Rig:
    """What a rigged glTF needs: the mesh before expressions and pose (shape and larynx
    applied) [V, 3], expression weights [E] as the morph targets' weights, neck pose [J, 3]."""

    base_vertices: np.ndarray
    expression_weights: np.ndarray
    neck_pose: np.ndarray


def companion_paths(path: Path) -> list[Path]:
    """Files written beside `path` (the MTL of an OBJ)."""
    return [path.with_suffix(".mtl")] if path.suffix.lower() == ".obj" else []


def export_mesh(
    path: str | os.PathLike,
    data,
    vertices: np.ndarray,
    *,
    rig: Rig | None = None,
    similarity: Similarity | None = None,
    overwrite: bool = False,
) -> list[Path]:
    """Write `vertices` [V, 3] of model `data` (a ModelData) to `path` by its suffix; returns
    the paths written. With `similarity` the mesh (and rig) lands in the scan's space."""
    from .render.geometry import vertex_normals

    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in EXPORT_SUFFIXES:
        raise ValueError(f"{path}: unsupported mesh format '{suffix}' (use {', '.join(EXPORT_SUFFIXES)})")
    if rig is not None and suffix not in (".glb", ".gltf"):
        raise ValueError(f"{path}: bones and morph targets need .glb or .gltf")
    v = np.asarray(vertices, np.float64)
    if similarity is not None:
        v = similarity.points(v)
    triangles = data.triangles()
    colors = preview_albedo(data)
    if suffix in (".glb", ".gltf"):
        return [_write_gltf(path, data, v, triangles, rig, similarity, overwrite)]
    normals = vertex_normals(v, triangles)
    mesh = PolygonMesh(
        v, data.polygon_vertex_indices, data.polygon_sizes, data.uv_coords, data.polygon_uv_indices
    )
    if suffix == ".ply":
        return [write_ply(path, mesh, overwrite=overwrite, normals=normals, colors=colors)]
    written = []
    mtl = path.with_suffix(".mtl")
    skin = np.median(colors, axis=0) if colors is not None else np.array([0.80, 0.73, 0.68])
    written.append(write_mtl(mtl, skin, overwrite=overwrite))
    written.append(
        write_obj(path, mesh, overwrite=overwrite, normals=normals, colors=colors, material=mtl.name)
    )
    return written[::-1]


def _write_gltf(path, data, v, triangles, rig, similarity, overwrite) -> Path:
    from scipy.spatial.transform import Rotation

    from .io.gltf import GltfMesh, GltfSkin, write_gltf
    from .render.geometry import vertex_normals

    mesh = GltfMesh(vertices=v, triangles=triangles, uvs=data.vertex_uvs, colors=preview_albedo(data),
                    texture_png=None if data.texture_png is None else data.texture_png.tobytes(),
                    name=data.name or "head")  # fmt: skip
    if rig is not None:
        base = np.asarray(rig.base_vertices, np.float64)
        offsets = np.asarray(data.expression_directions, np.float64)
        rest = np.asarray(data.bone_rest_transforms, np.float64)
        if similarity is not None:
            base, offsets, rest = (
                similarity.points(base),
                similarity.directions(offsets),
                similarity.frames(rest),
            )
        mesh.vertices = base
        mesh.morph_names = list(data.expression_names)
        mesh.morph_offsets = offsets
        mesh.morph_weights = np.asarray(rig.expression_weights, np.float64)
        mesh.skin = GltfSkin(
            bone_names=list(data.bone_names),
            parents=np.asarray(data.bone_parents),
            rest=rest,
            weights=np.asarray(data.skinning_weights, np.float64),
            local_rotations=Rotation.from_rotvec(np.asarray(rig.neck_pose, np.float64)).as_quat(),
        )
    mesh.normals = vertex_normals(mesh.vertices, triangles)
    unit_scale = 0.01 if similarity is None and data.units == "cm" else 1.0
    return write_gltf(path, mesh, unit_scale=unit_scale, overwrite=overwrite)
