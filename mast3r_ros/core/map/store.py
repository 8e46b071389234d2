"""The map on disk: crash-safe save and validating load.

Layout of a map directory ``<path>/``::

    CURRENT                  name of the live version directory (replaced atomically)
    v-<uuid>/map.sqlite      meta (key/value JSON) + keyframes (id, size, K, pose, stamp, files)
    v-<uuid>/rgb/<id>.png    lossless colour images
    v-<uuid>/arrays/<id>.npz depth (H, W) float32 and/or pointmap (H, W, 3) float32
    v-<uuid>/features/<id>.npz  cached network features (named arrays)
    v-<uuid>/global_desc.npy (N, D) float32 global descriptors

A save writes a complete new version under a temporary name, fsyncs every file and directory,
renames it to ``v-<uuid>`` and then atomically replaces ``CURRENT``. A crash at any point leaves
``CURRENT`` naming the previous complete version; leftovers are removed by the next save.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import shutil
import sqlite3
import uuid
import zipfile
from pathlib import Path
from typing import Optional, Union

import cv2
import numpy as np

from mast3r_ros.core.errors import InputError, MapFormatError
from mast3r_ros.core.features import EncoderId, Features, features_from_arrays
from mast3r_ros.core.map.keyframe import Keyframe, KeyframeMap, MapMeta

__all__ = ["save_map", "load_map", "SCHEMA_VERSION"]

#: version of the on-disk layout written by :func:`save_map`
SCHEMA_VERSION = 1

logger = logging.getLogger(__name__)

_DB = "map.sqlite"
_CURRENT = "CURRENT"


def _fsync_path(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_file(path: Path, data: bytes) -> None:
    with open(path, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


def _npz_bytes(arrays: dict[str, np.ndarray]) -> bytes:
    import io

    buf = io.BytesIO()
    np.savez_compressed(buf, **arrays)
    return buf.getvalue()


def _write_keyframe_files(root: Path, kf: Keyframe, feats: Optional[Features]) -> None:
    ok, png = cv2.imencode(".png", cv2.cvtColor(kf.rgb, cv2.COLOR_RGB2BGR))
    if not ok:
        raise InputError(f"keyframe {kf.id}: could not encode the image as PNG")
    _write_file(root / "rgb" / f"{kf.id}.png", png.tobytes())
    arrays = {}
    if kf.depth is not None:
        arrays["depth"] = kf.depth.astype(np.float32)
    if kf.pointmap is not None:
        arrays["pointmap"] = kf.pointmap.astype(np.float32)
    if arrays:
        _write_file(root / "arrays" / f"{kf.id}.npz", _npz_bytes(arrays))
    if feats is not None:
        _write_file(root / "features" / f"{kf.id}.npz", _npz_bytes(feats.to_arrays()))


def _write_db(root: Path, m: KeyframeMap) -> None:
    con = sqlite3.connect(root / _DB)
    try:
        with con:  # one transaction
            con.execute("CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
            con.execute("CREATE TABLE keyframes (id INTEGER PRIMARY KEY, idx INTEGER NOT NULL, "
                        "width INTEGER NOT NULL, height INTEGER NOT NULL, K TEXT NOT NULL, "
                        "T_map_cam TEXT NOT NULL, stamp REAL NOT NULL, has_depth INTEGER NOT NULL, "
                        "has_pointmap INTEGER NOT NULL, has_features INTEGER NOT NULL)")
            meta: dict = {f: getattr(m.meta, f) for f in m.meta.__dataclass_fields__}
            meta["schema_version"] = SCHEMA_VERSION
            meta["encoder"] = (dataclasses.asdict(m.encoder) if m.encoder is not None
                               and not m.missing_encodings() else None)
            meta["num_keyframes"] = len(m)
            meta["global_desc_shape"] = ([len(m), m.index.dim] if meta["encoder"] is not None
                                         and m.index is not None else None)
            con.executemany("INSERT INTO meta VALUES (?, ?)",
                            [(k, json.dumps(v)) for k, v in meta.items()])
            con.executemany("INSERT INTO keyframes VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", [
                (r.id, i, r.width, r.height, json.dumps(r.K.reshape(-1).tolist()),
                 json.dumps(r.T_map_cam.reshape(-1).tolist()), float(r.stamp),
                 int(r.has_depth), int(r.has_pointmap),
                 int(meta["encoder"] is not None)) for i, r in enumerate(m.records())])
    finally:
        con.close()
    with open(root / _DB, "rb+") as f:
        os.fsync(f.fileno())


def _is_live_tmp(name: str) -> bool:
    """True for the temporary directory of a save still running in another live process."""
    if not name.startswith(".tmp-"):
        return False
    try:
        pid = int(name.split("-")[1])
    except (IndexError, ValueError):
        return False
    if pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def save_map(m: KeyframeMap, path: Union[str, Path]) -> Path:
    """Write a map atomically (see the module docstring); the previous version survives a crash.

    Args:
        m: the map.
        path: map directory (created when absent).

    Returns:
        The map directory.

    Raises:
        MapFormatError: when ``path`` exists and is not a map directory (refuses to overwrite).
    """
    path = Path(path)
    if path.exists() and (not path.is_dir() or (any(path.iterdir())
                                                and not (path / _CURRENT).exists())):
        raise MapFormatError(f"{path} exists and is not a map directory; choose another path")
    path.mkdir(parents=True, exist_ok=True)
    tmp = path / f".tmp-{os.getpid()}-{uuid.uuid4().hex}"
    for sub in ("rgb", "arrays", "features"):
        (tmp / sub).mkdir(parents=True)
    encoded = m.encoder is not None and not m.missing_encodings() and m.index is not None
    for kf in m.keyframes():
        _write_keyframe_files(tmp, kf, m.features(kf.id) if encoded else None)
    if encoded and m.index is not None:
        import io

        buf = io.BytesIO()
        np.save(buf, m.index.descriptors(m.ids).astype(np.float32))
        _write_file(tmp / "global_desc.npy", buf.getvalue())
    _write_db(tmp, m)
    for sub in ("rgb", "arrays", "features", "."):
        _fsync_path(tmp / sub)
    version = f"v-{uuid.uuid4().hex}"
    os.rename(tmp, path / version)
    cur_tmp = path / f".{_CURRENT}.{uuid.uuid4().hex}"
    _write_file(cur_tmp, version.encode())
    os.replace(cur_tmp, path / _CURRENT)
    _fsync_path(path)
    for child in path.iterdir():  # old versions and leftovers of crashed saves
        if child.name in (version, _CURRENT) or _is_live_tmp(child.name):
            continue
        shutil.rmtree(child, ignore_errors=True) if child.is_dir() else child.unlink(missing_ok=True)
    logger.info("saved map with %d keyframes to %s", len(m), path)
    return path


def _read_meta(con: sqlite3.Connection, db: Path) -> tuple[MapMeta, dict]:
    raw = {k: json.loads(v) for k, v in con.execute("SELECT key, value FROM meta")}
    version = raw.get("schema_version")
    if version != SCHEMA_VERSION:
        raise MapFormatError(f"{db}: schema version {version!r} is not supported (expected "
                             f"{SCHEMA_VERSION}); rebuild the map with this version")
    fields = {k: raw[k] for k in MapMeta.__dataclass_fields__ if k in raw}
    return MapMeta(**{k: str(v) for k, v in fields.items()}), raw


def _load_keyframe(root: Path, row: tuple) -> tuple[Keyframe, Optional[dict[str, np.ndarray]]]:
    kid, _, w, h, K, T, stamp, has_depth, has_pm, has_feat = row
    bgr = cv2.imread(str(root / "rgb" / f"{kid}.png"), cv2.IMREAD_COLOR)
    if bgr is None or bgr.shape[:2] != (h, w):
        raise MapFormatError(f"{root}: image of keyframe {kid} is missing, corrupt or not {w}x{h}")
    depth = pointmap = None
    if has_depth or has_pm:
        with np.load(root / "arrays" / f"{kid}.npz") as z:
            depth = z["depth"] if has_depth else None
            pointmap = z["pointmap"] if has_pm else None
    feats = None
    if has_feat:
        with np.load(root / "features" / f"{kid}.npz") as z:
            feats = {k: z[k] for k in z.files}
    kf = Keyframe(kid, cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), np.array(json.loads(K)).reshape(3, 3),
                  np.array(json.loads(T)).reshape(4, 4), stamp, depth, pointmap)
    return kf, feats


def load_map(path: Union[str, Path]) -> KeyframeMap:
    """Read and validate a map directory (retries once when a concurrent save replaced it).

    Args:
        path: map directory written by :func:`save_map`.

    Raises:
        MapFormatError: missing/corrupt/unknown-version map.
    """
    path = Path(path)
    before = _current_name(path)
    try:
        return _load_version(path)
    except MapFormatError:
        if not before or _current_name(path) == before:
            raise
        logger.info("map %s was replaced while loading; loading the new version", path)
        return _load_version(path)


def _current_name(path: Path) -> str:
    try:
        return (path / _CURRENT).read_text().strip()
    except OSError:
        return ""


def _load_version(path: Path) -> KeyframeMap:
    """Load the version named by CURRENT (see :func:`load_map`)."""
    try:
        root = path / (path / _CURRENT).read_text().strip()
    except OSError as exc:
        raise MapFormatError(f"{path} is not a map directory (no readable {_CURRENT} file); "
                             f"build one with `mast3r-ros map-from-rgbd`") from exc
    db = root / _DB
    if not db.is_file():
        raise MapFormatError(f"{path}: version {root.name} has no {_DB}; the map is corrupt")
    try:
        con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
        try:
            meta, raw = _read_meta(con, db)
            rows = list(con.execute("SELECT * FROM keyframes ORDER BY idx"))
        finally:
            con.close()
        loaded = [_load_keyframe(root, row) for row in rows]
        gd = None
        if raw.get("global_desc_shape") is not None:
            gd = np.load(root / "global_desc.npy", allow_pickle=False)
            if list(gd.shape) != raw["global_desc_shape"]:
                raise MapFormatError(f"{path}: global_desc has shape {gd.shape}, expected "
                                     f"{raw['global_desc_shape']}")
    except (sqlite3.Error, OSError, ValueError, KeyError, InputError, EOFError,
            zipfile.BadZipFile) as exc:
        raise MapFormatError(f"{path}: corrupt map ({type(exc).__name__}: {exc}); rebuild it") from exc
    if raw.get("num_keyframes") != len(loaded):
        raise MapFormatError(f"{path}: {len(loaded)} keyframes stored, meta says "
                             f"{raw.get('num_keyframes')}")
    return _assemble(meta, raw, loaded, gd)


def _assemble(meta: MapMeta, raw: dict, loaded: list, gd: Optional[np.ndarray]) -> KeyframeMap:
    """The map from its loaded parts; encodings only when the encoder is recorded (v1 maps of
    earlier releases stored untyped features: they load without encodings and are re-encoded)."""
    from mast3r_ros.core.types import Encoding

    kmap = KeyframeMap(meta)
    enc = raw.get("encoder")
    encoder = EncoderId(**enc) if isinstance(enc, dict) else None
    try:
        for k, (kf, feats) in enumerate(loaded):
            encoding = None
            if encoder is not None and feats and gd is not None:
                encoding = Encoding(encoder, kf.width, kf.height, gd[k],
                                    features_from_arrays(encoder.features, feats))
            kmap.add(kf, encoding)
    except (InputError, TypeError) as exc:
        raise MapFormatError(f"corrupt map ({exc}); rebuild it") from exc
    return kmap
