"""smplx-style pickles (the SMPL, SMPL-H, SMPL-X and FLAME `.pkl` layout), chumpy-free.

Keys: `v_template` [V, 3], `f` [F, 3], `shapedirs` [V, 3, K], `posedirs` [V, 3, (J-1)*9],
`J_regressor` (scipy sparse or dense) [J, V], `kintree_table` [2, J], `weights` [V, J].
Arrays may be chumpy objects; the restricted unpickler turns them into plain arrays.
Joints are regressed from the shaped template, so the rest frames follow the shape
(identity rotations, SMPL style).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ..action_units import default_action_unit_table
from ..model_data import ModelData
from .errors import ModelFileError
from .safe_pickle import load_pickle
from .safe_pickle.budget import MAX_ARRAY_ELEMENTS

REQUIRED_KEYS = ("v_template", "f", "shapedirs", "posedirs", "J_regressor", "kintree_table", "weights")
# smplx splits `shapedirs` into 300 shape and the rest expression directions (FLAME, SMPL-X).
SHAPE_SPACE_DIM = 300

SMPL_JOINT_NAMES = (
    "pelvis", "left_hip", "right_hip", "spine1", "left_knee", "right_knee", "spine2",
    "left_ankle", "right_ankle", "spine3", "left_foot", "right_foot", "neck", "left_collar",
    "right_collar", "head", "left_shoulder", "right_shoulder", "left_elbow", "right_elbow",
    "left_wrist", "right_wrist", "left_hand", "right_hand",
)  # fmt: skip
FLAME_JOINT_NAMES = ("global", "neck", "jaw", "left_eye", "right_eye")


def load_smpl_pickle(path: str | os.PathLike) -> ModelData:
    """Read a smplx-style `.pkl` through the restricted unpickler into ModelData."""
    path = Path(path)
    content = load_pickle(path)
    if not isinstance(content, dict):
        raise ValueError(f"{path}: expected a pickled dict of model arrays, got {type(content).__name__}")
    missing = [k for k in REQUIRED_KEYS if k not in content]
    if missing:
        raise ValueError(f"{path}: not a smplx-style model, missing keys: {', '.join(missing)}")
    try:
        return smpl_arrays_to_model(content, name=path.stem, source=str(path))
    except ModelFileError as err:
        if err.path is None:
            raise type(err)(str(err), path=path) from None
        raise
    except (ValueError, IndexError, TypeError) as err:
        raise ModelFileError(str(err), path=path) from None


def smpl_arrays_to_model(content: dict, name: str = "smpl", source: str = "") -> ModelData:
    template = _dense(content["v_template"], "v_template").astype(np.float64)
    V = template.shape[0]
    faces = _dense(content["f"], "f").astype(np.int64)
    shapedirs = _dense(content["shapedirs"], "shapedirs")
    posedirs = _dense(content["posedirs"], "posedirs")
    regressor = _dense(content["J_regressor"], "J_regressor").astype(np.float64)
    kintree = _dense(content["kintree_table"], "kintree_table")
    if kintree.ndim != 2 or kintree.shape[0] != 2 or kintree.shape[1] < 2:
        raise ValueError(
            f"kintree_table must have shape [2, J] with at least 2 joints, got {list(kintree.shape)}"
            + (" (the model has no joints)" if kintree.size == 0 else "")
        )
    if kintree.dtype.kind not in "iu":
        raise ValueError(f"kintree_table must hold integers, got {kintree.dtype}")
    parents = kintree[0].astype(np.int64)
    weights = _dense(content["weights"], "weights").astype(np.float64)
    J = len(parents)
    if template.ndim != 2 or template.shape[1] != 3 or V == 0:
        raise ValueError(f"v_template must have shape [V, 3] with V > 0, got {list(template.shape)}")
    if faces.ndim != 2 or faces.shape[1] not in (3, 4) or faces.size == 0:
        raise ValueError(f"f must have shape [F, 3], got {list(faces.shape)}")
    if faces.min() < 0 or faces.max() >= V:
        raise ValueError(f"f has vertex indices outside 0..{V - 1}")
    for key, arr in (("v_template", template), ("shapedirs", shapedirs), ("posedirs", posedirs),
                     ("J_regressor", regressor), ("weights", weights)):  # fmt: skip
        if arr.dtype.kind not in "fiub" or not np.isfinite(arr).all():
            raise ValueError(f"{key} must be finite numbers")
    if shapedirs.ndim != 3 or shapedirs.shape[:2] != (V, 3):
        raise ValueError(f"shapedirs must have shape [{V}, 3, K], got {list(shapedirs.shape)}")
    if posedirs.shape != (V, 3, (J - 1) * 9):
        raise ValueError(f"posedirs must have shape [{V}, 3, {(J - 1) * 9}], got {list(posedirs.shape)}")
    if regressor.shape != (J, V):
        raise ValueError(f"J_regressor must have shape [{J}, {V}], got {list(regressor.shape)}")
    if weights.shape != (V, J):
        raise ValueError(f"weights must have shape [{V}, {J}], got {list(weights.shape)}")
    parents[0] = -1  # stored as 2**32 - 1 in the original files
    if any(not 0 <= parents[b] < b for b in range(1, J)):
        raise ValueError("kintree_table: every parent must precede its child")

    K = shapedirs.shape[2]
    num_shape = min(K, SHAPE_SPACE_DIM)
    shape_dirs = shapedirs[:, :, :num_shape].transpose(2, 0, 1)
    expression_dirs = shapedirs[:, :, num_shape:].transpose(2, 0, 1)
    expression_names = [f"expression_{i:03d}" for i in range(K - num_shape)]
    pose_dirs = np.zeros((J, 3, 3, V, 3), np.float32)
    # posedirs[v, c, (b-1)*9 + 3*i + j] multiplies (R_b - I)[i, j]
    pose_dirs[1:] = posedirs.reshape(V, 3, J - 1, 3, 3).transpose(2, 3, 4, 0, 1)

    joints = regressor @ template
    rest = np.tile(np.eye(4), (J, 1, 1))
    rest[:, :3, 3] = joints
    lengths = np.zeros(J)
    for b in range(1, J):  # a bone reaches to its (last) child
        lengths[parents[b]] = np.linalg.norm(joints[b] - joints[parents[b]])
    names = {24: SMPL_JOINT_NAMES, 5: FLAME_JOINT_NAMES}.get(J, tuple(f"joint_{i:02d}" for i in range(J)))
    au_names, au_descriptions, au_matrix = default_action_unit_table(expression_names)
    return ModelData(
        template_vertices=template.astype(np.float32),
        polygon_vertex_indices=faces.reshape(-1).astype(np.int32),
        polygon_sizes=np.full(len(faces), faces.shape[1], np.int32),
        shape_directions=shape_dirs.astype(np.float32),
        expression_directions=expression_dirs.astype(np.float32),
        expression_names=expression_names,
        pose_directions=pose_dirs,
        skinning_weights=(weights / weights.sum(1, keepdims=True)).astype(np.float32),
        bone_names=list(names),
        bone_parents=parents.astype(np.int32),
        bone_rest_transforms=rest,
        bone_lengths=lengths,
        joint_regressor=regressor.astype(np.float32),
        action_unit_names=au_names,
        action_unit_descriptions=au_descriptions,
        action_unit_matrix=au_matrix,
        units="m",
        metadata={
            "name": name,
            "source": source,
            "license": "see the original model's licence",
            "format": "smplx-style pickle",
        },
    )


def _dense(value, key: str) -> np.ndarray:
    if hasattr(value, "toarray"):  # scipy sparse
        if int(np.prod(value.shape, dtype=np.float64)) > MAX_ARRAY_ELEMENTS:
            raise ValueError(f"'{key}' has shape {list(value.shape)}, too large to use densely")
        value = value.toarray()
    if not isinstance(value, (np.ndarray, list, tuple, int, float)):
        raise ValueError(f"'{key}' is a {type(value).__name__}, not a numeric array")
    from .safe_pickle.budget import safe_asarray

    array = safe_asarray(value, key)
    if array.dtype.kind not in "fiub":
        raise ValueError(f"'{key}' is not a numeric array ({array.dtype})")
    return array
