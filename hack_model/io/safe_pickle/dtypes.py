"""The dtype allow-list: pickled `numpy.dtype` objects are rebuilt from checked
descriptors through numpy's public constructors, never through `dtype.__setstate__`.

Admitted: bool, signed/unsigned integers (1-8 bytes), floats (2, 4, 8, 16 bytes),
complex (8, 16, 32 bytes), fixed-length bytes `S<n>` and unicode `U<n>`, raw void
`V<n>`, datetime64/timedelta64 with a unit, sub-arrays and structured dtypes made
of those (fields must lie inside the item), and `object` - the last only as the
dtype of an array filled from an unpickled list (never over file bytes). A
structured dtype with an object field is refused.
"""

from __future__ import annotations

import math
import re
from typing import Any

import numpy as np

from .budget import MAX_ITEMSIZE, MAX_NAME_CHARS
from .errors import CorruptPickleError, UnsafePickleError

_PLAIN_SPEC = re.compile(r"^(b1|[iu][1248]|f(2|4|8|16)|c(8|16|32)|[SUV]\d{1,9}|[Mm]8|O[48])$")
_DATETIME_UNITS = {"Y", "M", "W", "D", "h", "m", "s", "ms", "us", "μs", "ns", "ps", "fs", "as", "generic"}
_MAX_FIELDS = 4096


class DtypeShell:
    """What `numpy.dtype(spec, align, copy)` and its BUILD state say; `resolve()`
    makes the real dtype from the checked pieces. Immutable once built."""

    __slots__ = ("spec", "state", "_dtype")

    def __init__(self, spec: str) -> None:
        object.__setattr__(self, "spec", spec)
        object.__setattr__(self, "state", None)
        object.__setattr__(self, "_dtype", None)

    def __setattr__(self, name: str, value: Any) -> None:
        raise UnsafePickleError("numpy.dtype", "cannot be modified")

    def set_state(self, state: Any) -> None:
        if self.state is not None or self._dtype is not None:
            raise UnsafePickleError("numpy.dtype", "state given twice")
        if not isinstance(state, tuple):
            raise UnsafePickleError("numpy.dtype", f"state of type {type(state).__name__}")
        object.__setattr__(self, "state", state)

    def resolve(self, depth: int = 0) -> np.dtype:
        if self._dtype is _BUSY:
            raise UnsafePickleError("numpy.dtype", "dtype refers to itself")
        if self._dtype is None:
            object.__setattr__(self, "_dtype", _BUSY)
            try:
                dt = _build(self.spec, self.state, depth)
            finally:
                object.__setattr__(self, "_dtype", None)
            object.__setattr__(self, "_dtype", dt)
        return self._dtype


_BUSY = object()


def make_dtype_shell(spec: Any, align: Any = False, copy: Any = True) -> DtypeShell:
    if isinstance(spec, bytes):
        spec = spec.decode("latin1")
    if not isinstance(spec, str) or not _PLAIN_SPEC.match(spec):
        raise UnsafePickleError("numpy.dtype", f"descriptor {spec!r} is not an allowed plain dtype")
    if not isinstance(align, (bool, int)) or not isinstance(copy, (bool, int)):
        raise UnsafePickleError("numpy.dtype", "align/copy must be booleans")
    return DtypeShell(spec)


def as_dtype(value: Any, what: str, allow_object: bool = False) -> np.dtype:
    """A checked dtype from a shell or an admitted real dtype (StringDType)."""
    if isinstance(value, DtypeShell):
        dt = value.resolve()
    elif isinstance(value, np.dtype) and type(value).__name__ == "StringDType":
        dt = value
    else:
        raise UnsafePickleError(what, f"dtype argument of type {type(value).__name__}")
    is_string = type(dt).__name__ == "StringDType"
    if dt.hasobject and not (allow_object and (is_string or dt == np.dtype(object))):
        raise UnsafePickleError(what, f"dtype {dt} holds object pointers")
    return dt


def _build(spec: str, state: Any, depth: int) -> np.dtype:
    if depth > 8:
        raise UnsafePickleError("numpy.dtype", "dtype nested too deeply")
    if state is None:
        state = (3, "|", None, None, None, -1, -1, 0)
    if len(state) not in (8, 9) or state[0] not in (3, 4):
        raise UnsafePickleError("numpy.dtype", f"unknown dtype state {state[:1]!r}")
    order, subarray, names, fields, elsize = state[1], state[2], state[3], state[4], state[5]
    if isinstance(order, bytes):
        order = order.decode("latin1")
    if order not in ("<", ">", "|", "="):
        raise UnsafePickleError("numpy.dtype", f"byte order {order!r}")
    prefix = order if order in "<>" else ""
    try:
        if subarray is not None:
            if names is not None or fields is not None:
                raise UnsafePickleError("numpy.dtype", "sub-array with fields")
            if not isinstance(subarray, tuple) or len(subarray) != 2:
                raise UnsafePickleError("numpy.dtype", "malformed sub-array")
            base, shape = subarray
            base = base.resolve(depth + 1) if isinstance(base, DtypeShell) else as_dtype(base, "sub-array")
            if base.hasobject:
                raise UnsafePickleError("numpy.dtype", "sub-array of objects")
            shape = (shape,) if isinstance(shape, int) else shape
            if not isinstance(shape, tuple) or not all(isinstance(n, int) and n >= 0 for n in shape):
                raise UnsafePickleError("numpy.dtype", "sub-array shape")
            if len(shape) > 32 or base.itemsize * math.prod(shape) > MAX_ITEMSIZE:
                raise UnsafePickleError("numpy.dtype", "sub-array too large")
            return np.dtype((base, shape))
        if names is not None or fields is not None:
            return _structured(names, fields, elsize, depth)
        if spec[0] in "SUV":
            dt = np.dtype(prefix + spec if spec[0] == "U" else spec)
            if dt.itemsize > MAX_ITEMSIZE:
                raise UnsafePickleError("numpy.dtype", f"item size {dt.itemsize} too large")
            return dt
        if spec[0] in "Mm":
            unit, count = "generic", 1
            meta = state[8] if len(state) == 9 else None
            if meta is not None:
                if not (isinstance(meta, tuple) and len(meta) == 2 and isinstance(meta[1], tuple)):
                    raise UnsafePickleError("numpy.dtype", "datetime metadata")
                unit, count = meta[1][0], meta[1][1]
                unit = unit.decode("latin1") if isinstance(unit, bytes) else unit
            if unit not in _DATETIME_UNITS or not isinstance(count, int) or not 1 <= count < 2**31:
                raise UnsafePickleError("numpy.dtype", f"datetime unit {unit!r}")
            return np.dtype(f"{prefix}{spec}[{'' if count == 1 else count}{unit}]")
        if spec[0] == "O":
            return np.dtype(object)
        return np.dtype(prefix + spec)
    except (UnsafePickleError, CorruptPickleError):
        raise
    except (TypeError, ValueError, KeyError, IndexError) as err:
        raise UnsafePickleError("numpy.dtype", f"invalid dtype state ({err})") from None


def _structured(names: Any, fields: Any, elsize: Any, depth: int) -> np.dtype:
    if not isinstance(names, tuple) or not isinstance(fields, dict) or len(names) > _MAX_FIELDS:
        raise UnsafePickleError("numpy.dtype", "structured dtype without names and fields")
    if not isinstance(elsize, int) or not 0 <= elsize <= MAX_ITEMSIZE:
        raise UnsafePickleError("numpy.dtype", f"item size {elsize!r}")
    formats, offsets, titles, clean_names = [], [], [], []
    for name in names:
        if isinstance(name, bytes):
            name = name.decode("latin1")
        if not isinstance(name, str) or len(name) > MAX_NAME_CHARS or name not in fields:
            raise UnsafePickleError("numpy.dtype", f"field {name!r}")
        entry = fields[name]
        if not isinstance(entry, tuple) or len(entry) not in (2, 3):
            raise UnsafePickleError("numpy.dtype", f"field {name!r} is malformed")
        sub = entry[0].resolve(depth + 1) if isinstance(entry[0], DtypeShell) else as_dtype(entry[0], "field")
        offset = entry[1]
        if sub.hasobject:
            raise UnsafePickleError("numpy.dtype", f"field {name!r} holds object pointers")
        if not isinstance(offset, int) or offset < 0 or offset + sub.itemsize > elsize:
            raise UnsafePickleError("numpy.dtype", f"field {name!r} lies outside the item")
        title = entry[2] if len(entry) == 3 else None
        if title is not None and not isinstance(title, str):
            raise UnsafePickleError("numpy.dtype", f"field {name!r} has a non-text title")
        clean_names.append(name)
        formats.append(sub)
        offsets.append(offset)
        titles.append(title)
    spec: dict[str, Any] = {"names": clean_names, "formats": formats, "offsets": offsets, "itemsize": elsize}
    if any(t is not None for t in titles):
        spec["titles"] = titles
    return np.dtype(spec)
