"""The map on disk: lazy, validated loading and crash-safe, incremental, single-writer saving.

Layout of a map directory (schema 2; see :mod:`mast3r_ros.core.map.format` for the tables)::

    CURRENT                 "v-<hex>": the live version, replaced atomically (os.replace)
    .lock                   writer lock (fcntl.flock); never removed
    v-<hex>/.mast3r-map     marker: written by this store (a save deletes nothing without it)
    v-<hex>/index.sqlite    schema version, MapMeta, EncoderId, one row per keyframe, one row per
                            stored array (file, offset, bytes, dtype, shape, SHA-256)
    v-<hex>/data/*.bin      append-only payload files, one per kind: rgb (uint8), depth and
                            pointmap (float32), features (per the features' KIND schema, MASt3R
                            tokens float16), desc (float32 rows of the global descriptors)

Why this layout: an SQLite index plus a few append-only files of raw little-endian arrays gives
(1) opening by reading the index and one block of descriptors only; (2) O(1) random access to a
keyframe's arrays with ``os.pread`` at known offsets, decoded by ``np.frombuffer`` with no codec
and no per-keyframe file; (3) appends that write new bytes and then commit one SQLite transaction,
the commit being the only moment the map changes; (4) no dependency beyond the standard library.
Payloads are read with ``pread`` into private buffers rather than through ``mmap``: a payload
file truncated under a memory map turns a read into SIGBUS and kills the process, whereas a short
``pread`` is an ordinary :class:`MapFormatError`; the page cache shares the bytes either way.
lmdb (one memory map, its own locking and map-size limit) and zarr (a file per chunk) were not
needed for this.

Saving: a *full* save writes a new version under ``.tmp-<pid>-<hex>`` (with the marker), fsyncs
it, renames it to ``v-<hex>`` and atomically replaces ``CURRENT``; only then are the previous
version and stale temporaries of dead writers removed. An *incremental* save, chosen when the map
was read from (or last saved to) the live version of the same directory and nobody has committed
to it since, appends the new payloads to that version and commits the changed rows. A crash at any
point leaves the previous state loadable. Saves of one directory are serialised by its lock.
"""

from __future__ import annotations

import errno
import logging
import os
import shutil
import sqlite3
import stat
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Optional, TypeVar, Union

from mast3r_ros.core.config import MapStoreConfig
from mast3r_ros.core.errors import MapError, MapFormatError
from mast3r_ros.core.map.files import LOCK_NAME, MapLock, fsync_dir, read_small, write_all, writing
from mast3r_ros.core.map.format import CURRENT, MARKER, SCHEMA_VERSION, TMP_RE, VERSION_RE
from mast3r_ros.core.map.index_db import IndexContent, connect
from mast3r_ros.core.map.keyframe import KeyframeMap
from mast3r_ros.core.map.legacy import LEGACY_INDEX, load_v1
from mast3r_ros.core.map.reader import StoreSource, open_version
from mast3r_ros.core.map.writer import apply_plan, create_index, plan_full, plan_incremental

__all__ = ["load_map", "save_map", "SCHEMA_VERSION"]

logger = logging.getLogger(__name__)
T = TypeVar("T")

_CURRENT_TMP = ".CURRENT-"
#: an incremental save falls back to a compacting full save beyond this much unreferenced data
_MIN_DEAD_BYTES = 64 << 20


# ---------------------------------------------------------------------------------------- load
def _read_current(path: Path) -> str:
    if not path.is_dir():
        raise MapFormatError(f"{path} is not a map directory; build one with `mast3r-ros "
                             "map-from-rgbd` or the mapper")
    try:
        raw = read_small(path / CURRENT, 256)
    except MapFormatError as exc:
        raise MapFormatError(f"{path} is not a readable map directory ({exc})") from exc
    name = raw.decode("ascii", errors="replace").strip()
    if not VERSION_RE.fullmatch(name):
        raise MapFormatError(f"{path}/{CURRENT} must name a version directory inside the map "
                             f"('v-' and 32 hex digits), got {name[:80]!r}; restore the map")
    return name


def _open_current(path: Path, config: MapStoreConfig) -> KeyframeMap:
    name = _read_current(path)
    vdir = path / name
    try:
        mode = os.lstat(vdir).st_mode
    except OSError as exc:
        raise MapFormatError(f"{path}: version {name} named by {CURRENT} is missing") from exc
    if not stat.S_ISDIR(mode):
        raise MapFormatError(f"{path}: version {name} is not a directory (links are refused)")
    if os.path.lexists(vdir / LEGACY_INDEX):
        return load_v1(vdir, config)
    return open_version(vdir, config)


def load_map(path: Union[str, Path], *,
             config: Optional[MapStoreConfig] = None) -> KeyframeMap:
    """Open a map directory: its index now, keyframe payloads on demand.

    Retries when a concurrent save replaced the version while it was being read. Maps of schema 1
    (saved before the typed store) are read into memory (see :mod:`.legacy`); saving them writes
    schema 2.

    Args:
        path: map directory written by :func:`save_map`.
        config: cache budget and limits (defaults: :class:`MapStoreConfig`).

    Returns:
        The map; its :attr:`~KeyframeMap.source` reads payloads through a host LRU cache.

    Raises:
        MapFormatError: the directory is not a map, or anything in it is malformed.

    Whether the map's encodings suit a backend is decided where the backend is known:
    :func:`mast3r_ros.core.backends.encode_map`.
    """
    cfg = config if config is not None else MapStoreConfig()
    path = Path(path)
    for attempt in range(3):
        before = _current_or_none(path)
        try:
            kmap = _open_current(path, cfg)
            break
        except MapFormatError:
            if attempt == 2 or before is None or _current_or_none(path) == before:
                raise
            logger.info("map %s was replaced while it was read; reading the new version", path)
    return kmap


def _current_or_none(path: Path) -> Optional[str]:
    try:
        return _read_current(path)
    except MapFormatError:
        return None


# ---------------------------------------------------------------------------------------- save
def save_map(kmap: KeyframeMap, path: Union[str, Path], *,
             config: Optional[MapStoreConfig] = None) -> Path:
    """Write a map; the previous version survives a crash at any point.

    When ``kmap`` was read from (or last saved to) the live version of ``path`` and nobody has
    saved there since, only the changes are written (new or replaced keyframes and encodings, new
    poses, removals); otherwise a complete new version replaces the old one. Afterwards ``kmap``
    reads its payloads from ``path`` (the in-memory copies are released), so a growing map stays
    bounded in memory and the next save is incremental.

    Args:
        kmap: the map.
        path: map directory (created when absent). Files of yours in it are left alone.
        config: lock timeout and the cache of the saved map.

    Returns:
        The map directory.

    Raises:
        MapError: ``path`` is not a map directory (refuses to overwrite other data).
        MapLockedError: another process is saving this map for longer than the lock timeout.
        MapError: the disk is full, read-only or not writable (the previous map is intact; the
            message says which).
        InputError: a keyframe's global descriptor is not a finite unit vector.
    """
    cfg = config if config is not None else MapStoreConfig()
    path = Path(path)
    _prepare_dir(path)
    with MapLock(path, cfg.lock_timeout):
        t0 = time.perf_counter()
        previous = _current_or_none(path)
        source = _save_incremental(kmap, path, previous, cfg)
        mode = "appended to"
        if source is None:
            source, mode = _save_full(kmap, path, previous, cfg), "wrote"
        kmap.bind_source(source)
    logger.info("%s map %s: %d keyframes in %.2f s", mode, path, len(kmap),
                time.perf_counter() - t0)
    return path


def _prepare_dir(path: Path) -> None:
    with writing(path):
        try:
            st = os.stat(path)
        except FileNotFoundError:
            path.mkdir(parents=True, exist_ok=True)
            return
        names = os.listdir(path) if stat.S_ISDIR(st.st_mode) else []
    if not stat.S_ISDIR(st.st_mode):
        raise MapError(f"{path} exists and is not a directory; choose another path for the map")
    if CURRENT not in names and not all(_ours(n) for n in names):
        raise MapError(f"{path} exists and is not a map directory (no {CURRENT}); choose another "
                       "path or an empty directory")


def _ours(name: str) -> bool:
    return name == LOCK_NAME or bool(TMP_RE.fullmatch(name)) or _is_current_tmp(name)


def _is_current_tmp(name: str) -> bool:
    return name.startswith(_CURRENT_TMP) and bool(VERSION_RE.fullmatch("v-" + name[9:]))


def _save_incremental(kmap: KeyframeMap, path: Path, previous: Optional[str],
                      cfg: MapStoreConfig) -> Optional[StoreSource]:
    """Append the changes to the live version when possible; the updated source, else None."""
    src = kmap.source
    if not isinstance(src, StoreSource) or previous != src.version_dir.name:
        return None
    try:
        if not os.path.samefile(src.map_dir, path) or \
                _generation(src.version_dir) != src.index.generation:
            return None
    except (OSError, MapFormatError, sqlite3.Error):
        return None
    plan = plan_incremental(kmap, src.index)
    if plan is None or _dead_bytes_after(plan.base, plan.writes, plan.removed) > \
            max(_MIN_DEAD_BYTES, _live_bytes(src.index)):
        return None
    content = _guarded(lambda: apply_plan(kmap, plan, src.version_dir), src.version_dir)
    src.update(content)
    return src


def _generation(version_dir: Path) -> int:
    con = connect(version_dir / "index.sqlite", write=False)
    try:
        row = con.execute("SELECT value FROM info WHERE key = 'generation'").fetchone()
    finally:
        con.close()
    return row[0] if row else -1


def _live_bytes(index: IndexContent) -> int:
    return index.extents.live_bytes()


def _dead_bytes_after(base: Optional[IndexContent], writes: list, removed: list[int]) -> int:
    """Unreferenced payload bytes once a plan is applied (compaction trigger)."""
    assert base is not None
    dead = sum(base.lengths.values()) - _live_bytes(base)
    for kid in removed:
        dead += base.extents.nbytes(kid)
    for w in writes:
        if w.kid not in base.extents:
            continue
        if w.payload:
            dead += base.extents.nbytes(w.kid)
        elif w.features:
            dead += sum(e.nbytes for n, e in base.extents.get(w.kid).items()
                        if n == "desc" or n.startswith("f."))
    return dead


def _guarded(fn: Callable[[], T], where: Path) -> T:
    """Run ``fn`` turning OS and SQLite write failures into a :class:`MapError`."""
    with writing(where):
        try:
            return fn()
        except sqlite3.Error as exc:
            code = errno.ENOSPC if "full" in str(exc) else errno.EIO
            raise OSError(code, f"SQLite: {exc}") from exc


def _save_full(kmap: KeyframeMap, path: Path, previous: Optional[str],
               cfg: MapStoreConfig) -> StoreSource:
    tmp = path / f".tmp-{os.getpid()}-{uuid.uuid4().hex}"
    vdir = path / f"v-{uuid.uuid4().hex}"
    try:
        def write() -> IndexContent:
            tmp.mkdir()
            _write_marker(tmp)
            create_index(tmp)
            content = apply_plan(kmap, plan_full(kmap, 0), tmp)
            fsync_dir(tmp)
            os.rename(tmp, vdir)
            fsync_dir(path)
            _swap_current(path, vdir.name)
            return content

        content = _guarded(write, path)
    except BaseException:
        _remove_tree(tmp)
        if _current_or_none(path) != vdir.name:
            _remove_tree(vdir)
        raise
    _remove_leftovers(path, keep=vdir.name, previous=previous)
    return StoreSource(vdir, content, cfg)


def _write_marker(directory: Path) -> None:
    fd = os.open(directory / MARKER, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644)
    try:
        write_all(fd, f"mast3r_ros map store, schema {SCHEMA_VERSION}\n".encode())
        os.fsync(fd)
    finally:
        os.close(fd)


def _swap_current(path: Path, name: str) -> None:
    tmp = path / f"{_CURRENT_TMP}{name[2:]}"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
    try:
        write_all(fd, f"{name}\n".encode())
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path / CURRENT)
    fsync_dir(path)


def _remove_tree(p: Path) -> None:
    shutil.rmtree(p, ignore_errors=True)


def _remove_leftovers(path: Path, keep: str, previous: Optional[str]) -> None:
    """Delete what a save can prove the store wrote: the version ``CURRENT`` named before, and
    version / temporary directories carrying the marker (stale ones of dead writers: this runs
    under the lock). Anything else in the directory is the user's and stays."""
    for entry in os.scandir(path):
        name = entry.name
        if name == keep:
            continue
        if VERSION_RE.fullmatch(name) or TMP_RE.fullmatch(name):
            proven = name == previous or os.path.isfile(Path(entry.path) / MARKER)
            if entry.is_dir(follow_symlinks=False) and proven:
                _remove_tree(Path(entry.path))
        elif _is_current_tmp(name) and entry.is_file(follow_symlinks=False):
            os.unlink(entry.path)
