"""The package's own model format: one `.npz` of plain arrays, no pickles.

It loads with `np.load(allow_pickle=False)` and numpy alone (the Blender add-on
reads it without torch). Strings are stored as unicode arrays, metadata as a
JSON string, and `format_version` says which layout the file follows.
"""

from __future__ import annotations

import dataclasses
import json
import os
import zipfile
from pathlib import Path

import numpy as np

from ..model_data import ModelData, ModelDataError
from .atomic import atomic_output

FORMAT_NAME = "hack-model"
FORMAT_VERSION = 1
_STRING_LISTS = ("expression_names", "bone_names", "action_unit_names", "action_unit_descriptions")
_EXTRA_PREFIX = "extra__"


def model_to_arrays(data: ModelData) -> dict[str, np.ndarray]:
    """The flat dict of arrays that `save_model` writes."""
    arrays: dict[str, np.ndarray] = {
        "format_name": np.array(FORMAT_NAME),
        "format_version": np.array(FORMAT_VERSION, np.int32),
    }
    for f in dataclasses.fields(ModelData):
        value = getattr(data, f.name)
        if value is None or f.name == "extras":
            continue
        if f.name in _STRING_LISTS:
            arrays[f.name] = np.array(list(value), dtype=np.str_).reshape(-1)
        elif f.name == "metadata":
            arrays[f.name] = np.array(json.dumps(value, sort_keys=True))
        elif f.name == "units":
            arrays[f.name] = np.array(value)
        else:
            arrays[f.name] = np.asarray(value)
    for key, value in data.extras.items():
        arrays[_EXTRA_PREFIX + key] = value
    return arrays


def save_model(data: ModelData, path: str | os.PathLike, *, compress: bool = True) -> Path:
    """Write `data` to `path` (.npz) atomically; returns the path."""
    path = Path(path)
    arrays = model_to_arrays(data)
    with atomic_output(path) as tmp:
        with open(tmp, "wb") as handle:
            (np.savez_compressed if compress else np.savez)(handle, **arrays)
    return path


def load_model_npz(path: str | os.PathLike) -> ModelData:
    """Read a model written by `save_model`. Raises ValueError naming the path and problem."""
    path = Path(path)
    try:
        archive = np.load(path, allow_pickle=False)
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: no such model file") from None
    except (ValueError, OSError, zipfile.BadZipFile) as err:
        raise ValueError(f"{path}: not a readable .npz model file ({err})") from None
    if not isinstance(archive, np.lib.npyio.NpzFile):
        raise ValueError(f"{path}: a single .npy array, not a model .npz")
    with archive:
        try:
            arrays = {key: archive[key] for key in archive.files}
        except ValueError as err:  # object arrays need pickles, which we refuse
            raise ValueError(f"{path}: contains pickled objects, refused ({err})") from None
    return arrays_to_model(arrays, source=str(path))


def arrays_to_model(arrays: dict[str, np.ndarray], source: str = "<arrays>") -> ModelData:
    """Inverse of `model_to_arrays`."""
    if str(arrays.get("format_name", "")) != FORMAT_NAME:
        raise ValueError(f"{source}: not a hack-model file (no format_name '{FORMAT_NAME}')")
    version = int(arrays["format_version"])
    if version > FORMAT_VERSION:
        raise ValueError(
            f"{source}: format version {version} is newer than this hack-model "
            f"understands ({FORMAT_VERSION}); upgrade the package"
        )
    kwargs: dict = {"extras": {}}
    names = {f.name for f in dataclasses.fields(ModelData)}
    for key, value in arrays.items():
        if key in ("format_name", "format_version"):
            continue
        if key.startswith(_EXTRA_PREFIX):
            kwargs["extras"][key[len(_EXTRA_PREFIX) :]] = value
        elif key in _STRING_LISTS:
            kwargs[key] = [str(s) for s in value.tolist()]
        elif key == "metadata":
            kwargs[key] = json.loads(str(value))
        elif key == "units":
            kwargs[key] = str(value)
        elif key in names:
            kwargs[key] = value
        # Unknown keys from a newer minor layout are ignored on purpose.
    try:
        return ModelData(**kwargs)
    except TypeError as err:
        raise ValueError(f"{source}: missing arrays in model file ({err})") from None
    except ModelDataError as err:
        raise ValueError(f"{source}: {err}") from None
