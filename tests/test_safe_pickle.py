"""Restricted unpickler: data round-trips, chumpy without chumpy, .npy object
arrays, error messages, and a corpus of hostile pickles that must not run."""

from __future__ import annotations

import builtins
import collections
import copyreg
import functools
import io
import operator
import os
import pickle
import shlex
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import scipy.sparse as sp

from hack_model.io.safe_pickle import (
    ChumpyStandIn,
    CorruptPickleError,
    RestrictedUnpickler,
    UnsafePickleError,
    load_pickle,
    load_pickled_npy,
    loads_pickle,
    undo_chumpy,
)

sys.path.insert(0, str(Path(__file__).parent))
from chumpy_fixtures import (  # noqa: E402
    ch,
    ch_concatenate,
    ch_op,
    chumpy_value,
    fake_chumpy_modules,
    make_chumpy_pickle_bytes,
    materialize_chumpy,
    py2_style_dumps,
    smpl_like_model,
)

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("HACK_SHARED_DATA", REPO.parent / "shared" / "data"))
RELEASE_MODEL = SHARED / "hack-release" / "model"
PROTOCOLS = (0, 2, 4, 5)


def assert_same(a: Any, b: Any) -> None:
    """Deep equality with dtype/type checks for numpy and scipy values."""
    assert type(a) is type(b), (type(a), type(b))
    if isinstance(a, np.ndarray):
        assert a.dtype == b.dtype and a.shape == b.shape
        if a.dtype.hasobject:
            for x, y in zip(a.ravel(), b.ravel()):
                assert_same(x, y)
        else:
            np.testing.assert_array_equal(a, b)
    elif sp.issparse(a):
        assert a.shape == b.shape and a.dtype == b.dtype
        np.testing.assert_array_equal(a.toarray(), b.toarray())
    elif isinstance(a, dict):
        assert list(a) == list(b)
        for k in a:
            assert_same(a[k], b[k])
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b)
        for x, y in zip(a, b):
            assert_same(x, y)
    elif isinstance(a, np.generic):
        assert a.dtype == b.dtype and (a == b or (a != a and b != b))
    else:
        assert a == b


def sample_arrays() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    return {
        "f32": rng.standard_normal((5, 3)).astype(np.float32),
        "f64": rng.standard_normal((4, 2, 3)),
        "f16": np.arange(6, dtype=np.float16),
        "i32": np.arange(-3, 9, dtype=np.int32).reshape(3, 4),
        "i64": np.array([2**40, -(2**40)], dtype=np.int64),
        "u8": np.arange(256, dtype=np.uint8),
        "u32": np.array([0, 4294967295], dtype=np.uint32),
        "bool": np.array([True, False, True]),
        "c128": np.array([1 + 2j, -3.5j]),
        "fortran": np.asfortranarray(rng.standard_normal((3, 4))),
        "strided": np.arange(20.0)[::3],
        "zero_d": np.array(7.5),
        "empty": np.zeros((0, 3), np.float32),
        "big_endian": np.arange(4, dtype=">f8"),
        "structured": np.array(
            [(1.5, 2, b"ab"), (3.0, -1, b"c")], dtype=[("a", "<f4"), ("b", "<i8"), ("c", "S2")]
        ),
        "unicode": np.array(["ab", "ĉü"]),
        "bytes": np.array([b"x", b"yz"]),
        "datetime": np.array(["2020-01-01", "2021-06-30"], dtype="datetime64[D]"),
        "objects": np.array([1, "two", None, [3.0]], dtype=object),
    }


# --------------------------------------------------------------------------- round trips
@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_numpy_arrays_round_trip(protocol: int) -> None:
    arrays = sample_arrays()
    raw = pickle.dumps(arrays, protocol=protocol)
    out = loads_pickle(raw)
    # Reference: what unrestricted pickle makes of our own bytes (numpy turns
    # big-endian arrays native below protocol 5, for instance).
    assert_same(out, pickle.loads(raw))
    for key, value in arrays.items():
        np.testing.assert_array_equal(out[key], value)
    assert out["fortran"].flags.f_contiguous


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_numpy_scalars_dtypes_and_types(protocol: int) -> None:
    data = {
        "scalars": [
            np.float64(1.5),
            np.float32(-2.25),
            np.int64(-7),
            np.int8(3),
            np.uint16(9),
            np.bool_(True),
            np.complex64(1 - 1j),
            np.str_("hé"),
            np.bytes_(b"b"),
            np.datetime64("2020-01-01"),
        ],
        "dtypes": [
            np.dtype("f4"),
            np.dtype(">i2"),
            np.dtype([("a", "f4"), ("b", "i8", (2,))]),
            np.dtype("datetime64[ms]"),
            np.dtype("U3"),
        ],
        "types": [np.float64, np.int32, np.bool_, type(np.dtype("f8"))],
    }
    out = loads_pickle(pickle.dumps(data, protocol=protocol))
    for a, b in zip(out["scalars"], data["scalars"]):
        assert type(a) is type(b) and a == b
    assert out["dtypes"] == data["dtypes"]
    assert out["types"] == data["types"]


def test_string_dtype_array() -> None:
    if not hasattr(np.dtypes, "StringDType"):
        pytest.skip("numpy without StringDType")
    arr = np.array(["a", "longer text"], dtype=np.dtypes.StringDType())
    out = loads_pickle(pickle.dumps(arr, protocol=4))
    assert out.dtype == arr.dtype and list(out) == list(arr)


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_builtin_containers_round_trip(protocol: int) -> None:
    data = {
        "nested": {"list": [1, 2.5, "s", None, True], "tuple": (1, (2, (3,))), "empty": {}},
        "set": {1, 2, 3},
        "frozenset": frozenset({"a"}),
        "bytes": b"\x00\xff raw",
        "bytearray": bytearray(b"abc"),
        "slice": slice(1, 10, 2),
        "complex": 1 - 2j,
        "range": range(2, 8),
        "ordered": collections.OrderedDict([("b", 1), ("a", 2)]),
        "defaultdict": collections.defaultdict(list, {"k": [1]}),
        "big_int": 2**100,
        "unicode": "ĉü 漢字",
    }
    out = loads_pickle(pickle.dumps(data, protocol=protocol))
    assert out == data
    assert type(out["ordered"]) is collections.OrderedDict
    assert out["defaultdict"].default_factory is list


def test_shared_references_and_cycles_survive() -> None:
    arr = np.arange(3.0)
    inner: list[Any] = [arr]
    inner.append(inner)
    out = loads_pickle(pickle.dumps({"a": arr, "b": arr, "loop": inner}, protocol=4))
    assert out["a"] is out["b"]
    assert out["loop"][1] is out["loop"]


@pytest.mark.parametrize("protocol", PROTOCOLS)
@pytest.mark.parametrize("fmt", ["csr", "csc", "coo", "lil", "dok", "bsr", "dia"])
@pytest.mark.parametrize("kind", ["matrix", "array"])
def test_scipy_sparse_round_trip(fmt: str, kind: str, protocol: int) -> None:
    dense = sp.random(6, 8, density=0.3, random_state=1).toarray()
    dense[2, 3] = 5.0
    cls = getattr(sp, f"{fmt}_{kind}")
    m, empty = cls(dense), cls((3, 2), dtype=np.float32)
    out, out_empty = loads_pickle(pickle.dumps([m, empty], protocol=protocol))
    assert type(out) is type(m) and type(out_empty) is type(empty)
    assert out.shape == m.shape and out.dtype == m.dtype
    np.testing.assert_array_equal(out.toarray(), dense)
    assert out_empty.shape == (3, 2) and out_empty.dtype == np.float32 and out_empty.nnz == 0


class OldState:
    """Pickles as NEWOBJ(cls) + dict items + BUILD(state): how older scipy versions
    laid out their matrices."""

    def __init__(self, cls: type, state: dict[str, Any], items: dict | None = None) -> None:
        self.cls, self.state, self.items = cls, state, items

    @property  # type: ignore[misc]
    def __class__(self) -> type:  # the pickler checks NEWOBJ's class against this
        return self.cls

    def __reduce__(self) -> tuple[Any, ...]:
        items = iter(self.items.items()) if self.items is not None else None
        return copyreg.__newobj__, (self.cls,), self.state, None, items


@pytest.mark.parametrize("protocol", [2, 4])
def test_old_scipy_sparse_layouts(protocol: int) -> None:
    dense = np.array([[0.0, 2.0, 0.0], [1.5, 0.0, 3.0]])
    coo = sp.coo_matrix(dense)
    old_coo = OldState(
        sp.coo_matrix, {"_shape": (2, 3), "row": coo.row, "col": coo.col, "data": coo.data, "maxprint": 50}
    )
    # scipy < 1.12 dok_matrix was a dict subclass: its entries are dict items.
    old_dok = OldState(
        sp.dok_matrix, {"_shape": (2, 3), "dtype": np.dtype("f8")}, {(0, 1): 2.0, (1, 0): 1.5, (1, 2): 3.0}
    )
    csc = sp.csc_matrix(dense)
    old_csc = OldState(
        sp.csc_matrix,
        {
            "_shape": (2, 3),
            "indices": csc.indices,
            "indptr": csc.indptr,
            "data": csc.data,
            "format": "csc",
            "maxprint": 50,
        },
    )
    out = loads_pickle(pickle.dumps([old_coo, old_dok, old_csc], protocol=protocol))
    for m, cls in zip(out, (sp.coo_matrix, sp.dok_matrix, sp.csc_matrix)):
        assert type(m) is cls
        np.testing.assert_array_equal(m.toarray(), dense)


def test_unsafe_pickle_error_pickles_and_names_path() -> None:
    err = UnsafePickleError("posix.system", path="/x/model.pkl")
    assert str(err) == "refused to load 'posix.system' from /x/model.pkl: not an allowed data type"
    again = pickle.loads(pickle.dumps(err))
    assert str(again) == str(err) and again.global_name == "posix.system"


def test_sparse_with_bad_indices_is_rejected() -> None:
    m = sp.csr_matrix(np.eye(3))
    m.indices = np.array([0, 1, 7], dtype=m.indices.dtype)  # column 7 of 3
    with pytest.raises(CorruptPickleError, match="csr_matrix"):
        loads_pickle(pickle.dumps(m, protocol=4))


@pytest.mark.filterwarnings("ignore:Please import:DeprecationWarning")  # the reference load
@pytest.mark.parametrize("protocol", [0, 1, 2])
def test_python2_style_latin1_pickle(protocol: int) -> None:
    arrays = {k: v for k, v in sample_arrays().items() if k not in ("unicode", "objects")}
    data = {
        **arrays,
        "scalar": np.float64(0.25),
        "name": "caf\xe9",
        "regressor": sp.csc_matrix(np.eye(4)[:3]),
        "nested": [{"a": (1, 2)}, set([3])],
    }
    raw = py2_style_dumps(data, protocol)
    # Written the way Python 2 + numpy 1.x + scipy < 1.8 did it.
    assert b"numpy.core.multiarray" in raw and b"scipy.sparse.csc" in raw
    assert b"_codecs" not in raw and b"__builtin__" in raw
    out = loads_pickle(raw)
    assert_same(out, pickle.loads(raw, encoding="latin1"))  # bytes we made: trusted reference
    for key, value in arrays.items():
        np.testing.assert_array_equal(out[key], value)
    assert type(out["regressor"]) is sp.csc_matrix  # old module path mapped to current class


def test_load_pickle_from_path_and_file(tmp_path: Path) -> None:
    data = {"v": np.arange(4.0)}
    path = tmp_path / "data.pkl"
    path.write_bytes(pickle.dumps(data, protocol=2))
    assert_same(load_pickle(path), data)
    assert_same(load_pickle(str(path)), data)
    with open(path, "rb") as f:
        assert_same(load_pickle(f), data)
    assert_same(load_pickle(io.BytesIO(path.read_bytes())), data)


# --------------------------------------------------------------------------- chumpy
@pytest.mark.parametrize(
    ("protocol", "py2_style"), [(0, True), (1, True), (2, True), (2, False), (4, False), (5, False)]
)
def test_smpl_like_chumpy_pickle_loads_without_chumpy(protocol: int, py2_style: bool) -> None:
    model = smpl_like_model()
    raw = make_chumpy_pickle_bytes(
        model, wrap=("shapedirs", "v_template"), protocol=protocol, py2_style=py2_style
    )
    assert b"chumpy.ch" in raw
    assert not any(name == "chumpy" or name.startswith("chumpy.") for name in sys.modules)
    out = loads_pickle(raw)
    assert not any(name == "chumpy" or name.startswith("chumpy.") for name in sys.modules)
    for key in ("shapedirs", "v_template"):
        assert type(out[key]) is np.ndarray and out[key].dtype == np.float64
        np.testing.assert_array_equal(out[key], model[key])
    for key in ("f", "kintree_table", "weights", "posedirs", "J"):
        assert_same(out[key], model[key])
    assert type(out["J_regressor"]) is sp.csc_matrix
    np.testing.assert_array_equal(out["J_regressor"].toarray(), model["J_regressor"].toarray())
    assert out["bs_type"] == "lrotmin"


def test_chumpy_values_follow_chumpy_r_semantics() -> None:
    # np.array(ch_obj) is chumpy's .r: float64, at least 1-d.
    raw = make_chumpy_pickle_bytes(
        {"ints": ch(np.arange(4, dtype=np.int32)), "scalar": ch(2.5), "nested": [ch([[1, 2]])]}
    )
    out = loads_pickle(raw)
    assert_same(out["ints"], np.arange(4.0))
    assert_same(out["scalar"], np.array([2.5]))
    assert_same(out["nested"][0], np.array([[1.0, 2.0]]))


def test_chumpy_derived_operations_are_evaluated() -> None:
    rng = np.random.default_rng(3)
    u, v = rng.random((4, 3)) + 0.5, rng.random((4, 3)) + 0.5
    mtx = sp.random(6, 12, density=0.5, random_state=2, format="csc")  # acts on u.ravel()
    base = ch(u)  # shared by several operations
    graph = {
        "add": ch_op("chumpy.ch_ops.add", a=base, b=v),
        "subtract": ch_op("chumpy.ch_ops.subtract", a=base, b=ch(v)),
        "multiply": ch_op("chumpy.ch_ops.multiply", a=base, b=2.0),
        "divide": ch_op("chumpy.ch_ops.divide", x1=base, x2=v),
        "power": ch_op("chumpy.ch_ops.power", x=base, pow=2.0),
        "negative": ch_op("chumpy.ch_ops.negative", x=base),
        "sqrt": ch_op("chumpy.ch_ops.sqrt", x=base),
        "dot": ch_op("chumpy.ch_ops.dot", a=base, b=v.T),
        "sum_axis": ch_op("chumpy.ch_ops.sum", x=base, axis=1),
        "sum_all": ch_op("chumpy.ch_ops.sum", x=base),
        "reshape": ch_op("chumpy.reordering.Reshape", a=base, newshape=(3, 4)),
        "transpose": ch_op("chumpy.reordering.transpose", a=base, axes=None),
        "select": ch_op("chumpy.reordering.Select", a=base, idxs=np.array([0, 5, 7]), preferred_shape=(3,)),
        "matvec": ch_op("chumpy.ch.MatVecMult", mtx=mtx, vec=base),
        "concat": ch_concatenate([base, v], axis=0),
        "chain": ch_op(
            "chumpy.ch_ops.add",
            a=ch_op("chumpy.reordering.Reshape", a=base, newshape=(-1,)),
            b=ch_op("chumpy.ch_ops.multiply", a=ch(np.arange(12.0)), b=3.0),
        ),
    }
    expected = {
        "add": u + v,
        "subtract": u - v,
        "multiply": u * 2,
        "divide": u / v,
        "power": u**2,
        "negative": -u,
        "sqrt": np.sqrt(u),
        "dot": u @ v.T,
        "sum_axis": u.sum(1),
        "sum_all": np.atleast_1d(u.sum()),
        "reshape": u.reshape(3, 4),
        "transpose": u.T,
        "select": u.ravel()[[0, 5, 7]],
        "matvec": (mtx @ u.ravel()).reshape(-1, 3),
        "concat": np.concatenate([u, v]),
        "chain": u.ravel() + np.arange(12.0) * 3,
    }
    out = loads_pickle(make_chumpy_pickle_bytes(graph, protocol=2))
    assert set(out) == set(expected)
    for key, value in expected.items():
        assert type(out[key]) is np.ndarray and out[key].dtype == np.float64, key
        np.testing.assert_allclose(out[key], value, rtol=1e-12, err_msg=key)


def test_unknown_chumpy_operation_is_named() -> None:
    raw = make_chumpy_pickle_bytes({"inv": ch_op("chumpy.linalg.Inv", a=ch(np.eye(2)))})
    with pytest.raises(UnsafePickleError, match=r"chumpy\.linalg\.Inv") as err:
        loads_pickle(raw, source="model.pkl")
    assert "model.pkl" in str(err.value)


def test_restricted_unpickler_keeps_stand_ins_until_undo_chumpy() -> None:
    raw = make_chumpy_pickle_bytes({"s": ch(np.ones((2, 2))), "other": [ch(3.0)]})
    loaded = RestrictedUnpickler(io.BytesIO(raw)).load()
    assert isinstance(loaded["s"], ChumpyStandIn)
    assert loaded["s"].chumpy_class == "chumpy.ch.Ch"
    assert "x" in loaded["s"].state and "_dirty_vars" in loaded["s"].state
    out = undo_chumpy(loaded)
    assert_same(out["s"], np.ones((2, 2)))
    assert_same(out["other"][0], np.array([3.0]))


def test_fake_chumpy_modules_are_removed() -> None:
    with fake_chumpy_modules():
        assert "chumpy.ch" in sys.modules
    assert "chumpy" not in sys.modules and "chumpy.ch" not in sys.modules
    assert chumpy_value(3).dtype == np.float64


# --------------------------------------------------------------------------- .npy
@pytest.mark.skipif(not RELEASE_MODEL.is_dir(), reason="shared HACK release data not available")
@pytest.mark.parametrize("name", ["S.npy", "E.npy", "P.npy"])
def test_release_pickled_npy_matches_numpy(name: str) -> None:
    path = RELEASE_MODEL / name
    ours = load_pickled_npy(path)
    # allow_pickle=True only here, on the trusted shared file, as the reference.
    reference = np.load(path, allow_pickle=True).item()
    assert isinstance(ours, dict) and set(ours) == set(reference) == {"mean", "VT_std"}
    for key in reference:
        assert_same(ours[key], reference[key])


@pytest.mark.skipif(not RELEASE_MODEL.is_dir(), reason="shared HACK release data not available")
def test_release_plain_npy_loads_without_pickle() -> None:
    arr = load_pickled_npy(RELEASE_MODEL / "ts_larynx.npy")
    assert isinstance(arr, np.ndarray) and arr.dtype == np.float32 and arr.shape == (3,)


def test_pickled_npy_dict_and_arrays(tmp_path: Path) -> None:
    data = {"mean": np.arange(6, dtype=np.float32).reshape(2, 3), "VT_std": np.ones(4), "n": 3}
    np.save(tmp_path / "dict.npy", data)  # object array of shape () holding the dict
    assert_same(load_pickled_npy(tmp_path / "dict.npy"), data)

    plain = np.arange(10, dtype=np.int16)
    np.save(tmp_path / "plain.npy", plain)
    assert_same(load_pickled_npy(tmp_path / "plain.npy"), plain)

    objects = np.array([{"a": 1}, [2], "three"], dtype=object)
    np.save(tmp_path / "objects.npy", objects)
    assert_same(load_pickled_npy(tmp_path / "objects.npy"), objects)


def test_pickled_npy_version_2_header(tmp_path: Path) -> None:
    path = tmp_path / "v2.npy"
    arr = np.empty((), dtype=object)
    arr[()] = {"x": np.arange(3.0)}
    with open(path, "wb") as f:
        np.lib.format.write_array(f, arr, version=(2, 0), allow_pickle=True)
    assert_same(load_pickled_npy(path), {"x": np.arange(3.0)})


def test_pickled_npy_with_chumpy_payload(tmp_path: Path) -> None:
    path = tmp_path / "chumpy.npy"
    with fake_chumpy_modules() as modules:
        np.save(path, materialize_chumpy({"x": ch(np.arange(3))}, modules))
    assert "chumpy" not in sys.modules
    assert_same(load_pickled_npy(path), {"x": np.arange(3.0)})


# --------------------------------------------------------------------------- errors
def test_missing_files(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="nope.pkl"):
        load_pickle(tmp_path / "nope.pkl")
    with pytest.raises(FileNotFoundError, match="nope.npy"):
        load_pickled_npy(tmp_path / "nope.npy")


def test_truncated_and_corrupt_pickles(tmp_path: Path) -> None:
    full = pickle.dumps({"v": np.arange(100.0), "w": list(range(50))}, protocol=2)
    truncated = tmp_path / "truncated.pkl"
    truncated.write_bytes(full[: len(full) // 2])
    with pytest.raises(CorruptPickleError, match="truncated") as err:
        load_pickle(truncated)
    assert str(truncated) in str(err.value)
    assert isinstance(err.value, ValueError)

    empty = tmp_path / "empty.pkl"
    empty.write_bytes(b"")
    with pytest.raises(ValueError, match="empty"):
        load_pickle(empty)

    text = tmp_path / "notes.pkl"
    text.write_text("this is not a pickle\n")
    with pytest.raises(ValueError, match="notes.pkl"):
        load_pickle(text)

    garbage = tmp_path / "garbage.pkl"
    garbage.write_bytes(b"\x80\x02}q\x00(X\x01\x00\x00\x00aq\x01\xff\xfe")
    with pytest.raises(CorruptPickleError, match="garbage.pkl"):
        load_pickle(garbage)


def test_other_formats_are_named(tmp_path: Path) -> None:
    np.savez(tmp_path / "a.npz", x=np.arange(3))
    with pytest.raises(CorruptPickleError, match="zip archive"):
        load_pickle(tmp_path / "a.npz")
    np.save(tmp_path / "a.npy", np.arange(3))
    with pytest.raises(CorruptPickleError, match="load_pickled_npy"):
        load_pickle(tmp_path / "a.npy")
    (tmp_path / "b.npy").write_bytes(pickle.dumps({"a": 1}))
    with pytest.raises(CorruptPickleError, match=r"not a valid \.npy"):
        load_pickled_npy(tmp_path / "b.npy")


def test_truncated_npy_payload(tmp_path: Path) -> None:
    path = tmp_path / "cut.npy"
    np.save(path, {"mean": np.arange(1000.0)})
    path.write_bytes(path.read_bytes()[:-500])
    with pytest.raises(CorruptPickleError, match="cut.npy"):
        load_pickled_npy(path)


# --------------------------------------------------------------------------- hostile corpus
class Reduce:
    """Pickles as `fn(*args)`; `fn` may itself be a Reduce (a computed callable)."""

    def __init__(self, fn: Any, args: tuple[Any, ...]) -> None:
        self.fn, self.args = fn, args

    def __reduce__(self) -> tuple[Any, tuple[Any, ...]]:
        return self.fn, self.args

    def __call__(self, *args: Any) -> Any:  # pickle wants the reduce callable to be callable
        raise AssertionError("payloads are only pickled here, never run")


def _unicode_op(text: str) -> bytes:
    # Protocol 0 UNICODE opcode: raw-unicode-escape text up to a newline.
    return b"V" + text.encode("raw-unicode-escape") + b"\n"


def _stack_global(module: str, name: str) -> bytes:
    def short(s: str) -> bytes:
        data = s.encode()
        return b"\x8c" + bytes([len(data)]) + data  # SHORT_BINUNICODE

    return short(module) + short(name) + b"\x93"  # STACK_GLOBAL


def build_payloads(tmp: Path) -> list[tuple[str, str, bytes, bool]]:
    """(id, refused global, pickle bytes, runs with plain pickle.loads) for payloads
    that each try to create tmp/sentinel."""
    sentinel = str(tmp / "sentinel")
    cmd = f"touch {shlex.quote(sentinel)}"
    py = f"open({sentinel!r}, 'w').close()"
    evil = Reduce(os.system, (cmd,))
    evil_npy = tmp / "evil.npy"  # written by _payload: np.load(allow_pickle=True) would run it
    os_module = Reduce(builtins.__import__, ("os",))
    runstring = "numpy.testing._private.utils"
    system = f"{os.system.__module__}.system"  # posix.system on Linux
    p: list[tuple[str, str, bytes, bool]] = [
        ("os.system", "os.system", b"cos\nsystem\n(" + _unicode_op(cmd) + b"tR.", True),
        ("posix.system", system, pickle.dumps(evil, protocol=2), True),
        (
            "subprocess.Popen",
            "subprocess.Popen",
            pickle.dumps(Reduce(subprocess.Popen, (["touch", sentinel],)), protocol=4),
            True,
        ),
        (
            "subprocess.check_output",
            "subprocess.check_output",
            pickle.dumps(Reduce(subprocess.check_output, (["touch", sentinel],)), protocol=4),
            True,
        ),
        ("builtins.eval", "builtins.eval", pickle.dumps(Reduce(eval, (py,)), protocol=4), True),
        ("builtins.exec", "builtins.exec", pickle.dumps(Reduce(exec, (py,)), protocol=4), True),
        ("builtins.open", "io.open", pickle.dumps(Reduce(open, (sentinel, "w")), protocol=4), True),
        (
            "getattr-chain",
            "builtins.getattr",
            pickle.dumps(Reduce(Reduce(getattr, (os_module, "system")), (cmd,)), protocol=4),
            True,
        ),
        (
            "py2-getattr-chain",
            "__builtin__.getattr (= builtins.getattr)",
            pickle.dumps(Reduce(Reduce(getattr, (os_module, "system")), (cmd,)), protocol=2),
            True,
        ),
        (
            "builtins.__import__",
            "builtins.__import__",
            b"cbuiltins\n__import__\n(" + _unicode_op("os") + b"tRp0\n0cbuiltins\ngetattr\n"
            b"(g0\n" + _unicode_op("system") + b"tR(" + _unicode_op(cmd) + b"tR.",
            True,
        ),
        (
            "nested-in-valid-dict",
            system,
            pickle.dumps(
                {
                    "v_template": np.zeros((4, 3)),
                    "f": np.arange(6).reshape(2, 3),
                    "meta": {"name": "ok", "hooks": [1, evil]},
                },
                protocol=2,
            ),
            True,
        ),
        (
            "numpy-runstring",
            f"{runstring}.runstring",
            b"c" + runstring.encode() + b"\nrunstring\n(" + _unicode_op(py) + b"(dtR.",
            True,
        ),
        (
            "numpy.load",
            "numpy.load",
            pickle.dumps(Reduce(np.load, (str(evil_npy), None, True)), protocol=4),
            True,
        ),
        (
            "numpy.lib.npyio.load",
            "numpy.lib.npyio.load",
            b"cnumpy.lib.npyio\nload\n(" + _unicode_op(str(evil_npy)) + b"NI01\ntR.",
            False,
        ),
        (
            "numpy-dotted-walk",
            "numpy.testing._private.utils.runstring",
            b"\x80\x04"
            + _stack_global("numpy", "testing._private.utils.runstring")
            + b"("
            + _unicode_op(py)
            + b"}tR.",
            True,
        ),
        ("torch.load", "torch.load", b"ctorch\nload\n(" + _unicode_op(str(evil_npy)) + b"tR.", False),
        (
            "torch.storage",
            "torch.storage._load_from_bytes",
            b"ctorch.storage\n_load_from_bytes\n(C\x05abcdetR.",
            False,
        ),
        (
            "copyreg-dangerous-class",
            "subprocess.Popen",
            b"ccopy_reg\n_reconstructor\n(csubprocess\nPopen\ncsubprocess\nPopen\n(l"
            + _unicode_op("touch")
            + b"a"
            + _unicode_op(sentinel)
            + b"atR.",
            True,
        ),
        (
            "functools.partial",
            "functools.partial",
            pickle.dumps(Reduce(functools.partial(os.system, cmd), ()), protocol=4),
            True,
        ),
        (
            "operator.methodcaller",
            "operator.methodcaller",
            pickle.dumps(Reduce(operator.methodcaller("system", cmd), (os_module,)), protocol=4),
            True,
        ),
        (
            "operator.attrgetter",
            "operator.attrgetter",
            pickle.dumps(Reduce(Reduce(operator.attrgetter("system"), (os_module,)), (cmd,)), protocol=4),
            True,
        ),
        (
            "nested-pickle.loads",
            "_pickle.loads",
            pickle.dumps(Reduce(pickle.loads, (pickle.dumps(evil),)), protocol=4),
            True,
        ),
    ]
    return p


PAYLOAD_IDS = [p[0] for p in build_payloads(Path("/nonexistent"))]


def _payload(tmp_path: Path, ident: str) -> tuple[str, bytes, bool]:
    command = f"touch {shlex.quote(str(tmp_path / 'sentinel'))}"
    np.save(tmp_path / "evil.npy", np.array(Reduce(os.system, (command,)), dtype=object))
    for name, refused, raw, live in build_payloads(tmp_path):
        if name == ident:
            return refused, raw, live
    raise KeyError(ident)


@pytest.mark.parametrize("ident", PAYLOAD_IDS)
def test_hostile_pickle_is_refused(tmp_path: Path, ident: str) -> None:
    refused, raw, _ = _payload(tmp_path, ident)
    path = tmp_path / "model.pkl"
    path.write_bytes(raw)
    with pytest.raises(UnsafePickleError) as err:
        load_pickle(path)
    assert f"'{refused}'" in str(err.value)
    assert str(path) in str(err.value)
    with pytest.raises(UnsafePickleError):
        loads_pickle(raw)
    time.sleep(0.05)  # a spawned `touch` would have landed by now
    assert not (tmp_path / "sentinel").exists()


def test_hostile_object_array_npy_is_refused(tmp_path: Path) -> None:
    sentinel = tmp_path / "sentinel"
    path = tmp_path / "evil.npy"
    np.save(path, np.array(Reduce(os.system, (f"touch {shlex.quote(str(sentinel))}",)), object))
    with pytest.raises(UnsafePickleError, match=rf"'{os.system.__module__}\.system' from .*evil\.npy"):
        load_pickled_npy(path)
    assert not sentinel.exists()


LIVE_IDS = [p[0] for p in build_payloads(Path("/nonexistent")) if p[3]]


@pytest.mark.parametrize("ident", LIVE_IDS)
def test_corpus_is_really_hostile(tmp_path: Path, ident: str) -> None:
    """Plain pickle.loads, in a child process, does create the sentinel."""
    _, raw, _ = _payload(tmp_path, ident)
    path = tmp_path / "payload.pkl"
    path.write_bytes(raw)
    code = "import pickle, sys; pickle.loads(open(sys.argv[1], 'rb').read())"
    subprocess.run([sys.executable, "-c", code, str(path)], check=False, capture_output=True, timeout=60)
    deadline = time.monotonic() + 10  # Popen returns before its child has run
    while not (tmp_path / "sentinel").exists() and time.monotonic() < deadline:
        time.sleep(0.02)
    assert (tmp_path / "sentinel").exists()


# --------------------------------------------------------------------------- guard details
def test_guarded_callables_check_their_arguments() -> None:
    # copyreg._reconstructor may only rebuild our shells, never e.g. an OrderedDict.
    raw = b"ccopy_reg\n_reconstructor\n(ccollections\nOrderedDict\nc__builtin__\ndict\n(dtR."
    with pytest.raises(UnsafePickleError, match=r"copyreg\._reconstructor"):
        loads_pickle(raw)
    # _reconstruct only builds plain ndarrays.
    raw = b"cnumpy.core.multiarray\n_reconstruct\n(c__builtin__\nset\n(I0\ntVb\ntR."
    with pytest.raises(UnsafePickleError, match=r"_reconstruct"):
        loads_pickle(raw)
    # codecs other than plain text ones reach the codec registry.
    raw = b"c_codecs\nencode\n(Vx\nVrot13\ntR."
    with pytest.raises(UnsafePickleError, match=r"_codecs\.encode"):
        loads_pickle(raw)
    # defaultdict factories run on missing keys: only inert builtin types.
    raw = pickle.dumps(collections.defaultdict(np.float64), protocol=2)
    with pytest.raises(UnsafePickleError, match=r"collections\.defaultdict"):
        loads_pickle(raw)


def test_build_cannot_patch_allowed_classes_or_guards() -> None:
    # BUILD with a slot-state dict on a class object is setattr on the class.
    raw = b"cscipy.sparse._csc\ncsc_matrix\n(N(dVcheck_format\nI1\nstb."
    with pytest.raises(ValueError):
        loads_pickle(raw)
    assert callable(sp.csc_matrix.check_format)
    raw = b"ccopy_reg\n_reconstructor\n(dV_fn\nI1\nsb."
    with pytest.raises(UnsafePickleError):
        loads_pickle(raw)
    raw = b"cnumpy\nndarray\n(N(dVfoo\nI1\nstb."
    with pytest.raises(ValueError):
        loads_pickle(raw)
    assert not hasattr(np.ndarray, "foo")


def test_persistent_ids_are_refused() -> None:
    raw = b"\x80\x02Pstorage\n."
    with pytest.raises(UnsafePickleError, match="persistent"):
        loads_pickle(raw)
