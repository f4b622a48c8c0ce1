"""The allow-list: which pickled globals resolve, to what, and what calling them may do.

`find_global` returns, for an admitted name, a `Global`: an immutable wrapper that
carries the data value (a type such as `int` or `numpy.float64`, so pickles may
hold it) and, if the pickle may call it, a checked function. The unpickler calls
only `Global`s with a checked function; classes are never called directly. Each
admitted callable and why it is safe:

* `numpy.core.multiarray._reconstruct(ndarray, shape, dtype)`: makes an empty plain
  ndarray (the BUILD that follows is validated by the unpickler, see there).
* `numpy.core.multiarray.scalar(dtype, bytes)`: one scalar of an allow-listed plain
  dtype from exactly `itemsize` bytes; object scalars refused.
* `numpy.core.numeric._frombuffer(buf, dtype, shape, order)` (protocol 5): a plain
  dtype over a bytes buffer whose length is exactly shape x itemsize.
* `numpy.dtype(spec, align, copy)`: a `DtypeShell` for an allow-listed descriptor,
  rebuilt from its checked state by numpy's public constructor (`dtypes.py`).
* `numpy._core._internal._convert_to_stringdtype_kwargs(coerce)`: StringDType
  with a boolean argument only (its arrays are filled from lists of str).
* `builtins` set/frozenset/list/tuple/dict, `collections.OrderedDict`: copies of
  already unpickled containers (never of a `range` or other lazy iterable), their
  length charged to the budget.
* `builtins` int/float/complex/str/bool/slice/range/object: from numbers and
  strings only (so `str()` cannot render a huge container; a `range` stays lazy and
  nothing accepts one as data).
* `builtins.bytes`/`bytearray`: from text or bytes (never `bytes(n)`).
* `collections.defaultdict(factory)`: factory one of the inert builtin types.
* `_codecs.encode(text, latin1|ascii|utf-8)`: how Python 3 spells bytes in old
  protocols; other codecs would reach the codec registry.
* `copyreg._reconstructor(cls, object, None)`: only for our own inert shell classes.
* `scipy.sparse.*_matrix|*_array` and `chumpy.*`: `_Frozen` shell classes that only
  record their state (rebuilt by `sparse.py`, evaluated by `chumpy.py`).
"""

from __future__ import annotations

import _compat_pickle
import codecs
import collections
import math
from collections.abc import Callable
from typing import Any

import numpy as np

from .budget import MAX_ARRAY_ELEMENTS
from .dtypes import DtypeShell, as_dtype, make_dtype_shell
from .errors import CorruptPickleError, UnsafePickleError

try:  # numpy >= 2
    from numpy._core import multiarray as _np_multiarray
    from numpy._core import numeric as _np_numeric
except ImportError:  # pragma: no cover - numpy 1.x
    from numpy.core import multiarray as _np_multiarray  # type: ignore[no-redef]
    from numpy.core import numeric as _np_numeric  # type: ignore[no-redef]
try:
    from numpy._core._internal import _convert_to_stringdtype_kwargs as _to_stringdtype
except ImportError:  # pragma: no cover
    _to_stringdtype = None


# --------------------------------------------------------------------------- shells
class Frozen(type):
    """Metaclass of the shell classes handed to the unpickler: a `BUILD` on the
    class object itself must not be able to patch it."""

    def __setattr__(cls, name: str, value: Any) -> None:
        raise UnsafePickleError(f"{cls.__module__}.{cls.__qualname__}", "class is read-only")

    def __delattr__(cls, name: str) -> None:
        raise UnsafePickleError(f"{cls.__module__}.{cls.__qualname__}", "class is read-only")


class Shell:
    """Records the state a `BUILD` gives it and nothing else."""

    def __new__(cls, *args: Any, **kwargs: Any) -> Shell:
        obj = object.__new__(cls)
        obj.__dict__["_state"] = {}
        return obj

    def __setattr__(self, name: str, value: Any) -> None:
        raise UnsafePickleError(type(self).__qualname__, "attributes are read-only")

    def __delattr__(self, name: str) -> None:
        raise UnsafePickleError(type(self).__qualname__, "attributes are read-only")

    def set_state(self, state: Any) -> None:
        if isinstance(state, tuple) and len(state) == 2 and state[1] is None:
            state = state[0]
        if not isinstance(state, dict):
            raise CorruptPickleError(f"{type(self).__qualname__}: state is {type(state).__name__}")
        self.__dict__["_state"] = {
            (k.decode("latin1") if isinstance(k, bytes) else k): v for k, v in state.items()
        }


class SparseShell(Shell, metaclass=Frozen):
    """Placeholder for a scipy.sparse matrix/array until `sparse.rebuild_sparse`."""

    target_name: str
    fmt: str

    def __setitem__(self, key: Any, value: Any) -> None:
        # Python 2 dok_matrix was a dict subclass: NEWOBJ then SETITEMS.
        self.__dict__.setdefault("_items", {})[key] = value


class ChumpyStandIn(Shell, metaclass=Frozen):
    """A chumpy object loaded without chumpy; `undo_chumpy` turns it into an array.

    `chumpy_class` is the pickled class (`chumpy.ch.Ch`, `chumpy.ch_ops.add`, ...),
    `state` its pickled `__dict__`."""

    chumpy_class = "chumpy.ch.Ch"

    @property
    def state(self) -> dict[str, Any]:
        return self.__dict__["_state"]

    def __repr__(self) -> str:
        return f"<chumpy stand-in {self.chumpy_class} terms={sorted(map(str, self.state))}>"


SPARSE_FORMATS = ("csr", "csc", "coo", "lil", "dok", "bsr", "dia")
_shell_classes: dict[str, type] = {}


def _shell_class(base: type, qualified: str, **attrs: Any) -> type:
    if qualified not in _shell_classes:
        module, _, name = qualified.rpartition(".")
        ns = {"__module__": module, "__qualname__": name, **attrs}
        _shell_classes[qualified] = Frozen(name, (base,), ns)
    return _shell_classes[qualified]


def _sparse_class(module: str, name: str) -> type | None:
    fmt, _, kind = name.partition("_")
    if fmt not in SPARSE_FORMATS or kind not in ("matrix", "array"):
        return None
    if module not in (
        "scipy.sparse",
        "scipy.sparse._arrays",  # scipy 1.8 - 1.10 sparse arrays
        f"scipy.sparse.{fmt}",  # scipy < 1.8, what old SMPL pickles contain
        f"scipy.sparse._{fmt}",  # scipy >= 1.8
    ):
        return None
    return _shell_class(SparseShell, f"scipy.sparse.{name}", target_name=name, fmt=fmt)


def _chumpy_class(module: str, name: str) -> type | None:
    parts = module.split(".")
    if parts[0] != "chumpy" or len(parts) > 2 or not name.isidentifier() or name.startswith("__"):
        return None
    if not all(p.isidentifier() for p in parts):
        return None
    qualified = f"{module}.{name}"
    return _shell_class(ChumpyStandIn, qualified, chumpy_class=qualified)


# --------------------------------------------------------------------------- globals
class Global:
    """An admitted global. `value` is what the pickle may hold as data (a type) or
    None; `call(ctx, *args)` is the checked function a REDUCE may run, or None.
    Not a function or class, so a BUILD cannot patch it."""

    __slots__ = ("name", "value", "call")

    def __init__(self, name: str, value: Any = None, call: Callable[..., Any] | None = None) -> None:
        object.__setattr__(self, "name", name)
        object.__setattr__(self, "value", value)
        object.__setattr__(self, "call", call)

    def __setattr__(self, name: str, value: Any) -> None:
        raise UnsafePickleError(self.name, "cannot be modified")

    def __reduce__(self) -> Any:
        raise TypeError(f"{self.name} guard is not picklable")

    def __repr__(self) -> str:
        return f"<admitted {self.name}>"


def unwrap(x: Any) -> Any:
    return x.value if isinstance(x, Global) and x.value is not None else x


def _refuse(name: str, reason: str) -> UnsafePickleError:
    return UnsafePickleError(name, reason)


def _reconstruct(ctx: Any, subtype: Any, shape: Any = (0,), dtype: Any = b"b") -> np.ndarray:
    # The array-reconstruction hook takes a class; only plain ndarray is data.
    if unwrap(subtype) is not np.ndarray:
        raise _refuse("numpy._core.multiarray._reconstruct", f"subtype {subtype!r}")
    arr = np.ndarray.__new__(np.ndarray, (0,), np.uint8)
    ctx.fresh_arrays[id(arr)] = arr  # the one BUILD it may receive
    return arr


def _scalar(ctx: Any, dtype: Any, obj: Any = None) -> Any:
    dt = as_dtype(dtype, "numpy._core.multiarray.scalar")
    if obj is None:
        obj = b"\x00" * dt.itemsize
    if isinstance(obj, str):
        obj = obj.encode("latin1")  # Python 2 strings, as numpy does
    if not isinstance(obj, (bytes, bytearray)) or len(obj) != dt.itemsize:
        raise _refuse("numpy._core.multiarray.scalar", f"needs exactly {dt.itemsize} bytes for {dt}")
    ctx.budget.charge_bytes(dt.itemsize, "numpy scalar")
    return _np_multiarray.scalar(dt, bytes(obj))


def _frombuffer(ctx: Any, buf: Any, dtype: Any, shape: Any, order: Any, axis_order: Any = None) -> Any:
    name = "numpy._core.numeric._frombuffer"
    if not isinstance(buf, (bytes, bytearray, memoryview)):
        raise _refuse(name, f"buffer of type {type(buf).__name__}")
    dt = as_dtype(dtype, name)
    shape = ctx.budget.check_shape(shape, name)
    if order not in ("C", "F", "A", "K"):
        raise _refuse(name, f"order {order!r}")
    nbytes = memoryview(buf).nbytes
    if nbytes != math.prod(shape) * dt.itemsize:
        raise CorruptPickleError(f"{name}: {nbytes} bytes for shape {shape} of {dt}")
    if axis_order is not None and (
        not isinstance(axis_order, (list, tuple)) or sorted(axis_order) != list(range(len(shape)))
    ):
        raise _refuse(name, "axis order")
    ctx.budget.charge_bytes(nbytes, name)
    if axis_order is None:
        return _np_numeric._frombuffer(buf, dt, shape, order)
    return _np_numeric._frombuffer(buf, dt, shape, order, axis_order)


def _stringdtype(ctx: Any, coerce: Any = True) -> Any:
    if not isinstance(coerce, (bool, int)):
        raise _refuse("numpy._core._internal._convert_to_stringdtype_kwargs", "arguments")
    return _to_stringdtype(bool(coerce))


_TEXT_CODECS = {"latin1", "latin-1", "iso-8859-1", "iso8859-1", "ascii", "utf-8", "utf8"}


def _codecs_encode(ctx: Any, text: Any, encoding: Any = "utf-8", errors: Any = "strict") -> bytes:
    if (
        not isinstance(text, str)
        or not isinstance(encoding, str)
        or encoding.lower() not in _TEXT_CODECS
        or errors != "strict"
    ):
        raise _refuse("_codecs.encode", f"codec {encoding!r}")
    return codecs.encode(text, encoding)


_CONTAINERS = (list, tuple, set, frozenset, dict)
_ATOMS = (int, float, complex, str, bytes, bool, type(None))


def _copying(kind: type, name: str, max_args: int = 1) -> Callable[..., Any]:
    def make(ctx: Any, *args: Any) -> Any:
        if len(args) > max_args:
            raise _refuse(name, "too many arguments")
        if args:
            src = args[0]
            if kind in (dict, collections.OrderedDict) and isinstance(src, dict):
                pass
            elif not isinstance(src, _CONTAINERS):
                raise _refuse(name, f"argument of type {type(src).__name__}")
            ctx.budget.charge_items(len(src), name)
        return kind(*args)

    return make


def _atomic(kind: type, name: str, max_args: int = 2) -> Callable[..., Any]:
    def make(ctx: Any, *args: Any) -> Any:
        if len(args) > max_args or not all(isinstance(a, _ATOMS) for a in args):
            raise _refuse(name, "arguments must be numbers or strings")
        return kind(*args)

    return make


def _bytes_like(kind: type) -> Callable[..., Any]:
    name = f"builtins.{kind.__name__}"

    def make(ctx: Any, *args: Any) -> Any:
        # bytes(n) would allocate n zero bytes; data pickles never do that.
        if len(args) > 3 or (args and not isinstance(args[0], (str, bytes, bytearray, list, tuple))):
            raise _refuse(name, f"argument {type(args[0]).__name__ if args else ''}")
        if args and isinstance(args[0], (list, tuple)):
            ctx.budget.charge_items(len(args[0]), name)
        if not all(isinstance(a, str) for a in args[1:]):
            raise _refuse(name, "encoding must be text")
        return kind(*args)

    return make


_DEFAULTDICT_FACTORIES = (None, list, dict, set, int, float, str, tuple)


def _defaultdict(ctx: Any, factory: Any = None, *args: Any) -> collections.defaultdict:
    factory = unwrap(factory)
    if not any(factory is f for f in _DEFAULTDICT_FACTORIES) or len(args) > 1:
        raise _refuse("collections.defaultdict", f"factory {factory!r}")
    if args:
        if not isinstance(args[0], (dict, list, tuple)):
            raise _refuse("collections.defaultdict", "initial items")
        ctx.budget.charge_items(len(args[0]), "collections.defaultdict")
    return collections.defaultdict(factory, *args)


def _copyreg_reconstructor(ctx: Any, cls: Any, base: Any, state: Any) -> Any:
    # copyreg._reconstructor(cls, base, state) runs base.__new__/base.__init__ on
    # cls: only our own shells, with the two bases plain data pickles use.
    base = unwrap(base)
    if not isinstance(cls, Frozen):
        raise _refuse("copyreg._reconstructor", f"class {cls!r}")
    if base is object and state is None:
        return cls.__new__(cls)
    if base is dict and isinstance(state, dict) and issubclass(cls, SparseShell):
        ctx.budget.charge_items(len(state), "copyreg._reconstructor")
        obj = cls.__new__(cls)
        obj.__dict__["_items"] = dict(state)
        return obj
    raise _refuse("copyreg._reconstructor", f"base {base!r} for {cls.__qualname__}")


def _range(ctx: Any, *args: Any) -> range:
    if not 1 <= len(args) <= 3 or not all(isinstance(a, int) for a in args):
        raise _refuse("builtins.range", "arguments must be integers")
    return range(*args)


def _slice(ctx: Any, *args: Any) -> slice:
    if len(args) > 3 or not all(a is None or isinstance(a, int) for a in args):
        raise _refuse("builtins.slice", "arguments must be integers or None")
    return slice(*args)


def _object(ctx: Any, *args: Any) -> object:
    if args:
        raise _refuse("builtins.object", "takes no arguments")
    return object()


def _int(ctx: Any, *args: Any) -> int:
    if len(args) > 2 or not all(isinstance(a, (int, float, str, bytes)) for a in args):
        raise _refuse("builtins.int", "arguments must be numbers or strings")
    return int(*args)


def _build_allowlist() -> dict[tuple[str, str], Global]:
    allowed: dict[tuple[str, str], Global] = {}

    def add(module: str, name: str, value: Any = None, call: Callable[..., Any] | None = None) -> None:
        allowed[(module, name)] = Global(f"{module}.{name}", value, call)

    for core in ("numpy.core", "numpy._core"):
        add(f"{core}.multiarray", "_reconstruct", call=_reconstruct)
        add(f"{core}.multiarray", "scalar", call=_scalar)
        add(f"{core}.numeric", "_frombuffer", call=_frombuffer)
        if _to_stringdtype is not None:
            add(f"{core}._internal", "_convert_to_stringdtype_kwargs", call=_stringdtype)
    add("numpy", "ndarray", np.ndarray)  # data only: never called
    add("numpy", "dtype", np.dtype, lambda ctx, *a: make_dtype_shell(*a))
    scalar_types = set(np.sctypeDict.values())
    for alias in ("bool_", "bool", "int_", "object_", "str_", "bytes_", "void", "intc", "intp"):
        t = vars(np).get(alias)
        if isinstance(t, type):
            scalar_types.add(t)
    for t in scalar_types:
        if isinstance(t, type) and issubclass(t, np.generic):
            add("numpy", t.__name__, t)  # data only: np.void(2**31) is never run
    dtypes_module = vars(np).get("dtypes")
    if dtypes_module is not None:
        for name, t in vars(dtypes_module).items():
            if isinstance(t, type) and issubclass(t, np.dtype):
                add("numpy.dtypes", name, t)  # data only

    for t in (set, frozenset, list, tuple, dict):
        add("builtins", t.__name__, t, _copying(t, f"builtins.{t.__name__}"))
    add(
        "collections",
        "OrderedDict",
        collections.OrderedDict,
        _copying(collections.OrderedDict, "OrderedDict"),
    )
    for t in (float, complex, str, bool):
        add("builtins", t.__name__, t, _atomic(t, f"builtins.{t.__name__}", 3 if t is str else 2))
    add("builtins", "int", int, _int)
    add("builtins", "range", range, _range)
    add("builtins", "slice", slice, _slice)
    add("builtins", "object", object, _object)
    for t in (bytes, bytearray):
        add("builtins", t.__name__, t, _bytes_like(t))
    add("collections", "defaultdict", collections.defaultdict, _defaultdict)
    add("_codecs", "encode", call=_codecs_encode)
    add("copyreg", "_reconstructor", call=_copyreg_reconstructor)
    return allowed


ALLOWED = _build_allowlist()


def find_global(module: str, name: str, source: str | None) -> Any:
    """The admitted object for a pickled global, or UnsafePickleError naming it."""
    written = f"{module}.{name}"
    # pickle.Unpickler.find_class maps Python 2 names (__builtin__, copy_reg)
    # itself; overriding it means doing that here, before the allow-list.
    if (module, name) in _compat_pickle.NAME_MAPPING:
        module, name = _compat_pickle.NAME_MAPPING[(module, name)]
    elif module in _compat_pickle.IMPORT_MAPPING:
        module = _compat_pickle.IMPORT_MAPPING[module]
    found: Any = ALLOWED.get((module, name))
    if found is None:
        found = _sparse_class(module, name) or _chumpy_class(module, name)
    if found is None:
        mapped = f"{module}.{name}"
        shown = written if written == mapped else f"{written} (= {mapped})"
        raise UnsafePickleError(shown, path=source)
    return found


__all__ = [
    "ALLOWED",
    "MAX_ARRAY_ELEMENTS",
    "ChumpyStandIn",
    "DtypeShell",
    "Frozen",
    "Global",
    "Shell",
    "SparseShell",
    "find_global",
    "unwrap",
]
