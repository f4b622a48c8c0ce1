"""Chumpy-era model pickles for tests, written without chumpy.

Old SMPL/SMPL-H/MANO/FLAME `.pkl` files are Python 2 pickles (protocol 2, what
`pickle.dump(..., -1)` meant in Python 2) of dicts holding numpy arrays, a
`scipy.sparse.csc.csc_matrix` and chumpy objects. chumpy pickles an object with
the default object protocol: protocol >= 2 writes `NEWOBJ` on the class
(`chumpy.ch.Ch`, `chumpy.ch_ops.add`, `chumpy.reordering.Select`, ...) with no
arguments, protocols 0/1 write `copy_reg._reconstructor(cls, object, None)`; then
a `BUILD` with `Ch.__getstate__()`, the instance `__dict__` minus `_parents` and
`_cache` (weak-reference caches). That dict holds `_dirty_vars` (a set),
`_itr`, `_depends_on_deps`, `_make_dense`, `_make_sparse` and the terms: `x` for
a plain `Ch`, operand names (`a`, `b`, `x1`, `vec`, ...) for derived operations,
where operands that were plain arrays have been wrapped in `Ch` by
`Ch.__setattr__`.

This module fakes that: `fake_chumpy_modules()` registers throwaway `chumpy`,
`chumpy.ch`, ... modules whose classes have the real qualified names and
pickle with the same layout, and removes them again. `make_chumpy_pickle_bytes`
builds a pickle from plain data plus `ch(...)`/`ch_op(...)` nodes, optionally in
the byte-level style of Python 2 with numpy 1.x and scipy < 1.8.
"""

from __future__ import annotations

import _compat_pickle
import contextlib
import io
import pickle
import struct
import sys
import types
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import scipy.sparse as sp

__all__ = [
    "ChNode",
    "Py2StylePickler",
    "ch",
    "ch_concatenate",
    "ch_op",
    "chumpy_value",
    "fake_chumpy_modules",
    "make_chumpy_pickle_bytes",
    "materialize_chumpy",
    "py2_style_dumps",
    "smpl_like_model",
]

CHUMPY_MODULES = (
    "chumpy",
    "chumpy.ch",
    "chumpy.ch_ops",
    "chumpy.reordering",
    "chumpy.logic",
    "chumpy.linalg",
)

# Operands (chumpy `dterms`) per class; plain arrays given there get wrapped in Ch,
# as chumpy's Ch.__setattr__ does. Classes not listed wrap nothing.
_DTERMS: dict[str, tuple[str, ...]] = {
    "chumpy.ch.MatVecMult": ("vec",),
    "chumpy.ch.ChHandle": ("x",),
    "chumpy.reordering.Concatenate": (),  # per instance, see ch_concatenate
    "chumpy.logic.LogicFunc": ("a",),
}
for _n in ("add", "subtract", "multiply", "dot", "maximum", "minimum", "Cross"):
    _DTERMS[f"chumpy.ch_ops.{_n}"] = ("a", "b")
for _n in ("divide", "NanDivide", "greater", "greater_equal", "less", "less_equal", "equal", "not_equal"):
    _DTERMS[f"chumpy.ch_ops.{_n}"] = ("x1", "x2")
_DTERMS["chumpy.ch_ops.power"] = ("x", "pow")
for _n in (
    "sum",
    "mean",
    "SumOfSquares",
    "sqrt",
    "exp",
    "log",
    "sin",
    "cos",
    "tan",
    "arcsin",
    "arccos",
    "arctan",
    "negative",
    "absolute",
    "square",
    "reciprocal",
    "nan_to_num",
    "floor",
    "ceil",
    "sign",
):
    _DTERMS[f"chumpy.ch_ops.{_n}"] = ("x",)
for _n in ("cumsum", "clip", "amax", "amin", "nanmax", "nanmin"):
    _DTERMS[f"chumpy.ch_ops.{_n}"] = ("a",)
for _n in (
    "Reshape",
    "transpose",
    "Select",
    "Tile",
    "Repeat",
    "Diag",
    "DiagFlat",
    "rollaxis",
    "swapaxes",
    "Roll",
    "Rot90",
    "Sort",
):
    _DTERMS[f"chumpy.reordering.{_n}"] = ("a",)
_DTERMS["chumpy.reordering.AtleastNd"] = ("x",)


@dataclass(eq=False)
class ChNode:
    """A chumpy object to be: its qualified class and its terms. Reusing one node
    in several places pickles one shared object, as chumpy graphs do."""

    cls: str
    terms: dict[str, Any] = field(default_factory=dict)


def ch(x: Any) -> ChNode:
    """A plain `chumpy.ch.Ch` holding `x`."""
    return ChNode("chumpy.ch.Ch", {"x": x})


def ch_op(cls: str, **terms: Any) -> ChNode:
    """A derived chumpy object, e.g. `ch_op("chumpy.ch_ops.add", a=ch(u), b=v)`."""
    return ChNode(cls, dict(terms))


def ch_concatenate(parts: Iterable[Any], axis: int = 0) -> ChNode:
    """`chumpy.concatenate`: operands m0, m1, ... listed in an instance `dterms`."""
    terms: dict[str, Any] = {f"m{i}": p for i, p in enumerate(parts)}
    dterms = list(terms)
    terms.update(dterms=dterms, axis=axis)
    return ChNode("chumpy.reordering.Concatenate", terms)


def chumpy_value(x: Any) -> np.ndarray:
    """What `np.array(ch_object)` gives for a Ch holding `x` (chumpy's `.r`)."""
    return np.asarray(np.atleast_1d(x), dtype=np.float64, order="C")


class _FakeCh:
    """Base of the fake chumpy classes: pickles exactly like chumpy's Ch."""

    def __getstate__(self) -> dict[str, Any]:
        return dict(self.__dict__)  # chumpy drops _parents/_cache; we never set them

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)


@contextlib.contextmanager
def fake_chumpy_modules() -> Iterator[dict[str, types.ModuleType]]:
    """Install throwaway chumpy modules in sys.modules; restore sys.modules on exit."""
    saved = {name: sys.modules.get(name) for name in CHUMPY_MODULES}
    modules = {name: types.ModuleType(name) for name in CHUMPY_MODULES}
    for name, module in modules.items():
        if "." in name:
            setattr(modules["chumpy"], name.split(".", 1)[1], module)
    sys.modules.update(modules)
    try:
        yield modules
    finally:
        for name, old in saved.items():
            if old is None:
                sys.modules.pop(name, None)
            else:
                sys.modules[name] = old


def _fake_class(modules: dict[str, types.ModuleType], qualified: str) -> type:
    module_name, _, name = qualified.rpartition(".")
    if module_name not in modules:
        raise ValueError(f"not a chumpy module: {module_name}")
    module = modules[module_name]
    cls = getattr(module, name, None)
    if cls is None:
        cls = type(name, (_FakeCh,), {"__module__": module_name, "__qualname__": name})
        setattr(module, name, cls)
    return cls


def materialize_chumpy(
    obj: Any, modules: dict[str, types.ModuleType], memo: dict[int, Any] | None = None
) -> Any:
    """Turn `ChNode`s inside dicts/lists/tuples into fake chumpy objects; call
    inside `fake_chumpy_modules()` and pickle before leaving it."""
    memo = {} if memo is None else memo
    if id(obj) in memo:
        return memo[id(obj)]
    if isinstance(obj, ChNode):
        cls = _fake_class(modules, obj.cls)
        inst = object.__new__(cls)
        memo[id(obj)] = inst
        state: dict[str, Any] = {
            "_dirty_vars": set(k for k in obj.terms if k != "dterms"),
            "_itr": None,
            "_depends_on_deps": {},
            "_make_dense": False,
            "_make_sparse": False,
        }
        dterms = _DTERMS.get(obj.cls, ())
        if obj.cls == "chumpy.reordering.Concatenate":
            dterms = tuple(obj.terms.get("dterms", ()))
        for key, value in obj.terms.items():
            value = materialize_chumpy(value, modules, memo)
            if key in dterms and not isinstance(value, _FakeCh):
                value = materialize_chumpy(ch(value), modules, memo)
            state[key] = value
        inst.__dict__.update(state)
        return inst
    if isinstance(obj, dict):
        out = type(obj)()
        memo[id(obj)] = out
        for k, v in obj.items():
            out[k] = materialize_chumpy(v, modules, memo)
        return out
    if isinstance(obj, list):
        out_list: list[Any] = []
        memo[id(obj)] = out_list
        out_list.extend(materialize_chumpy(v, modules, memo) for v in obj)
        return out_list
    if isinstance(obj, tuple):
        return tuple(materialize_chumpy(v, modules, memo) for v in obj)
    return obj


# --------------------------------------------------------------------------- Python 2 style
_OLD_MODULES = {
    "numpy._core.multiarray": "numpy.core.multiarray",
    "numpy._core.numeric": "numpy.core.numeric",
}
for _fmt in ("csr", "csc", "coo", "lil", "dok", "bsr", "dia"):
    _OLD_MODULES[f"scipy.sparse._{_fmt}"] = f"scipy.sparse.{_fmt}"


class Py2StylePickler(pickle._Pickler):
    """Protocol 0-2 pickles as Python 2 + numpy 1.x + scipy < 1.8 wrote them:
    byte strings and text as `str` opcodes (STRING/BINSTRING, no `_codecs.encode`),
    `numpy.core.multiarray` and `scipy.sparse.csc` module paths, `__builtin__`."""

    dispatch = pickle._Pickler.dispatch.copy()

    def _write_py2_str(self, data: bytes) -> None:
        if self.bin:
            if len(data) < 256:
                self.write(pickle.SHORT_BINSTRING + bytes([len(data)]) + data)
            else:
                self.write(pickle.BINSTRING + struct.pack("<i", len(data)) + data)
        else:
            self.write(pickle.STRING + repr(data)[1:].encode("ascii") + b"\n")

    def save_bytes(self, obj: bytes) -> None:
        self._write_py2_str(obj)
        self.memoize(obj)

    def save_str(self, obj: str) -> None:
        try:
            data = obj.encode("latin1")
        except UnicodeEncodeError:  # Python 2 `unicode`
            pickle._Pickler.save_str(self, obj)
            return
        self._write_py2_str(data)
        self.memoize(obj)

    dispatch[bytes] = save_bytes
    dispatch[str] = save_str

    def save_global(self, obj: Any, name: str | None = None) -> None:
        name = name or obj.__qualname__
        module = pickle.whichmodule(obj, name)
        module = _OLD_MODULES.get(module, module)
        if (module, name) in _compat_pickle.REVERSE_NAME_MAPPING:
            module, name = _compat_pickle.REVERSE_NAME_MAPPING[(module, name)]
        elif module in _compat_pickle.REVERSE_IMPORT_MAPPING:
            module = _compat_pickle.REVERSE_IMPORT_MAPPING[module]
        self.write(pickle.GLOBAL + module.encode("ascii") + b"\n" + name.encode("ascii") + b"\n")
        self.memoize(obj)

    dispatch[types.FunctionType] = save_global  # classes go through save_type -> save_global


def py2_style_dumps(obj: Any, protocol: int = 2) -> bytes:
    """`pickle.dumps` in the style of Python 2 (load with encoding='latin1')."""
    if protocol > 2:
        raise ValueError("Python 2 pickles have protocol 0, 1 or 2")
    buf = io.BytesIO()
    Py2StylePickler(buf, protocol=protocol).dump(obj)
    return buf.getvalue()


def make_chumpy_pickle_bytes(
    obj: Any, *, wrap: Iterable[str] = (), protocol: int = 2, py2_style: bool = True
) -> bytes:
    """Pickle `obj` (usually an SMPL-like dict) the way chumpy-era model files were.

    `ChNode`s anywhere in dicts/lists/tuples become chumpy objects; top-level keys
    named in `wrap` are wrapped as `chumpy.ch.Ch` first. The fake chumpy modules
    are gone from sys.modules when this returns."""
    if wrap:
        obj = dict(obj)
        for key in wrap:
            obj[key] = ch(obj[key])
    with fake_chumpy_modules() as modules:
        data = materialize_chumpy(obj, modules, {})
        if py2_style:
            return py2_style_dumps(data, protocol)
        return pickle.dumps(data, protocol=protocol)


def smpl_like_model(
    num_vertices: int = 12, num_joints: int = 4, num_betas: int = 5, seed: int = 0
) -> dict[str, Any]:
    """A tiny dict with the keys, dtypes and container types of an SMPL `.pkl`
    (plain arrays; wrap `shapedirs` etc. with `make_chumpy_pickle_bytes(wrap=...)`)."""
    rng = np.random.default_rng(seed)
    v, j = num_vertices, num_joints
    weights = rng.random((v, j))
    weights /= weights.sum(1, keepdims=True)
    regressor = sp.random(j, v, density=0.5, random_state=seed, format="csc")
    parents = np.concatenate([[4294967295], np.arange(j - 1)]).astype(np.int64)  # uint32(-1)
    return {
        "v_template": rng.standard_normal((v, 3)),
        "f": rng.integers(0, v, (2 * v, 3)).astype(np.uint32),
        "shapedirs": rng.standard_normal((v, 3, num_betas)),
        "posedirs": rng.standard_normal((v, 3, 9 * (j - 1))),
        "J_regressor": regressor,
        "J": rng.standard_normal((j, 3)),
        "weights": weights,
        "kintree_table": np.stack([parents, np.arange(j)]),
        "bs_type": "lrotmin",
        "bs_style": "lbs",
    }
