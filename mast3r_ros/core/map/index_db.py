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
from mast3r_ros.core.map.files import open_regular
from mast3r_ros.core.map.format import (
    INDEX,
    PAYLOAD_FILES,
    SCHEMA_VERSION,
    TABLE_COLUMNS,
    Extent,
    SqlValue,
    check_expected,
    parse_extent,
    row_digest,
)
from mast3r_ros.core.map.keyframe import KeyframeRecord, MapMeta

__all__ = ["IndexContent", "connect", "read_index", "insert_row", "record_values", "MAX_KEYFRAMES"]

#: a map index may not list more keyframes than this
MAX_KEYFRAMES = 10_000_000
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
        extents: keyframe id -> array name -> :class:`Extent`.
        seqs: keyframe id -> stored insertion order.
    """

    generation: int
    meta: MapMeta
    encoder: Optional[EncoderId]
    dim: int
    lengths: dict[str, int]
    records: list[KeyframeRecord] = field(default_factory=list)
    with_features: set[int] = field(default_factory=set)
    extents: dict[int, dict[str, Extent]] = field(default_factory=dict)
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


def record_values(rec: KeyframeRecord, seq: int, has_features: bool) -> tuple[SqlValue, ...]:
    """The ``keyframes`` row of a record (without its digest)."""
    return (rec.id, seq, rec.width, rec.height,
            np.ascontiguousarray(rec.K, dtype="<f8").tobytes(),
            np.ascontiguousarray(rec.T_map_cam, dtype="<f8").tobytes(), float(rec.stamp),
            int(rec.has_depth), int(rec.has_pointmap), int(has_features))


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


def _record(row: tuple, config: MapStoreConfig, where: str) -> tuple[int, KeyframeRecord, bool]:
    kid, seq, w, h, K, T, stamp, has_d, has_p, has_f = row
    kid = _small_int(kid, f"{where}: keyframe id", 0, 2**62)
    what = f"{where}: keyframe {kid}"
    seq = _small_int(seq, f"{what}: seq", 0, 2**62)
    w, h = _small_int(w, f"{what}: width", 1, 1 << 20), _small_int(h, f"{what}: height", 1, 1 << 20)
    if w * h > config.max_image_pixels:
        raise MapFormatError(f"{what}: image of {w}x{h} pixels is above the limit of "
                             f"{config.max_image_pixels} (MapStoreConfig.max_image_pixels)")
    if not (isinstance(K, bytes) and len(K) == 72 and isinstance(T, bytes) and len(T) == 128):
        raise MapFormatError(f"{what}: K / T_map_cam must be 3x3 / 4x4 float64 blobs")
    Km = np.frombuffer(K, "<f8").reshape(3, 3).astype(np.float64)
    Tm = np.frombuffer(T, "<f8").reshape(4, 4).astype(np.float64)
    problem = intrinsics_problem(Km)
    if problem is not None or not np.all(np.isfinite(Tm)):
        raise MapFormatError(f"{what}: {problem or 'T_map_cam contains NaN/inf'}")
    if isinstance(stamp, bool) or not isinstance(stamp, (int, float)) or not np.isfinite(stamp):
        raise MapFormatError(f"{what}: stamp must be a finite number")
    flags = [_small_int(v, f"{what}: flag", 0, 1) for v in (has_d, has_p, has_f)]
    rec = KeyframeRecord(kid, w, h, Km, Tm, float(stamp), bool(flags[0]), bool(flags[1]))
    return seq, rec, bool(flags[2])


def _check_arrays(rec: KeyframeRecord, ext: dict[str, Extent], has_f: bool, dim: int,
                  where: str) -> None:
    """Which arrays a keyframe must have, with which dtype and shape."""
    kid, hw = rec.id, (rec.height, rec.width)
    want = {name for name, on in (("rgb", True), ("depth", rec.has_depth),
                                  ("pointmap", rec.has_pointmap), ("desc", has_f)) if on}
    have = {n for n in ext if not n.startswith("f.")}
    if have != want or has_f != any(n.startswith("f.") for n in ext):
        raise MapFormatError(f"{where}: keyframe {kid} stores {sorted(ext)}, its row promises "
                             f"{sorted(want)}{' and features' if has_f else ''}")
    check_expected(ext["rgb"], "|u1", (*hw, 3), where, kid)
    if rec.has_depth:
        check_expected(ext["depth"], "<f4", hw, where, kid)
    if rec.has_pointmap:
        check_expected(ext["pointmap"], "<f4", (*hw, 3), where, kid)
    if has_f:
        check_expected(ext["desc"], "<f4", (dim,), where, kid)
        if ext["desc"].offset % (4 * dim):
            raise MapFormatError(f"{where}: descriptor of keyframe {kid} is misaligned")


def _check_tables(con: sqlite3.Connection, where: str) -> None:
    kinds = dict(con.execute("SELECT name, type FROM sqlite_master"))
    for table in TABLE_COLUMNS:
        if kinds.get(table) != "table":
            raise MapFormatError(f"{where}: the index has no table {table!r}")
    n = con.execute("SELECT COUNT(*) FROM keyframes").fetchone()[0]
    m = con.execute("SELECT COUNT(*) FROM arrays").fetchone()[0]
    if n > MAX_KEYFRAMES or m > 64 * n + 64:
        raise MapFormatError(f"{where}: {n} keyframes / {m} arrays are more than a map can hold")


def _read(con: sqlite3.Connection, version_dir: Path, config: MapStoreConfig) -> IndexContent:
    where = str(version_dir)
    _check_tables(con, where)
    generation, meta, counts = _info(_rows(con, "info", where), where)
    encoder, dim = _encoder(_rows(con, "encoder", where), where)
    content = IndexContent(generation, meta, encoder, dim,
                           _lengths(_rows(con, "files", where), version_dir))
    seqs: dict[int, KeyframeRecord] = {}
    for row in _rows(con, "keyframes", where):
        seq, rec, has_f = _record(row, config, where)
        if seq in seqs:
            raise MapFormatError(f"{where}: two keyframes have insertion order {seq}")
        seqs[seq] = rec
        content.seqs[rec.id] = seq
        content.extents[rec.id] = {}
        if has_f:
            content.with_features.add(rec.id)
    content.records = [seqs[s] for s in sorted(seqs)]
    arrays = _rows(con, "arrays", where)
    if (len(content.records), len(arrays)) != counts:
        raise MapFormatError(f"{where}: {len(content.records)} keyframes / {len(arrays)} arrays "
                             f"stored, the index says {counts[0]} / {counts[1]}; restore or "
                             "rebuild the map")
    for row in arrays:
        kid, ext = parse_extent(row, content.lengths, where)
        if kid not in content.extents:
            raise MapFormatError(f"{where}: array {ext.name} of unknown keyframe {kid}")
        content.extents[kid][ext.name] = ext
    if content.with_features and encoder is None:
        raise MapFormatError(f"{where}: keyframes have features but the index names no encoder")
    for rec in content.records:
        _check_arrays(rec, content.extents[rec.id], rec.id in content.with_features, dim, where)
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

