"""Write keyframes into a schema-v2 version: payload bytes first, then one SQLite transaction.

A full save and an incremental save are the same operation on a different base: a full save
writes every keyframe into an empty version directory; an incremental save writes only what
changed since the version was read (new or replaced keyframes and encodings, new poses, removed
keyframes) into the live version. Payload bytes are appended to the payload files and fsynced
before the transaction that makes them reachable commits, so a crash at any point leaves the
index naming only complete, hash-checked arrays (a killed append leaves unreferenced bytes past
the committed length, cut off by the next writer).
"""

from __future__ import annotations

import os
import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np

from mast3r_ros.core.errors import InputError
from mast3r_ros.core.features import EncoderId
from mast3r_ros.core.map.extents import ExtentTable
from mast3r_ros.core.map.files import fsync_dir, write_all
from mast3r_ros.core.map.format import (
    DATA,
    INDEX,
    PAYLOAD_FILES,
    SCHEMA_SQL,
    SCHEMA_VERSION,
    Extent,
    SqlValue,
    array_bytes,
    content_hash,
    file_of,
)
from mast3r_ros.core.map.index_db import IndexContent, connect, insert_row, record_values
from mast3r_ros.core.map.keyframe import KeyframeMap, KeyframeRecord

__all__ = ["KeyframeWrite", "Plan", "plan_full", "plan_incremental", "apply_plan", "create_index"]


@dataclass(frozen=True)
class KeyframeWrite:
    """What a save writes for one keyframe.

    Attributes:
        kid: keyframe id.
        seq: insertion order stored in its row.
        payload: write image / depth / pointmap (else the stored ones stay).
        features: write features and global descriptor (else the stored ones stay, if any).
    """

    kid: int
    seq: int
    payload: bool
    features: bool


@dataclass
class Plan:
    """A save's work: keyframes to (re)write, keyframes to drop, and the resulting index.

    Attributes:
        writes: keyframe rows to write, in map order.
        removed: ids whose rows are deleted.
        content: the index after the save (completed while writing).
        base: the index the save starts from (None for a new version).
    """

    writes: list[KeyframeWrite]
    removed: list[int]
    content: IndexContent
    base: Optional[IndexContent] = None


def plan_full(kmap: KeyframeMap, generation: int) -> Plan:
    """Every keyframe of ``kmap`` into an empty version."""
    dim = kmap.index.dim if kmap.index is not None else 0
    content = IndexContent(generation, kmap.meta, kmap.encoder if dim else None, dim,
                           {n: 0 for n in PAYLOAD_FILES})
    writes = [KeyframeWrite(kid, seq, True, _encoded(kmap, kid))
              for seq, kid in enumerate(kmap.ids)]
    return Plan(writes, [], content)


def _encoded(kmap: KeyframeMap, kid: int) -> bool:
    return kmap.encoder is not None and kmap.index is not None and kid in kmap.index


def plan_incremental(kmap: KeyframeMap, base: IndexContent) -> Optional[Plan]:
    """The changes of ``kmap`` since ``base`` (the index it was read from), or None when only a
    full save can express them (another encoder, or stored encodings dropped).
    """
    stored_enc = base.encoder if base.with_features else None
    if stored_enc is not None and (kmap.encoder != stored_enc or kmap.index is None
                                   or kmap.index.dim != base.dim):
        return None
    content = IndexContent(base.generation, kmap.meta, kmap.encoder or base.encoder,
                           kmap.index.dim if kmap.index is not None else base.dim,
                           dict(base.lengths))
    removed = [kid for kid in base.extents if kid not in kmap]
    writes: list[KeyframeWrite] = []
    next_seq = max(base.seqs.values(), default=-1) + 1
    stored = {r.id: r for r in base.records}
    for kid in kmap.ids:
        rec, old = kmap.record(kid), stored.get(kid)
        payload = old is None or kmap.payload_in_memory(kid)
        enc = _encoded(kmap, kid)
        if not payload and kid in base.with_features and not enc:
            return None  # a stored encoding was dropped
        feats = enc and (payload or kmap.features_in_memory(kid) or kid not in base.with_features)
        seq = next_seq if payload else base.seqs[kid]
        next_seq += payload
        if payload or feats or not _same_record(rec, old):  # type: ignore[arg-type]
            writes.append(KeyframeWrite(kid, seq, payload, feats))
    return Plan(writes, removed, content, base)


def _same_record(a: KeyframeRecord, b: KeyframeRecord) -> bool:
    return (a.stamp == b.stamp and np.array_equal(a.K, b.K)
            and np.array_equal(a.T_map_cam, b.T_map_cam))


class PayloadWriter:
    """Appends arrays to the payload files of one version directory.

    Each file is first cut back to its committed length (bytes of a killed writer are dropped).

    Args:
        version_dir: the version directory.
        lengths: committed length of each payload file (updated as arrays are written).
    """

    def __init__(self, version_dir: Path, lengths: dict[str, int]) -> None:
        self.dir = version_dir / DATA
        self.lengths = lengths
        self._fds: dict[str, int] = {}

    def _fd(self, name: str) -> int:
        fd = self._fds.get(name)
        if fd is None:
            fd = os.open(self.dir / name, os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC,
                         0o644)
            self._fds[name] = fd
            os.ftruncate(fd, self.lengths.get(name, 0))
            os.lseek(fd, 0, os.SEEK_END)
        return fd

    def write(self, name: str, array: np.ndarray) -> Extent:
        """Append one array called ``name``; its extent (with content hash)."""
        dtype, shape, data = array_bytes(array)
        file = file_of(name)
        fd = self._fd(file)
        offset = self.lengths.get(file, 0)
        write_all(fd, data)
        self.lengths[file] = offset + data.nbytes
        return Extent(name, file, offset, data.nbytes, dtype, shape,
                      content_hash(dtype, shape, data))

    def sync(self) -> None:
        """Make every appended byte durable."""
        for fd in self._fds.values():
            os.fsync(fd)
        fsync_dir(self.dir)

    def close(self) -> None:
        """Close the files."""
        for fd in self._fds.values():
            os.close(fd)
        self._fds.clear()


def _write_arrays(kmap: KeyframeMap, w: KeyframeWrite, out: PayloadWriter) -> dict[str, Extent]:
    ext: dict[str, Extent] = {}
    if w.payload:
        kf = kmap.keyframe(w.kid)
        ext["rgb"] = out.write("rgb", kf.rgb)
        if kf.depth is not None:
            ext["depth"] = out.write("depth", kf.depth.astype(np.float32, copy=False))
        if kf.pointmap is not None:
            ext["pointmap"] = out.write("pointmap", kf.pointmap.astype(np.float32, copy=False))
    if w.features:
        feats = kmap.features(w.kid)
        assert kmap.index is not None and feats is not None  # guaranteed by the plan
        desc = kmap.index.descriptor(w.kid)
        if not (np.all(np.isfinite(desc)) and abs(float(np.linalg.norm(desc)) - 1.0) <= 1e-3):
            raise InputError(f"keyframe {w.kid}: its global descriptor is not a finite unit vector "
                             "(a blank image?); remove the keyframe or re-encode it")
        for name, a in feats.to_arrays().items():
            ext[f"f.{name}"] = out.write(f"f.{name}", a)
        ext["desc"] = out.write("desc", desc.astype(np.float32))
    return ext


def _write_payloads(kmap: KeyframeMap, plan: Plan, version_dir: Path
                    ) -> dict[int, dict[str, Extent]]:
    out = PayloadWriter(version_dir, plan.content.lengths)
    try:
        written = {w.kid: _write_arrays(kmap, w, out) for w in plan.writes}
        out.sync()
    finally:
        out.close()
    return written


def create_index(version_dir: Path) -> None:
    """Create the empty index database and payload directory of a new version."""
    (version_dir / DATA).mkdir()
    con = sqlite3.connect(version_dir / INDEX, isolation_level=None)
    try:
        con.executescript(SCHEMA_SQL)
    finally:
        con.close()


def apply_plan(kmap: KeyframeMap, plan: Plan, version_dir: Path) -> IndexContent:
    """Write the plan's payloads, then commit its rows in one transaction.

    Returns:
        The index of the version after the commit.

    Raises:
        OSError / sqlite3.Error: the caller maps them to typed errors; nothing is committed then.
    """
    written = _write_payloads(kmap, plan, version_dir)
    c = plan.content
    c.extents = plan.base.extents.copy() if plan.base is not None else ExtentTable()
    for kid in plan.removed:
        c.extents.drop(kid)
    for w in plan.writes:
        ext = {} if w.payload or w.kid not in c.extents else dict(c.extents.get(w.kid))
        if w.features:
            ext = {n: e for n, e in ext.items() if n != "desc" and not n.startswith("f.")}
        ext.update(written[w.kid])
        c.extents.set(w.kid, ext)
    con = connect(version_dir / INDEX, write=True)
    try:
        con.execute("PRAGMA synchronous=FULL")
        con.execute("BEGIN IMMEDIATE")
        _commit_rows(con, kmap, plan)
        con.execute("COMMIT")
    finally:
        con.close()
    seqs = {w.kid: w.seq for w in plan.writes}
    for kid in kmap.ids:
        c.records.append(kmap.record(kid))
        c.seqs[kid] = seqs[kid] if kid in seqs else plan.base.seqs[kid]  # type: ignore[union-attr]
        if _encoded(kmap, kid):
            c.with_features.add(kid)
    return c


def _commit_rows(con: sqlite3.Connection, kmap: KeyframeMap, plan: Plan) -> None:
    c = plan.content
    for kid in plan.removed:
        con.execute("DELETE FROM keyframes WHERE id = ?", (kid,))
    for w in plan.writes:
        row = record_values(kmap.record(w.kid), w.seq, _encoded(kmap, w.kid),
                            list(c.extents.get(w.kid).values()))
        insert_row(con, "keyframes", row, replace=True)
    for name, length in c.lengths.items():
        insert_row(con, "files", (name, length), replace=True)
    c.generation += 1
    n, m = con.execute("SELECT COUNT(*), COALESCE(SUM(length(arrays)), 0) / 96 "
                       "FROM keyframes").fetchone()
    rows: dict[str, SqlValue] = {
        "schema_version": SCHEMA_VERSION, "generation": c.generation, "created": c.meta.created,
        "frame_id": c.meta.frame_id, "source": c.meta.source, "num_keyframes": n,
        "num_arrays": m}
    for key, value in rows.items():
        insert_row(con, "info", (key, value), replace=True)
    if c.encoder is not None and c.dim:
        con.execute("DELETE FROM encoder")
        enc: EncoderId = c.encoder
        insert_row(con, "encoder", (enc.backend, enc.model_id, enc.image_size, enc.preprocessing,
                                    enc.descriptor, enc.features, c.dim))
