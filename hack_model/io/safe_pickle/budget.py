"""The resource budget of one file: what it may make before anything is allocated.

Numbers and why (the largest real model files set the absolute caps):

* HACK release `S.npy`: 100 x 14062 x 3 float32 components plus the mean, 17 MB
  (34 MB once a loader converts it to float64); `P.npy` 12 MB, `E.npy` 9 MB.
* FLAME 2020 `generic_model.pkl`: 5023 x 3 x 400 float64 `shapedirs` (48 MB) and
  `posedirs` (5023 x 3 x 36), about 100 MB in all.
* SMPL-X `SMPLX_NEUTRAL.pkl`: 10475 x 3 x 400 `shapedirs` (100 MB) and
  10475 x 3 x 486 `posedirs` (122 MB) float64, 100-300 MB depending on the release.

So no real model file is over 300 MB, holds more than ~40 million array elements,
or needs more than a few thousand Python containers. The caps leave 3-4x room:

* `MAX_FILE_BYTES` = 1 GiB: larger files are refused before they are opened.
* array bytes made while loading (pickled arrays, chumpy results, `.npy`/`.npz`
  payloads): at most `BYTES_PER_FILE_BYTE` x file size + `SLACK_BYTES` and never
  over `MAX_TOTAL_BYTES` = 1 GiB. Pickled array data comes from the file itself,
  so 4x the file size plus 64 MiB covers every conversion a loader does
  (float32 -> float64, chumpy's operations) while a 300-byte file can make 64 MiB.
* one array: at most `MAX_ARRAY_ELEMENTS` = 2**28 elements and 32 dimensions.
* Python container items (list/tuple/dict/set entries, object array slots):
  at most file size + 1 million, never over 64 million (every item costs at least
  one opcode byte, so real files stay far below).
* nesting depth of containers: 100 (real files nest 3-4 deep); the unpickler's
  MARK stack: 1000.
* memo entries: file size / 16 + 100,000, at most 10 million (each costs ~70 bytes
  of dict; real model pickles memoise a few thousand objects).
* pickle opcodes: 500,000 + file size / 16 (the pure-Python unpickler runs about a
  million opcodes a second; real model pickles are big binary blobs, a few opcodes
  per array), so a flood of cheap opcodes is refused within about a second.
* `.npz`: all members' uncompressed sizes (read from the zip directory before
  inflating) at most 64 x file size + 64 MiB and never over 1 GiB; the package's own
  default model inflates 4x, a deflate bomb up to 1000x.
* strings in model metadata: 64 KiB; names: 1024 characters.
* chumpy `dot`: at most 4e9 multiply-adds (a few seconds), whatever the output size.

Going over any of them raises `ResourceLimitError` naming the file and the field,
before the allocation (checks cost microseconds).
"""

from __future__ import annotations

import math
import os
from typing import Any

import numpy as np

from ..errors import ModelFileError, ResourceLimitError
from ..limits import (  # noqa: F401 - re-exported
    BYTES_PER_FILE_BYTE,
    MAX_ARRAY_ELEMENTS,
    MAX_FILE_BYTES,
    MAX_METADATA_CHARS,
    MAX_NAME_CHARS,
    MAX_NDIM,
    MAX_TOTAL_BYTES,
    NPZ_RATIO,
    SLACK_BYTES,
)

MAX_ITEMS = 64_000_000
ITEM_SLACK = 1_000_000
MAX_DEPTH = 100
MAX_MARK_DEPTH = 1000
MEMO_SLACK = 100_000
MAX_MEMO = 10_000_000
OP_SLACK = 500_000
MAX_ITEMSIZE = 1 << 24
MAX_FLOPS = 4e9


class Budget:
    """What one file may still allocate. `charge_*` raise ResourceLimitError before
    the caller allocates anything."""

    def __init__(self, file_size: int, source: str | None = None) -> None:
        self.source = source
        self.file_size = int(file_size)
        self.max_bytes = min(MAX_TOTAL_BYTES, BYTES_PER_FILE_BYTE * self.file_size + SLACK_BYTES)
        self.max_items = min(MAX_ITEMS, self.file_size + ITEM_SLACK)
        self.max_memo = min(MAX_MEMO, self.file_size // 16 + MEMO_SLACK)
        self.max_ops = OP_SLACK + self.file_size // 16
        self.bytes = 0
        self.items = 0

    def refuse(self, what: str, detail: str) -> ResourceLimitError:
        return ResourceLimitError(f"{detail} (over the resource budget)", path=self.source, field=what)

    def charge_bytes(self, nbytes: int, what: str) -> None:
        nbytes = int(nbytes)
        if nbytes < 0 or self.bytes + nbytes > self.max_bytes:
            raise self.refuse(
                what,
                f"would allocate {nbytes / 1e6:.1f} MB more; this file may make "
                f"{self.max_bytes / 1e6:.0f} MB in all",
            )
        self.bytes += nbytes

    def charge_items(self, count: int, what: str) -> None:
        count = int(count)
        if self.items + count > self.max_items:
            raise self.refuse(
                what, f"would hold {self.items + count} container items; this file may have {self.max_items}"
            )
        self.items += count

    def check_shape(self, shape: Any, what: str) -> tuple[int, ...]:
        """A validated array shape (tuple of non-negative ints) within the limits."""
        if isinstance(shape, (int, np.integer)) and not isinstance(shape, bool):
            shape = (shape,)
        if not isinstance(shape, (tuple, list)) or len(shape) > MAX_NDIM:
            raise self.refuse(what, f"shape must be a tuple of at most {MAX_NDIM} sizes")
        out = []
        for n in shape:
            if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 0:
                raise self.refuse(what, f"shape {shape!r} is not made of non-negative integers")
            out.append(int(n))
        if math.prod(out) > MAX_ARRAY_ELEMENTS:
            raise self.refuse(what, f"shape {tuple(out)} has more than {MAX_ARRAY_ELEMENTS} elements")
        return tuple(out)


def file_budget(path: str | os.PathLike) -> Budget:
    """The budget of a file on disk; refuses files over MAX_FILE_BYTES."""
    size = os.path.getsize(path)
    if size > MAX_FILE_BYTES:
        raise ResourceLimitError(
            f"the file is {size / 1e9:.1f} GB; model files over {MAX_FILE_BYTES / 1e9:.1f} GB are refused",
            path=path,
        )
    return Budget(size, os.fspath(path))


def count_leaves(value: Any, limit: int) -> int:
    """Elements np.asarray(value) would make from nested lists/tuples, counting shared
    references every time (a "billion laughs" list is refused before numpy expands it).
    Each distinct list is counted once (memoised), so this is fast; stops past `limit`."""
    memo: dict[int, int] = {}

    def count(v: Any, depth: int) -> int:
        if isinstance(v, np.ndarray):
            return v.size
        if not isinstance(v, (list, tuple)):
            return 1
        key = id(v)
        if key in memo:
            return memo[key]
        if depth > MAX_DEPTH:
            return limit + 1
        memo[key] = limit + 1  # a cycle counts as too many
        total = 0
        for item in v:
            total += count(item, depth + 1)
            if total > limit:
                break
        memo[key] = total
        return total

    return count(value, 0)


def safe_asarray(value: Any, what: str, budget: Budget | None = None) -> np.ndarray:
    """np.asarray for unpickled data: only arrays, numbers, strings and nested
    lists/tuples of them; never object dtype; size checked before numpy expands it."""
    if isinstance(value, np.ndarray):
        arr = value
    else:
        ok = (list, tuple, int, float, complex, bool, str, bytes, np.generic)
        if not isinstance(value, ok) and value is not None:
            raise ModelFileError(
                f"is a {type(value).__name__}, not numeric data",
                path=getattr(budget, "source", None),
                field=what,
            )
        limit = MAX_ARRAY_ELEMENTS if budget is None else (budget.max_bytes - budget.bytes) // 8
        if count_leaves(value, limit) > limit:
            raise ResourceLimitError(
                "nested lists would expand past the resource budget",
                path=getattr(budget, "source", None),
                field=what,
            )
        try:
            arr = np.asarray(value)
        except (ValueError, TypeError) as err:
            raise ModelFileError(
                f"not a regular numeric array ({err})", path=getattr(budget, "source", None), field=what
            ) from None
    if arr.dtype.hasobject:
        raise ModelFileError(
            "has object dtype, not numeric data", path=getattr(budget, "source", None), field=what
        )
    return arr
