"""Fuzz suite: crafted hostile and broken files, generated here, each loaded in its own
forked child process (tests/fuzz_child.py) under an address-space cap (RLIMIT_AS +1.5 GB),
a CPU limit and a timeout.

For every input the test asserts: refused with the expected error class (a
ModelFileError subclass, which names the file), no death by signal, no timeout, time
and peak memory within budget, and that the sentinel file a code-execution payload
would create never exists. Classes: code execution (the 22-payload corpus and more),
object arrays over file bytes, dtype state, resource bombs (containers, memo,
bytes, chumpy operations, sparse shapes), malformed opcode streams, random bytes and
mutations, pickled .npy, .npy/.npz headers and zip members (bombs, lying sizes,
metadata), model semantics, parameter files, OBJ meshes, scans and landmarks.

Numbers: `python -m pytest -q -s tests/test_fuzz_files.py -k summary` prints the
count, the slowest load and the largest peak memory.
"""

from __future__ import annotations

import json
import os
import pickle
import struct
import subprocess
import sys
import zipfile
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp

sys.path.insert(0, str(Path(__file__).parent))
from chumpy_fixtures import ch, ch_op, make_chumpy_pickle_bytes, smpl_like_model  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
MAX_SECONDS = 5.0  # refusals take milliseconds; a loaded shared machine gets headroom
MAX_PEAK_MB = 700.0


@dataclass
class Case:
    id: str
    kind: str  # loader in fuzz_child.py
    suffix: str
    expect: str  # error class name in the MRO, "loaded", or "any" (loaded or ModelFileError)
    make: Callable[[Path], bytes]
    needs: str = ""  # substring the message must contain


CASES: list[Case] = []


def case(id: str, kind: str, suffix: str, expect: str, needs: str = ""):
    def register(fn: Callable[[Path], bytes]) -> Callable[[Path], bytes]:
        CASES.append(Case(id, kind, suffix, expect, fn, needs))
        return fn

    return register


def add(id: str, kind: str, suffix: str, expect: str, data: bytes | Callable[[Path], bytes], needs: str = ""):
    CASES.append(Case(id, kind, suffix, expect, data if callable(data) else (lambda _d, b=data: b), needs))


# --------------------------------------------------------------------------- pickle crafting
def g(mod: str, name: str) -> bytes:
    return b"c" + mod.encode() + b"\n" + name.encode() + b"\n"


def u(s: str) -> bytes:
    return b"V" + s.encode("raw-unicode-escape") + b"\n"


def i(n: int) -> bytes:
    return b"I%d\n" % n


def by(data: bytes) -> bytes:
    return b"B" + struct.pack("<I", len(data)) + data


def tup(*parts: bytes) -> bytes:
    return b"(" + b"".join(parts) + b"t"


def lst(*parts: bytes) -> bytes:
    return b"(" + b"".join(parts) + b"l"


def dct(*pairs: bytes) -> bytes:
    return b"(" + b"".join(pairs) + b"d"


def call(fn: bytes, *args: bytes) -> bytes:
    return fn + tup(*args) + b"R"


F, T, N = b"I00\n", b"I01\n", b"N"


def dtype(spec: str, order: str = "<", names: bytes = N, fields: bytes = N, elsize: int = -1) -> bytes:
    state = tup(i(3), u(order), N, names, fields, i(elsize), i(-1 if elsize < 0 else 1), i(0))
    return call(g("numpy", "dtype"), u(spec), F, T) + state + b"b"


RECON = call(g("numpy.core.multiarray", "_reconstruct"), g("numpy", "ndarray"), tup(i(0)), by(b"b"))


def array(shape: bytes, dt: bytes, raw: bytes) -> bytes:
    return RECON + tup(i(1), shape, dt, F, raw) + b"b"


def done(body: bytes) -> bytes:
    return body + b"."


OBJ_DT = dtype("O8", "|")
F8 = dtype("f8")

# ---- object pointers from file bytes, dtype state
add(
    "ndarray-call-object-buffer",
    "pickle",
    ".pkl",
    "UnsafePickleError",
    done(call(g("numpy", "ndarray"), tup(i(4)), OBJ_DT, by(struct.pack("<4Q", *[0x41414141] * 4)))),
)
add(
    "reconstruct-object-dtype-bytes",
    "pickle",
    ".pkl",
    "UnsafePickleError",
    done(array(tup(i(4)), OBJ_DT, by(struct.pack("<4Q", *[0xDEADBEEF] * 4)))),
)
add(
    "reconstruct-object-short-list",
    "pickle",
    ".pkl",
    "UnsafePickleError",
    done(array(tup(i(1000)), OBJ_DT, lst(i(1)))),
)
add("reconstruct-object-int-raw", "pickle", ".pkl", "UnsafePickleError", done(array(tup(i(2)), OBJ_DT, i(7))))
add(
    "reconstruct-f8-short-bytes",
    "pickle",
    ".pkl",
    "CorruptPickleError",
    done(array(tup(i(1000000)), F8, by(b"\0" * 8))),
)
add(
    "reconstruct-build-twice",
    "pickle",
    ".pkl",
    "UnsafePickleError",
    done(array(tup(i(1)), F8, by(b"\0" * 8)) + tup(i(1), tup(i(4)), OBJ_DT, F, by(b"\0" * 32)) + b"b"),
)
add(
    "reconstruct-subtype-set",
    "pickle",
    ".pkl",
    "UnsafePickleError",
    done(call(g("numpy.core.multiarray", "_reconstruct"), g("builtins", "set"), tup(i(0)), by(b"b"))),
)
add(
    "frombuffer-object",
    "pickle",
    ".pkl",
    "UnsafePickleError",
    done(call(g("numpy.core.numeric", "_frombuffer"), by(b"\0" * 16), OBJ_DT, tup(i(2)), u("C"))),
)
add(
    "frombuffer-huge-shape",
    "pickle",
    ".pkl",
    "ModelFileError",
    done(call(g("numpy.core.numeric", "_frombuffer"), by(b"\0" * 8), F8, tup(i(10**12)), u("C"))),
)
add(
    "frombuffer-wrong-length",
    "pickle",
    ".pkl",
    "CorruptPickleError",
    done(call(g("numpy.core.numeric", "_frombuffer"), by(b"\0" * 8), F8, tup(i(100)), u("C"))),
)
add(
    "scalar-object",
    "pickle",
    ".pkl",
    "UnsafePickleError",
    done(call(g("numpy.core.multiarray", "scalar"), OBJ_DT, by(b"\0" * 8))),
)
add(
    "scalar-wrong-length",
    "pickle",
    ".pkl",
    "UnsafePickleError",
    done(call(g("numpy.core.multiarray", "scalar"), F8, by(b"\0" * 3))),
)
add(
    "scalar-void-2GB",
    "pickle",
    ".pkl",
    "UnsafePickleError",
    done(call(g("numpy.core.multiarray", "scalar"), dtype("V2000000000", "|"), by(b""))),
)
add("np.void-call-2GB", "pickle", ".pkl", "UnsafePickleError", done(call(g("numpy", "void"), i(2**31))))
add("np.float64-call", "pickle", ".pkl", "UnsafePickleError", done(call(g("numpy", "float64"), u("1"))))
add("dtype-class-call", "pickle", ".pkl", "UnsafePickleError", done(call(g("numpy.dtypes", "ObjectDType"))))
add(
    "dtype-object-field",
    "pickle",
    ".pkl",
    "UnsafePickleError",
    done(dtype("V16", "|", tup(u("a"), u("b")), dct(u("a"), tup(OBJ_DT, i(0)), u("b"), tup(F8, i(8))), 16)),
)
add(
    "dtype-field-outside-item",
    "pickle",
    ".pkl",
    "UnsafePickleError",
    done(dtype("V8", "|", tup(u("a")), dct(u("a"), tup(F8, i(4096))), 8)),
)
add(
    "dtype-field-negative-offset",
    "pickle",
    ".pkl",
    "UnsafePickleError",
    done(dtype("V8", "|", tup(u("a")), dct(u("a"), tup(F8, i(-8))), 8)),
)
add(
    "dtype-object-overlapping-number",
    "pickle",
    ".pkl",
    "UnsafePickleError",
    done(dtype("V8", "|", tup(u("a"), u("b")), dct(u("a"), tup(OBJ_DT, i(0)), u("b"), tup(F8, i(0))), 8)),
)
add(
    "dtype-field-missing",
    "pickle",
    ".pkl",
    "UnsafePickleError",
    done(dtype("V8", "|", tup(u("a")), dct(), 8)),
)
add(
    "dtype-build-twice",
    "pickle",
    ".pkl",
    "UnsafePickleError",
    done(F8 + tup(i(3), u("|"), N, N, N, i(-1), i(-1), i(0)) + b"b"),
)
add(
    "dtype-state-short",
    "pickle",
    ".pkl",
    "UnsafePickleError",
    done(call(g("numpy", "dtype"), u("f8"), F, T) + tup(i(3)) + b"b"),
)
add(
    "dtype-state-not-tuple",
    "pickle",
    ".pkl",
    "UnsafePickleError",
    done(call(g("numpy", "dtype"), u("f8"), F, T) + dct() + b"b"),
)
for spec in ("O16", "a5", "p", "P", "f8,i4", "(2,)f8", "S99999999999", "U-1", "g", "v"):
    add(
        f"dtype-spec-{spec}",
        "pickle",
        ".pkl",
        "UnsafePickleError",
        done(call(g("numpy", "dtype"), u(spec), F, T)),
    )
add(
    "dtype-byteorder",
    "pickle",
    ".pkl",
    "UnsafePickleError",
    done(call(g("numpy", "dtype"), u("f8"), F, T) + tup(i(3), u("?"), N, N, N, i(-1), i(-1), i(0)) + b"b"),
)
add(
    "dtype-subarray-huge",
    "pickle",
    ".pkl",
    "UnsafePickleError",
    done(
        array(
            tup(i(1)),
            call(g("numpy", "dtype"), u("V8"), F, T)
            + tup(i(3), u("|"), tup(F8, tup(i(10**6), i(10**6))), N, N, i(8), i(1), i(0))
            + b"b",
            by(b""),
        )
    ),
)
add(
    "dtype-subarray-object",
    "pickle",
    ".pkl",
    "UnsafePickleError",
    done(
        array(
            tup(i(1)),
            call(g("numpy", "dtype"), u("V16"), F, T)
            + tup(i(3), u("|"), tup(OBJ_DT, tup(i(2))), N, N, i(16), i(1), i(0))
            + b"b",
            by(b""),
        )
    ),
)
add(
    "dtype-self-reference",
    "pickle",
    ".pkl",
    "UnsafePickleError",
    done(
        call(g("numpy", "dtype"), u("V8"), F, T)
        + b"p0\n"
        + tup(i(3), u("|"), tup(b"g0\n", tup(i(1))), N, N, i(8), i(1), i(0))
        + b"b"
    ),
)
add(
    "structured-array-ok",
    "pickle",
    ".pkl",
    "loaded",
    pickle.dumps(np.zeros(3, dtype=[("a", "<f4"), ("b", "<i8"), ("c", "S2")]), protocol=2),
)

# ---- resource bombs
for fn in ("list", "tuple", "set", "frozenset", "dict", "bytes", "bytearray"):
    add(
        f"{fn}-of-range-3e8",
        "pickle",
        ".pkl",
        "UnsafePickleError",
        done(call(g("builtins", fn), call(g("builtins", "range"), i(300_000_000)))),
    )
add("bytes-of-int-1e9", "pickle", ".pkl", "UnsafePickleError", done(call(g("builtins", "bytes"), i(10**9))))
add(
    "ordereddict-of-range",
    "pickle",
    ".pkl",
    "UnsafePickleError",
    done(call(g("collections", "OrderedDict"), call(g("builtins", "range"), i(10**8)))),
)
add(
    "str-of-big-list",
    "pickle",
    ".pkl",
    "UnsafePickleError",
    done(call(g("builtins", "str"), lst(u("x" * 100)))),
)
add(
    "int-million-digits",
    "pickle",
    ".pkl",
    "CorruptPickleError",
    done(call(g("builtins", "int"), u("9" * 100_000))),
)
add("LONG-text-huge", "pickle", ".pkl", "CorruptPickleError", done(b"L" + b"9" * 100_000 + b"L\n"))


def laughs(levels: int = 9, width: int = 10) -> bytes:
    """A list of `width` references to a list of `width` references ... (width**levels leaves)."""
    body = b"(" + i(1) + b"lp0\n0"
    for level in range(1, levels):
        body += b"(" + b"g%d\n" % (level - 1) * width + b"lp%d\n0" % level
    return body + b"g%d\n" % (levels - 1)


def laughs_as(wrapper: Callable[[bytes], bytes]) -> bytes:
    return b"\x80\x02" + wrapper(laughs()) + b"."


add("billion-laughs-plain", "pickle", ".pkl", "any", done(laughs()))
add(
    "billion-laughs-into-chumpy",
    "pickle",
    ".pkl",
    "ResourceLimitError",
    lambda _d: _chumpy_state_with_raw(laughs()),
)
add(
    "billion-laughs-into-sparse",
    "pickle",
    ".pkl",
    "ModelFileError",
    lambda _d: (
        b"("
        + g("scipy.sparse._csr", "csr_matrix")
        + b"o"
        + laughs().replace(b"(", b"(", 1)
        + b"p99\n0"
        + dct(u("_shape"), tup(i(3), i(3)), u("data"), b"g8\n", u("indices"), b"g8\n", u("indptr"), b"g8\n")
        + b"b."
    ),
)


def _chumpy_state_with_raw(raw: bytes) -> bytes:
    # chumpy.ch.Ch via copyreg._reconstructor(cls, object, None), then BUILD {'x': <raw>}
    return (
        call(g("copy_reg", "_reconstructor"), g("chumpy.ch", "Ch"), g("__builtin__", "object"), N)
        + b"p100\n0"
        + raw
        + b"p101\n0g100\n"
        + dct(u("x"), b"g8\n")
        + b"b."
    )


def chumpy_case(id: str, node, expect: str = "ResourceLimitError") -> None:
    add(
        f"chumpy-{id}", "pickle", ".pkl", expect, lambda _d: make_chumpy_pickle_bytes({"v": node}, protocol=2)
    )


chumpy_case("Tile-huge-reps", ch_op("chumpy.reordering.Tile", a=np.ones(3), reps=(10**6, 10**6)))
chumpy_case("Tile-negative", ch_op("chumpy.reordering.Tile", a=np.ones(3), reps=(-5,)), "CorruptPickleError")
chumpy_case("Repeat-huge", ch_op("chumpy.reordering.Repeat", a=np.ones(3), repeats=10**10))
chumpy_case("Diag-huge", ch_op("chumpy.reordering.Diag", a=np.ones(100_000), k=0))
chumpy_case("DiagFlat-huge-k", ch_op("chumpy.reordering.DiagFlat", a=np.ones(3), k=10**6))
COLUMN, ROW, SQUARE = ch(np.ones((100_000, 1))), ch(np.ones((1, 100_000))), ch(np.ones((2000, 2000)))
chumpy_case("add-broadcast", ch_op("chumpy.ch_ops.add", a=COLUMN, b=ROW))
chumpy_case("multiply-broadcast", ch_op("chumpy.ch_ops.multiply", a=COLUMN, b=ch(np.ones(30_000))))
chumpy_case("dot-outer", ch_op("chumpy.ch_ops.dot", a=COLUMN, b=ROW))
chumpy_case("dot-flops", ch_op("chumpy.ch_ops.dot", a=SQUARE, b=ch(np.ones((2000, 2000)))))
chumpy_case(
    "Select-range", ch_op("chumpy.reordering.Select", a=np.ones(3), idxs=range(10**9)), "ModelFileError"
)
chumpy_case(
    "Select-out-of-range",
    ch_op("chumpy.reordering.Select", a=np.ones(3), idxs=np.array([7])),
    "UnsafePickleError",
)
chumpy_case("unknown-op", ch_op("chumpy.ch_ops.evil", x=np.ones(3)), "UnsafePickleError")
chumpy_case(
    "LogicFunc-getattr", ch_op("chumpy.logic.LogicFunc", a=np.ones(3), funcname="save"), "UnsafePickleError"
)
chumpy_case("self-cycle-free-ok", ch_op("chumpy.ch_ops.add", a=ch(np.ones(3)), b=2.0), "loaded")
add(
    "chumpy-concatenate-many",
    "pickle",
    ".pkl",
    "ResourceLimitError",
    lambda _d: make_chumpy_pickle_bytes(
        {
            "v": ch_op(
                "chumpy.reordering.Concatenate",
                dterms=[f"t{k}" for k in range(3000)],
                axis=0,
                **{f"t{k}": ch(_BIG) for k in range(3000)},
            )
        },
        protocol=2,
    ),
)
_BIG = np.ones(100_000)

for shape, label in (
    ((10**12,), "1e12"),
    ((-1,), "negative"),
    (tuple([1] * 100), "ndim100"),
    ((2**31, 2**31), "2^62"),
):
    add(
        f"reconstruct-shape-{label}",
        "pickle",
        ".pkl",
        "ModelFileError",
        done(array(tup(*[i(n) for n in shape]), F8, by(b""))),
    )
add("reconstruct-shape-float", "pickle", ".pkl", "ModelFileError", done(array(tup(b"F2.5\n"), F8, by(b""))))
for op, fmt, label in (
    (b"\x8e", "<Q", "BINBYTES8"),
    (b"\x8d", "<Q", "BINUNICODE8"),
    (b"\x96", "<Q", "BYTEARRAY8"),
    (b"\x8b", "<i", "LONG4"),
    (b"T", "<i", "BINSTRING"),
    (b"B", "<I", "BINBYTES"),
    (b"X", "<I", "BINUNICODE"),
    (b"\x95", "<Q", "FRAME"),
):
    for n in (2**31 - 1, 2**30) if fmt != "<Q" else (2**60, 2**31):
        add(
            f"{label}-claims-{n}",
            "pickle",
            ".pkl",
            "CorruptPickleError",
            b"\x80\x04" + op + struct.pack(fmt, n) + b"abc.",
        )
add("BINSTRING-negative", "pickle", ".pkl", "CorruptPickleError", b"T" + struct.pack("<i", -5) + b"abc.")
add("deep-nesting-100k", "pickle", ".pkl", "CorruptPickleError", b"]" * 100_000 + b"a" * 99_999 + b".")
add("mark-depth-100k", "pickle", ".pkl", "ResourceLimitError", b"(" * 100_000 + b".")
add("memo-flood", "pickle", ".pkl", "loaded", b"N" + b"\x94" * 100_000 + b".")
add("memo-flood-over", "pickle", ".pkl", "ResourceLimitError", b"N" + b"\x94" * 10_000_000 + b".")
add("opcode-flood", "pickle", ".pkl", "ResourceLimitError", b"N0" * 5_000_000 + b"N.")
add("long-binput-huge-index", "pickle", ".pkl", "loaded", b"Nr\xff\xff\xff\xff.")
add("sparse-huge-shape-empty", "pickle", ".pkl", "loaded", pickle.dumps(sp.csr_matrix((3, 10**9)), 2))
add("sparse-bad-indices", "pickle", ".pkl", "CorruptPickleError", lambda _d: _bad_sparse())


def _bad_sparse() -> bytes:
    m = sp.csr_matrix(np.eye(3))
    m.indices = np.array([0, 1, 7], dtype=m.indices.dtype)
    return pickle.dumps(m, protocol=4)


add(
    "defaultdict-factory",
    "pickle",
    ".pkl",
    "UnsafePickleError",
    done(call(g("collections", "defaultdict"), g("numpy", "float64"))),
)

# ---- code execution (sentinel)
SENTINEL_NAME = "SENTINEL"


def sentinel_cases() -> None:
    from test_safe_pickle import build_payloads

    for name, _, _, _ in build_payloads(Path("/nonexistent")):

        def make(d: Path, name=name) -> bytes:
            for n, _, raw, _ in build_payloads(d):
                if n == name:
                    return raw.replace(str(d / "sentinel").encode(), str(d / SENTINEL_NAME).encode())
            raise KeyError(name)

        add(f"corpus-{name}", "pickle", ".pkl", "UnsafePickleError", make)


sentinel_cases()


def touch(d: Path) -> bytes:
    return u(f"touch {d / SENTINEL_NAME}")


add("INST-os.system", "pickle", ".pkl", "UnsafePickleError", lambda d: b"(" + touch(d) + b"ios\nsystem\n.")
add(
    "OBJ-os.system",
    "pickle",
    ".pkl",
    "UnsafePickleError",
    lambda d: b"(" + g("os", "system") + touch(d) + b"o.",
)
add(
    "NEWOBJ-OrderedDict",
    "pickle",
    ".pkl",
    "UnsafePickleError",
    done(b"\x80\x02" + g("collections", "OrderedDict") + b")\x81"),
)
add(
    "NEWOBJ_EX-popen",
    "pickle",
    ".pkl",
    "UnsafePickleError",
    lambda d: b"\x80\x04" + g("subprocess", "Popen") + lst(touch(d)) + b"}\x92.",
)
add("EXT1-unregistered", "pickle", ".pkl", "CorruptPickleError", b"\x80\x02\x82\x01.")
add("scipy-non-class", "pickle", ".pkl", "UnsafePickleError", done(call(g("scipy.sparse._csr", "np"))))
add(
    "scipy-sparse-function",
    "pickle",
    ".pkl",
    "UnsafePickleError",
    done(call(g("scipy.sparse", "load_npz"), u("x"))),
)
add("chumpy-dunder", "pickle", ".pkl", "UnsafePickleError", done(g("chumpy.ch", "__class__")))
add("chumpy-deep-module", "pickle", ".pkl", "UnsafePickleError", done(g("chumpy.ch.os", "system")))
add("chumpy-class-called", "pickle", ".pkl", "UnsafePickleError", done(call(g("chumpy.ch", "Ch"), i(1))))
add(
    "BUILD-on-guard",
    "pickle",
    ".pkl",
    "UnsafePickleError",
    done(g("copy_reg", "_reconstructor") + dct(u("call"), g("os", "system")) + b"b"),
)
add(
    "BUILD-on-guard-slots",
    "pickle",
    ".pkl",
    "UnsafePickleError",
    done(g("numpy.core.multiarray", "scalar") + tup(N, dct(u("call"), i(1))) + b"b"),
)
add("BUILD-on-int", "pickle", ".pkl", "UnsafePickleError", done(i(1) + dct(u("a"), i(1)) + b"b"))
add("BUILD-on-dict", "pickle", ".pkl", "UnsafePickleError", done(dct() + dct(u("__class__"), i(1)) + b"b"))
add("BINPERSID", "pickle", ".pkl", "UnsafePickleError", b"\x80\x02" + u("storage") + b"Q.")
add(
    "reconstruct-chumpy-subtype",
    "pickle",
    ".pkl",
    "UnsafePickleError",
    done(call(g("numpy.core.multiarray", "_reconstruct"), g("chumpy.ch", "Ch"), tup(i(0)), by(b"b"))),
)
add(
    "copyreg-chumpy-dict-base",
    "pickle",
    ".pkl",
    "UnsafePickleError",
    done(call(g("copy_reg", "_reconstructor"), g("chumpy.ch", "Ch"), g("__builtin__", "dict"), dct())),
)
for codec in ("hex", "rot13", "zlib", "base64", "uu"):
    add(
        f"codecs-{codec}",
        "pickle",
        ".pkl",
        "UnsafePickleError",
        done(call(g("_codecs", "encode"), u("x"), u(codec))),
    )
for mod, name in (
    ("__builtin__", "eval"),
    ("__builtin__", "apply"),
    ("torch._utils", "_rebuild_tensor_v2"),
    ("numpy.lib.format", "read_array"),
    ("numpy", "fromfile"),
    ("numpy.ctypeslib", "as_array"),
    ("ctypes", "CDLL"),
    ("cPickle", "loads"),
    ("operator", "getitem"),
    ("numpy.f2py", "compile"),
    ("builtins", "getattr"),
    ("posix", "system"),
    ("shutil", "rmtree"),
    ("io", "FileIO"),
    ("numpy", "save"),
    ("webbrowser", "open"),
):
    add(
        f"global-{mod}.{name}",
        "pickle",
        ".pkl",
        "UnsafePickleError",
        lambda d, mod=mod, name=name: done(call(g(mod, name), touch(d))),
    )

# ---- malformed streams
VALID = pickle.dumps(
    {
        "v_template": np.arange(30.0).reshape(10, 3),
        "f": np.arange(9).reshape(3, 3),
        "meta": {"n": [1, 2, (3, 4)], "s": "x" * 50},
    },
    protocol=2,
)
VALID_CHUMPY = make_chumpy_pickle_bytes(smpl_like_model(), wrap=("shapedirs", "v_template"), protocol=2)
add("empty", "pickle", ".pkl", "CorruptPickleError", b"")
add("text", "pickle", ".pkl", "CorruptPickleError", b"this is not a pickle\n")
add("proto-99", "pickle", ".pkl", "CorruptPickleError", b"\x80\x63N.")
add("pop-empty", "pickle", ".pkl", "CorruptPickleError", b"0.")
add("setitems-on-int", "pickle", ".pkl", "CorruptPickleError", i(1) + b"(" + i(1) + i(2) + b"u.")
add("append-to-int", "pickle", ".pkl", "CorruptPickleError", i(1) + i(2) + b"a.")
add("get-missing", "pickle", ".pkl", "CorruptPickleError", b"g7\n.")
add("stop-empty", "pickle", ".pkl", "CorruptPickleError", b".")
add("reduce-args-not-tuple", "pickle", ".pkl", "CorruptPickleError", g("builtins", "set") + i(1) + b"R.")
for cut in (3, 10, 50, 200, len(VALID) - 1):
    add(f"truncated-{cut}", "pickle", ".pkl", "ModelFileError", VALID[:cut])
for seed in range(10):
    add(
        f"random-bytes-{seed}",
        "pickle",
        ".pkl",
        "any",
        np.random.default_rng(seed).integers(0, 256, 64 + 97 * seed, dtype=np.uint8).tobytes(),
    )


def mutate(raw: bytes, seed: int, flips: int) -> bytes:
    rng = np.random.default_rng(seed)
    data = bytearray(raw)
    for pos in rng.integers(0, len(data), flips):
        data[pos] = int(rng.integers(0, 256))
    return bytes(data)


for seed in range(16):
    add(f"mutated-pickle-{seed}", "pickle", ".pkl", "any", mutate(VALID, seed, 1 + seed % 4))
for seed in range(12):
    add(f"mutated-chumpy-{seed}", "pickle", ".pkl", "any", mutate(VALID_CHUMPY, 100 + seed, 1 + seed % 3))
add("valid-chumpy-smpl", "pickle", ".pkl", "loaded", VALID_CHUMPY)


# --------------------------------------------------------------------------- .npy
def npy(header: str, data: bytes = b"", version: int = 1) -> bytes:
    h = header.encode("latin1")
    h += b" " * (63 - (len(h) + 10) % 64) + b"\n"
    size = struct.pack("<H", len(h)) if version == 1 else struct.pack("<I", len(h))
    return b"\x93NUMPY" + bytes([version, 0]) + size + h + data


OBJ_HEADER = "{'descr': '|O', 'fortran_order': False, 'shape': (), }"
add(
    "npy-object-os.system",
    "npy",
    ".npy",
    "UnsafePickleError",
    lambda d: npy(OBJ_HEADER, done(call(g("os", "system"), touch(d)))),
)
add(
    "npy-object-pointer-forge",
    "npy",
    ".npy",
    "UnsafePickleError",
    npy(OBJ_HEADER, done(array(tup(), OBJ_DT, by(struct.pack("<Q", 0x4141414141))))),
)
add(
    "npy-object-list-range",
    "npy",
    ".npy",
    "UnsafePickleError",
    npy(OBJ_HEADER, done(call(g("builtins", "list"), call(g("builtins", "range"), i(3 * 10**8))))),
)
add(
    "npy-object-payload-is-dict",
    "npy",
    ".npy",
    "CorruptPickleError",
    npy(OBJ_HEADER, pickle.dumps({"a": 1}, 2)),
)
add(
    "npy-object-truncated",
    "npy",
    ".npy",
    "CorruptPickleError",
    npy(OBJ_HEADER, pickle.dumps({"a": 1}, 2)[:5]),
)
add(
    "npy-header-1e14",
    "npy",
    ".npy",
    "ResourceLimitError",
    npy("{'descr': '<f8', 'fortran_order': False, 'shape': (100000000000000,), }"),
)
add(
    "npy-header-lies-short",
    "npy",
    ".npy",
    "ModelFileError",
    npy("{'descr': '<f8', 'fortran_order': False, 'shape': (10,), }", b"\0" * 8),
)
add(
    "npy-header-lies-long",
    "npy",
    ".npy",
    "ModelFileError",
    npy("{'descr': '<f8', 'fortran_order': False, 'shape': (1,), }", b"\0" * 800),
)
add(
    "npy-void-2GB",
    "npy",
    ".npy",
    "ResourceLimitError",
    npy("{'descr': '|V2000000000', 'fortran_order': False, 'shape': (), }"),
)
add(
    "npy-structured-object",
    "npy",
    ".npy",
    "UnsafePickleError",
    npy("{'descr': [('a', '|O')], 'fortran_order': False, 'shape': (), }", pickle.dumps(1)),
)
add("npy-header-not-dict", "npy", ".npy", "ModelFileError", npy("[1, 2, 3]"))
add("npy-header-code", "npy", ".npy", "ModelFileError", npy("__import__('os').system('true')"))
add(
    "npy-header-extra-key",
    "npy",
    ".npy",
    "ModelFileError",
    npy("{'descr': '<f8', 'fortran_order': False, 'shape': (1,), 'x': 1}", b"\0" * 8),
)
add("npy-header-giant", "npy", ".npy", "ModelFileError", npy(" " * 70000, version=2))
add("npy-version-9", "npy", ".npy", "ModelFileError", b"\x93NUMPY\x09\x00" + b"\0" * 100)
add(
    "npy-fortran-str",
    "npy",
    ".npy",
    "ModelFileError",
    npy("{'descr': '<f8', 'fortran_order': 'yes', 'shape': (1,), }", b"\0" * 8),
)
add(
    "npy-ndim-40",
    "npy",
    ".npy",
    "ResourceLimitError",
    npy("{'descr': '<f8', 'fortran_order': False, 'shape': (" + "1," * 40 + "), }", b"\0" * 8),
)
add("npy-magic-only", "npy", ".npy", "ModelFileError", b"\x93NUMPY")
add("npy-random", "npy", ".npy", "ModelFileError", np.random.default_rng(5).bytes(300))
add(
    "npy-plain-ok",
    "npy",
    ".npy",
    "loaded",
    npy("{'descr': '<f4', 'fortran_order': True, 'shape': (2, 2), }", b"\0" * 16),
)


# --------------------------------------------------------------------------- .npz models
def small_model_arrays() -> dict[str, np.ndarray]:
    from hack_model.io.npz import model_to_arrays
    from hack_model.io.smpl_pickle import smpl_arrays_to_model

    return model_to_arrays(smpl_arrays_to_model(smpl_like_model()))


def npz_bytes(d: Path, members: dict[str, bytes], compression: int = zipfile.ZIP_STORED) -> bytes:
    path = d / "tmp.zip"
    with zipfile.ZipFile(path, "w", compression) as z:
        for name, data in members.items():
            z.writestr(name, data)
    data = path.read_bytes()
    path.unlink()
    return data


def npy_of(arr: np.ndarray) -> bytes:
    import io

    buf = io.BytesIO()
    np.lib.format.write_array(buf, arr, allow_pickle=arr.dtype.hasobject)
    return buf.getvalue()


def model_npz(d: Path, change: dict[str, np.ndarray | bytes | None]) -> bytes:
    arrays = small_model_arrays()
    members = {f"{k}.npy": npy_of(v) for k, v in arrays.items()}
    for k, v in change.items():
        if v is None:
            members.pop(f"{k}.npy", None)
        else:
            members[f"{k}.npy"] = v if isinstance(v, bytes) else npy_of(v)
    return npz_bytes(d, members, zipfile.ZIP_DEFLATED)


def patch_sizes(data: bytes, uncompressed: int) -> bytes:
    out = bytearray(data)
    pos = out.find(b"PK\x01\x02")
    while pos >= 0:
        out[pos + 24 : pos + 28] = struct.pack("<I", uncompressed)
        pos = out.find(b"PK\x01\x02", pos + 4)
    pos = out.find(b"PK\x03\x04")
    out[pos + 22 : pos + 26] = struct.pack("<I", uncompressed)
    return bytes(out)


def bomb(d: Path, megabytes: int) -> bytes:
    header = npy(f"{{'descr': '|u1', 'fortran_order': False, 'shape': ({megabytes << 20},), }}")
    comp = zlib.compressobj(9, zlib.DEFLATED, -15)
    chunks = [comp.compress(header)]
    zero = bytes(1 << 20)
    for _ in range(megabytes):
        chunks.append(comp.compress(zero))
    chunks.append(comp.flush())
    body = b"".join(chunks)
    size = len(header) + (megabytes << 20)
    crc = zlib.crc32(zero * 0)  # placeholder: refusal comes before the CRC is checked
    name = b"format_name.npy"
    local = struct.pack("<4sHHHHHIIIHH", b"PK\x03\x04", 20, 0, 8, 0, 0, crc, len(body), size, len(name), 0)
    central = struct.pack(
        "<4sHHHHHHIIIHHHHHII",
        b"PK\x01\x02",
        20,
        20,
        0,
        8,
        0,
        0,
        crc,
        len(body),
        size,
        len(name),
        0,
        0,
        0,
        0,
        0,
        0,
    )
    end = struct.pack(
        "<4sHHHHIIH",
        b"PK\x05\x06",
        0,
        0,
        1,
        1,
        len(central) + len(name),
        len(local) + len(name) + len(body),
        0,
    )
    return local + name + body + central + name + end


add("npz-random-bytes", "model", ".npz", "ModelFileError", np.random.default_rng(1).bytes(500), needs="npz")
add("npz-pickle-named-npz", "model", ".npz", "ModelFileError", pickle.dumps({"a": 1}))
add("npz-empty-file", "model", ".npz", "ModelFileError", b"")
add("npz-empty-zip", "model", ".npz", "ModelFileError", lambda d: npz_bytes(d, {}))
add("npz-member-not-npy", "model", ".npz", "ModelFileError", lambda d: npz_bytes(d, {"a.npy": b"hello"}))
add(
    "npz-member-header-1e14",
    "model",
    ".npz",
    "ResourceLimitError",
    lambda d: npz_bytes(
        d, {"format_name.npy": npy("{'descr': '<f8', 'fortran_order': False, 'shape': (100000000000000,), }")}
    ),
)
add("npz-deflate-bomb-160MB", "model", ".npz", "ResourceLimitError", lambda d: bomb(d, 160))
add(
    "npz-directory-claims-1.5GB",
    "model",
    ".npz",
    "ResourceLimitError",
    lambda d: patch_sizes(npz_bytes(d, {"format_name.npy": npy_of(np.array("hack-model"))}), 1_500_000_000),
)
add(
    "npz-directory-lies-small",
    "model",
    ".npz",
    "ModelFileError",
    lambda d: patch_sizes(npz_bytes(d, {"format_name.npy": npy_of(np.zeros(1000))}), 200),
)
add(
    "npz-member-object",
    "model",
    ".npz",
    "ModelFileError",
    lambda d: npz_bytes(d, {"format_name.npy": npy_of(np.array({"a": 1}, dtype=object))}),
    needs="pickled objects",
)
add(
    "npz-member-object-exec",
    "model",
    ".npz",
    "ModelFileError",
    lambda d: npz_bytes(d, {"x.npy": npy(OBJ_HEADER, done(call(g("os", "system"), touch(d))))}),
)
add(
    "npz-metadata-0.8MB",
    "model",
    ".npz",
    "ResourceLimitError",
    lambda d: model_npz(d, {"metadata": np.array(json.dumps({"a": "x" * 800_000}))}),
)
add(
    "npz-metadata-deep-json",
    "model",
    ".npz",
    "ModelFileError",
    lambda d: model_npz(d, {"metadata": np.array("[" * 30_000 + "]" * 30_000)}),
)
add(
    "npz-metadata-not-json",
    "model",
    ".npz",
    "ModelFileError",
    lambda d: model_npz(d, {"metadata": np.array("{x")}),
)
add(
    "npz-metadata-list",
    "model",
    ".npz",
    "ModelFileError",
    lambda d: model_npz(d, {"metadata": np.array("[1]")}),
)
add(
    "npz-metadata-array",
    "model",
    ".npz",
    "ModelFileError",
    lambda d: model_npz(d, {"metadata": np.array(["{}"] * 100000)}),
)
add(
    "npz-format-name-huge",
    "model",
    ".npz",
    "ModelFileError",
    lambda d: model_npz(d, {"format_name": np.array(["hack-model"] * 10**6)}),
)
add(
    "npz-format-version-text",
    "model",
    ".npz",
    "ModelFileError",
    lambda d: model_npz(d, {"format_version": np.array("1")}),
)
add(
    "npz-format-version-missing",
    "model",
    ".npz",
    "ModelFileError",
    lambda d: model_npz(d, {"format_version": None}),
)
add(
    "npz-names-huge",
    "model",
    ".npz",
    "ModelFileError",
    lambda d: model_npz(d, {"bone_names": np.array(["x" * 5000] * 4)}),
)
add(
    "npz-units-huge",
    "model",
    ".npz",
    "ModelFileError",
    lambda d: model_npz(d, {"units": np.array("m" * 1000)}),
)
add(
    "npz-template-wrong-shape",
    "model",
    ".npz",
    "ModelFileError",
    lambda d: model_npz(d, {"template_vertices": np.zeros((12, 2), np.float32)}),
)
add(
    "npz-faces-out-of-range",
    "model",
    ".npz",
    "ModelFileError",
    lambda d: model_npz(d, {"polygon_vertex_indices": np.full(72, 10**6, np.int32)}),
)
add(
    "npz-template-missing",
    "model",
    ".npz",
    "ModelFileError",
    lambda d: model_npz(d, {"template_vertices": None}),
)
add(
    "npz-template-strings",
    "model",
    ".npz",
    "ModelFileError",
    lambda d: model_npz(d, {"template_vertices": np.array([["a"] * 3] * 12)}),
)
add(
    "npz-template-complex",
    "model",
    ".npz",
    "any",
    lambda d: model_npz(d, {"template_vertices": np.zeros((12, 3), np.complex64)}),
)
add(
    "npz-weights-nan",
    "model",
    ".npz",
    "any",
    lambda d: model_npz(d, {"skinning_weights": np.full((12, 4), np.nan, np.float32)}),
)
add(
    "npz-parents-cycle",
    "model",
    ".npz",
    "ModelFileError",
    lambda d: model_npz(d, {"bone_parents": np.array([-1, 2, 1, 0], np.int32)}),
)
add(
    "npz-duplicate-member",
    "model",
    ".npz",
    "ModelFileError",
    lambda d: npz_bytes(d, {"a.npy": npy_of(np.zeros(1)), "a": npy_of(np.zeros(1))}),
)
add(
    "npz-crc-corrupt",
    "model",
    ".npz",
    "ModelFileError",
    lambda d: mutate_last(npz_bytes(d, {"format_name.npy": npy_of(np.zeros(1000))}, zipfile.ZIP_STORED)),
)
add("npz-valid-small", "model", ".npz", "loaded", lambda d: model_npz(d, {}))
for seed in range(8):
    add(
        f"npz-mutated-{seed}",
        "model",
        ".npz",
        "any",
        lambda d, seed=seed: mutate(model_npz(d, {}), seed, 1 + seed),
    )


def mutate_last(data: bytes) -> bytes:
    out = bytearray(data)
    pos = out.find(b"PK\x01\x02") - 20
    out[pos] ^= 0xFF
    return bytes(out)


# ---- smplx pickles as models
def smpl_pickle(change: dict) -> bytes:
    model = smpl_like_model()
    model.update(change)
    return pickle.dumps({k: v for k, v in model.items() if v is not None}, protocol=2)


add(
    "pkl-no-joints",
    "model",
    ".pkl",
    "ModelFileError",
    smpl_pickle(
        {
            "kintree_table": np.zeros((2, 0), np.int64),
            "weights": np.zeros((12, 0)),
            "posedirs": np.zeros((12, 3, 0)),
            "J_regressor": sp.csc_matrix((0, 12)),
        }
    ),
    needs="no joints",
)
add(
    "pkl-faces-out-of-range",
    "model",
    ".pkl",
    "ModelFileError",
    smpl_pickle({"f": np.full((4, 3), 99, np.uint32)}),
    needs="f",
)
add(
    "pkl-nan-template",
    "model",
    ".pkl",
    "ModelFileError",
    smpl_pickle({"v_template": np.full((12, 3), np.nan)}),
)
add(
    "pkl-regressor-huge-sparse",
    "model",
    ".pkl",
    "ModelFileError",
    smpl_pickle({"J_regressor": sp.csc_matrix((10**6, 10**6))}),
)
add("pkl-missing-keys", "model", ".pkl", "ModelFileError", smpl_pickle({"weights": None}), needs="weights")
add("pkl-not-dict", "model", ".pkl", "ModelFileError", pickle.dumps([1, 2, 3], 2))
add(
    "pkl-kintree-strings",
    "model",
    ".pkl",
    "ModelFileError",
    smpl_pickle({"kintree_table": np.array([["a"] * 4] * 2)}),
)
add(
    "pkl-posedirs-object",
    "model",
    ".pkl",
    "ModelFileError",
    smpl_pickle({"posedirs": np.array([{"a": 1}], dtype=object)}),
)
add(
    "pkl-template-laughs",
    "model",
    ".pkl",
    "ModelFileError",
    lambda _d: b"\x80\x02(" + u("v_template") + laughs() + b"d.",
)
add("pkl-exec", "model", ".pkl", "UnsafePickleError", lambda d: done(call(g("os", "system"), touch(d))))
add("pkl-valid", "model", ".pkl", "loaded", smpl_pickle({}))
add("model-unknown-suffix", "model", ".txt", "ModelFileError", b"hello")


# --------------------------------------------------------------------------- parameter files
def params_npz(d: Path, arrays: dict[str, np.ndarray | bytes]) -> bytes:
    return npz_bytes(d, {f"{k}.npy": v if isinstance(v, bytes) else npy_of(v) for k, v in arrays.items()})


add(
    "params-object",
    "params",
    ".npz",
    "ModelFileError",
    lambda d: params_npz(d, {"shape": np.array([{"x": 1}], dtype=object)}),
    needs="pickled objects",
)
add(
    "params-strings",
    "params",
    ".npz",
    "ModelFileError",
    lambda d: params_npz(d, {"shape": np.array(["a", "b"])}),
)
add(
    "params-complex",
    "params",
    ".npz",
    "ModelFileError",
    lambda d: params_npz(d, {"shape": np.zeros(3, complex)}),
)
add("params-nan", "params", ".npz", "ModelFileError", lambda d: params_npz(d, {"shape": np.full(3, np.nan)}))
add(
    "params-dims",
    "params",
    ".npz",
    "ModelFileError",
    lambda d: params_npz(d, {"shape": np.zeros((1, 1, 1, 3))}),
)
add("params-unknown", "params", ".npz", "ModelFileError", lambda d: params_npz(d, {"evil": np.zeros(3)}))
add(
    "params-header-1e14",
    "params",
    ".npz",
    "ResourceLimitError",
    lambda d: params_npz(
        d, {"shape": npy("{'descr': '<f8', 'fortran_order': False, 'shape': (100000000000000,), }")}
    ),
)
add("params-random", "params", ".npz", "ModelFileError", np.random.default_rng(9).bytes(1000))
add(
    "params-structured",
    "params",
    ".npz",
    "ModelFileError",
    lambda d: params_npz(d, {"shape": np.zeros(3, dtype=[("a", "f4")])}),
)
add(
    "params-extra-object",
    "params",
    ".npz",
    "ModelFileError",
    lambda d: params_npz(d, {"scale": np.array([None], dtype=object)}),
)
add(
    "params-twice",
    "params",
    ".npz",
    "ModelFileError",
    lambda d: params_npz(d, {"shape": np.zeros(3), "beta": np.zeros(3)}),
)
add(
    "params-ok",
    "params",
    ".npz",
    "loaded",
    lambda d: params_npz(d, {"shape": np.zeros((2, 3)), "tau": np.zeros(2)}),
)

# --------------------------------------------------------------------------- OBJ meshes
OBJ_OK = "v 0 0 0\nv 1 0 0\nv 0 1 0\nf 1 2 3\n"
for name, text in {
    "face-out-of-range": OBJ_OK + "f 1 2 9\n",
    "face-negative-beyond": OBJ_OK + "f -1 -2 -9\n",
    "face-zero-index": OBJ_OK + "f 0 1 2\n",
    "face-huge-index": OBJ_OK + "f 1 2 99999999999999999999999999\n",
    "face-two-corners": OBJ_OK + "f 1 2\n",
    "face-float-index": OBJ_OK + "f 1 2 2.5\n",
    "vertex-two-coords": "v 0 0\n" + OBJ_OK,
    "vertex-nan": "v nan 0 0\n" + OBJ_OK,
    "vertex-inf": "v 1e400 0 0\n" + OBJ_OK,
    "vertex-text": "v a b c\n" + OBJ_OK,
    "vt-one-coord": OBJ_OK + "vt 0.5\n",
    "empty": "",
    "only-comments": "# nothing\n",
}.items():
    add(f"obj-{name}", "obj", ".obj", "ModelFileError", text.encode())
add("obj-binary-garbage", "obj", ".obj", "ModelFileError", np.random.default_rng(3).bytes(2000))
add("obj-ok", "obj", ".obj", "loaded", OBJ_OK.encode())


# --------------------------------------------------------------------------- scans
def ply(vertices: str, faces: str = "", nv: int = 3, nf: int = 0, extra: str = "") -> bytes:
    head = (
        f"ply\nformat ascii 1.0\nelement vertex {nv}\nproperty float x\nproperty float y\nproperty float z\n"
    )
    if nf:
        head += f"element face {nf}\nproperty list uchar int vertex_indices\n"
    return (head + extra + "end_header\n" + vertices + faces).encode()


V3 = "0 0 0\n10 0 0\n0 10 0\n"
for name, data, expect in (
    ("ply-face-out-of-range", ply(V3, "3 0 1 9\n", 3, 1), "ScanError"),
    ("ply-face-negative", ply(V3, "3 0 1 -4\n", 3, 1), "ScanError"),
    ("ply-claims-1e12-vertices", ply(V3, nv=10**12), "ScanError"),
    ("ply-claims-1e9-faces", ply(V3, "3 0 1 2\n", 3, 10**9), "ScanError"),
    ("ply-no-end-header", b"ply\nformat ascii 1.0\nelement vertex 3\n" + b"x" * 70000, "ScanError"),
    ("ply-nan-mesh-vertex", ply("nan 0 0\n10 0 0\n0 10 0\n", "3 0 1 2\n", 3, 1), "ScanError"),
    ("ply-no-vertices", ply("", nv=0), "ScanError"),
    ("ply-all-nan-cloud", ply("nan nan nan\n" * 3), "ScanError"),
    ("ply-garbage-values", ply("a b c\n" * 3), "ScanError"),
    ("ply-random", np.random.default_rng(4).bytes(3000), "ScanError"),
    ("ply-negative-count", ply(V3, nv=-5), "ScanError"),
    ("ply-cloud-with-nan-rows", ply(V3 + "nan 1 1\n", nv=4), "loaded"),
):
    add(f"scan-{name}", "scan", ".ply", expect, data)
add(
    "scan-ply-binary-claims",
    "scan",
    ".ply",
    "ScanError",
    b"ply\nformat binary_little_endian 1.0\nelement vertex 1000000000\nproperty float x\nproperty float y\n"
    b"property float z\nend_header\n" + b"\0" * 36,
)
add(
    "scan-ply-binary-face-out-of-range",
    "scan",
    ".ply",
    "ScanError",
    b"ply\nformat binary_little_endian 1.0\nelement vertex 3\nproperty float x\nproperty float y\n"
    b"property float z\nelement face 1\nproperty list uchar int vertex_indices\nend_header\n"
    + np.array([[0, 0, 0], [10, 0, 0], [0, 10, 0]], "<f4").tobytes()
    + b"\x03"
    + np.array([0, 1, 77], "<i4").tobytes(),
)
add("scan-xyz-text", "scan", ".xyz", "ScanError", b"hello world\n")
add("scan-xyz-two-columns", "scan", ".xyz", "ScanError", b"1 2\n3 4\n")
add("scan-xyz-all-nan", "scan", ".xyz", "ScanError", b"nan nan nan\n" * 5)
add("scan-xyz-empty", "scan", ".xyz", "ScanError", b"")
add("scan-pts-binary", "scan", ".pts", "ScanError", np.random.default_rng(6).bytes(500))
add("scan-npy-2-columns", "scan", ".npy", "ScanError", npy_of(np.zeros((5, 2))))
add("scan-npy-object", "scan", ".npy", "ScanError", npy_of(np.array([None, 1], dtype=object)))
add(
    "scan-npy-header-1e14",
    "scan",
    ".npy",
    "ScanError",
    npy("{'descr': '<f8', 'fortran_order': False, 'shape': (100000000000000, 3), }"),
)
add("scan-npy-all-inf", "scan", ".npy", "ScanError", npy_of(np.full((5, 3), np.inf)))
add("scan-npy-strings", "scan", ".npy", "ScanError", npy_of(np.array([["a", "b", "c"]])))
add("scan-stl-binary-claims", "scan", ".stl", "ScanError", b"\0" * 80 + struct.pack("<I", 10**9) + b"\0" * 50)
add("scan-stl-truncated", "scan", ".stl", "ScanError", b"solid x\nfacet normal 0 0 1\nouter loop\nvertex 0 0")
add("scan-off-claims", "scan", ".off", "ScanError", b"OFF\n1000000000 1000000000 0\n0 0 0\n")
add(
    "scan-off-face-out-of-range",
    "scan",
    ".off",
    "ScanError",
    b"OFF\n3 1 0\n0 0 0\n10 0 0\n0 10 0\n3 0 1 42\n",
)
add("scan-obj-face-out-of-range", "scan", ".obj", "ScanError", (OBJ_OK + "f 1 2 40\n").encode())
add("scan-glb-garbage", "scan", ".glb", "ScanError", b"glTF" + np.random.default_rng(7).bytes(200))
add(
    "scan-gltf-bogus",
    "scan",
    ".gltf",
    "ScanError",
    json.dumps(
        {
            "asset": {"version": "2.0"},
            "accessors": [{"count": 10**12, "componentType": 5126, "type": "VEC3", "bufferView": 0}],
            "meshes": [{"primitives": [{"attributes": {"POSITION": 0}}]}],
            "bufferViews": [{"buffer": 0, "byteLength": 12}],
            "buffers": [{"byteLength": 12, "uri": "data:application/octet-stream;base64,AAAAAAAAAAAAAAAA"}],
            "nodes": [{"mesh": 0}],
            "scenes": [{"nodes": [0]}],
        }
    ).encode(),
)
add("scan-empty-file", "scan", ".ply", "ScanError", b"")
add("scan-ok", "scan", ".ply", "loaded", ply(V3, "3 0 1 2\n", 3, 1))
add("landmarks-json-deep", "landmarks", ".json", "ScanError", b"[" * 100_000 + b"]" * 100_000)
add("landmarks-npy-shape", "landmarks", ".npy", "ScanError", npy_of(np.zeros((3, 3))))
add("landmarks-npy-object", "landmarks", ".npy", "ScanError", npy_of(np.array([None], dtype=object)))
add("landmarks-txt-garbage", "landmarks", ".txt", "ScanError", b"\xff\xfe garbage")

IDS = [c.id for c in CASES]
assert len(IDS) == len(set(IDS)), [x for x in IDS if IDS.count(x) > 1]


# --------------------------------------------------------------------------- running
@pytest.fixture(scope="module")
def fuzz_results(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict]:
    root = tmp_path_factory.mktemp("fuzz")
    jobs = []
    for n, c in enumerate(CASES):
        folder = root / f"{n:03d}"
        folder.mkdir()
        path = folder / f"input{c.suffix}"
        path.write_bytes(c.make(folder))
        jobs.append({"id": c.id, "kind": c.kind, "path": str(path)})
    (root / "jobs.json").write_text(json.dumps(jobs))
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}
    proc = subprocess.run(
        [
            sys.executable,
            str(REPO / "tests" / "fuzz_child.py"),
            str(root / "jobs.json"),
            str(root / "results.json"),
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = {r["id"]: r for r in json.loads((root / "results.json").read_text())}
    results["__sentinels__"] = {"found": [str(p) for p in root.rglob(SENTINEL_NAME)], "root": str(root)}
    return results


def test_suite_is_big_enough() -> None:
    assert len(CASES) >= 150
    kinds = {c.kind for c in CASES}
    assert kinds == {"pickle", "npy", "model", "params", "obj", "scan", "landmarks"}


@pytest.mark.slow  # the first one pays for all loads (about 30 s on one core)
@pytest.mark.parametrize("c", CASES, ids=IDS)
def test_crafted_file(c: Case, fuzz_results: dict[str, dict]) -> None:
    r = fuzz_results[c.id]
    assert r["outcome"] in ("loaded", "raised"), r  # no signal, no timeout, no rlimit death
    assert not fuzz_results["__sentinels__"]["found"], "a payload ran code"
    assert r["seconds"] < MAX_SECONDS, r
    assert r["peak_mb"] < MAX_PEAK_MB, r
    if c.expect == "loaded":
        assert r["outcome"] == "loaded", r
        return
    if r["outcome"] == "loaded":
        assert c.expect == "any", f"{c.id} was accepted"
        return
    want = "ModelFileError" if c.expect == "any" else c.expect
    assert want in r["classes"], (c.id, r["classes"], r["message"], r.get("traceback"))
    assert "ModelFileError" in r["classes"] and "ValueError" in r["classes"]
    assert "input" in r["message"], r["message"]  # names the file
    assert "allow_pickle" not in r["message"]
    if c.needs:
        assert c.needs in r["message"], r["message"]


@pytest.mark.slow
def test_summary(fuzz_results: dict[str, dict]) -> None:
    rows = [r for k, r in fuzz_results.items() if not k.startswith("__")]
    refused = sum(r["outcome"] == "raised" for r in rows)
    slow = max(rows, key=lambda r: r.get("seconds", 0))
    big = max(rows, key=lambda r: r.get("peak_mb", 0))
    print(
        f"\nfuzz: {len(rows)} crafted inputs, {refused} refused, {len(rows) - refused} loaded; "
        f"slowest {slow['seconds'] * 1000:.0f} ms ({slow['id']}), "
        f"largest peak +{big['peak_mb']:.0f} MB ({big['id']})"
    )
    assert len(rows) == len(CASES)


# --------------------------------------------------------------------------- command line and forward
def _release_with(tmp: Path, name: str, data: bytes) -> Path:
    """A release folder linking the shared files, with one file replaced."""
    shared = Path(os.environ.get("HACK_SHARED_DATA", REPO.parent / "shared" / "data")) / "hack-release" / "model"
    if not shared.is_dir():
        pytest.skip("shared HACK release data not available")
    folder = tmp / "release" / "model"
    folder.mkdir(parents=True)
    for f in shared.iterdir():
        if f.name != name:
            (folder / f.name).symlink_to(f)
    (folder / name).write_bytes(data)
    return folder.parent


CLI_INPUTS = {
    "object-array-S.npy": ("S.npy", npy(OBJ_HEADER, done(array(tup(), OBJ_DT, by(struct.pack("<Q", 0x41414141)))))),
    "dtype-object-field-S.npy": ("S.npy", npy(OBJ_HEADER, done(
        dtype("V16", "|", tup(u("a"), u("b")), dct(u("a"), tup(OBJ_DT, i(0)), u("b"), tup(F8, i(8))), 16)))),
    "list-range-P.npy": ("P.npy", npy(OBJ_HEADER, done(call(g("builtins", "list"), call(g("builtins", "range"), i(3 * 10**8)))))),
    "weights-1e14.npy": ("weight_map_smooth.npy", npy("{'descr': '<f8', 'fortran_order': False, 'shape': (100000000000000,), }")),
    "bones-not-json": ("bones_neutral.json", b"{not json"),
    "template-bad-index": ("000_generic_neutral_mesh.obj", OBJ_OK.encode() + b"f 1 2 99\n"),
}


@pytest.mark.parametrize("name", sorted(CLI_INPUTS))
def test_cli_info_on_hostile_release_is_one_line(tmp_path: Path, name: str) -> None:
    member, data = CLI_INPUTS[name]
    folder = _release_with(tmp_path, member, data)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.run([sys.executable, "-m", "hack_model.cli", "info", str(folder)], env=env,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1, (proc.returncode, proc.stderr)
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("hack-model: error: "), proc.stderr
    assert "Traceback" not in proc.stderr and member in proc.stderr
    assert proc.stdout == ""


def test_cli_random_npz_never_advises_allow_pickle(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from hack_model.cli import main

    for seed in range(5):
        path = tmp_path / f"random{seed}.npz"
        path.write_bytes(np.random.default_rng(seed).bytes(200 + seed))
        assert main(["info", str(path)]) == 1
        err = capsys.readouterr().err
        assert "allow_pickle" not in err and str(path) in err and len(err.strip().splitlines()) == 1
    path = tmp_path / "p.npy.npz"
    path.write_bytes(pickle.dumps({"a": 1}))
    assert main(["convert", str(path), "-o", str(tmp_path / "out.npz")]) == 1
    err = capsys.readouterr().err
    assert "allow_pickle" not in err and not (tmp_path / "out.npz").exists()


@pytest.fixture(scope="module")
def default_model():
    from hack_model.model import HACK

    return HACK()


def test_forward_huge_inputs_name_the_parameter(default_model) -> None:
    import torch

    J = default_model.num_bones
    with pytest.raises(ValueError, match=r"vertices are not finite: parameter 'neck_pose' \(largest"):
        default_model(neck_pose=torch.full((1, J, 3), 1e30))
    with pytest.raises(ValueError, match=r"parameter 'neck_pose'.*'shape'"):  # the largest first
        default_model(neck_pose=torch.full((2, J, 3), 1e30), shape=torch.ones(1, 2))
    out = default_model(shape=torch.full((1, 4), 1e30))  # huge but finite outputs are returned
    assert torch.isfinite(out.vertices).all()


@pytest.mark.parametrize("name", ["shape", "expression", "neck_pose", "transl"])
def test_batch_of_zero_is_a_value_error_naming_the_parameter(default_model, name: str) -> None:
    import torch

    trailing = {"shape": (4,), "expression": (default_model.num_expression,),
                "neck_pose": (default_model.num_bones, 3), "transl": (3,)}[name]
    with pytest.raises(ValueError, match=rf"{name} has batch size 0"):
        default_model(**{name: torch.zeros((0, *trailing))})


def test_export_never_writes_non_finite_vertices(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from hack_model.cli import main

    params = tmp_path / "huge.npz"
    np.savez(params, neck_pose=np.full((1, 8, 3), 1e30, np.float32))
    out = tmp_path / "head.obj"
    assert main(["export", "--params", str(params), "-o", str(out)]) == 1
    err = capsys.readouterr().err
    assert "'neck_pose'" in err and len(err.strip().splitlines()) == 1
    assert not out.exists() and not list(tmp_path.glob(".head*"))


def test_scan_in_km_says_what_was_detected() -> None:
    from fitting.alignment import detect_units

    head_cm = np.random.default_rng(0).normal(size=(2000, 3)) * np.array([8.0, 12.0, 9.0])
    with pytest.raises(ValueError, match=r"spans .* across; that is no head in mm, cm or m \(in km\?"):
        detect_units(head_cm * 1e-5)  # centimetres -> kilometres
    assert detect_units(head_cm / 100) == "m" and detect_units(head_cm * 10) == "mm"
