"""`load_model`: every way a user may hold a model, turned into ModelData."""

from __future__ import annotations

import os
from pathlib import Path

from .io.errors import ModelFileError
from .model_data import ModelData

# What a malformed file makes a loader raise besides ModelFileError: converted at
# this boundary into a ModelFileError naming the file, never a traceback.
INPUT_ERRORS = (
    ValueError, TypeError, KeyError, IndexError, AttributeError, MemoryError, RecursionError,
    OverflowError, UnicodeError, EOFError, ArithmeticError, LookupError,
)  # fmt: skip

ASSETS = Path(__file__).parent / "assets"
DEFAULT_MODEL_PATH = ASSETS / "default_model.npz"


class DefaultModelMissingError(FileNotFoundError):
    """The embedded default model is not in this installation."""


def default_model_path() -> Path:
    if not DEFAULT_MODEL_PATH.exists():
        raise DefaultModelMissingError(
            f"the embedded default model is missing ({DEFAULT_MODEL_PATH}); "
            "rebuild it with `hack-model build-default -o "
            f"{DEFAULT_MODEL_PATH}` or pass a model path"
        )
    return DEFAULT_MODEL_PATH


def load_model(source: str | os.PathLike | ModelData | None = None) -> ModelData:
    """None: the embedded default; a folder: an official HACK release; `.npz`: the
    package format; `.pkl`: a smplx-style pickle (SMPL, SMPL-X, FLAME layout)."""
    if isinstance(source, ModelData):
        return source
    if source is None:
        source = default_model_path()
    path = Path(source).expanduser()
    try:
        return _load(path)
    except (ModelFileError, FileNotFoundError, PermissionError, IsADirectoryError):
        raise
    except OSError as err:
        raise ModelFileError(f"cannot read the model ({err.strerror or err})", path=path) from None
    except INPUT_ERRORS as err:
        detail = str(err).split("\n")[0][:300]
        if isinstance(err, ValueError) and not isinstance(err, UnicodeError) and str(path) in detail:
            raise ModelFileError(detail) from None
        raise ModelFileError(f"not a valid model file ({type(err).__name__}: {detail})", path=path) from None


def _load(path: Path) -> ModelData:
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such model file or folder")
    if path.is_dir():
        from .io.release import load_release

        return load_release(path)
    suffix = path.suffix.lower()
    if suffix == ".npz":
        from .io.npz import load_model_npz

        return load_model_npz(path)
    if suffix in (".pkl", ".pickle"):
        from .io.smpl_pickle import load_smpl_pickle

        return load_smpl_pickle(path)
    raise ValueError(
        f"{path}: unknown model format '{suffix}' (expected a .npz model, "
        "a HACK release folder, or a smplx-style .pkl)"
    )
