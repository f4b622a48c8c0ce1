"""The package's own model format: one `.npz` of plain arrays, no pickles.

It loads with numpy alone (the Blender add-on reads it without torch), through
`hack_model.io.npy.read_npz`: no pickles, every member's header and size checked
before inflating. Strings are stored as unicode arrays, metadata as a
JSON string, and `format_version` says which layout the file follows.
"""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path

import numpy as np

from ..model_data import ModelData, ModelDataError
from .atomic import atomic_output
from .errors import ModelFileError
from .limits import MAX_METADATA_CHARS, MAX_NAME_CHARS
from .npy import as_text, read_npz

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
    """Read a model written by `save_model`. Raises ModelFileError (a ValueError) naming
    the path and the member."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such model file")
    arrays = read_npz(path, what=".npz model file")
    return arrays_to_model(arrays, source=str(path))


def arrays_to_model(arrays: dict[str, np.ndarray], source: str = "<arrays>") -> ModelData:
    """Inverse of `model_to_arrays`."""
    if "format_name" not in arrays:
        raise ModelFileError(f"not a hack-model file (no format_name '{FORMAT_NAME}')", path=source)
    if as_text(arrays["format_name"], source, "format_name", MAX_NAME_CHARS) != FORMAT_NAME:
        raise ModelFileError(f"not a hack-model file (format_name is not '{FORMAT_NAME}')", path=source)
    raw_version = np.asarray(arrays.get("format_version"))
    if raw_version.size != 1 or raw_version.dtype.kind not in "iu":
        raise ModelFileError("must be one integer", path=source, field="format_version")
    version = int(raw_version.reshape(()))
    if version > FORMAT_VERSION:
        raise ModelFileError(
            f"format version {version} is newer than this hack-model "
            f"understands ({FORMAT_VERSION}); upgrade the package",
            path=source,
        )
    kwargs: dict = {"extras": {}}
    names = {f.name for f in dataclasses.fields(ModelData)}
    for key, value in arrays.items():
        if key in ("format_name", "format_version"):
            continue
        if key.startswith(_EXTRA_PREFIX):
            if value.dtype.kind not in "biufUS":
                raise ModelFileError(f"must be numeric or text, got {value.dtype}", path=source, field=key)
            kwargs["extras"][key[len(_EXTRA_PREFIX) :]] = value
        elif key in _STRING_LISTS:
            if value.dtype.kind not in "US" or value.ndim != 1 or value.dtype.itemsize > 4 * MAX_NAME_CHARS:
                raise ModelFileError(
                    f"must be a list of names of at most {MAX_NAME_CHARS} characters", path=source, field=key
                )
            kwargs[key] = [str(s) for s in value.tolist()]
        elif key == "metadata":
            text = as_text(value, source, key, MAX_METADATA_CHARS)
            try:
                meta = json.loads(text)
            except (ValueError, RecursionError) as err:
                raise ModelFileError(f"not valid JSON ({str(err)[:100]})", path=source, field=key) from None
            if not isinstance(meta, dict):
                raise ModelFileError("must be a JSON object", path=source, field=key)
            kwargs[key] = meta
        elif key == "units":
            kwargs[key] = as_text(value, source, key, 64)
        elif key in names:
            if value.dtype.kind not in "biuf":
                raise ModelFileError(f"must be a numeric array, got {value.dtype}", path=source, field=key)
            kwargs[key] = value
        # Unknown keys from a newer minor layout are ignored on purpose.
    try:
        return ModelData(**kwargs)
    except TypeError as err:
        raise ModelFileError(f"missing arrays in model file ({err})", path=source) from None
    except (ModelDataError, ValueError, IndexError) as err:
        raise ModelFileError(str(err), path=source) from None
