"""chumpy objects evaluated without chumpy.

chumpy (`chumpy.ch.Ch`, `chumpy.ch_ops.*`, `chumpy.reordering.*`, ...) is never
imported. chumpy pickles its objects with the default object protocol: `NEWOBJ`
(protocol >= 2, what SMPL's `save_model` used) or `copyreg._reconstructor(cls,
object, None)` (protocols 0/1), followed by a `BUILD` whose state is the instance
`__dict__` minus the weak-reference caches: the value of a plain `Ch` is under `x`,
derived operations keep their operands (themselves `Ch` objects) under their term
names (`a`, `b`, `x1`, `vec`, `idxs`, ...). Each chumpy class becomes a
`ChumpyStandIn` that only stores that state; `undo_chumpy` evaluates it to what
`np.array(ch_object)` would give (chumpy's `.r`: float64, at least 1-d, C order)
for the operations listed in `CHUMPY_OPS`.

Every operation's output size (and `dot`'s work) is computed from its operands'
shapes and charged to the file's budget before numpy runs it, so a `Tile` with
huge `reps`, a broadcasting `add` of [N, 1] and [1, M] or an outer `dot` is refused
instead of allocated.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np

from .allowlist import ChumpyStandIn
from .budget import MAX_ARRAY_ELEMENTS, MAX_FLOPS, Budget, safe_asarray
from .errors import CorruptPickleError, ModelFileError, UnsafePickleError
from .unpickler import _UNCHANGED, walk


def _numeric(value: Any, what: str, budget: Budget | None = None) -> np.ndarray:
    return safe_asarray(value, what, budget)


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
    elif not hasattr(mtx, "tocsr"):
        mtx = _numeric(mtx, "MatVecMult.mtx", ev.budget)
    result = np.asarray(mtx.dot(vec.ravel().reshape(-1, 1))).ravel()
    if vec.ndim > 1 and vec.shape[1] > 1:
        result = result.reshape((-1, vec.shape[1]))
    return result


def _select(ev: _ChumpyEval) -> np.ndarray:
    idxs = _numeric(ev.t("idxs"), "Select.idxs", ev.budget).astype(np.intp)
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

    def __init__(self, budget: Budget | None = None) -> None:
        self.budget = budget if budget is not None else Budget(0)
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
            charged = _precheck(node.chumpy_class, self)
            with np.errstate(all="ignore"):
                value = _r(op(self))
            if not charged:
                self.budget.charge_bytes(value.nbytes, node.chumpy_class)
        except (UnsafePickleError, ModelFileError):
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
        if hasattr(value, "tocsr"):
            raise CorruptPickleError(f"{self.node.chumpy_class}.{name} is a sparse matrix")
        return _r(_numeric(value, f"{self.node.chumpy_class}.{name}", self.budget))


def undo_chumpy(obj: Any, budget: Budget | None = None) -> Any:
    """Replace every `ChumpyStandIn` inside dicts/lists/tuples/object arrays by the
    np.ndarray chumpy would compute for it (float64, at least 1-d).

    Raises UnsafePickleError naming the chumpy class if an operation is unknown."""
    ev = _ChumpyEval(budget)
    return walk(obj, lambda x: ev.r(x) if isinstance(x, ChumpyStandIn) else _UNCHANGED)


_BROADCAST = {
    "add": ("a", "b"), "subtract": ("a", "b"), "multiply": ("a", "b"), "maximum": ("a", "b"),
    "minimum": ("a", "b"), "divide": ("x1", "x2"), "NanDivide": ("x1", "x2"), "power": ("x", "pow"),
    "Cross": ("a", "b"), **{name: ("x1", "x2") for name in _COMPARE},
}  # fmt: skip


def _ints(value: Any, what: str) -> list[int]:
    arr = _numeric(value, what)
    if arr.dtype.kind not in "iub" or arr.ndim > 1 or arr.size > 64:
        raise CorruptPickleError(f"{what} must be a few integers")
    return [int(v) for v in np.atleast_1d(arr)]


def _precheck(cls: str, ev: _ChumpyEval) -> bool:
    """Charge the output of an operation that can make more elements than its operands
    have, before numpy runs it. True when charged."""
    op = cls.rpartition(".")[2]
    prev, ev.node = ev.node, ev.node  # ev.node is the node being evaluated
    if op in _BROADCAST:
        a, b = (ev.d(t) for t in _BROADCAST[op])
        try:
            shape = np.broadcast_shapes(a.shape, b.shape)
        except ValueError as err:
            raise CorruptPickleError(f"{cls}: operands do not broadcast ({err})") from None
        size, flops = math.prod(shape), 0
    elif op == "dot":
        a, b = ev.d("a"), ev.d("b")
        if a.ndim <= 1 and b.ndim <= 1:
            size, flops = 1, max(a.size, b.size)
        elif b.ndim == 1:
            size, flops = math.prod(a.shape[:-1]), a.size
        else:
            size = math.prod(a.shape[:-1]) * math.prod(b.shape[:-2]) * b.shape[-1]
            flops = size * (a.shape[-1] if a.ndim else 1)
    elif op == "MatVecMult":
        mtx, vec = ev.t("mtx"), ev.d("vec")
        rows = mtx.shape[0] if hasattr(mtx, "shape") and len(getattr(mtx, "shape", ())) else 1
        cols = vec.shape[1] if vec.ndim > 1 else 1
        size = rows * cols
        flops = (getattr(mtx, "nnz", None) or math.prod(getattr(mtx, "shape", (1,)))) * cols
    elif op == "Tile":
        a, reps = ev.d("a"), _ints(ev.t("reps"), f"{cls}.reps")
        n = max(len(reps), a.ndim)
        shape = [1] * (n - a.ndim) + list(a.shape)
        reps = [1] * (n - len(reps)) + reps
        if any(r < 0 for r in reps):
            raise CorruptPickleError(f"{cls}: negative reps")
        size, flops = math.prod(s * r for s, r in zip(shape, reps)), 0
    elif op == "Repeat":
        a, rep = ev.d("a"), _ints(ev.t("repeats"), f"{cls}.repeats")
        if any(r < 0 for r in rep):
            raise CorruptPickleError(f"{cls}: negative repeats")
        axis = ev.t("axis", None)
        along = a.size if axis is None else (a.shape[int(axis)] if a.ndim else 1)
        per = sum(rep) if len(rep) > 1 else rep[0] * along
        size, flops = per * (a.size // max(along, 1) if axis is not None else 1), 0
    elif op in ("Diag", "DiagFlat"):
        a, k = ev.d("a"), abs(int(_ints(ev.t("k", 0), f"{cls}.k")[0]))
        n = a.size if op == "DiagFlat" or a.ndim == 1 else 0
        size, flops = (n + k) ** 2 if n else a.size, 0
    elif op == "Concatenate":
        names = ev.t("dterms")
        if not isinstance(names, (list, tuple)) or len(names) > 10_000:
            raise CorruptPickleError(f"{cls} without a list of terms")
        size, flops = sum(ev.d(n).size for n in names if isinstance(n, str)), 0
    elif op == "clip":
        size, flops = ev.d("a").size, 0
        for bound in ("a_min", "a_max"):
            other = _numeric(ev.t(bound), f"{cls}.{bound}", ev.budget)
            try:
                size = max(size, math.prod(np.broadcast_shapes(ev.d("a").shape, other.shape)))
            except ValueError:
                raise CorruptPickleError(f"{cls}: bounds do not broadcast") from None
    elif op == "Select":
        size, flops = _numeric(ev.t("idxs"), f"{cls}.idxs", ev.budget).size, 0
    else:
        return False
    ev.node = prev
    if size > MAX_ARRAY_ELEMENTS or flops > MAX_FLOPS:
        raise ev.budget.refuse(cls, f"would make {size} elements with {flops:.3g} multiply-adds")
    ev.budget.charge_bytes(8 * size, cls)
    return True
