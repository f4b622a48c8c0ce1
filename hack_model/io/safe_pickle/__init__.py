"""Restricted unpickling for model files: numpy arrays, scipy sparse matrices and
old chumpy-wrapped arrays, nothing else, within a resource budget.

Model files are data, never code. A pickle is a small program that may call any
importable function, so `pickle.load` on a downloaded SMPL/FLAME `.pkl` or on an
object-array `.npy` is arbitrary code execution; and even calls of "harmless"
numpy functions can read memory (an object array over file bytes holds pointers the
file chose) or exhaust it (`list(range(3e8))`). This package admits:

* globals: only the allow-list in `allowlist.py` (its docstring says why each
  admitted callable is safe); everything else raises `UnsafePickleError` naming it.
  Classes (numpy scalar types, builtin types, numpy DType classes) are data only:
  the unpickler never calls them.
* arrays: only from `numpy..._reconstruct` + a validated BUILD, `_frombuffer` or
  `scalar`, with a dtype from the allow-list in `dtypes.py` (bool, integers, floats,
  complex, fixed-length bytes/unicode/void, datetime64, and structured or sub-array
  dtypes of those, fields inside the item). Raw data must be exactly shape x itemsize
  bytes. Object arrays only from a list of already unpickled values of exactly the
  array's size (what numpy writes for them): never pointers from file bytes, never
  object fields.
* dtypes: never `dtype.__setstate__`; the descriptor and state are checked and the
  dtype is rebuilt by numpy's public constructor.
* scipy.sparse and chumpy: inert shells that record state; `sparse.py` rebuilds
  matrices through scipy's validating constructors, `chumpy.py` evaluates chumpy
  graphs with numpy (chumpy is never imported), sizes charged before computing.
* a budget (`budget.py`, numbers and reasons there): elements, bytes, container
  items, nesting depth, memo entries, relative to the file size and capped by what
  the largest real model file (SMPL-X, ~300 MB) needs. Over budget is
  `ResourceLimitError` naming the file and field, raised before allocating.

Layout by job: `allowlist.py` (globals and guards), `dtypes.py` (dtype allow-list),
`unpickler.py` (opcode handling and budget), `sparse.py` (sparse rebuild),
`chumpy.py` (chumpy evaluator), `entry.py` (load_pickle / loads_pickle /
load_pickled_npy).
"""

from __future__ import annotations

from ..errors import ModelFileError, ResourceLimitError
from .allowlist import ChumpyStandIn
from .budget import Budget
from .chumpy import undo_chumpy
from .entry import load_pickle, load_pickled_npy, loads_pickle
from .errors import CorruptPickleError, UnsafePickleError
from .unpickler import RestrictedUnpickler

__all__ = [
    "Budget",
    "ChumpyStandIn",
    "CorruptPickleError",
    "ModelFileError",
    "ResourceLimitError",
    "RestrictedUnpickler",
    "UnsafePickleError",
    "load_pickle",
    "load_pickled_npy",
    "loads_pickle",
    "undo_chumpy",
]
