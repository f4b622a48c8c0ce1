"""Reading scans and landmark files.

Meshes: PLY, OBJ, STL, OFF, GLB/GLTF (through trimesh); point clouds: PLY without faces,
XYZ/TXT/PTS (x y z per line, extra columns ignored), NPY ([N, 3] or [N, 6] with normals).

Every failure caused by the file is a `ScanError` (a `ModelFileError`, so ValueError)
naming it: PLY/OFF/STL headers are checked against the file size before trimesh
reads them, faces must index existing vertices, mesh vertices must be finite
(point-cloud rows with NaN/inf are dropped: scanners write them for missing points),
and anything the third-party parsers raise on a malformed file is converted.
"""

from __future__ import annotations

import json
import os
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from hack_model.io.errors import ModelFileError
from hack_model.io.npy import read_npy
from hack_model.io.safe_pickle.budget import MAX_FILE_BYTES

from .geometry import face_normals, sample_surface

MESH_SUFFIXES = {".ply", ".obj", ".stl", ".off", ".glb", ".gltf"}
CLOUD_SUFFIXES = {".xyz", ".npy", ".pts"}
SCAN_SUFFIXES = MESH_SUFFIXES | CLOUD_SUFFIXES


@dataclass
class ScanData:
    """A scan: points [N, 3] in its own units, optional normals [N, 3] and triangles [F, 3]
    (then `points` are the mesh's vertices)."""

    points: np.ndarray
    normals: np.ndarray | None = None
    triangles: np.ndarray | None = None
    name: str = "scan"

    @property
    def has_triangles(self) -> bool:
        return self.triangles is not None and len(self.triangles) > 0


def mesh_to_points(scan: ScanData, count: int, rng: np.random.Generator) -> ScanData:
    """A mesh scan as `count` area-uniform surface samples with face normals (a scanner
    mesh's vertex density is uneven); a scan without triangles comes back unchanged."""
    if not scan.has_triangles:
        return scan
    v = np.asarray(scan.points, np.float64)
    tris = valid_triangles(v, scan.triangles)
    if len(tris) == 0:
        return ScanData(v, None, None, scan.name)
    try:
        points, face, _ = sample_surface(v, tris, count, rng)
    except ValueError:  # no area: use the vertices as points
        return ScanData(v, None, None, scan.name)
    return ScanData(points, face_normals(v, tris)[face], None, scan.name)


def valid_triangles(vertices: np.ndarray, triangles: np.ndarray) -> np.ndarray:
    """The triangles [F', 3] whose corner indices exist and whose corners are finite."""
    tris = np.asarray(triangles, np.int64).reshape(-1, 3)
    tris = tris[((tris >= 0) & (tris < len(vertices))).all(1)]
    return tris[np.isfinite(vertices[tris]).all((1, 2))]


class ScanError(ModelFileError):
    """A scan or landmark file that cannot be read; the message names the file."""


def find_scans(paths: list[str | os.PathLike]) -> list[Path]:
    """Expand folders (their scan files, sorted, not recursive) and check that files exist."""
    out: list[Path] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            found = sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() in SCAN_SUFFIXES)
            if not found:
                raise ScanError(f"{path}: no scan files ({', '.join(sorted(SCAN_SUFFIXES))}) in this folder")
            out.extend(found)
        elif path.is_file():
            out.append(path)
        else:
            raise ScanError(f"{path}: no such file or folder")
    return out


def load_scan(path: str | os.PathLike) -> ScanData:
    """Points [N, 3] (and normals, triangles for meshes) of a scan file, in its own units."""
    path = Path(path)
    suffix = path.suffix.lower()
    if not path.is_file():
        raise ScanError(f"{path}: no such file")
    if suffix not in SCAN_SUFFIXES:
        raise ScanError(
            f"{path}: unsupported scan format '{suffix}' (use {', '.join(sorted(SCAN_SUFFIXES))})"
        )
    size = path.stat().st_size
    if size > MAX_FILE_BYTES:
        raise ScanError(f"{path}: the file is {size / 1e9:.1f} GB; scans over 1 GB are refused")
    if size == 0:
        raise ScanError(f"{path}: the file is empty")
    try:
        if suffix == ".npy":
            array = read_npy(path)
            if array.ndim != 2 or array.shape[1] not in (3, 6) or array.dtype.kind not in "fiu":
                raise ScanError(
                    f"{path}: expected a numeric [N, 3] or [N, 6] array, "
                    f"got {array.dtype} {list(array.shape)}"
                )
            array = array.astype(np.float64)
            normals = array[:, 3:6] if array.shape[1] == 6 else None
            return _checked(ScanData(array[:, :3], normals, None, path.stem), path)
        if suffix in (".xyz", ".pts"):
            return _checked(ScanData(_read_xyz(path), None, None, path.stem), path)
        _check_header(path, suffix, size)
        return _checked(_read_trimesh(path), path)
    except ScanError:
        raise
    except ModelFileError as err:
        raise ScanError(str(err)) from None
    except MemoryError:
        raise ScanError(f"{path}: the scan needs more memory than is available") from None
    except Exception as err:  # trimesh and its parsers raise anything on a malformed file
        detail = str(err).split("\n")[0][:200]
        kind = suffix[1:].upper()
        raise ScanError(f"{path}: not a readable {kind} scan ({type(err).__name__}: {detail})") from None


def _read_xyz(path: Path) -> np.ndarray:
    rows = []
    with open(path, encoding="utf-8", errors="replace") as handle:
        for line_no, line in enumerate(handle, 1):
            parts = line.replace(",", " ").split()
            if not parts or parts[0].startswith("#"):
                continue
            try:
                rows.append([float(x) for x in parts[:3]])
            except ValueError:
                raise ScanError(f"{path}:{line_no}: expected 'x y z' numbers") from None
            if len(rows[-1]) < 3:
                raise ScanError(f"{path}:{line_no}: expected 'x y z' numbers")
    return np.asarray(rows, np.float64).reshape(-1, 3)


def _read_trimesh(path: Path) -> ScanData:
    import trimesh

    loaded = trimesh.load(str(path), process=False)
    if isinstance(loaded, trimesh.Scene):
        geoms = [g for g in loaded.dump() if hasattr(g, "vertices")] if loaded.geometry else []
        if not geoms:
            raise ScanError(f"{path}: the file holds no mesh or points")
        loaded = trimesh.util.concatenate(geoms) if len(geoms) > 1 else geoms[0]
    if isinstance(loaded, trimesh.Trimesh):
        vertices = np.asarray(loaded.vertices, np.float64)
        faces = np.asarray(loaded.faces, np.int64)
        if len(faces) == 0:
            return ScanData(vertices, None, None, path.stem)
        return ScanData(vertices, None, faces, path.stem)
    if isinstance(loaded, trimesh.PointCloud):
        return ScanData(np.asarray(loaded.vertices, np.float64), None, None, path.stem)
    raise ScanError(f"{path}: not a mesh or point cloud ({type(loaded).__name__})")


def _checked(scan: ScanData, path: Path) -> ScanData:
    pts = np.asarray(scan.points)
    if pts.ndim != 2 or pts.shape[1] != 3 or len(pts) == 0:
        raise ScanError(f"{path}: the scan has no points")
    finite = np.isfinite(pts).all(axis=1)
    if not finite.any():
        raise ScanError(f"{path}: every point has a NaN or infinite coordinate")
    if scan.triangles is not None:
        faces = np.asarray(scan.triangles)
        if faces.ndim != 2 or faces.shape[1] != 3:
            raise ScanError(f"{path}: faces must be triangles [F, 3], got {list(faces.shape)}")
        if len(faces) and (faces.min() < 0 or faces.max() >= len(pts)):
            bad = int(faces.max() if faces.max() >= len(pts) else faces.min())
            raise ScanError(
                f"{path}: a face refers to vertex {bad}; the mesh has {len(pts)} vertices (0..{len(pts) - 1})"
            )
        if not finite.all():
            raise ScanError(f"{path}: {int((~finite).sum())} mesh vertices have NaN or infinite coordinates")
    elif not finite.all():  # a point cloud: scanners write NaN for missing points
        normals = None if scan.normals is None else np.asarray(scan.normals)[finite]
        scan = ScanData(pts[finite], normals, None, scan.name)
    if scan.normals is not None and not np.isfinite(np.asarray(scan.normals)).all():
        raise ScanError(f"{path}: normals have NaN or infinite values")
    return scan


_PLY_SIZES = {
    "char": 1, "uchar": 1, "int8": 1, "uint8": 1, "short": 2, "ushort": 2, "int16": 2, "uint16": 2,
    "int": 4, "uint": 4, "int32": 4, "uint32": 4, "float": 4, "float32": 4, "double": 8, "float64": 8,
}  # fmt: skip


def _check_header(path: Path, suffix: str, size: int) -> None:
    """Refuse headers that claim more data than the file holds, before a parser allocates it."""
    with open(path, "rb") as handle:
        head = handle.read(1 << 16)
    if suffix == ".ply":
        end = head.find(b"end_header")
        if not head.startswith(b"ply") or end < 0:
            raise ScanError(f"{path}: not a PLY file (no 'ply' ... 'end_header' in the first 64 KiB)")
        body = size - (head.find(b"\n", end) + 1)
        binary, need = True, 0
        element_count, row = 0, 0
        for line in head[:end].decode("ascii", "replace").splitlines():
            parts = line.split()
            if parts[:1] == ["format"]:
                binary = len(parts) > 1 and parts[1] != "ascii"
            elif parts[:1] == ["element"]:
                need += element_count * row
                try:
                    element_count = int(parts[2])
                except (IndexError, ValueError):
                    raise ScanError(f"{path}: malformed PLY header line '{line[:80]}'") from None
                if element_count < 0:
                    raise ScanError(f"{path}: PLY header gives a negative element count")
                row = 0
            elif parts[:1] == ["property"] and len(parts) >= 3:
                kind = parts[2] if parts[1] == "list" else parts[1]
                row += _PLY_SIZES.get(kind, 1) if binary else 2
        need += element_count * row
        if need > body:
            raise ScanError(
                f"{path}: PLY header claims at least {need} bytes of data, the file holds {max(body, 0)}"
            )
    elif suffix == ".off":
        text = head.decode("ascii", "replace").splitlines()
        lines = [ln for ln in text if ln.strip() and not ln.startswith("#")]
        if not lines or not lines[0].strip().upper().endswith("OFF"):
            raise ScanError(f"{path}: not an OFF file")
        counts = lines[0].split()[1:] or (lines[1].split() if len(lines) > 1 else [])
        try:
            nv, nf = int(counts[0]), int(counts[1])
        except (IndexError, ValueError):
            raise ScanError(f"{path}: malformed OFF header") from None
        if nv < 0 or nf < 0 or 6 * nv + 8 * nf > size:
            raise ScanError(f"{path}: OFF header claims {nv} vertices, {nf} faces; the file is {size} bytes")
    elif suffix == ".stl" and not head.lstrip().startswith(b"solid") and len(head) >= 84:
        (count,) = struct.unpack("<I", head[80:84])
        if 84 + 50 * count > size:
            raise ScanError(f"{path}: STL header claims {count} triangles; the file is {size} bytes")


def load_landmarks(path: str | os.PathLike, count: int = 68) -> np.ndarray:
    """Landmarks [count, 3] (Multi-PIE order) from TXT (x y z per line; 'nan' for missing),
    NPY or JSON (a list of [x, y, z] or null, or {"landmarks": [...]})."""
    path = Path(path)
    if not path.is_file():
        raise ScanError(f"{path}: no such landmark file")
    if path.stat().st_size > (16 << 20):
        raise ScanError(f"{path}: {path.stat().st_size / 1e6:.0f} MB is not a landmark file (at most 16 MB)")
    suffix = path.suffix.lower()
    try:
        if suffix == ".npy":
            array = read_npy(path).astype(np.float64)
        elif suffix == ".json":
            data = json.loads(path.read_text(encoding="utf-8"))
            if isinstance(data, dict):
                data = data.get("landmarks")
            if not isinstance(data, list):
                raise ScanError(f'{path}: expected a list of [x, y, z] (or null) or {{"landmarks": [...]}}')
            array = np.array([[np.nan] * 3 if p is None else p for p in data], np.float64)
        else:
            array = np.loadtxt(path, dtype=np.float64, ndmin=2, delimiter=None)
    except ScanError:
        raise
    except (ValueError, OSError, TypeError, RecursionError, MemoryError, IndexError) as err:
        raise ScanError(f"{path}: not a readable landmark file ({str(err)[:200]})") from None
    if array.ndim != 2 or array.shape != (count, 3):
        raise ScanError(f"{path}: expected {count} landmarks as [{count}, 3], got {list(array.shape)}")
    if np.isfinite(array).all(1).sum() < 4:
        raise ScanError(f"{path}: fewer than 4 landmarks are given (the rest are NaN)")
    return array
