"""Open a schema-v2 map version lazily: the index now, payloads on demand.

:func:`open_version` reads and validates the whole SQLite index (every row's digest, every
array's place, dtype and shape against the committed length of its payload file) and the global
descriptors, and returns a :class:`~mast3r_ros.core.map.keyframe.KeyframeMap` whose
:attr:`~mast3r_ros.core.map.keyframe.KeyframeMap.source` is a :class:`StoreSource`. Images,
depths, pointmaps and features are read when first asked for, their content hash checked, and
kept in a byte-budgeted LRU cache. The payload files are opened once, at open time, so a later
save that replaces (and deletes) this version does not disturb a map that is in use.
"""

from __future__ import annotations

import hashlib
import logging
import os
import time
import weakref
from pathlib import Path
from typing import Optional

import numpy as np

from mast3r_ros.core.cache import ByteLRU
from mast3r_ros.core.config import MapStoreConfig
from mast3r_ros.core.errors import InputError, MapFormatError
from mast3r_ros.core.features import Features, features_from_arrays
from mast3r_ros.core.map.files import check_dir, open_regular, pread_exact
from mast3r_ros.core.map.format import DATA, Extent, content_hash
from mast3r_ros.core.map.index_db import IndexContent, read_index
from mast3r_ros.core.map.keyframe import Keyframe, KeyframeMap, KeyframeRecord
from mast3r_ros.core.retrieval.index import GlobalIndex

__all__ = ["StoreSource", "open_version"]

logger = logging.getLogger(__name__)


class StoreSource:
    """Keyframe payloads of one map version on disk (a :class:`PayloadSource`).

    Args:
        version_dir: the version directory (``<map>/v-<hex>``).
        index: its validated index.
        config: cache budget and hash checking.

    Raises:
        MapFormatError: a payload file is missing, not a regular file, or shorter than the index
            says.
    """

    def __init__(self, version_dir: Path, index: IndexContent, config: MapStoreConfig) -> None:
        self.version_dir = version_dir
        self.index = index
        self.config = config
        self.cache: ByteLRU[object] = ByteLRU(config.host_cache_bytes)
        self._fds: dict[str, int] = {}
        self._closer = weakref.finalize(self, _close_all, self._fds)
        self._open_files()

    def _open_files(self) -> None:
        if any(self.index.lengths.values()) and not self._fds:
            check_dir(self.version_dir / DATA)
        for name, length in self.index.lengths.items():
            if length == 0 or name in self._fds:
                continue
            path = self.version_dir / DATA / name
            fd = open_regular(path)
            self._fds[name] = fd
            size = os.fstat(fd).st_size
            if size < length:
                raise MapFormatError(f"{path} has {size} bytes but the index says {length}: the "
                                     "map is truncated; restore it or rebuild it")

    def update(self, index: IndexContent) -> None:
        """Follow a save that appended to this version (its index after the commit)."""
        self.index = index
        self._open_files()

    @property
    def map_dir(self) -> Path:
        """The map directory."""
        return self.version_dir.parent

    def holds(self, keyframe_id: int) -> bool:
        """True when this version stores the keyframe's payload."""
        return keyframe_id in self.index.extents

    def close(self) -> None:
        """Close the payload files (later reads raise MapFormatError)."""
        self._closer()

    # ------------------------------------------------------------------ PayloadSource
    def keyframe(self, record: KeyframeRecord) -> Keyframe:
        """The keyframe of ``record`` (its pose and K as the record says, pixels from disk).

        Raises:
            KeyError: the keyframe is not stored in this version.
            MapFormatError: its stored arrays are corrupt.
        """
        ext = self.index.extents.get(record.id)
        rgb = self.array(record.id, ext["rgb"])
        depth = self.array(record.id, ext["depth"]) if record.has_depth else None
        pointmap = self.array(record.id, ext["pointmap"]) if record.has_pointmap else None
        try:
            return Keyframe(record.id, rgb, record.K, record.T_map_cam, record.stamp, depth,
                            pointmap)
        except InputError as exc:
            raise MapFormatError(f"{self.version_dir}: keyframe {record.id}: {exc}") from exc

    def features(self, record: KeyframeRecord) -> Optional[Features]:
        """The stored features of ``record`` (None when it has none).

        Raises:
            MapFormatError: the stored arrays do not follow the features' schema or are corrupt.
        """
        kid = record.id
        if kid not in self.index.with_features or self.index.encoder is None:
            return None
        ext = self.index.extents.get(kid)
        key = ("features", ext["desc"].offset)
        hit = self.cache.get(key)
        if hit is not None:
            return hit  # type: ignore[return-value]
        arrays = {n[2:]: self.array(kid, e, cache=False) for n, e in ext.items()
                  if n.startswith("f.")}
        try:
            feats = features_from_arrays(self.index.encoder.features, arrays)
        except InputError as exc:
            raise MapFormatError(f"{self.version_dir}: features of keyframe {kid}: {exc}; "
                                 "rebuild the map or re-encode it") from exc
        self.cache.put(key, feats, feats.nbytes)
        return feats

    # ------------------------------------------------------------------ raw arrays
    def read_file(self, name: str, length: int) -> bytearray:
        """The first ``length`` bytes of payload file ``name`` (not cached, not hash-checked)."""
        fd = self._fds.get(name)
        if fd is None:
            raise MapFormatError(f"{self.version_dir}: the map was closed")
        return pread_exact(fd, length, 0, f"{self.version_dir / DATA / name}")

    def array(self, kid: int, ext: Extent, cache: bool = True) -> np.ndarray:
        """One stored array, hash-checked, read-only (through the cache when ``cache``)."""
        key = (ext.file, ext.offset)
        if cache:
            hit = self.cache.get(key)
            if hit is not None:
                return hit  # type: ignore[return-value]
        fd = self._fds.get(ext.file)
        what = f"{self.version_dir}: {ext.name} of keyframe {kid}"
        if fd is None:
            raise MapFormatError(f"{what}: the map was closed")
        data = pread_exact(fd, ext.nbytes, ext.offset, what)
        if self.config.verify_hashes and content_hash(ext.dtype, ext.shape, data) != ext.sha256:
            raise MapFormatError(f"{what}: content hash mismatch (bit rot or a modified file); "
                                 "restore the map from a backup or rebuild it")
        a = ext.array(data)
        if cache:
            a.flags.writeable = False
            self.cache.put(key, a, a.nbytes)
        return a


def _close_all(fds: dict[str, int]) -> None:
    for fd in fds.values():
        os.close(fd)
    fds.clear()


def _descriptors(source: StoreSource, ids: list[int]) -> np.ndarray:
    """(N, D) float32 global descriptors of ``ids`` from one read of ``desc.bin``, validated
    (content hash, finite, unit norm)."""
    index, where, dim = source.index, source.version_dir, source.index.dim
    length = index.lengths.get("desc.bin", 0)
    if length % (4 * dim):
        raise MapFormatError(f"{where}: desc.bin is not a whole number of descriptors")
    table = np.frombuffer(source.read_file("desc.bin", length), "<f4").reshape(-1, dim)
    offsets, shas = index.extents.column("desc", ids)
    out = table[offsets // (4 * dim)]  # offsets were checked aligned and in range
    if source.config.verify_hashes:
        prefix = hashlib.sha256(f"<f4|{dim}|".encode())
        for row, (kid, sha) in enumerate(zip(ids, shas)):
            h = prefix.copy()
            h.update(out[row])
            if h.digest() != sha:
                raise MapFormatError(f"{where}: global descriptor of keyframe {kid}: content "
                                     "hash mismatch (bit rot or a modified file); restore or "
                                     "rebuild the map")
    bad = ~np.all(np.isfinite(out), axis=1)
    with np.errstate(over="ignore", invalid="ignore"):
        norms = np.linalg.norm(np.where(bad[:, None], 0.0, out), axis=1)
    bad |= np.abs(norms - 1.0) > 1e-3
    if np.any(bad):
        kid = ids[int(np.flatnonzero(bad)[0])]
        raise MapFormatError(f"{where}: global descriptor of keyframe {kid} is not a finite unit "
                             f"vector ({int(bad.sum())} bad rows); re-encode the map")
    return out


def open_version(version_dir: Path, config: MapStoreConfig) -> KeyframeMap:
    """Open one schema-v2 version directory (see the module docstring).

    Raises:
        MapFormatError: anything in the index or the payload files is malformed.
    """
    t0 = time.perf_counter()
    index = read_index(version_dir, config)
    source = StoreSource(version_dir, index, config)
    kmap = KeyframeMap(index.meta)
    for rec in index.records:
        kmap.add_record(rec)
    enc_ids = [r.id for r in index.records if r.id in index.with_features]
    if index.encoder is not None and enc_ids:
        desc = _descriptors(source, enc_ids)
        kmap.encoder = index.encoder
        kmap.index = GlobalIndex(desc, enc_ids)
    kmap.source = source
    logger.info("opened map %s: %d keyframes (%d encoded%s) in %.2f s", version_dir.parent,
                len(kmap), len(enc_ids), f", {index.encoder.backend}" if index.encoder else "",
                time.perf_counter() - t0)
    return kmap

