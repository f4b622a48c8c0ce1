"""Entry points: `load_pickle`, `loads_pickle`, `load_pickled_npy`. Each runs the
restricted unpickler within the file's budget, evaluates chumpy stand-ins and turns
every failure into `UnsafePickleError`, `CorruptPickleError` or `ResourceLimitError`
(all `ModelFileError`, so ValueError) naming the file."""

from __future__ import annotations

import io
import os
import pickle
import struct
from typing import Any, BinaryIO

from ..errors import ModelFileError, ResourceLimitError
from .budget import Budget, file_budget
from .chumpy import undo_chumpy
from .errors import CorruptPickleError, UnsafePickleError
from .unpickler import RestrictedUnpickler


def describe_bad_start(head: bytes) -> str:
    if not head:
        return "the file is empty"
    if head.startswith(b"PK\x03\x04"):
        return "this is a zip archive (.npz or torch checkpoint), not a pickle"
    if head.startswith(b"\x93NUMPY"):
        return "this is a .npy file, not a pickle; use load_pickled_npy"
    return ""


def _load(file: BinaryIO, encoding: str, source: str | None, budget: Budget | None = None) -> Any:
    label = source or "<pickle data>"
    try:
        unpickler = RestrictedUnpickler(file, encoding=encoding, source=source, budget=budget)
        data = unpickler.load()
        return undo_chumpy(data, unpickler.budget)
    except UnsafePickleError as e:
        raise e.with_path(source) from None
    except CorruptPickleError as e:
        raise CorruptPickleError(f"{label}: {e}") from None
    except ModelFileError as e:
        if e.path is None and source:
            raise type(e)(str(e), path=source) from None
        raise
    except EOFError:
        raise CorruptPickleError(f"{label}: truncated pickle (ran out of input)") from None
    except pickle.UnpicklingError as e:
        raise CorruptPickleError(f"{label}: not a valid pickle ({str(e)[:200]})") from None
    except RecursionError:
        raise CorruptPickleError(f"{label}: pickle is nested too deeply") from None
    except MemoryError:
        raise CorruptPickleError(f"{label}: pickle needs more memory than is available") from None
    except (KeyError, IndexError, TypeError, AttributeError, ValueError, struct.error, OverflowError) as e:
        # Malformed opcode streams (stack underflow, SETITEMS on a number, a missing
        # memo key, ...) surface as these from the opcode handlers.
        detail = f"{type(e).__name__}: {e}"[:200]
        raise CorruptPickleError(f"{label}: corrupt or malformed pickle ({detail})") from None


def load_pickle(path_or_file: str | os.PathLike[str] | BinaryIO, *, encoding: str = "latin1") -> Any:
    """Load a pickle that may only contain data (numpy, scipy.sparse, chumpy arrays,
    builtin containers). Chumpy objects come back as np.ndarray.

    encoding='latin1' decodes Python 2 `str` objects, which is what old SMPL/FLAME
    pickles (and the numpy array bytes inside them) are made of."""
    if isinstance(path_or_file, (str, os.PathLike)):
        path = os.fspath(path_or_file)
        if not os.path.isfile(path):
            raise FileNotFoundError(2, "pickle file not found", path)
        budget = file_budget(path)
        with open(path, "rb") as f:
            head = f.read(8)
            bad = describe_bad_start(head)
            if bad:
                raise CorruptPickleError(f"{path}: {bad}")
            f.seek(0)
            return _load(f, encoding, path, budget)
    if not hasattr(path_or_file, "read"):
        raise TypeError(f"expected a path or a binary file, got {type(path_or_file).__name__}")
    name = getattr(path_or_file, "name", None)
    return _load(path_or_file, encoding, name if isinstance(name, str) else None)


def loads_pickle(data: bytes, *, encoding: str = "latin1", source: str | None = None) -> Any:
    """`load_pickle` for bytes in memory."""
    bad = describe_bad_start(bytes(data[:8]))
    if bad:
        raise CorruptPickleError(f"{source or '<pickle data>'}: {bad}")
    return _load(io.BytesIO(data), encoding, source, Budget(len(data), source))


def load_pickled_npy(path: str | os.PathLike[str], *, encoding: str = "latin1") -> Any:
    """Load a `.npy` file. Object arrays (what `np.save(path, some_dict)` writes) are
    unpickled with the RestrictedUnpickler and a 0-d one returns its item; other
    arrays are read by `hack_model.io.npy.read_npy` (header checked, no pickle)."""
    from ..npy import _header, read_npy

    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(2, ".npy file not found", path)
    budget = file_budget(path)
    with open(path, "rb") as f:
        try:
            shape, fortran, dtype = _header(f, ".npy file", path, None)
        except ResourceLimitError:
            raise
        except ModelFileError as e:
            raise CorruptPickleError(str(e)) from None
        if not dtype.hasobject:
            f.close()
            return read_npy(path)
        if dtype.fields is not None or dtype.subdtype is not None:
            raise UnsafePickleError("numpy.dtype", f"structured dtype with objects {dtype}", path)
        array = _load(f, encoding, path, budget)
    import numpy as np

    if not isinstance(array, np.ndarray) or not array.dtype.hasobject or array.shape != shape:
        raise CorruptPickleError(
            f"{path}: header says an object array of shape {shape}, the payload is {type(array).__name__}"
        )
    return array.item() if array.shape == () else array
