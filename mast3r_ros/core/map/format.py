"""Schema v2 of the map directory: names, SQLite tables, array encoding and hashes.

Layout (see :mod:`mast3r_ros.core.map.store` for why)::

    <map>/CURRENT                 "v-<32 hex>": the live version (replaced atomically)
    <map>/.lock                   writer lock (fcntl)
    <map>/v-<32 hex>/.mast3r-map  marker: this directory was written by the store
    <map>/v-<32 hex>/index.sqlite tables below
    <map>/v-<32 hex>/data/<file>  append-only payload files (raw little-endian arrays)
    <map>/.tmp-<pid>-<32 hex>/    a save in progress (same marker)

Every table row carries ``h``, the SHA-256 of its other values (bit rot in the index is detected
like bit rot in a payload). A keyframe row holds, in its ``arrays`` column, a packed table of its
stored arrays (:data:`ARRAY_REC`: name, offset in the payload file, byte length, dtype, shape and
the SHA-256 of dtype, shape and bytes, checked when the array is read): one fixed-layout record
per array, so that opening a map validates the places of all arrays with a few numpy operations
instead of one Python object per array.
"""

from __future__ import annotations

import hashlib
import re
import struct
from typing import NamedTuple, Union

import numpy as np

__all__ = ["SCHEMA_VERSION", "CURRENT", "INDEX", "MARKER", "DATA", "VERSION_RE", "TMP_RE",
           "SCHEMA_SQL", "TABLE_COLUMNS", "PAYLOAD_FILES", "ARRAY_REC", "DTYPES", "Extent",
           "row_digest", "content_hash", "file_of", "array_bytes", "pack_extents", "SqlValue",
           "MAX_ARRAY_BYTES"]

#: on-disk layout written by this module (1 = the layout of maps saved before the typed store)
SCHEMA_VERSION = 2

CURRENT = "CURRENT"
INDEX = "index.sqlite"
MARKER = ".mast3r-map"
DATA = "data"
VERSION_RE = re.compile(r"v-[0-9a-f]{32}")
TMP_RE = re.compile(r"\.tmp-[0-9]{1,10}-[0-9a-f]{32}")

#: payload files under ``data/`` (the only files the index may refer to)
PAYLOAD_FILES = ("rgb.bin", "depth.bin", "pointmap.bin", "features.bin", "desc.bin")

#: columns of each table, the last one being the row digest ``h``
TABLE_COLUMNS: dict[str, tuple[str, ...]] = {
    "info": ("key", "value", "h"),
    "encoder": ("backend", "model_id", "image_size", "preprocessing", "descriptor", "features",
                "dim", "h"),
    "files": ("name", "length", "h"),
    "keyframes": ("id", "seq", "width", "height", "K", "T_map_cam", "stamp", "has_depth",
                  "has_pointmap", "has_features", "arrays", "h"),
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
    has_features INTEGER NOT NULL, arrays BLOB NOT NULL, h BLOB NOT NULL);
"""

#: dtypes an array may have on disk (explicit little-endian)
DTYPES = {d: np.dtype(d) for d in ("|u1", "<i4", "<i8", "<f2", "<f4", "<f8")}
#: no single stored array may be larger than this (a 4096^2 float32 pointmap is 192 MiB)
MAX_ARRAY_BYTES = 1 << 30
MAX_RANK = 4

#: one stored array in a keyframe row's ``arrays`` column (96 bytes, little-endian)
ARRAY_REC = np.dtype([("name", "S24"), ("offset", "<u8"), ("nbytes", "<u8"), ("dtype", "S4"),
                      ("rank", "u1"), ("pad", "V3"), ("shape", "<u4", (MAX_RANK,)),
                      ("sha256", "V32")])

SqlValue = Union[int, float, str, bytes, None]
_F64 = struct.Struct("<d")


def row_digest(values: tuple[SqlValue, ...]) -> bytes:
    """SHA-256 of a row's values (type-tagged, so 1, 1.0, "1" and b"1" differ)."""
    parts = []
    for v in values:
        t = type(v)
        if t is int:
            parts.append(b"i%d;" % v)  # type: ignore[str-format]
        elif t is bytes:
            parts += (b"b%d;" % len(v), v)  # type: ignore[arg-type]
        elif t is str:
            raw = v.encode("utf-8", "surrogatepass")  # type: ignore[union-attr]
            parts += (b"s%d;" % len(raw), raw)
        elif t is float:
            parts.append(b"f" + _F64.pack(v))
        elif v is None:
            parts.append(b"n")
        else:
            raise TypeError(f"unsupported SQL value {t.__name__}")
    return hashlib.sha256(b"".join(parts)).digest()


def content_hash(dtype: str, shape: tuple[int, ...], data: Union[bytes, bytearray, memoryview]
                 ) -> bytes:
    """SHA-256 of an array's dtype, shape and bytes."""
    h = hashlib.sha256(f"{dtype}|{','.join(str(d) for d in shape)}|".encode())
    h.update(data)
    return h.digest()


def file_of(name: str) -> str:
    """The payload file holding arrays called ``name`` (``rgb``, ``depth``, ``pointmap``,
    ``desc`` or ``f.<feature array>``)."""
    if name.startswith("f."):
        return "features.bin"
    return f"{name}.bin"


def array_bytes(a: np.ndarray) -> tuple[str, tuple[int, ...], memoryview]:
    """``(dtype, shape, bytes)`` of an array as stored (little-endian, C order)."""
    a = np.asarray(a)
    dt = a.dtype.newbyteorder("<") if a.dtype.byteorder == ">" else a.dtype
    a = np.ascontiguousarray(a, dtype=dt)
    if a.dtype.str not in DTYPES or a.ndim > MAX_RANK:
        raise ValueError(f"cannot store a {a.ndim}-d array of dtype {a.dtype}")
    return a.dtype.str, tuple(int(d) for d in a.shape), a.reshape(-1).view(np.uint8).data


class Extent(NamedTuple):
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

    def array(self, data: bytearray) -> np.ndarray:
        """The array over ``data`` (no copy)."""
        return np.frombuffer(data, dtype=DTYPES[self.dtype]).reshape(self.shape)

    @classmethod
    def unpack(cls, rec: np.void) -> Extent:
        """The extent of one :data:`ARRAY_REC` record (already validated)."""
        name = rec["name"].decode()
        rank = int(rec["rank"])
        return cls(name, file_of(name), int(rec["offset"]), int(rec["nbytes"]),
                   rec["dtype"].decode(), tuple(int(d) for d in rec["shape"][:rank]),
                   bytes(rec["sha256"]))


def pack_extents(extents: list[Extent]) -> bytes:
    """The ``arrays`` column of a keyframe row."""
    recs = np.zeros(len(extents), ARRAY_REC)
    for r, e in zip(recs, extents):
        r["name"], r["offset"], r["nbytes"] = e.name.encode(), e.offset, e.nbytes
        r["dtype"], r["rank"] = e.dtype.encode(), len(e.shape)
        r["shape"][:len(e.shape)] = e.shape
        r["sha256"] = e.sha256
    return recs.tobytes()
