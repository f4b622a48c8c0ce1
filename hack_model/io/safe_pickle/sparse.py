"""scipy.sparse matrices from their pickled state, through the public constructors
(which validate index bounds and shapes); the stored arrays and the nnz are within
the file's budget, the shape may be large (sparse) but is checked to be integers."""

from __future__ import annotations

from typing import Any

import numpy as np

from .allowlist import SparseShell
from .budget import Budget, safe_asarray
from .errors import CorruptPickleError, ModelFileError, UnsafePickleError


def rebuild_sparse(shell: SparseShell, budget: Budget) -> Any:
    import scipy.sparse as sp

    name = type(shell).target_name
    cls = getattr(sp, name, None) or getattr(sp, f"{type(shell).fmt}_matrix")
    fmt = type(shell).fmt
    label = f"scipy.sparse.{cls.__name__}"
    st = shell.__dict__["_state"]

    def num(value: Any, what: str) -> np.ndarray:
        return safe_asarray(value, f"{label}.{what}", budget)

    try:
        raw_shape = st.get("_shape", st.get("shape"))
        if not isinstance(raw_shape, (tuple, list)) or not 1 <= len(raw_shape) <= 2:
            raise CorruptPickleError(f"{label}: shape {raw_shape!r}")
        shape = tuple(int(n) for n in raw_shape)
        if any(n < 0 or n >= 2**62 for n in shape) or any(
            isinstance(n, bool) or not isinstance(n, (int, np.integer)) for n in raw_shape
        ):
            raise CorruptPickleError(f"{label}: shape {raw_shape!r}")
        if fmt in ("csr", "csc", "bsr"):
            data = num(st["data"], "data")
            idx, ptr = num(st["indices"], "indices"), num(st["indptr"], "indptr")
            if ptr.ndim != 1 or len(ptr) > max(shape) + 2:
                raise CorruptPickleError(f"{label}: indptr does not match the shape")
            budget.charge_bytes(data.nbytes + idx.nbytes + ptr.nbytes, label)
            out = cls((data, idx, ptr), shape=shape)
            out.check_format(full_check=True)
        elif fmt == "coo":
            coords = st["coords"] if "coords" in st else (st["row"], st["col"])
            if not isinstance(coords, (tuple, list)) or len(coords) > 2:
                raise CorruptPickleError(f"{label}: coords")
            coords = tuple(num(c, "coords") for c in coords)
            data = num(st["data"], "data")
            budget.charge_bytes(data.nbytes + sum(c.nbytes for c in coords), label)
            out = cls((data, coords), shape=shape)
            out._check()
        elif fmt == "dia":
            data, offsets = num(st["data"], "data"), num(st["offsets"], "offsets")
            budget.charge_bytes(data.nbytes + offsets.nbytes, label)
            out = cls((data, offsets), shape)
        elif fmt == "lil":
            dtype = _plain_dtype(st["dtype"], label)
            rows, vals = st["rows"], st["data"]
            rows = rows.tolist() if isinstance(rows, np.ndarray) else list(rows)
            vals = vals.tolist() if isinstance(vals, np.ndarray) else list(vals)
            if len(rows) != shape[0] or len(vals) != shape[0]:
                raise CorruptPickleError("lil rows do not match the shape")
            budget.charge_items(sum(len(c) for c in rows), label)
            r = np.repeat(np.arange(shape[0]), [len(c) for c in rows])
            c = num([j for cols in rows for j in cols], "rows").astype(np.int64)
            v = num([a for row in vals for a in row], "data")
            out = cls(sp.coo_array((v.astype(dtype), (r, c)), shape=shape))
        else:  # dok
            items = st["_dict"] if "_dict" in st else shell.__dict__.get("_items", {})
            if not isinstance(items, dict):
                raise CorruptPickleError(f"{label}: entries are not a dict")
            dtype = _plain_dtype(st.get("dtype", np.float64), label)
            keys = list(items)
            if not keys:
                return cls(shape, dtype=dtype)
            budget.charge_items(len(keys), label)
            ij = num(keys, "keys").reshape(len(keys), -1).astype(np.int64)
            v = num([items[k] for k in keys], "data").astype(dtype)
            out = cls(sp.coo_array((v, tuple(ij.T)), shape=shape))
    except (UnsafePickleError, ModelFileError):
        raise
    except Exception as e:  # scipy's validation, whatever it raises
        raise CorruptPickleError(f"invalid {label} in pickle: {type(e).__name__}: {e}") from None
    if out.dtype.hasobject:
        raise UnsafePickleError(label, "object dtype")
    return out


def _plain_dtype(value: Any, label: str) -> np.dtype:
    from .dtypes import DtypeShell

    if isinstance(value, DtypeShell):
        value = value.resolve()
    if isinstance(value, type) and issubclass(value, np.generic):
        value = np.dtype(value)
    if not isinstance(value, np.dtype) or value.hasobject or value.kind not in "biufc":
        raise UnsafePickleError(label, f"dtype {value!r}")
    return value
