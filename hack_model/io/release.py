"""Load the official HACK release folder (its original layout) as ModelData.

Expected files, under `model/` or directly in the folder given:
`000_generic_neutral_mesh.obj`, `000_generic_neutral_mesh_newuv.obj`,
`bones_neutral.json`, `weight_map_smooth.npy`, `Lc_mid.png`, `ts_larynx.npy`,
`S.npy`, `E.npy` (or `blendshape.npy`), `P.npy`, `expression_names.json`.
The pickled-dict `.npy` files go through the restricted unpickler.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from ..action_units import default_action_unit_table
from ..anatomy import ICT_MULTIPIE_LANDMARKS, hack_range_of_motion
from ..model_data import ModelData
from .mesh import read_obj
from .npy import read_npy
from .safe_pickle import load_pickled_npy

TEMPLATE_OBJ = "000_generic_neutral_mesh.obj"
UV_OBJ = "000_generic_neutral_mesh_newuv.obj"
REQUIRED = (TEMPLATE_OBJ, "bones_neutral.json", "weight_map_smooth.npy", "S.npy", "P.npy")


def find_release_folder(path: str | os.PathLike) -> Path | None:
    """The folder holding the release's model files, or None if `path` is not a release."""
    path = Path(path)
    for candidate in (path / "model", path):
        if candidate.is_dir() and (candidate / TEMPLATE_OBJ).exists():
            return candidate
    return None


def load_release(path: str | os.PathLike) -> ModelData:
    """Read an official HACK release folder. Raises FileNotFoundError/ValueError naming the file."""
    folder = find_release_folder(path)
    if folder is None:
        raise FileNotFoundError(f"{path}: not a HACK release folder (no {TEMPLATE_OBJ})")
    missing = [name for name in REQUIRED if not (folder / name).exists()]
    if not (folder / "E.npy").exists() and not (folder / "blendshape.npy").exists():
        missing.append("E.npy or blendshape.npy")
    if missing:
        raise FileNotFoundError(f"{folder}: missing release files: {', '.join(missing)}")

    template_mesh = read_obj(folder / TEMPLATE_OBJ)
    V = len(template_mesh.vertices)
    uv_mesh = read_obj(folder / UV_OBJ) if (folder / UV_OBJ).exists() else template_mesh
    if not np.array_equal(uv_mesh.polygon_vertex_indices, template_mesh.polygon_vertex_indices):
        raise ValueError(f"{folder / UV_OBJ}: faces differ from {TEMPLATE_OBJ}")

    shape = _pca_file(folder / "S.npy", (V, 3))
    template = np.asarray(shape["mean"], np.float32)
    shape_dirs = _components(shape, folder / "S.npy", V)
    expression_names = _expression_names(folder)
    if (folder / "E.npy").exists():
        expression_dirs = np.asarray(_pca_file(folder / "E.npy", (None, V, 3))["mean"], np.float32)
    else:
        absolute = read_npy(folder / "blendshape.npy")
        if absolute.ndim != 3 or absolute.shape[1:] != (V, 3):
            raise ValueError(
                f"{folder / 'blendshape.npy'}: expected [E+1, {V}, 3], got {list(absolute.shape)}"
            )
        expression_dirs = (absolute[1:] - absolute[:1]).astype(np.float32)
    if len(expression_names) != len(expression_dirs):
        expression_names = [f"expression_{i:03d}" for i in range(len(expression_dirs))]
    pose_dirs = np.asarray(_pca_file(folder / "P.npy", (None, 3, 3, V, 3))["mean"], np.float32)

    bone_names, parents, rest, lengths = _bones(folder / "bones_neutral.json")
    weights = read_npy(folder / "weight_map_smooth.npy")
    if weights.shape != (len(bone_names), V):
        raise ValueError(
            f"{folder / 'weight_map_smooth.npy'}: expected [{len(bone_names)}, {V}], "
            f"got {list(weights.shape)}"
        )
    weights = (weights / weights.sum(0, keepdims=True)).T.astype(np.float32)

    larynx_map = larynx_direction = None
    if (folder / "Lc_mid.png").exists() and (folder / "ts_larynx.npy").exists():
        larynx_map = _read_grayscale_png(folder / "Lc_mid.png")
        larynx_direction = read_npy(folder / "ts_larynx.npy").astype(np.float32)

    au_names, au_descriptions, au_matrix = default_action_unit_table(expression_names)
    landmarks = np.asarray(ICT_MULTIPIE_LANDMARKS, np.int64) if V > max(ICT_MULTIPIE_LANDMARKS) else None
    return ModelData(
        template_vertices=template,
        polygon_vertex_indices=template_mesh.polygon_vertex_indices.astype(np.int32),
        polygon_sizes=template_mesh.polygon_sizes.astype(np.int32),
        shape_directions=shape_dirs,
        expression_directions=expression_dirs,
        expression_names=expression_names,
        pose_directions=pose_dirs,
        skinning_weights=weights,
        bone_names=bone_names,
        bone_parents=parents,
        bone_rest_transforms=rest,
        bone_lengths=lengths,
        uv_coords=None if uv_mesh.uv_coords is None else uv_mesh.uv_coords.astype(np.float32),
        polygon_uv_indices=None
        if uv_mesh.polygon_uv_indices is None
        else uv_mesh.polygon_uv_indices.astype(np.int32),
        vertex_uvs=None if uv_mesh.uv_coords is None else uv_mesh.vertex_uvs().astype(np.float32),
        larynx_map=larynx_map,
        larynx_direction=larynx_direction,
        landmark_indices=landmarks,
        action_unit_names=au_names,
        action_unit_descriptions=au_descriptions,
        action_unit_matrix=au_matrix,
        range_of_motion=hack_range_of_motion().astype(np.float32) if len(bone_names) == 8 else None,
        units="cm",
        metadata={
            "name": "HACK (official release layout)",
            "version": "release",
            "license": "see the HACK release",
            "source": str(folder.resolve()),
        },
    )


def _pca_file(path: Path, mean_shape: tuple[int | None, ...]) -> dict:
    content = load_pickled_npy(path)
    if not isinstance(content, dict) or "mean" not in content:
        raise ValueError(f"{path}: expected a pickled dict with keys 'mean' and 'VT_std'")
    mean = np.asarray(content["mean"])
    if mean.ndim != len(mean_shape) or any(w is not None and w != h for h, w in zip(mean.shape, mean_shape)):
        want = "[" + ", ".join("?" if w is None else str(w) for w in mean_shape) + "]"
        raise ValueError(f"{path}: 'mean' must have shape {want}, got {list(mean.shape)}")
    return content


def _components(content: dict, path: Path, V: int) -> np.ndarray:
    """All components the file has, [S, V, 3] (scaled by their standard deviations)."""
    comps = np.asarray(content.get("VT_std", np.zeros((0, V, 3))), np.float32)
    if comps.size == 0:
        return np.zeros((0, V, 3), np.float32)
    if comps.ndim == 2:  # some releases store [S, V*3]
        comps = comps.reshape(len(comps), V, 3)
    if comps.shape[1:] != (V, 3):
        raise ValueError(f"{path}: 'VT_std' must have shape [S, {V}, 3], got {list(comps.shape)}")
    return comps


def _expression_names(folder: Path) -> list[str]:
    path = folder / "expression_names.json"
    if not path.exists():
        return []
    names = json.loads(path.read_text())
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise ValueError(f"{path}: expected a JSON list of names")
    return names


def _bones(path: Path) -> tuple[list[str], np.ndarray, np.ndarray, np.ndarray]:
    """Names, parents, world rest frames [J, 4, 4] and lengths in chain order.

    A child's rest transform relative to its parent is [matrix | head + (0, parent.length, 0)]:
    it starts at the parent's tail, along the parent's local +y.
    """
    try:
        bones = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise ValueError(f"{path}: not valid JSON ({err})") from None
    names = list(bones)
    order: list[str] = []
    # Parents first, whatever order the file lists them in.
    while len(order) < len(names):
        progressed = False
        for name in names:
            parent = bones[name].get("parent")
            if name not in order and (parent in (None, "") or parent in order):
                order.append(name)
                progressed = True
        if not progressed:
            raise ValueError(f"{path}: bone parents form a cycle or name unknown bones")
    parents, rest, lengths = [], [], []
    for name in order:
        bone = bones[name]
        parent = bone.get("parent") or None
        local = np.eye(4)
        local[:3, :3] = np.asarray(bone["matrix"], np.float64)
        head = np.asarray(bone["head"], np.float64)
        if parent is None:
            parents.append(-1)
            local[:3, 3] = head
            rest.append(local)
        else:
            p = order.index(parent)
            parents.append(p)
            local[:3, 3] = head + np.array([0.0, float(bones[parent]["length"]), 0.0])
            rest.append(rest[p] @ local)
        lengths.append(float(bone["length"]))
    return (
        order,
        np.asarray(parents, np.int32),
        np.asarray(rest, np.float64),
        np.asarray(lengths, np.float64),
    )


def _read_grayscale_png(path: Path) -> np.ndarray:
    """[H, W] float32 in [0, 1]."""
    from PIL import Image

    with Image.open(path) as image:
        gray = np.asarray(image.convert("L"), np.float32)
    return gray / 255.0
