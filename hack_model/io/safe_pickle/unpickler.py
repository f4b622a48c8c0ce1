"""`RestrictedUnpickler`: Python's own (pure-Python) unpickler with every opcode
that can call, build, allocate or grow under our control.

* REDUCE calls only admitted `Global`s through their checked function; NEWOBJ,
  NEWOBJ_EX, INST and OBJ make only our inert shell classes; BUILD applies state
  only to a fresh array from `_reconstruct` (validated: allow-listed dtype, shape
  within budget, exactly shape x itemsize bytes, or for object arrays a list of
  exactly shape's length of already unpickled values - never pointers from bytes),
  to a dtype shell once, or to a shell; anything else is refused.
* Every length read from the file (bytes, strings, frames, big integers) must fit in
  the file before it is read; MARK depth, memo size and container items are
  counted against the `Budget`.
"""

from __future__ import annotations

import io
import math
import pickle
import struct
from typing import Any, BinaryIO

import numpy as np

from .allowlist import ChumpyStandIn, DtypeShell, Frozen, Global, Shell, SparseShell, find_global, unwrap
from .budget import MAX_DEPTH, MAX_MARK_DEPTH, Budget
from .dtypes import as_dtype
from .errors import CorruptPickleError, UnsafePickleError

_P = pickle._Unpickler
_OP = {n: getattr(pickle, n)[0] for n in dir(pickle) if n.isupper() and isinstance(getattr(pickle, n), bytes)}


def _stream_size(file: BinaryIO) -> int:
    try:
        if isinstance(file, io.BytesIO):
            return file.getbuffer().nbytes
        return max(0, __import__("os").fstat(file.fileno()).st_size)
    except (AttributeError, OSError, io.UnsupportedOperation, ValueError):
        return 1 << 30


class RestrictedUnpickler(_P):
    """`pickle` unpickler that resolves only the allow-listed data types and keeps
    within a resource budget.

    `load()` returns the data with scipy.sparse matrices rebuilt and validated and
    dtype shells resolved; chumpy objects are left as `ChumpyStandIn` (see `undo_chumpy`)."""

    dispatch = dict(_P.dispatch)

    def __init__(
        self,
        file: BinaryIO,
        *,
        encoding: str = "latin1",
        source: str | None = None,
        budget: Budget | None = None,
    ) -> None:
        super().__init__(file, encoding=encoding, errors="strict")
        self.source = source
        self.budget = budget if budget is not None else Budget(_stream_size(file), source)
        self.fresh_arrays: dict[int, np.ndarray] = {}

    # ---------------------------------------------------------------- globals
    def find_class(self, module: str, name: str) -> Any:
        return find_global(module, name, self.source)

    def persistent_load(self, pid: Any) -> Any:
        # torch and other frameworks resolve persistent ids to storages; data files have none.
        raise UnsafePickleError("persistent_load", f"persistent id {pid!r}"[:200], self.source)

    # ---------------------------------------------------------------- sizes
    def _length(self, fmt: str, what: str) -> int:
        (n,) = struct.unpack(fmt, self.read(struct.calcsize(fmt)))
        if n < 0 or n > self.budget.file_size:
            raise CorruptPickleError(f"{what} claims {n} bytes; the file has {self.budget.file_size}")
        return n

    def _load_bytes(op: str, fmt: str, kind: str):  # noqa: N805 - builds methods
        def load(self: RestrictedUnpickler) -> None:
            n = self._length(fmt, op)
            data = self.read(n)
            if len(data) != n:
                raise EOFError
            if kind == "bytes":
                self.append(data)
            elif kind == "str":
                self.append(str(data, "utf-8", "surrogatepass"))
            elif kind == "bytearray":
                self.append(bytearray(data))
            elif kind == "long":
                self.append(pickle.decode_long(data))
            else:  # BINSTRING: Python 2 str
                self.append(self._decode_string(data))

        return load

    for _name, _fmt, _kind in (
        ("BINBYTES", "<I", "bytes"),
        ("BINBYTES8", "<Q", "bytes"),
        ("BINUNICODE", "<I", "str"),
        ("BINUNICODE8", "<Q", "str"),
        ("BYTEARRAY8", "<Q", "bytearray"),
        ("LONG4", "<i", "long"),
        ("BINSTRING", "<i", "string"),
    ):
        if _name in _OP:
            dispatch[_OP[_name]] = _load_bytes(_name, _fmt, _kind)
    del _name, _fmt, _kind

    def load_frame(self) -> None:
        n = self._length("<Q", "FRAME")
        self._unframer.load_frame(n)

    dispatch[_OP["FRAME"]] = load_frame

    def load_next_buffer(self) -> None:
        raise UnsafePickleError("NEXT_BUFFER", "out-of-band buffers are not data in a file", self.source)

    dispatch[_OP["NEXT_BUFFER"]] = load_next_buffer

    # ---------------------------------------------------------------- growth
    def load_mark(self) -> None:
        if len(self.metastack) >= MAX_MARK_DEPTH:
            raise self.budget.refuse("MARK", f"more than {MAX_MARK_DEPTH} nested MARKs")
        _P.load_mark(self)

    dispatch[_OP["MARK"]] = load_mark

    def pop_mark(self) -> list:
        items = _P.pop_mark(self)
        self.budget.charge_items(len(items), "container")
        return items

    def _memo_check(self) -> None:
        if len(self.memo) >= self.budget.max_memo:
            raise self.budget.refuse("memo", f"more than {self.budget.max_memo} memo entries")

    def _memo_op(name: str):  # noqa: N805
        base = _P.dispatch[_OP[name]]

        def load(self: RestrictedUnpickler) -> None:
            self._memo_check()
            base(self)

        return load

    for _name in ("PUT", "BINPUT", "LONG_BINPUT", "MEMOIZE"):
        dispatch[_OP[_name]] = _memo_op(_name)
    del _name

    # ---------------------------------------------------------------- calls
    def load_reduce(self) -> None:
        stack = self.stack
        args = stack.pop()
        func = stack[-1]
        if not isinstance(func, Global) or func.call is None:
            name = (
                func.name if isinstance(func, Global) else getattr(func, "__qualname__", type(func).__name__)
            )
            raise UnsafePickleError(str(name), "may not be called")
        if not isinstance(args, tuple):
            raise CorruptPickleError("REDUCE arguments are not a tuple")
        stack[-1] = func.call(self, *args)

    dispatch[_OP["REDUCE"]] = load_reduce

    def _new_shell(self, cls: Any, what: str) -> Any:
        if not isinstance(cls, Frozen):
            name = cls.name if isinstance(cls, Global) else repr(cls)[:80]
            raise UnsafePickleError(name, f"{what} may only make inert data shells")
        return cls.__new__(cls)

    def load_newobj(self) -> None:
        self.stack.pop()  # shells take no constructor arguments
        cls = self.stack.pop()
        self.append(self._new_shell(cls, "NEWOBJ"))

    dispatch[_OP["NEWOBJ"]] = load_newobj

    def load_newobj_ex(self) -> None:
        self.stack.pop()
        self.stack.pop()
        cls = self.stack.pop()
        self.append(self._new_shell(cls, "NEWOBJ_EX"))

    dispatch[_OP["NEWOBJ_EX"]] = load_newobj_ex

    def _instantiate(self, klass: Any, args: list) -> None:
        if args:
            raise UnsafePickleError(getattr(klass, "name", repr(klass)[:80]), "INST/OBJ with arguments")
        self.append(self._new_shell(klass, "INST/OBJ"))

    # ---------------------------------------------------------------- BUILD
    def load_build(self) -> None:
        stack = self.stack
        state = stack.pop()
        inst = stack[-1]
        if type(inst) is np.ndarray:
            if self.fresh_arrays.pop(id(inst), None) is not inst:
                raise UnsafePickleError("numpy.ndarray", "state given to an array that is already built")
            self._build_array(inst, state)
        elif isinstance(inst, DtypeShell):
            inst.set_state(state)
        elif isinstance(inst, Shell):
            inst.set_state(state)
        else:
            name = inst.name if isinstance(inst, Global) else type(inst).__qualname__
            raise UnsafePickleError(str(name), "BUILD (setting state) is only allowed on data shells")

    dispatch[_OP["BUILD"]] = load_build

    def _build_array(self, arr: np.ndarray, state: Any) -> None:
        what = "numpy.ndarray"
        if not isinstance(state, tuple) or len(state) not in (4, 5):
            raise CorruptPickleError("array state is malformed")
        version, shape, dtype, fortran, raw = state if len(state) == 5 else (1, *state)
        if not isinstance(version, int) or not isinstance(fortran, (bool, int)):
            raise CorruptPickleError("array state is malformed")
        shape = self.budget.check_shape(shape, what)
        dt = as_dtype(dtype, what, allow_object=True)
        count = math.prod(shape)
        if dt.hasobject:
            # Object (and StringDType) arrays pickle their items as a list of
            # unpickled values: never pointers read from bytes.
            if not isinstance(raw, list) or len(raw) != count:
                raise UnsafePickleError(what, f"{dt} array needs a list of {count} items")
            self.budget.charge_items(count, what)
            if type(dt).__name__ == "StringDType" and not all(isinstance(s, str) for s in raw):
                raise UnsafePickleError(what, "StringDType items must be text")
            self.budget.charge_bytes(8 * count, what)
        else:
            if isinstance(raw, str):
                raw = raw.encode("latin1")  # Python 2 str, as numpy does
            if not isinstance(raw, (bytes, bytearray)):
                raise UnsafePickleError(what, f"array data of type {type(raw).__name__}")
            if len(raw) != count * dt.itemsize:
                raise CorruptPickleError(
                    f"array data has {len(raw)} bytes; shape {shape} of {dt} needs {count * dt.itemsize}"
                )
            self.budget.charge_bytes(len(raw), what)
        try:
            arr.__setstate__((version, shape, dt, bool(fortran), raw))
        except (ValueError, TypeError) as err:
            raise CorruptPickleError(f"invalid array state ({err})") from None

    # ---------------------------------------------------------------- load
    def load(self) -> Any:
        """pickle._Unpickler.load with an opcode budget."""
        self._unframer = pickle._Unframer(self._file_read, self._file_readline)
        self.read = self._unframer.read
        self.readinto = self._unframer.readinto
        self.readline = self._unframer.readline
        self.metastack = []
        self.stack = []
        self.append = self.stack.append
        self.proto = 0
        read, dispatch, limit = self.read, self.dispatch, self.budget.max_ops
        count = 0
        try:
            while True:
                key = read(1)
                if not key:
                    raise EOFError
                count += 1
                if count > limit:
                    raise self.budget.refuse("opcodes", f"more than {limit} pickle opcodes")
                handler = dispatch.get(key[0])
                if handler is None:
                    raise pickle.UnpicklingError(f"invalid load key, {key!r}")
                handler(self)
        except pickle._Stop as stop:
            data = stop.value
        return finish(data, self.budget)


# --------------------------------------------------------------------------- post-processing
_UNCHANGED = object()


def walk(obj: Any, transform: Any, *, into_chumpy: bool = False) -> Any:
    """Apply `transform` to every leaf of dicts/lists/tuples/sets/object arrays. Dicts,
    lists and object arrays are updated in place so shared references and cycles
    survive. Deeper than MAX_DEPTH is refused."""
    memo: dict[int, Any] = {}
    seen: list[Any] = []  # keeps visited objects alive so their ids stay unique

    def visit(x: Any, depth: int) -> Any:
        key = id(x)
        if key in memo:
            return memo[key]
        if depth > MAX_DEPTH:
            raise CorruptPickleError(f"data is nested more than {MAX_DEPTH} levels deep")
        seen.append(x)
        replaced = transform(x)
        if replaced is not _UNCHANGED:
            memo[key] = replaced
            return replaced
        memo[key] = x
        if isinstance(x, dict):
            for k, v in list(x.items()):
                nv = visit(v, depth + 1)
                if nv is not v:
                    x[k] = nv
        elif isinstance(x, list):
            for i, v in enumerate(x):
                nv = visit(v, depth + 1)
                if nv is not v:
                    x[i] = nv
        elif isinstance(x, tuple):
            items = [visit(v, depth + 1) for v in x]
            if any(a is not b for a, b in zip(items, x)):
                memo[key] = x = tuple(items)
        elif isinstance(x, (set, frozenset)):
            for v in x:
                visit(v, depth + 1)
        elif isinstance(x, np.ndarray) and x.dtype.hasobject and x.dtype.fields is None:
            flat = x.reshape(-1, order="A") if x.flags.c_contiguous or x.flags.f_contiguous else None
            for idx in np.ndindex(x.shape) if flat is None else range(x.size):
                v = x[idx] if flat is None else flat[idx]
                nv = visit(v, depth + 1)
                if nv is not v:
                    if flat is None:
                        x[idx] = nv
                    else:
                        flat[idx] = nv
        elif into_chumpy and isinstance(x, ChumpyStandIn):
            visit(x.state, depth + 1)
        return x

    try:
        return visit(obj, 0)
    except RecursionError:
        raise CorruptPickleError("data is nested too deeply") from None


def finish(data: Any, budget: Budget) -> Any:
    from .sparse import rebuild_sparse

    def transform(x: Any) -> Any:
        if isinstance(x, SparseShell):
            return rebuild_sparse(x, budget)
        if isinstance(x, DtypeShell):
            return x.resolve()
        if isinstance(x, Global):
            return unwrap(x)
        if type(x) is np.ndarray and x.dtype == np.uint8 and x.shape == (0,):
            return _UNCHANGED
        return _UNCHANGED

    return walk(data, transform, into_chumpy=True)
