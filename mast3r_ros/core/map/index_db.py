"""The SQLite index of a schema-v2 map version: validated reading and digest-carrying writing.

Reading treats the database as hostile input: only the store's own tables are read (never views),
a progress handler bounds the time any statement may take, every row's digest is checked, and
every value is type- and range-checked before it becomes a typed value.
"""

from __future__ import annotations

import os
import sqlite3
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import numpy as np

from mast3r_ros.core.config import MapStoreConfig
from mast3r_ros.core.errors import MapError, MapFormatError
from mast3r_ros.core.features import EncoderId
from mast3r_ros.core.geometry.camera import intrinsics_problem
from mast3r_ros.core.map.extents import ExtentTable, read_extents
from mast3r_ros.core.map.files import open_regular
from mast3r_ros.core.map.format import (
    INDEX,
    PAYLOAD_FILES,
    SCHEMA_VERSION,
    TABLE_COLUMNS,
    Extent,
    SqlValue,
    pack_extents,
    row_digest,
)
from mast3r_ros.core.map.keyframe import KeyframeRecord, MapMeta

__all__ = ["IndexContent", "connect", "read_index", "insert_row", "record_values", "check_cells",
           "MAX_KEYFRAMES"]

#: a map index may not list more keyframes than this
MAX_KEYFRAMES = 2_000_000
#: any single SQL statement on a map index is aborted after this many seconds
_STATEMENT_SECONDS = 120.0
_MAX_TEXT = 4096


@dataclass
class IndexContent:
    """Everything the index of one version says, validated.

    Attributes:
        generation: commit counter (incremented by every save into this version).
        meta: descriptive metadata.
        encoder: identity of the stored encodings, or None.
        dim: global descriptor dimension (0 without an encoder).
        lengths: committed byte length of each payload file.
        records: keyframe rows in insertion order.
        with_features: ids of keyframes with stored features and descriptor.
        extents: where each keyframe's arrays are stored.
        seqs: keyframe id -> stored insertion order.
    """

    generation: int
    meta: MapMeta
    encoder: Optional[EncoderId]
    dim: int
    lengths: dict[str, int]
    records: list[KeyframeRecord] = field(default_factory=list)
    with_features: set[int] = field(default_factory=set)
    extents: ExtentTable = field(default_factory=ExtentTable)
    seqs: dict[int, int] = field(default_factory=dict)


def connect(db: Path, write: bool) -> sqlite3.Connection:
    """Open an index database (no file is created; a hot journal of a killed save is rolled back
    when the file is writable).

    Raises:
        MapFormatError: not a regular file or not an SQLite database.
    """
    os.close(open_regular(db))  # refuses links, FIFOs and devices without blocking
    rw = write or (os.access(db, os.W_OK) and os.access(db.parent, os.W_OK))
    try:
        con = sqlite3.connect(f"{db.absolute().as_uri()}?mode={'rw' if rw else 'ro'}", uri=True,
                              timeout=10.0, isolation_level=None, check_same_thread=False)
        deadline = time.monotonic() + _STATEMENT_SECONDS
        con.set_progress_handler(lambda: int(time.monotonic() > deadline), 100_000)
        con.execute("PRAGMA trusted_schema=OFF")
        if not write:
            con.execute("PRAGMA query_only=ON")
    except sqlite3.Error as exc:
        raise MapFormatError(f"{db}: not a readable SQLite database ({exc}); restore or rebuild "
                             "the map") from exc
    return con


def insert_row(con: sqlite3.Connection, table: str, values: tuple[SqlValue, ...],
               replace: bool = False) -> None:
    """Insert one row with its digest."""
    cols = TABLE_COLUMNS[table]
    verb = "INSERT OR REPLACE" if replace else "INSERT"
    con.execute(f"{verb} INTO {table} ({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))})",
                (*values, row_digest(values)))


def record_values(rec: KeyframeRecord, seq: int, has_features: bool,
                  extents: list[Extent]) -> tuple[SqlValue, ...]:
    """The ``keyframes`` row of a record and its arrays (without its digest)."""
    return (rec.id, seq, rec.width, rec.height,
            np.ascontiguousarray(rec.K, dtype="<f8").tobytes(),
            np.ascontiguousarray(rec.T_map_cam, dtype="<f8").tobytes(), float(rec.stamp),
            int(rec.has_depth), int(rec.has_pointmap), int(has_features), pack_extents(extents))


def _rows(con: sqlite3.Connection, table: str, where: str) -> list[tuple]:
    """All rows of ``table`` without their digests, each digest checked."""
    cols = TABLE_COLUMNS[table]
    out = []
    for row in con.execute(f"SELECT {', '.join(cols)} FROM {table}"):
        *values, h = row
        if not isinstance(h, bytes) or row_digest(tuple(values)) != h:
            raise MapFormatError(f"{where}: a row of table {table} fails its checksum (bit rot or "
                                 "an edited index); restore the map from a backup or rebuild it")
        out.append(tuple(values))
    return out


def _text(v: SqlValue, what: str) -> str:
    if not isinstance(v, str) or len(v) > _MAX_TEXT:
        raise MapFormatError(f"{what} must be a text of at most {_MAX_TEXT} characters")
    return v


def _small_int(v: SqlValue, what: str, lo: int, hi: int) -> int:
    if isinstance(v, bool) or not isinstance(v, int) or not lo <= v <= hi:
        raise MapFormatError(f"{what} must be an integer in [{lo}, {hi}], got {v!r:.40}")
    return v


def _info(rows: list[tuple], where: str) -> tuple[int, MapMeta, tuple[int, int]]:
    """Generation, meta and the (keyframe, array) row counts from the ``info`` rows."""
    info = dict(rows)
    version = info.get("schema_version")
    if version != SCHEMA_VERSION:
        raise MapFormatError(f"{where}: schema version {version!r:.20} is not supported (this "
                             f"version reads {SCHEMA_VERSION} and 1); rebuild the map")
    generation = _small_int(info.get("generation"), f"{where}: generation", 0, 2**62)
    meta = MapMeta(**{k: _text(info.get(k), f"{where}: meta {k}")
                      for k in ("created", "frame_id", "source")})
    counts = (_small_int(info.get("num_keyframes"), f"{where}: num_keyframes", 0, MAX_KEYFRAMES),
              _small_int(info.get("num_arrays"), f"{where}: num_arrays", 0, 64 * MAX_KEYFRAMES))
    return generation, meta, counts


def _encoder(rows: list[tuple], where: str) -> tuple[Optional[EncoderId], int]:
    if not rows:
        return None, 0
    if len(rows) > 1:
        raise MapFormatError(f"{where}: the index names {len(rows)} encoders")
    backend, model_id, size, pre, desc, feats, dim = rows[0]
    enc = EncoderId(_text(backend, "encoder backend"), _text(model_id, "encoder model_id"),
                    _small_int(size, "encoder image_size", 0, 65536),
                    _text(pre, "encoder preprocessing"), _text(desc, "encoder descriptor"),
                    _text(feats, "encoder features"))
    return enc, _small_int(dim, f"{where}: descriptor dimension", 1, 1 << 16)


def _lengths(rows: list[tuple], version_dir: Path) -> dict[str, int]:
    lengths: dict[str, int] = {}
    for name, length in rows:
        if name not in PAYLOAD_FILES:
            raise MapFormatError(f"{version_dir}: unknown payload file {name!r:.40}")
        lengths[name] = _small_int(length, f"{version_dir}: length of {name}", 0, 2**62)
    return lengths


def _record(row: tuple, config: MapStoreConfig, where: str, k_seen: dict[bytes, np.ndarray]
            ) -> tuple[int, KeyframeRecord, bool]:
    """One keyframe row (its ``arrays`` column is checked by :func:`read_extents`)."""
    kid, seq, w, h, K, T, stamp, has_d, has_p, has_f, _ = row
    kid = _small_int(kid, f"{where}: keyframe id", 0, 2**62)
    what = f"{where}: keyframe {kid}"
    ints = (seq, w, h, has_d, has_p, has_f)
    if not (all(type(v) is int for v in ints) and 0 <= seq <= 2**62 and 0 < w <= 1 << 20
            and 0 < h <= 1 << 20 and all(v in (0, 1) for v in ints[3:])):
        raise MapFormatError(f"{what}: seq, size or flags out of range: {ints!r:.120}")
    if w * h > config.max_image_pixels:
        raise MapFormatError(f"{what}: image of {w}x{h} pixels is above the limit of "
                             f"{config.max_image_pixels} (MapStoreConfig.max_image_pixels)")
    if not (isinstance(K, bytes) and len(K) == 72 and isinstance(T, bytes) and len(T) == 128):
        raise MapFormatError(f"{what}: K / T_map_cam must be 3x3 / 4x4 float64 blobs")
    Km = k_seen.get(K)
    if Km is None:  # most maps have one K: check (and keep) each distinct one once
        Km = np.frombuffer(K, "<f8").reshape(3, 3).astype(np.float64)
        problem = intrinsics_problem(Km)
        if problem is not None:
            raise MapFormatError(f"{what}: {problem}")
        Km.flags.writeable = False
        k_seen[K] = Km
    Tm = np.frombuffer(T, "<f8").reshape(4, 4)
    if not np.isfinite(Tm).all():
        raise MapFormatError(f"{what}: T_map_cam contains NaN/inf")
    if isinstance(stamp, bool) or not isinstance(stamp, (int, float)) or not np.isfinite(stamp):
        raise MapFormatError(f"{what}: stamp must be a finite number")
    rec = KeyframeRecord(kid, w, h, Km, Tm, float(stamp), bool(has_d), bool(has_p))
    return seq, rec, bool(has_f)


def check_cells(con: sqlite3.Connection, table: str, columns: tuple[str, ...], max_rows: int,
                max_cell: int, where: str) -> None:
    """Refuse a table with more rows or larger values than a map can have, before any row is
    fetched (a hostile index cannot make the reader allocate gigabytes)."""
    sizes = ", ".join(f"MAX(length(CAST({c} AS BLOB)))" for c in columns)
    n, *cells = con.execute(f"SELECT COUNT(*), {sizes} FROM {table}").fetchone()
    if n > max_rows or any(c is not None and c > max_cell for c in cells):
        raise MapFormatError(f"{where}: table {table} holds {n} rows (at most {max_rows}) or "
                             f"values larger than {max_cell} bytes (JSON, text or blob): not a "
                             "map this store wrote; restore or rebuild it")


#: most rows and largest value of each table
_LIMITS = {"info": (64, 4096), "encoder": (1, 4096), "files": (16, 64),
           "keyframes": (MAX_KEYFRAMES, 64 * 96)}


def _check_tables(con: sqlite3.Connection, where: str) -> None:
    kinds = dict(con.execute("SELECT name, type FROM sqlite_master"))
    for table in TABLE_COLUMNS:
        if kinds.get(table) != "table":
            raise MapFormatError(f"{where}: the index has no table {table!r}")
        check_cells(con, table, TABLE_COLUMNS[table], *_LIMITS[table], where)


def _read(con: sqlite3.Connection, version_dir: Path, config: MapStoreConfig) -> IndexContent:
    where = str(version_dir)
    _check_tables(con, where)
    generation, meta, counts = _info(_rows(con, "info", where), where)
    encoder, dim = _encoder(_rows(con, "encoder", where), where)
    content = IndexContent(generation, meta, encoder, dim,
                           _lengths(_rows(con, "files", where), version_dir))
    rows = _rows(con, "keyframes", where)
    if len(rows) != counts[0]:
        raise MapFormatError(f"{where}: {len(rows)} keyframes stored, the index says "
                             f"{counts[0]}; restore or rebuild the map")
    k_seen: dict[bytes, np.ndarray] = {}
    parsed = sorted((_record(row, config, where, k_seen) + (row[-1],) for row in rows),
                    key=lambda p: p[0])
    for (seq, _, _, _), (nseq, _, _, _) in zip(parsed, parsed[1:]):
        if seq == nseq:
            raise MapFormatError(f"{where}: two keyframes have insertion order {seq}")
    content.records = [p[1] for p in parsed]
    content.seqs = {p[1].id: p[0] for p in parsed}
    content.with_features = {p[1].id for p in parsed if p[2]}
    if content.with_features and encoder is None:
        raise MapFormatError(f"{where}: keyframes have features but the index names no encoder")
    blobs = [p[3] for p in parsed]
    flags = {"width": np.array([r.width for r in content.records], np.int64),
             "height": np.array([r.height for r in content.records], np.int64),
             "has_depth": np.array([r.has_depth for r in content.records], bool),
             "has_pointmap": np.array([r.has_pointmap for r in content.records], bool),
             "has_features": np.array([p[2] for p in parsed], bool)}
    content.extents = read_extents(blobs, [r.id for r in content.records], flags, dim,
                                   content.lengths, where, counts[1])
    return content


def read_index(version_dir: Path, config: MapStoreConfig) -> IndexContent:
    """Read and validate ``<version_dir>/index.sqlite``.

    Raises:
        MapFormatError: anything malformed (see the module docstring).
        MapError: the index is locked by a writer for longer than SQLite's timeout.
    """
    con = connect(version_dir / INDEX, write=False)
    try:
        return _read(con, version_dir, config)
    except sqlite3.OperationalError as exc:
        if "locked" in str(exc):
            raise MapError(f"{version_dir}: the index is locked by a writer; retry") from exc
        raise MapFormatError(f"{version_dir / INDEX}: {exc}; restore or rebuild the map") from exc
    except sqlite3.Error as exc:
        raise MapFormatError(f"{version_dir / INDEX}: {exc}; restore or rebuild the map") from exc
    finally:
        con.close()

