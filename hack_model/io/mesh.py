"""Reading and writing polygon meshes with UVs.

OBJ is parsed and written here rather than through trimesh because trimesh
triangulates quads and splits vertices at UV seams; models need the original
vertex order and polygons. PLY goes through trimesh.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .atomic import atomic_output
from .errors import ModelFileError


@dataclass
class PolygonMesh:
    """vertices [V, 3]; polygons as flat corner indices [N] and sizes [F];
    optional uv_coords [T, 2] with per-corner polygon_uv_indices [N]."""

    vertices: np.ndarray
    polygon_vertex_indices: np.ndarray
    polygon_sizes: np.ndarray
    uv_coords: np.ndarray | None = None
    polygon_uv_indices: np.ndarray | None = None

    def vertex_uvs(self) -> np.ndarray | None:
        """One UV per vertex: the UV of the vertex's first appearance in the face list. [V, 2]"""
        if self.uv_coords is None or self.polygon_uv_indices is None:
            return None
        result = np.zeros((len(self.vertices), 2), self.uv_coords.dtype)
        corners = self.polygon_vertex_indices
        _, first = np.unique(corners, return_index=True)
        result[corners[first]] = self.uv_coords[self.polygon_uv_indices[first]]
        return result


def read_obj(path: str | os.PathLike) -> PolygonMesh:
    """Vertices, polygons and UVs of a Wavefront OBJ (normals and groups ignored).
    Malformed lines, out-of-range indices and non-finite coordinates raise
    ModelFileError naming the file and line."""
    path = Path(path)
    if path.is_file() and path.stat().st_size > (1 << 30):
        raise ModelFileError("OBJ files over 1 GB are refused", path=path)
    vertices: list[list[float]] = []
    uvs: list[list[float]] = []
    corners: list[int] = []
    uv_corners: list[int] = []
    sizes: list[int] = []
    try:
        with open(path, encoding="utf-8", errors="replace") as handle:
            for line_no, line in enumerate(handle, 1):
                parts = line.split()
                if not parts:
                    continue
                tag = parts[0]
                try:
                    if tag == "v":
                        xyz = [float(x) for x in parts[1:4]]
                        if len(xyz) != 3 or not all(map(np.isfinite, xyz)):
                            raise ValueError("a vertex needs 3 finite coordinates")
                        vertices.append(xyz)
                    elif tag == "vt":
                        uv = [float(x) for x in parts[1:3]]
                        if len(uv) != 2 or not all(map(np.isfinite, uv)):
                            raise ValueError("a texture coordinate needs 2 finite numbers")
                        uvs.append(uv)
                    elif tag == "f":
                        refs = [p.split("/") for p in parts[1:]]
                        if len(refs) < 3:
                            raise ValueError("a face needs at least 3 corners")
                        for ref in refs:
                            corners.append(_obj_index(ref[0], len(vertices)))
                            if len(ref) > 1 and ref[1]:
                                uv_corners.append(_obj_index(ref[1], len(uvs)))
                        sizes.append(len(refs))
                except (ValueError, IndexError, OverflowError) as err:
                    raise ModelFileError(f"{path}:{line_no}: malformed '{tag[:20]}' line ({err})") from None
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: no such file") from None
    except UnicodeDecodeError:
        raise ModelFileError(f"{path}: not a text OBJ file") from None
    except MemoryError:
        raise ModelFileError(f"{path}: the OBJ needs more memory than is available") from None
    if not vertices:
        raise ModelFileError(f"{path}: no vertices found; not an OBJ mesh")
    has_uv = bool(uvs) and len(uv_corners) == len(corners)
    return PolygonMesh(
        vertices=np.asarray(vertices, np.float64),
        polygon_vertex_indices=np.asarray(corners, np.int64),
        polygon_sizes=np.asarray(sizes, np.int64),
        uv_coords=np.asarray(uvs, np.float64) if has_uv else None,
        polygon_uv_indices=np.asarray(uv_corners, np.int64) if has_uv else None,
    )


def _obj_index(token: str, count: int) -> int:
    index = int(token)
    index = index - 1 if index > 0 else count + index  # OBJ is 1-based; negatives count back
    if not 0 <= index < count:
        raise ValueError(f"index {token} refers to an element that is not defined")
    return index


def write_obj(
    path: str | os.PathLike,
    mesh: PolygonMesh,
    *,
    overwrite: bool = True,
    normals: np.ndarray | None = None,
    colors: np.ndarray | None = None,
    material: str | None = None,
) -> Path:
    """Write an OBJ with polygons and, when present, UVs, vertex normals [V, 3] (vn, one per
    vertex) and colours [V, 3] sRGB 0..1 (the common `v x y z r g b` extension, read by Blender
    and MeshLab). `material`: the name of an MTL file beside it (written by write_mtl). Atomic."""
    path = Path(path)
    lines = [] if material is None else [f"mtllib {material}", "usemtl skin"]
    if colors is not None:
        c = np.asarray(colors, np.float64)[:, :3]
        lines += [
            f"v {x:.6f} {y:.6f} {z:.6f} {r:.4f} {g:.4f} {b:.4f}"
            for (x, y, z), (r, g, b) in zip(np.asarray(mesh.vertices), c)
        ]
    else:
        lines += [f"v {x:.6f} {y:.6f} {z:.6f}" for x, y, z in np.asarray(mesh.vertices)]
    has_uv = mesh.uv_coords is not None and mesh.polygon_uv_indices is not None
    if has_uv:
        lines += [f"vt {u:.6f} {v:.6f}" for u, v in np.asarray(mesh.uv_coords)]
    if normals is not None:
        lines += [f"vn {x:.5f} {y:.5f} {z:.5f}" for x, y, z in np.asarray(normals)]
    starts = np.concatenate([[0], np.cumsum(mesh.polygon_sizes)[:-1]])
    vi = np.asarray(mesh.polygon_vertex_indices) + 1
    ti = np.asarray(mesh.polygon_uv_indices) + 1 if has_uv else None
    for start, size in zip(starts.tolist(), np.asarray(mesh.polygon_sizes).tolist()):
        ks = range(start, start + size)
        if has_uv and normals is not None:
            refs = [f"{vi[k]}/{ti[k]}/{vi[k]}" for k in ks]
        elif has_uv:
            refs = [f"{vi[k]}/{ti[k]}" for k in ks]
        elif normals is not None:
            refs = [f"{vi[k]}//{vi[k]}" for k in ks]
        else:
            refs = [str(vi[k]) for k in ks]
        lines.append("f " + " ".join(refs))
    with atomic_output(path, overwrite=overwrite) as tmp:
        tmp.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def write_mtl(path: str | os.PathLike, color: np.ndarray, *, overwrite: bool = True) -> Path:
    """A one-material MTL ("skin", diffuse `color` sRGB 0..1, matte) for write_obj. Atomic."""
    r, g, b = (float(x) for x in np.asarray(color, np.float64)[:3])
    text = (
        "# hack-model preview material\nnewmtl skin\n"
        f"Ka 0 0 0\nKd {r:.4f} {g:.4f} {b:.4f}\nKs 0.05 0.05 0.05\nNs 10\nd 1\nillum 2\n"
    )
    path = Path(path)
    with atomic_output(path, overwrite=overwrite) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return path


def write_ply(
    path: str | os.PathLike,
    mesh: PolygonMesh,
    *,
    overwrite: bool = True,
    normals: np.ndarray | None = None,
    colors: np.ndarray | None = None,
) -> Path:
    """Binary PLY of the triangulated mesh with per-vertex UVs (s, t) when known, normals
    [V, 3] and colours [V, 3] sRGB 0..1 (stored as red, green, blue, alpha bytes). Atomic."""
    import trimesh

    from ..model_data import fan_triangulate

    path = Path(path)
    triangles = fan_triangulate(mesh.polygon_vertex_indices, mesh.polygon_sizes)
    tri = trimesh.Trimesh(np.asarray(mesh.vertices), triangles, process=False)
    vertex_uvs = mesh.vertex_uvs()
    if colors is not None:
        rgb = np.clip(np.round(np.asarray(colors, np.float64)[:, :3] * 255), 0, 255).astype(np.uint8)
        tri.visual = trimesh.visual.ColorVisuals(tri, vertex_colors=rgb)
        if vertex_uvs is not None:  # trimesh keeps one visual: UVs go in as attributes
            tri.vertex_attributes["s"] = vertex_uvs[:, 0].astype(np.float32)
            tri.vertex_attributes["t"] = vertex_uvs[:, 1].astype(np.float32)
    elif vertex_uvs is not None:
        tri.visual = trimesh.visual.TextureVisuals(uv=vertex_uvs)
    if normals is not None:
        tri.vertex_normals = np.asarray(normals, np.float64)
    data = trimesh.exchange.ply.export_ply(tri, encoding="binary", vertex_normal=normals is not None)
    with atomic_output(path, overwrite=overwrite) as tmp:
        tmp.write_bytes(data)
    return path


MESH_WRITERS = {".obj": write_obj, ".ply": write_ply}
EXPORT_SUFFIXES = (".obj", ".ply", ".glb", ".gltf")


def write_mesh(path: str | os.PathLike, mesh: PolygonMesh, *, overwrite: bool = True) -> Path:
    """Write OBJ or PLY by the path's suffix. Non-finite vertices are refused (ValueError)."""
    suffix = Path(path).suffix.lower()
    if suffix not in MESH_WRITERS:
        raise ValueError(f"{path}: unsupported mesh format '{suffix}' (use .obj or .ply)")
    bad = ~np.isfinite(np.asarray(mesh.vertices)).all(axis=-1)
    if bad.any():
        raise ValueError(f"{path}: not written: {int(bad.sum())} vertices are NaN or infinite")
    return MESH_WRITERS[suffix](path, mesh, overwrite=overwrite)
