"""`.npy` and `.npz` files read within a resource budget, never through pickle.

The header is read with numpy's own parser (`numpy.lib.format.read_magic`,
`read_array_header_*`) and checked before a byte of data is allocated: the dtype
must be plain (no objects; pickled `.npy` files go through
`hack_model.io.safe_pickle.load_pickled_npy`), shape x itemsize within the budget
and equal to what the file (or zip member) holds. A zip member's uncompressed size
is read from the zip directory before inflating and the member is read through a
stream that stops at that size, so a lying header or a deflate bomb is refused, not
inflated. Errors are `ModelFileError`s naming the file and member; no message ever
suggests `allow_pickle`.
"""

from __future__ import annotations

import math
import os
import zipfile
import zlib
from struct import error as struct_error
from typing import IO, Any

import numpy as np
import numpy.lib.format as npy_format

from .errors import ModelFileError, ResourceLimitError
from .limits import (
    MAX_ARRAY_ELEMENTS,
    MAX_FILE_BYTES,
    MAX_NDIM,
    MAX_TOTAL_BYTES,
    NPZ_RATIO,
    SLACK_BYTES,
)

try:
    from numpy.lib._format_impl import _read_array_header as _read_header_v3
except ImportError:  # pragma: no cover - numpy 1.x
    _read_header_v3 = getattr(npy_format, "_read_array_header", None)

NPY_MAGIC = b"\x93NUMPY"
ZIP_MAGIC = b"PK\x03\x04"
_MAX_HEADER = 1 << 16


def _header(
    f: IO[bytes], where: str, path: str, member: str | None
) -> tuple[tuple[int, ...], bool, np.dtype]:
    try:
        version = npy_format.read_magic(f)
        if version == (1, 0):
            shape, fortran, dtype = npy_format.read_array_header_1_0(f, max_header_size=_MAX_HEADER)
        elif version == (2, 0):
            shape, fortran, dtype = npy_format.read_array_header_2_0(f, max_header_size=_MAX_HEADER)
        elif version == (3, 0) and _read_header_v3 is not None:
            shape, fortran, dtype = _read_header_v3(f, version, max_header_size=_MAX_HEADER)
        else:
            raise ModelFileError(f"unsupported .npy format version {version}", path=path, field=member)
    except ModelFileError:
        raise
    except (
        ValueError, OSError, EOFError, SyntaxError, TypeError, MemoryError, RecursionError,
        zipfile.BadZipFile, zlib.error, struct_error, NotImplementedError,
    ) as err:  # fmt: skip
        message = str(err).split("\n")[0][:200]
        if "allow_pickle" in message or "pickle" in message:
            message = "unsupported header"
        raise ModelFileError(f"not a valid {where} ({message})", path=path, field=member) from None
    if len(shape) > MAX_NDIM:
        raise ResourceLimitError(f"header has {len(shape)} dimensions", path=path, field=member)
    if math.prod(shape) > MAX_ARRAY_ELEMENTS:
        raise ResourceLimitError(
            f"header claims shape {shape} ({math.prod(shape):.3g} elements; at most {MAX_ARRAY_ELEMENTS})",
            path=path,
            field=member,
        )
    return shape, fortran, dtype


def read_npy_header(path: str | os.PathLike) -> tuple[tuple[int, ...], bool, np.dtype, int]:
    """(shape, fortran_order, dtype, data offset) of a `.npy` file; refuses absurd headers."""
    path = os.fspath(path)
    with open(path, "rb") as f:
        shape, fortran, dtype = _header(f, ".npy file", path, None)
        return shape, fortran, dtype, f.tell()


def _read_data(
    f: IO[bytes],
    shape: tuple[int, ...],
    fortran: bool,
    dtype: np.dtype,
    available: int,
    path: str,
    member: str | None,
) -> np.ndarray:
    if dtype.hasobject:
        raise ModelFileError("contains pickled objects, refused (not plain numbers)", path=path, field=member)
    nbytes = math.prod(shape) * dtype.itemsize
    if nbytes > MAX_TOTAL_BYTES:
        raise ResourceLimitError(f"header claims {nbytes / 1e9:.2f} GB of data", path=path, field=member)
    if nbytes != available:
        raise ModelFileError(
            f"header claims {nbytes} bytes of data for shape {shape} of {dtype}, the file holds {available}",
            path=path,
            field=member,
        )
    buf = bytearray(nbytes)
    view = memoryview(buf)
    got = 0
    while got < nbytes:
        try:
            n = f.readinto(view[got : got + (16 << 20)])
        except (OSError, zipfile.BadZipFile, EOFError, ValueError, zlib.error) as err:  # CRC, bad deflate
            raise ModelFileError(f"data is corrupt ({err})", path=path, field=member) from None
        if not n:
            raise ModelFileError(f"data is truncated ({got} of {nbytes} bytes)", path=path, field=member)
        got += n
    try:
        array = np.frombuffer(buf, dtype=dtype)
    except (ValueError, TypeError) as err:
        raise ModelFileError(f"cannot read {dtype} data ({err})", path=path, field=member) from None
    return array.reshape(shape, order="F" if fortran else "C")


def read_npy(path: str | os.PathLike) -> np.ndarray:
    """A plain (non-object) `.npy` array, header checked before reading."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(2, "no such .npy file", path)
    size = os.path.getsize(path)
    if size > MAX_FILE_BYTES:
        raise ResourceLimitError(f"the file is {size / 1e9:.1f} GB; over the limit", path=path)
    with open(path, "rb") as f:
        head = f.read(6)
        if head != NPY_MAGIC:
            raise ModelFileError(f"not a .npy file ({describe_start(head)})", path=path)
        f.seek(0)
        shape, fortran, dtype = _header(f, ".npy file", path, None)
        return _read_data(f, shape, fortran, dtype, size - f.tell(), path, None)


def describe_start(head: bytes) -> str:
    if not head:
        return "the file is empty"
    if head.startswith(ZIP_MAGIC):
        return "it is a zip archive"
    if head.startswith(NPY_MAGIC):
        return "it is a .npy array"
    if head[:1] == b"\x80" or head[:1] in (b"(", b"}", b"]"):
        return "it looks like a pickle"
    return "unknown content"


def read_npz(path: str | os.PathLike, *, what: str = ".npz archive") -> dict[str, np.ndarray]:
    """All arrays of a `.npz`, each member checked (plain dtype, sizes from the zip
    directory within budget, header equal to the member's size) before inflating."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(2, f"no such {what}", path)
    size = os.path.getsize(path)
    if size > MAX_FILE_BYTES:
        raise ResourceLimitError(f"the file is {size / 1e9:.1f} GB; over the limit", path=path)
    with open(path, "rb") as f:
        head = f.read(4)
    if head != ZIP_MAGIC and not (head == b"PK\x05\x06"):
        raise ModelFileError(f"not a readable {what} ({describe_start(head)})", path=path)
    try:
        archive = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError, ValueError, EOFError, NotImplementedError) as err:
        raise ModelFileError(f"not a readable {what} ({err})", path=path) from None
    limit = min(MAX_TOTAL_BYTES, NPZ_RATIO * size + SLACK_BYTES)
    with archive:
        infos = archive.infolist()
        total = sum(info.file_size for info in infos)
        if total > limit:
            raise ResourceLimitError(
                f"members would inflate to {total / 1e6:.0f} MB; a {size / 1e6:.1f} MB archive may hold "
                f"{limit / 1e6:.0f} MB",
                path=path,
            )
        out: dict[str, np.ndarray] = {}
        for info in infos:
            name = info.filename
            if info.is_dir():
                continue
            key = name[:-4] if name.endswith(".npy") else name
            if key in out:
                raise ModelFileError("appears twice in the archive", path=path, field=key)
            try:
                member = archive.open(info)
            except (zipfile.BadZipFile, NotImplementedError, RuntimeError, OSError, ValueError) as err:
                raise ModelFileError(f"cannot open member ({err})", path=path, field=key) from None
            with member:
                shape, fortran, dtype = _header(member, "array member", path, key)
                if dtype.hasobject:
                    raise ModelFileError(
                        f"not a readable {what}: member '{key}' contains pickled objects, refused", path=path
                    )
                out[key] = _read_data(
                    member, shape, fortran, dtype, info.file_size - member.tell(), path, key
                )
                try:
                    if member.read(1):
                        raise ModelFileError("has data after the array", path=path, field=key)
                except (zipfile.BadZipFile, OSError, EOFError, zlib.error) as err:
                    raise ModelFileError(f"data is corrupt ({err})", path=path, field=key) from None
        return out


def as_text(value: Any, path: str, field: str, max_chars: int) -> str:
    """A 0-d (or one-element) string array as str, bounded."""
    arr = np.asarray(value)
    if arr.dtype.kind not in "US" or arr.size != 1:
        raise ModelFileError("must be one string", path=path, field=field)
    if arr.dtype.itemsize > 4 * max_chars:
        raise ResourceLimitError(f"string longer than {max_chars} characters", path=path, field=field)
    item = arr.reshape(()).item()
    return item.decode("latin1") if isinstance(item, bytes) else str(item)
