"""Parameter files: `.npz` archives of forward() arguments.

Keys are the API's names (`shape`, `expression`, `neck_pose`, `larynx_height`,
`larynx_scale`, `action_units` with `action_unit_names`, `global_orient`,
`transl`) or the official HACK symbols (`beta`, `bsw`, `theta`, `tau`, `alpha`,
also with a `_list` suffix as in the recorded sequences). Fitting results add
`scale`, `rotation` and `translation` (model space to scan space), which
forward() does not take and `forward_arguments` leaves out.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from .io.atomic import atomic_output
from .io.errors import ModelFileError

PARAMETER_NAMES = (
    "shape",
    "expression",
    "neck_pose",
    "larynx_height",
    "larynx_scale",
    "action_units",
    "global_orient",
    "transl",
)
OFFICIAL_SYMBOLS = {
    "beta": "shape",
    "bsw": "expression",
    "theta": "neck_pose",
    "tau": "larynx_height",
    "alpha": "larynx_scale",
}
# Trailing shape of one frame of each parameter; the batch axis comes first.
FRAME_RANKS = {
    "shape": 1,
    "expression": 1,
    "neck_pose": 2,
    "larynx_height": 1,
    "larynx_scale": 1,
    "action_units": 1,
    "global_orient": 1,
    "transl": 1,
}
EXTRA_KEYS = ("action_unit_names", "scale", "rotation", "translation", "fps")


def canonical_name(key: str) -> str | None:
    """API name for an API name or official symbol (with or without `_list`); None otherwise."""
    base = key[: -len("_list")] if key.endswith("_list") else key
    if base in PARAMETER_NAMES:
        return base
    return OFFICIAL_SYMBOLS.get(base)


def normalize_params(raw: dict[str, np.ndarray], source: str = "<params>") -> dict[str, np.ndarray]:
    """Rename to API names and give every parameter a batch axis ([S] -> [1, S])."""
    params: dict[str, np.ndarray] = {}
    for key, value in raw.items():
        if key in EXTRA_KEYS:
            params[key] = np.asarray(value)
            if params[key].dtype.hasobject:
                raise ValueError(f"{source}: '{key}' is not numeric or text")
            continue
        name = canonical_name(key)
        if name is None:
            known = ", ".join(PARAMETER_NAMES + tuple(OFFICIAL_SYMBOLS))
            raise ValueError(f"{source}: unknown parameter '{key}' (known: {known})")
        if name in params:
            raise ValueError(f"{source}: parameter '{name}' given twice (as '{key}' too)")
        array = np.asarray(value)
        if array.dtype.kind not in "fiub":
            raise ValueError(f"{source}: parameter '{key}' is not numeric")
        rank = FRAME_RANKS[name]
        if name in ("larynx_height", "larynx_scale") and array.ndim <= 1:
            array = array.reshape(-1, 1)  # a scalar or one value per frame
        elif array.ndim == rank:
            array = array[None]
        elif array.ndim != rank + 1:
            raise ValueError(
                f"{source}: parameter '{key}' must have {rank} or {rank + 1} dimensions, "
                f"got shape {list(array.shape)}"
            )
        if not np.isfinite(array).all():
            raise ValueError(f"{source}: parameter '{key}' contains NaN or inf")
        params[name] = array.astype(np.float32)
    return params


def load_params(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Read a parameter `.npz` (no pickles) into API names with a batch axis."""
    from .io.npy import read_npz

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such parameter file")
    raw = read_npz(path, what="parameter .npz")
    try:
        return normalize_params(raw, str(path))
    except ModelFileError:
        raise
    except ValueError as err:
        raise ModelFileError(str(err), path=path) from None


def save_params(path: str | os.PathLike, params: dict, *, overwrite: bool = True) -> Path:
    """Write parameters (tensors or arrays) to `.npz` atomically."""
    arrays = {}
    for key, value in params.items():
        if hasattr(value, "detach"):
            value = value.detach().cpu().numpy()
        arrays[key] = np.asarray(value)
    path = Path(path)
    with atomic_output(path, overwrite=overwrite) as tmp:
        with open(tmp, "wb") as handle:
            np.savez(handle, **arrays)
    return path


def forward_arguments(params: dict[str, np.ndarray]) -> dict:
    """The subset of `params` that forward() takes; named action units become a mapping."""
    args = {k: v for k, v in params.items() if k in PARAMETER_NAMES}
    if "action_units" in args and "action_unit_names" in params:
        names = [str(n) for n in params["action_unit_names"].tolist()]
        values = args.pop("action_units")
        if values.shape[-1] != len(names):
            raise ValueError(
                f"action_units has {values.shape[-1]} columns for {len(names)} action_unit_names"
            )
        args["action_units"] = {name: values[:, i] for i, name in enumerate(names)}
    return args


def num_frames(params: dict[str, np.ndarray]) -> int:
    """The batch size the parameters imply (1 when all are single frames)."""
    sizes = {v.shape[0] for k, v in params.items() if k in PARAMETER_NAMES} - {1}
    if len(sizes) > 1:
        raise ValueError(f"parameters disagree on the number of frames: {sorted(sizes)}")
    return sizes.pop() if sizes else 1
