"""Schema v2 of the map directory: names, SQLite tables, array encoding and hashes.

Layout (see :mod:`mast3r_ros.core.map.store` for why)::

    <map>/CURRENT                 "v-<32 hex>": the live version (replaced atomically)
    <map>/.lock                   writer lock (fcntl)
    <map>/v-<32 hex>/.mast3r-map  marker: this directory was written by the store
    <map>/v-<32 hex>/index.sqlite tables below
    <map>/v-<32 hex>/data/<file>  append-only payload files (raw little-endian arrays)
    <map>/.tmp-<pid>-<32 hex>/    a save in progress (same marker)

Every table row carries ``h``, the SHA-256 of its other values (bit rot in the index is detected
like bit rot in a payload). An ``arrays`` row also holds ``sha256`` of the array's dtype, shape
and bytes, checked when the array is read.
"""

from __future__ import annotations

import hashlib
import math
import re
import struct
from dataclasses import dataclass
from typing import Optional, Union

import numpy as np

from mast3r_ros.core.errors import MapFormatError

__all__ = ["SCHEMA_VERSION", "CURRENT", "INDEX", "MARKER", "DATA", "VERSION_RE", "TMP_RE",
           "SCHEMA_SQL", "TABLE_COLUMNS", "PAYLOAD_FILES", "Extent", "row_digest",
           "content_hash", "file_of", "parse_extent", "array_bytes", "SqlValue"]

#: on-disk layout written by this module (1 = the layout of maps saved before the typed store)
SCHEMA_VERSION = 2

CURRENT = "CURRENT"
INDEX = "index.sqlite"
MARKER = ".mast3r-map"
DATA = "data"
VERSION_RE = re.compile(r"v-[0-9a-f]{32}")
TMP_RE = re.compile(r"\.tmp-[0-9]{1,10}-[0-9a-f]{32}")

#: payload files under ``data/`` (the only names the index may refer to)
PAYLOAD_FILES = ("rgb.bin", "depth.bin", "pointmap.bin", "features.bin", "desc.bin")

#: columns of each table, the last one being the row digest ``h``
TABLE_COLUMNS: dict[str, tuple[str, ...]] = {
    "info": ("key", "value", "h"),
    "encoder": ("backend", "model_id", "image_size", "preprocessing", "descriptor", "features",
                "dim", "h"),
    "files": ("name", "length", "h"),
    "keyframes": ("id", "seq", "width", "height", "K", "T_map_cam", "stamp", "has_depth",
                  "has_pointmap", "has_features", "h"),
    "arrays": ("keyframe_id", "name", "offset", "nbytes", "dtype", "shape", "sha256", "h"),
}

SCHEMA_SQL = """
CREATE TABLE info (key TEXT PRIMARY KEY, value NOT NULL, h BLOB NOT NULL);
CREATE TABLE encoder (backend TEXT NOT NULL, model_id TEXT NOT NULL, image_size INTEGER NOT NULL,
    preprocessing TEXT NOT NULL, descriptor TEXT NOT NULL, features TEXT NOT NULL,
    dim INTEGER NOT NULL, h BLOB NOT NULL);
CREATE TABLE files (name TEXT PRIMARY KEY, length INTEGER NOT NULL, h BLOB NOT NULL);
CREATE TABLE keyframes (id INTEGER PRIMARY KEY, seq INTEGER NOT NULL UNIQUE,
    width INTEGER NOT NULL, height INTEGER NOT NULL, K BLOB NOT NULL, T_map_cam BLOB NOT NULL,
    stamp REAL NOT NULL, has_depth INTEGER NOT NULL, has_pointmap INTEGER NOT NULL,
    has_features INTEGER NOT NULL, h BLOB NOT NULL);
CREATE TABLE arrays (keyframe_id INTEGER NOT NULL, name TEXT NOT NULL, offset INTEGER NOT NULL,
    nbytes INTEGER NOT NULL, dtype TEXT NOT NULL, shape TEXT NOT NULL, sha256 BLOB NOT NULL,
    h BLOB NOT NULL, PRIMARY KEY (keyframe_id, name));
"""

#: dtypes an array may have on disk (explicit little-endian)
_DTYPES = {d: np.dtype(d) for d in ("|u1", "<i4", "<i8", "<f2", "<f4", "<f8")}
_FEATURE_NAME = re.compile(r"f\.[a-z_][a-z0-9_]{0,31}")
_MAX_RANK = 4
#: no single stored array may be larger than this (a 4096^2 float32 pointmap is 192 MiB)
MAX_ARRAY_BYTES = 1 << 30

SqlValue = Union[int, float, str, bytes, None]


def row_digest(values: tuple[SqlValue, ...]) -> bytes:
    """SHA-256 of a row's values (type-tagged, so 1, 1.0 and "1" differ)."""
    h = hashlib.sha256()
    for v in values:
        if v is None:
            h.update(b"n")
        elif isinstance(v, bool) or not isinstance(v, (int, float, str, bytes)):
            raise TypeError(f"unsupported SQL value {type(v).__name__}")
        elif isinstance(v, int):
            h.update(b"i" + str(v).encode() + b";")
        elif isinstance(v, float):
            h.update(b"f" + struct.pack("<d", v))
        else:
            raw = v.encode() if isinstance(v, str) else v
            h.update((b"s" if isinstance(v, str) else b"b") + struct.pack("<Q", len(raw)) + raw)
    return h.digest()


def content_hash(dtype: str, shape: str, data: Union[bytes, bytearray, memoryview]) -> bytes:
    """SHA-256 of an array's dtype, shape and bytes."""
    h = hashlib.sha256(f"{dtype}|{shape}|".encode())
    h.update(data)
    return h.digest()


def file_of(name: str) -> str:
    """The payload file holding arrays called ``name`` (``rgb``, ``depth``, ``pointmap``,
    ``desc`` or ``f.<feature array>``)."""
    if name.startswith("f."):
        return "features.bin"
    return f"{name}.bin"


def array_bytes(a: np.ndarray) -> tuple[str, str, memoryview]:
    """``(dtype, shape, bytes)`` of an array as stored (little-endian, C order)."""
    a = np.asarray(a)
    dt = a.dtype.newbyteorder("<") if a.dtype.byteorder == ">" else a.dtype
    a = np.ascontiguousarray(a, dtype=dt)
    if a.dtype.str not in _DTYPES:
        raise MapFormatError(f"cannot store an array of dtype {a.dtype}")
    return a.dtype.str, ",".join(str(int(d)) for d in a.shape), a.reshape(-1).view(np.uint8).data


@dataclass(frozen=True)
class Extent:
    """Where one stored array lives and what it must be.

    Attributes:
        name: array name (``rgb``, ``depth``, ``pointmap``, ``desc``, ``f.<name>``).
        file: payload file name under ``data/``.
        offset: byte offset in the file.
        nbytes: byte length.
        dtype: numpy dtype string (little-endian).
        shape: array shape.
        sha256: content hash (:func:`content_hash`).
    """

    name: str
    file: str
    offset: int
    nbytes: int
    dtype: str
    shape: tuple[int, ...]
    sha256: bytes

    @property
    def shape_text(self) -> str:
        """The shape as stored in the index."""
        return ",".join(str(d) for d in self.shape)

    def array(self, data: bytearray) -> np.ndarray:
        """The array over ``data`` (no copy)."""
        return np.frombuffer(data, dtype=_DTYPES[self.dtype]).reshape(self.shape)


def _int(v: SqlValue, what: str, lo: int = 0, hi: int = 2**62) -> int:
    if isinstance(v, bool) or not isinstance(v, int) or not lo <= v <= hi:
        raise MapFormatError(f"{what} must be an integer in [{lo}, {hi}], got {v!r:.60}")
    return v


def parse_extent(row: tuple, lengths: dict[str, int], where: str) -> tuple[int, Extent]:
    """Validate an ``arrays`` row (without its digest) against the payload file lengths.

    Returns:
        ``(keyframe id, extent)``.

    Raises:
        MapFormatError: unknown name or dtype, malformed or inconsistent shape / size, or bytes
            outside the committed part of the payload file.
    """
    kid, name, offset, nbytes, dtype, shape, sha = row
    kid = _int(kid, f"{where}: arrays.keyframe_id")
    what = f"{where}: array {name!r:.40} of keyframe {kid}"
    if not isinstance(name, str) or not (name in ("rgb", "depth", "pointmap", "desc")
                                         or _FEATURE_NAME.fullmatch(name)):
        raise MapFormatError(f"{what}: unknown array name")
    if not isinstance(dtype, str) or dtype not in _DTYPES:
        raise MapFormatError(f"{what}: dtype {dtype!r:.40} is not one of {sorted(_DTYPES)}")
    dims = _parse_shape(shape, what)
    nbytes = _int(nbytes, f"{what}: nbytes", 0, MAX_ARRAY_BYTES)
    if math.prod(dims) * _DTYPES[dtype].itemsize != nbytes:
        raise MapFormatError(f"{what}: shape {dims} of {dtype} does not take {nbytes} bytes")
    offset = _int(offset, f"{what}: offset")
    file = file_of(name)
    if offset + nbytes > lengths.get(file, 0):
        raise MapFormatError(f"{what}: bytes [{offset}, {offset + nbytes}) lie beyond the "
                             f"{lengths.get(file, 0)} committed bytes of data/{file}; the map is "
                             "truncated or corrupt, restore or rebuild it")
    if not isinstance(sha, bytes) or len(sha) != 32:
        raise MapFormatError(f"{what}: malformed content hash")
    return kid, Extent(name, file, offset, nbytes, dtype, dims, sha)


def _parse_shape(shape: SqlValue, what: str) -> tuple[int, ...]:
    if not isinstance(shape, str) or len(shape) > 64:
        raise MapFormatError(f"{what}: malformed shape {shape!r:.40}")
    parts = shape.split(",") if shape else []
    if len(parts) > _MAX_RANK or not all(re.fullmatch(r"[0-9]{1,10}", p) for p in parts):
        raise MapFormatError(f"{what}: malformed shape {shape!r:.40}")
    return tuple(int(p) for p in parts)


def check_expected(ext: Extent, dtype: str, shape: tuple[int, ...], where: str,
                   kid: int) -> Optional[Extent]:
    """Raise unless ``ext`` has exactly ``dtype`` / ``shape`` (used for images, depths, ...)."""
    if ext.dtype != dtype or ext.shape != shape:
        raise MapFormatError(f"{where}: {ext.name} of keyframe {kid} is {ext.dtype} {ext.shape}, "
                             f"expected {dtype} {shape}")
    return ext
