"""Restricted unpickling for model files: numpy arrays, scipy sparse matrices and
old chumpy-wrapped arrays, nothing else.

Model files are data, never code. A pickle is a small program that may call any
importable function, so `pickle.load` on a downloaded SMPL/FLAME `.pkl` or on an
object-array `.npy` is arbitrary code execution. `RestrictedUnpickler` resolves
only an explicit allowlist of globals; everything else raises `UnsafePickleError`
naming the refused global.

Three kinds of objects need more than a plain allowlist:

* Callables that pickles reach through `REDUCE` (`numpy...._reconstruct`,
  `copyreg._reconstructor`, `_codecs.encode`, ...) are wrapped in `_Guarded`
  objects that validate their arguments and cannot be modified by a `BUILD`.
* scipy.sparse classes are not handed out directly (their classes are mutable
  Python types a `BUILD` could patch); the unpickler builds a frozen shell that
  only records the pickled state, and `load()` rebuilds a real matrix through the
  public constructor, which validates indices and shapes. Old module paths such as
  `scipy.sparse.csc.csc_matrix` map to the current classes.
* chumpy (`chumpy.ch.Ch`, `chumpy.ch_ops.*`, `chumpy.reordering.*`, ...) is never
  imported. chumpy pickles its objects with the default object protocol: `NEWOBJ`
  (protocol >= 2, what SMPL's `save_model` used) or `copyreg._reconstructor(cls,
  object, None)` (protocols 0/1), followed by a `BUILD` whose state is the
  instance `__dict__` minus the weak-reference caches: the value of a plain `Ch`
  is under `x`, derived operations keep their operands (themselves `Ch` objects)
  under their term names (`a`, `b`, `x1`, `vec`, `idxs`, ...). Each chumpy class
  becomes a `ChumpyStandIn` subclass that only stores that state; `undo_chumpy`
  evaluates it to what `np.array(ch_object)` would give (chumpy's `.r`: float64,
  at least 1-d, C order) for the operations listed in `_CHUMPY_OPS`.
"""

from __future__ import annotations

import _compat_pickle
import codecs
import collections
import io
import os
import pickle
from collections.abc import Callable
from typing import Any, BinaryIO

import numpy as np
import numpy.lib.format as npy_format
import scipy.sparse as sp

try:  # numpy >= 2
    from numpy._core import multiarray as _np_multiarray
    from numpy._core import numeric as _np_numeric
except ImportError:  # pragma: no cover - numpy 1.x
    from numpy.core import multiarray as _np_multiarray  # type: ignore[no-redef]
    from numpy.core import numeric as _np_numeric  # type: ignore[no-redef]
try:  # StringDType arrays (numpy >= 2) pickle through this helper
    from numpy._core._internal import _convert_to_stringdtype_kwargs as _to_stringdtype
except ImportError:  # pragma: no cover
    _to_stringdtype = None

__all__ = [
    "ChumpyStandIn",
    "CorruptPickleError",
    "RestrictedUnpickler",
    "UnsafePickleError",
    "load_pickle",
    "load_pickled_npy",
    "loads_pickle",
    "undo_chumpy",
]


class UnsafePickleError(ValueError):
    """A pickle referenced a global that is not an allowed data type, or used an
    allowed one in a way that could run code."""

    def __init__(
        self, global_name: str, reason: str = "not an allowed data type", path: str | None = None
    ) -> None:
        self.global_name = global_name
        self.reason = reason
        self.path = path
        where = f" from {path}" if path else ""
        super().__init__(f"refused to load '{global_name}'{where}: {reason}")

    def with_path(self, path: str | None) -> UnsafePickleError:
        return UnsafePickleError(self.global_name, self.reason, path)

    def __reduce__(self) -> tuple[type, tuple[str, str, str | None]]:
        return UnsafePickleError, (self.global_name, self.reason, self.path)


class CorruptPickleError(ValueError):
    """A file is missing pieces, is not a pickle, or holds malformed data."""


# --------------------------------------------------------------------------- guards
class _Frozen(type):
    """Metaclass of the shell classes handed to the unpickler: a `BUILD` on the
    class object itself must not be able to patch it."""

    def __setattr__(cls, name: str, value: Any) -> None:
        raise UnsafePickleError(f"{cls.__module__}.{cls.__qualname__}", "class is read-only")

    def __delattr__(cls, name: str) -> None:
        raise UnsafePickleError(f"{cls.__module__}.{cls.__qualname__}", "class is read-only")


class _Guarded:
    """An allowed callable. Not a function object, so a malicious `BUILD` cannot
    replace its `__defaults__`/`__code__` and poison later loads."""

    __slots__ = ("_name", "_fn")

    def __init__(self, name: str, fn: Callable[..., Any]) -> None:
        object.__setattr__(self, "_name", name)
        object.__setattr__(self, "_fn", fn)

    def __call__(self, *args: Any) -> Any:
        return self._fn(*args)

    def __setattr__(self, name: str, value: Any) -> None:
        raise UnsafePickleError(self._name, "cannot be modified")

    def __setstate__(self, state: Any) -> None:
        raise UnsafePickleError(self._name, "cannot be modified")

    def __reduce__(self) -> Any:
        raise TypeError(f"{self._name} guard is not picklable")

    def __repr__(self) -> str:
        return f"<guarded {self._name}>"


def _reconstruct(subtype: Any, shape: Any, dtype: Any) -> np.ndarray:
    # The array-reconstruction hook takes a class; only plain ndarray is data.
    if subtype is not np.ndarray:
        raise UnsafePickleError("numpy._core.multiarray._reconstruct", f"subtype {subtype!r}")
    return _np_multiarray._reconstruct(np.ndarray, shape, dtype)


def _frombuffer(buf: Any, dtype: Any, shape: Any, order: Any, axis_order: Any = None) -> Any:
    if not isinstance(buf, (bytes, bytearray, memoryview, pickle.PickleBuffer)):
        raise UnsafePickleError("numpy._core.numeric._frombuffer", f"buffer of type {type(buf)}")
    if axis_order is None:
        return _np_numeric._frombuffer(buf, dtype, shape, order)
    return _np_numeric._frombuffer(buf, dtype, shape, order, axis_order)


def _scalar(dtype: Any, obj: Any = None) -> Any:
    if not isinstance(dtype, np.dtype):
        raise UnsafePickleError("numpy._core.multiarray.scalar", f"dtype argument {type(dtype)}")
    if obj is None:
        return _np_multiarray.scalar(dtype)
    return _np_multiarray.scalar(dtype, obj)


_TEXT_CODECS = {"latin1", "latin-1", "iso-8859-1", "iso8859-1", "ascii", "utf-8", "utf8"}


def _codecs_encode(text: Any, encoding: Any = "utf-8", errors: Any = "strict") -> bytes:
    # Python 3 writes bytes as _codecs.encode(str, 'latin1') at protocols < 3;
    # other codecs can reach arbitrary modules through the codec registry.
    if (
        not isinstance(text, str)
        or not isinstance(encoding, str)
        or encoding.lower() not in _TEXT_CODECS
        or errors != "strict"
    ):
        raise UnsafePickleError("_codecs.encode", f"codec {encoding!r}")
    return codecs.encode(text, encoding)


def _bytes_like(kind: type) -> Callable[..., Any]:
    def make(*args: Any) -> Any:
        # bytes(n) would allocate n zero bytes; data pickles never do that.
        if args and not isinstance(args[0], (str, bytes, bytearray, list, tuple)):
            raise UnsafePickleError(f"builtins.{kind.__name__}", f"argument {type(args[0])}")
        return kind(*args)

    return make


_DEFAULTDICT_FACTORIES = (None, list, dict, set, int, float, str, tuple)


def _defaultdict(factory: Any = None, *args: Any) -> collections.defaultdict:
    # The factory runs on every missing key: allow only inert builtin types.
    if not any(factory is f for f in _DEFAULTDICT_FACTORIES):
        raise UnsafePickleError("collections.defaultdict", f"factory {factory!r}")
    return collections.defaultdict(factory, *args)


def _copyreg_reconstructor(cls: Any, base: Any, state: Any) -> Any:
    # copyreg._reconstructor(cls, base, state) runs base.__new__/base.__init__ on
    # cls: only our own shells, with the two bases plain data pickles use.
    if not isinstance(cls, _Frozen):
        raise UnsafePickleError("copyreg._reconstructor", f"class {cls!r}")
    if base is object and state is None:
        return cls.__new__(cls)
    if base is dict and isinstance(state, dict) and issubclass(cls, _SparseShell):
        obj = cls.__new__(cls)
        obj.__dict__["_items"] = dict(state)
        return obj
    raise UnsafePickleError("copyreg._reconstructor", f"base {base!r} for {cls.__qualname__}")


# --------------------------------------------------------------------------- shells
class _Shell:
    """Records the state a `BUILD` gives it and nothing else."""

    def __new__(cls, *args: Any, **kwargs: Any) -> _Shell:
        # NEWOBJ passes no arguments for these classes; anything else is ignored.
        obj = object.__new__(cls)
        obj.__dict__["_state"] = {}
        return obj

    def __setattr__(self, name: str, value: Any) -> None:
        raise UnsafePickleError(type(self).__qualname__, "attributes are read-only")

    def __delattr__(self, name: str) -> None:
        raise UnsafePickleError(type(self).__qualname__, "attributes are read-only")

    def __setstate__(self, state: Any) -> None:
        if isinstance(state, tuple) and len(state) == 2 and state[1] is None:
            state = state[0]
        if not isinstance(state, dict):
            raise CorruptPickleError(f"{type(self).__qualname__}: state is {type(state).__name__}")
        self.__dict__["_state"] = {
            (k.decode("latin1") if isinstance(k, bytes) else k): v for k, v in state.items()
        }


class _SparseShell(_Shell, metaclass=_Frozen):
    """Placeholder for a scipy.sparse matrix/array until `_rebuild_sparse`."""

    target: type
    fmt: str

    def __setitem__(self, key: Any, value: Any) -> None:
        # Python 2 dok_matrix was a dict subclass: NEWOBJ then SETITEMS.
        self.__dict__.setdefault("_items", {})[key] = value


class ChumpyStandIn(_Shell, metaclass=_Frozen):
    """A chumpy object loaded without chumpy; `undo_chumpy` turns it into an array.

    `chumpy_class` is the pickled class (`chumpy.ch.Ch`, `chumpy.ch_ops.add`, ...),
    `state` its pickled `__dict__`."""

    chumpy_class = "chumpy.ch.Ch"

    @property
    def state(self) -> dict[str, Any]:
        return self.__dict__["_state"]

    def __repr__(self) -> str:
        return f"<chumpy stand-in {self.chumpy_class} terms={sorted(map(str, self.state))}>"


_SPARSE_FORMATS = ("csr", "csc", "coo", "lil", "dok", "bsr", "dia")
_shell_classes: dict[str, type] = {}


def _shell_class(base: type, qualified: str, **attrs: Any) -> type:
    if qualified not in _shell_classes:
        module, _, name = qualified.rpartition(".")
        ns = {"__module__": module, "__qualname__": name, **attrs}
        _shell_classes[qualified] = _Frozen(name, (base,), ns)
    return _shell_classes[qualified]


def _sparse_class(module: str, name: str) -> type | None:
    fmt, _, kind = name.partition("_")
    if fmt not in _SPARSE_FORMATS or kind not in ("matrix", "array"):
        return None
    if module not in (
        "scipy.sparse",
        "scipy.sparse._arrays",  # scipy 1.8 - 1.10 sparse arrays
        f"scipy.sparse.{fmt}",  # scipy < 1.8, what old SMPL pickles contain
        f"scipy.sparse._{fmt}",  # scipy >= 1.8
    ):
        return None
    target = getattr(sp, name, None)
    if target is None:  # pragma: no cover - scipy without sparse arrays
        target = getattr(sp, f"{fmt}_matrix")
    return _shell_class(_SparseShell, f"scipy.sparse.{name}", target=target, fmt=fmt)


def _chumpy_class(module: str, name: str) -> type | None:
    parts = module.split(".")
    if parts[0] != "chumpy" or len(parts) > 2 or not name.isidentifier() or name.startswith("__"):
        return None
    if not all(p.isidentifier() for p in parts):
        return None
    qualified = f"{module}.{name}"
    return _shell_class(ChumpyStandIn, qualified, chumpy_class=qualified)


# --------------------------------------------------------------------------- allowlist
def _build_allowlist() -> dict[tuple[str, str], Any]:
    allowed: dict[tuple[str, str], Any] = {}
    for core in ("numpy.core", "numpy._core"):
        allowed[(f"{core}.multiarray", "_reconstruct")] = _Guarded(
            f"{core}.multiarray._reconstruct", _reconstruct
        )
        allowed[(f"{core}.multiarray", "scalar")] = _Guarded(f"{core}.multiarray.scalar", _scalar)
        allowed[(f"{core}.numeric", "_frombuffer")] = _Guarded(f"{core}.numeric._frombuffer", _frombuffer)
        if _to_stringdtype is not None:
            allowed[(f"{core}._internal", "_convert_to_stringdtype_kwargs")] = _Guarded(
                f"{core}._internal._convert_to_stringdtype_kwargs", _to_stringdtype
            )
    # numpy's own types are immutable C types: safe to hand out directly.
    allowed[("numpy", "ndarray")] = np.ndarray
    allowed[("numpy", "dtype")] = np.dtype
    scalar_types = set(np.sctypeDict.values())
    for alias in ("bool_", "bool", "int_", "object_", "str_", "bytes_", "void", "intc", "intp"):
        t = vars(np).get(alias)
        if isinstance(t, type):
            scalar_types.add(t)
    for t in scalar_types:
        if isinstance(t, type) and issubclass(t, np.generic):
            allowed[("numpy", t.__name__)] = t
    dtypes_module = vars(np).get("dtypes")
    if dtypes_module is not None:
        for name, t in vars(dtypes_module).items():
            if isinstance(t, type) and issubclass(t, np.dtype):
                allowed[("numpy.dtypes", name)] = t

    # Harmless builtins data pickles use (protocol < 2 spells them __builtin__.*).
    for t in (set, frozenset, slice, complex, range, object, dict, list, tuple, int, float, str, bool):
        allowed[("builtins", t.__name__)] = t
    for t in (bytes, bytearray):
        allowed[("builtins", t.__name__)] = _Guarded(f"builtins.{t.__name__}", _bytes_like(t))
    allowed[("collections", "OrderedDict")] = collections.OrderedDict
    allowed[("collections", "defaultdict")] = _Guarded("collections.defaultdict", _defaultdict)
    allowed[("_codecs", "encode")] = _Guarded("_codecs.encode", _codecs_encode)
    allowed[("copyreg", "_reconstructor")] = _Guarded("copyreg._reconstructor", _copyreg_reconstructor)
    return allowed


_ALLOWED = _build_allowlist()


class RestrictedUnpickler(pickle.Unpickler):
    """`pickle.Unpickler` that resolves only the allowlisted data types.

    `load()` returns the data with scipy.sparse matrices rebuilt and validated;
    chumpy objects are left as `ChumpyStandIn` (see `undo_chumpy`)."""

    def __init__(self, file: BinaryIO, *, encoding: str = "latin1", source: str | None = None):
        super().__init__(file, encoding=encoding, errors="strict")
        self.source = source

    def find_class(self, module: str, name: str) -> Any:
        written = f"{module}.{name}"
        # pickle.Unpickler.find_class maps Python 2 names (__builtin__, copy_reg)
        # itself; overriding it means doing that here, before the allowlist.
        if (module, name) in _compat_pickle.NAME_MAPPING:
            module, name = _compat_pickle.NAME_MAPPING[(module, name)]
        elif module in _compat_pickle.IMPORT_MAPPING:
            module = _compat_pickle.IMPORT_MAPPING[module]
        found = _ALLOWED.get((module, name))
        if found is None:
            found = _sparse_class(module, name) or _chumpy_class(module, name)
        if found is None:
            mapped = f"{module}.{name}"
            shown = written if written == mapped else f"{written} (= {mapped})"
            raise UnsafePickleError(shown, path=self.source)
        return found

    def persistent_load(self, pid: Any) -> Any:
        # torch and other frameworks resolve persistent ids to storages; data files have none.
        raise UnsafePickleError("persistent_load", f"persistent id {pid!r}", self.source)

    def load(self) -> Any:
        data = super().load()
        return _walk(data, _rebuild_sparse_or_keep, into_chumpy=True)


# --------------------------------------------------------------------------- post-processing
_UNCHANGED = object()


def _walk(obj: Any, transform: Callable[[Any], Any], *, into_chumpy: bool = False) -> Any:
    """Apply `transform` to every leaf of dicts/lists/tuples/object arrays. Dicts,
    lists and object arrays are updated in place so shared references and cycles
    survive."""
    memo: dict[int, Any] = {}
    seen: list[Any] = []  # keeps visited objects alive so their ids stay unique

    def visit(x: Any) -> Any:
        key = id(x)
        if key in memo:
            return memo[key]
        seen.append(x)
        replaced = transform(x)
        if replaced is not _UNCHANGED:
            memo[key] = replaced
            return replaced
        memo[key] = x
        if isinstance(x, dict):
            for k, v in list(x.items()):
                nv = visit(v)
                if nv is not v:
                    x[k] = nv
        elif isinstance(x, list):
            for i, v in enumerate(x):
                nv = visit(v)
                if nv is not v:
                    x[i] = nv
        elif isinstance(x, tuple):
            items = [visit(v) for v in x]
            if any(a is not b for a, b in zip(items, x)):
                memo[key] = x = tuple(items)
        elif isinstance(x, np.ndarray) and x.dtype.hasobject and x.dtype.fields is None:
            for idx in np.ndindex(x.shape):
                v = x[idx]
                nv = visit(v)
                if nv is not v:
                    if not x.flags.writeable:
                        x = memo[key] = x.copy()
                    x[idx] = nv
        elif into_chumpy and isinstance(x, ChumpyStandIn):
            visit(x.state)
        return x

    try:
        return visit(obj)
    except RecursionError:
        raise CorruptPickleError("data is nested too deeply") from None


def _rebuild_sparse_or_keep(x: Any) -> Any:
    return _rebuild_sparse(x) if isinstance(x, _SparseShell) else _UNCHANGED


def _numeric(value: Any, what: str) -> np.ndarray:
    arr = np.asarray(value)
    if arr.dtype.hasobject:
        raise CorruptPickleError(f"{what} has object dtype")
    return arr


def _rebuild_sparse(shell: _SparseShell) -> Any:
    """Build a real scipy.sparse object from the pickled fields through the public
    constructors, which validate index bounds and shapes."""
    cls, fmt = type(shell).target, type(shell).fmt
    name = f"scipy.sparse.{cls.__name__}"
    st = shell.__dict__["_state"]
    try:
        shape = tuple(int(n) for n in st.get("_shape", st.get("shape")))
        if fmt in ("csr", "csc", "bsr"):
            data = _numeric(st["data"], "data")
            idx, ptr = _numeric(st["indices"], "indices"), _numeric(st["indptr"], "indptr")
            out = cls((data, idx, ptr), shape=shape)
            out.check_format(full_check=True)
        elif fmt == "coo":
            coords = st["coords"] if "coords" in st else (st["row"], st["col"])
            coords = tuple(_numeric(c, "coords") for c in coords)
            out = cls((_numeric(st["data"], "data"), coords), shape=shape)
            out._check()
        elif fmt == "dia":
            out = cls((_numeric(st["data"], "data"), _numeric(st["offsets"], "offsets")), shape)
        elif fmt == "lil":
            dtype = np.dtype(st["dtype"])
            rows, vals = list(st["rows"]), list(st["data"])
            if len(rows) != shape[0] or len(vals) != shape[0]:
                raise CorruptPickleError("lil rows do not match the shape")
            r = np.repeat(np.arange(shape[0]), [len(c) for c in rows])
            c = _numeric([j for cols in rows for j in cols], "rows").astype(np.int64)
            v = _numeric([a for row in vals for a in row], "data")
            out = cls(sp.coo_array((v.astype(dtype), (r, c)), shape=shape))
        else:  # dok
            items = st["_dict"] if "_dict" in st else shell.__dict__.get("_items", {})
            dtype = np.dtype(st.get("dtype", np.float64))
            keys = list(items)
            if not keys:
                return cls(shape, dtype=dtype)
            ij = _numeric(keys, "keys").reshape(len(keys), -1).astype(np.int64)
            v = _numeric([items[k] for k in keys], "data").astype(dtype)
            out = cls(sp.coo_array((v, tuple(ij.T)), shape=shape))
    except UnsafePickleError:
        raise
    except Exception as e:
        raise CorruptPickleError(f"invalid {name} in pickle: {e}") from None
    return out


# --------------------------------------------------------------------------- chumpy
def _r(value: Any) -> np.ndarray:
    # chumpy's Ch.r: np.asarray(np.atleast_1d(compute_r()), dtype=np.float64, order='C').
    return np.asarray(np.atleast_1d(value), dtype=np.float64, order="C")


def _unary(fn: Callable[[np.ndarray], Any], term: str = "x") -> Callable[..., Any]:
    return lambda ev: fn(ev.d(term))


def _binary(fn: Callable[[np.ndarray, np.ndarray], Any], a: str, b: str) -> Callable[..., Any]:
    return lambda ev: fn(ev.d(a), ev.d(b))


def _safe_power(ev: _ChumpyEval) -> np.ndarray:
    result = np.power(ev.d("x"), ev.d("pow"))
    result[np.isinf(result)] = 0  # chumpy's power.safe_power
    return result


def _nan_divide(ev: _ChumpyEval) -> np.ndarray:
    result = ev.d("x1") / ev.d("x2")
    result[~np.isfinite(result)] = 0
    return result


def _mat_vec_mult(ev: _ChumpyEval) -> np.ndarray:
    mtx, vec = ev.t("mtx"), ev.d("vec")
    if isinstance(mtx, ChumpyStandIn):
        mtx = ev.r(mtx)
    elif not sp.issparse(mtx):
        mtx = _numeric(mtx, "MatVecMult.mtx")
    result = np.asarray(mtx.dot(vec.ravel().reshape(-1, 1))).ravel()
    if vec.ndim > 1 and vec.shape[1] > 1:
        result = result.reshape((-1, vec.shape[1]))
    return result


def _select(ev: _ChumpyEval) -> np.ndarray:
    idxs = _numeric(ev.t("idxs"), "Select.idxs").astype(np.intp)
    result = ev.d("a").ravel()[idxs].copy()
    shape = ev.t("preferred_shape", None)
    return result if shape is None else result.reshape(shape)


def _concatenate(ev: _ChumpyEval) -> np.ndarray:
    names = ev.t("dterms")
    if not isinstance(names, (list, tuple)) or not all(isinstance(n, str) for n in names):
        raise CorruptPickleError("Concatenate without a list of terms")
    return np.concatenate([ev.d(n) for n in names], axis=ev.t("axis", 0))


def _atleast_nd(ev: _ChumpyEval) -> np.ndarray:
    fn = {1: np.atleast_1d, 2: np.atleast_2d, 3: np.atleast_3d}[int(ev.t("ndims"))]
    x = ev.d("x")
    return x.reshape(fn(x).shape)


_LOGIC_FUNCS = {"all", "any", "isfinite", "isinf", "isnan", "isneginf", "isposinf", "logical_not"}


def _logic(ev: _ChumpyEval) -> Any:
    name = ev.t("funcname")
    if name not in _LOGIC_FUNCS:
        raise UnsafePickleError("chumpy.logic.LogicFunc", f"function {name!r}")
    args, kwargs = tuple(ev.t("args", ())), dict(ev.t("kwargs", {}))
    if not all(isinstance(k, str) for k in kwargs) or "out" in kwargs:
        raise CorruptPickleError("LogicFunc keyword arguments are not data")
    return getattr(np, name)(ev.d("a"), *args, **kwargs)


_UNARY = {
    "nan_to_num": np.nan_to_num,
    "reciprocal": np.reciprocal,
    "square": np.square,
    "sqrt": np.sqrt,
    "exp": np.exp,
    "log": np.log,
    "sin": np.sin,
    "arcsin": np.arcsin,
    "cos": np.cos,
    "arccos": np.arccos,
    "tan": np.tan,
    "arctan": np.arctan,
    "negative": np.negative,
    "absolute": np.abs,
    "floor": np.floor,
    "ceil": np.ceil,
    "sign": np.sign,
}
_COMPARE = {
    "greater": np.greater,
    "greater_equal": np.greater_equal,
    "less": np.less,
    "less_equal": np.less_equal,
    "equal": np.equal,
    "not_equal": np.not_equal,
}
_EXTREMUM = {"amax": np.amax, "amin": np.amin, "nanmax": np.nanmax, "nanmin": np.nanmin}

# chumpy class -> compute_r, mirroring chumpy's own definitions (ch.py, ch_ops.py,
# reordering.py, logic.py). `ev.d(name)` is an operand's `.r`, `ev.t(name)` a raw term.
_CHUMPY_OPS: dict[str, Callable[[_ChumpyEval], Any]] = {
    "chumpy.ch.Ch": lambda ev: ev.d("x"),
    "chumpy.ch.ChHandle": _unary(lambda x: x),
    "chumpy.ch.MatVecMult": _mat_vec_mult,
    "chumpy.ch_ops.add": _binary(np.add, "a", "b"),
    "chumpy.ch_ops.subtract": _binary(np.subtract, "a", "b"),
    "chumpy.ch_ops.multiply": _binary(np.multiply, "a", "b"),
    "chumpy.ch_ops.divide": _binary(np.divide, "x1", "x2"),
    "chumpy.ch_ops.NanDivide": _nan_divide,
    "chumpy.ch_ops.power": _safe_power,
    "chumpy.ch_ops.dot": _binary(np.dot, "a", "b"),
    "chumpy.ch_ops.maximum": _binary(np.maximum, "a", "b"),
    "chumpy.ch_ops.minimum": _binary(np.minimum, "a", "b"),
    "chumpy.ch_ops.sum": lambda ev: np.sum(ev.d("x"), axis=ev.t("axis", None)),
    "chumpy.ch_ops.mean": lambda ev: np.mean(ev.d("x"), axis=ev.t("axis", None)),
    "chumpy.ch_ops.cumsum": lambda ev: np.cumsum(ev.d("a"), axis=ev.t("axis", None)),
    "chumpy.ch_ops.SumOfSquares": lambda ev: np.sum(ev.d("x").ravel() ** 2.0),
    "chumpy.ch_ops.clip": lambda ev: np.clip(ev.d("a"), ev.t("a_min"), ev.t("a_max")),
    "chumpy.ch_ops.Cross": lambda ev: np.cross(
        ev.d("a"),
        ev.d("b"),
        ev.t("axisa", -1),
        ev.t("axisb", -1),
        ev.t("axisc", -1),
        ev.t("axis", None),
    ),
    "chumpy.reordering.Reshape": lambda ev: ev.d("a").reshape(ev.t("newshape")),
    "chumpy.reordering.transpose": lambda ev: np.transpose(ev.d("a"), ev.t("axes", None)),
    "chumpy.reordering.Select": _select,
    "chumpy.reordering.Tile": lambda ev: np.tile(ev.d("a"), ev.t("reps")),
    "chumpy.reordering.Repeat": lambda ev: np.repeat(ev.d("a"), ev.t("repeats"), ev.t("axis", None)),
    "chumpy.reordering.Diag": lambda ev: np.diag(ev.d("a"), ev.t("k", 0)),
    "chumpy.reordering.DiagFlat": lambda ev: np.diagflat(ev.d("a"), ev.t("k", 0)),
    "chumpy.reordering.rollaxis": lambda ev: np.rollaxis(ev.d("a"), ev.t("axis"), ev.t("start", 0)),
    "chumpy.reordering.swapaxes": lambda ev: np.swapaxes(ev.d("a"), ev.t("axis1"), ev.t("axis2")),
    "chumpy.reordering.Roll": lambda ev: np.roll(ev.d("a"), ev.t("shift"), ev.t("axis", None)),
    "chumpy.reordering.Rot90": lambda ev: np.rot90(ev.d("a"), ev.t("k", 1)),
    "chumpy.reordering.Sort": lambda ev: np.sort(
        ev.d("a"), ev.t("axis", -1), ev.t("kind", None), ev.t("order", None)
    ),
    "chumpy.reordering.AtleastNd": _atleast_nd,
    "chumpy.reordering.Concatenate": _concatenate,
    "chumpy.logic.LogicFunc": _logic,
}
for _name, _fn in _UNARY.items():
    _CHUMPY_OPS[f"chumpy.ch_ops.{_name}"] = _unary(_fn)
for _name, _fn in _COMPARE.items():
    _CHUMPY_OPS[f"chumpy.ch_ops.{_name}"] = _binary(_fn, "x1", "x2")
for _name, _fn in _EXTREMUM.items():
    _CHUMPY_OPS[f"chumpy.ch_ops.{_name}"] = lambda ev, fn=_fn: fn(ev.d("a"), axis=ev.t("axis", None))


class _ChumpyEval:
    """Evaluates a graph of stand-ins; shared nodes are computed once."""

    def __init__(self) -> None:
        self.memo: dict[int, tuple[ChumpyStandIn, np.ndarray]] = {}  # node kept alive with its id
        self.active: set[int] = set()
        self.node: ChumpyStandIn | None = None

    def r(self, node: ChumpyStandIn) -> np.ndarray:
        key = id(node)
        if key in self.memo:
            return self.memo[key][1]
        if key in self.active:
            raise CorruptPickleError(f"chumpy object {node.chumpy_class} depends on itself")
        op = _CHUMPY_OPS.get(node.chumpy_class)
        if op is None:
            raise UnsafePickleError(node.chumpy_class, "chumpy operation cannot be evaluated without chumpy")
        self.active.add(key)
        outer, self.node = self.node, node
        try:
            with np.errstate(all="ignore"):
                value = _r(op(self))
        except (UnsafePickleError, CorruptPickleError):
            raise
        except Exception as e:
            raise UnsafePickleError(
                node.chumpy_class, f"chumpy operation could not be evaluated ({e})"
            ) from None
        finally:
            self.node = outer
            self.active.discard(key)
        self.memo[key] = (node, value)
        return value

    def t(self, name: str, *default: Any) -> Any:
        """A raw term of the node being evaluated."""
        assert self.node is not None
        state = self.node.state
        if name in state:
            return state[name]
        if default:
            return default[0]
        raise CorruptPickleError(f"{self.node.chumpy_class} has no term {name!r}")

    def d(self, name: str) -> np.ndarray:
        """An operand's value; chumpy wraps plain operands in Ch, hence `_r`."""
        value = self.t(name)
        if isinstance(value, ChumpyStandIn):
            return self.r(value)
        if sp.issparse(value):
            raise CorruptPickleError(f"{self.node.chumpy_class}.{name} is a sparse matrix")
        return _r(_numeric(value, f"{name}"))


def undo_chumpy(obj: Any) -> Any:
    """Replace every `ChumpyStandIn` inside dicts/lists/tuples/object arrays by the
    np.ndarray chumpy would compute for it (float64, at least 1-d).

    Raises UnsafePickleError naming the chumpy class if an operation is unknown."""
    ev = _ChumpyEval()
    return _walk(obj, lambda x: ev.r(x) if isinstance(x, ChumpyStandIn) else _UNCHANGED)


# --------------------------------------------------------------------------- entry points
def _describe_bad_start(head: bytes) -> str:
    if not head:
        return "the file is empty"
    if head.startswith(b"PK\x03\x04"):
        return "this is a zip archive (.npz or torch checkpoint), not a pickle"
    if head.startswith(b"\x93NUMPY"):
        return "this is a .npy file, not a pickle; use load_pickled_npy"
    return ""


def _load(file: BinaryIO, encoding: str, source: str | None) -> Any:
    label = source or "<pickle data>"
    try:
        data = RestrictedUnpickler(file, encoding=encoding, source=source).load()
        return undo_chumpy(data)
    except UnsafePickleError as e:
        raise e.with_path(source) from None
    except CorruptPickleError as e:
        raise CorruptPickleError(f"{label}: {e}") from None
    except EOFError:
        raise CorruptPickleError(f"{label}: truncated pickle (ran out of input)") from None
    except pickle.UnpicklingError as e:
        raise CorruptPickleError(f"{label}: not a valid pickle ({e})") from None
    except RecursionError:
        raise CorruptPickleError(f"{label}: pickle is nested too deeply") from None
    except Exception as e:
        raise CorruptPickleError(f"{label}: corrupt or malformed pickle ({type(e).__name__}: {e})") from None


def load_pickle(path_or_file: str | os.PathLike[str] | BinaryIO, *, encoding: str = "latin1") -> Any:
    """Load a pickle that may only contain data (numpy, scipy.sparse, chumpy arrays,
    builtin containers). Chumpy objects come back as np.ndarray.

    encoding='latin1' decodes Python 2 `str` objects, which is what old SMPL/FLAME
    pickles (and the numpy array bytes inside them) are made of."""
    if isinstance(path_or_file, (str, os.PathLike)):
        path = os.fspath(path_or_file)
        if not os.path.isfile(path):
            raise FileNotFoundError(2, "pickle file not found", path)
        with open(path, "rb") as f:
            head = f.read(8)
            bad = _describe_bad_start(head)
            if bad:
                raise CorruptPickleError(f"{path}: {bad}")
            f.seek(0)
            return _load(f, encoding, path)
    if not hasattr(path_or_file, "read"):
        raise TypeError(f"expected a path or a binary file, got {type(path_or_file).__name__}")
    name = getattr(path_or_file, "name", None)
    return _load(path_or_file, encoding, name if isinstance(name, str) else None)


def loads_pickle(data: bytes, *, encoding: str = "latin1", source: str | None = None) -> Any:
    """`load_pickle` for bytes in memory."""
    bad = _describe_bad_start(bytes(data[:8]))
    if bad:
        raise CorruptPickleError(f"{source or '<pickle data>'}: {bad}")
    return _load(io.BytesIO(data), encoding, source)


def load_pickled_npy(path: str | os.PathLike[str], *, encoding: str = "latin1") -> Any:
    """Load a `.npy` file. Object arrays (what `np.save(path, some_dict)` writes) are
    unpickled with the RestrictedUnpickler and a 0-d one returns its item; other
    arrays load with `np.load(..., allow_pickle=False)`."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(2, ".npy file not found", path)
    with open(path, "rb") as f:
        try:
            version = npy_format.read_magic(f)
            if version == (1, 0):
                shape, fortran, dtype = npy_format.read_array_header_1_0(f)
            elif version == (2, 0):
                shape, fortran, dtype = npy_format.read_array_header_2_0(f)
            elif version == (3, 0) and hasattr(npy_format, "_read_array_header"):
                shape, fortran, dtype = npy_format._read_array_header(f, version)
            else:
                raise CorruptPickleError(f"unsupported .npy format version {version}")
        except CorruptPickleError as e:
            raise CorruptPickleError(f"{path}: {e}") from None
        except (ValueError, OSError, EOFError) as e:
            raise CorruptPickleError(f"{path}: not a valid .npy file ({e})") from None
        if not dtype.hasobject:
            f.close()
            return np.load(path, allow_pickle=False)
        array = _load(f, encoding, path)
    if not isinstance(array, np.ndarray) or not array.dtype.hasobject or array.shape != shape:
        raise CorruptPickleError(
            f"{path}: header says an object array of shape {shape}, the payload is {type(array).__name__}"
        )
    return array.item() if array.shape == () else array
