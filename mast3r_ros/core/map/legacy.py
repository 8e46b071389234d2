"""Reading maps of schema 1 (saved before the schema-2 store) into memory, as hostile input.

Schema 1 (``CURRENT`` -> ``v-<hex>/map.sqlite`` with a ``meta`` table of JSON values and a
``keyframes`` table with JSON ``K`` / ``T_map_cam``; ``rgb/<id>.png``; ``arrays/<id>.npz`` with
``depth`` / ``pointmap``; ``features/<id>.npz``; ``global_desc.npy``) exists in two flavours, both
migrated on load:

* typed (written once the core contract landed): meta ``encoder`` holds the six
  :class:`EncoderId` fields, ``features/<id>.npz`` the features' ``to_arrays()`` schema. The
  encodings are kept as they are.
* untyped (earlier releases): a MASt3R map (meta ``backend == "mast3r"``) keeps its encodings:
  the meta's ``model_id``, ``image_size``, ``preprocessing`` and ``descriptor`` become the
  :class:`EncoderId` (features :attr:`Mast3rFeatures.KIND`), ``feat`` (N, C) float32 becomes
  float16 tokens, ``global_desc.npy`` the descriptors. Any other map (the SIFT baseline stored
  descriptors but no features) is loaded without encodings; the localizer encodes it.

Saving the loaded map writes schema 2 (``save_map(load_map(p), p)`` migrates a map in place).
Every size is checked before anything is allocated: JSON texts are bounded (no deep-nesting
RecursionError), ``.npy`` headers are parsed and their shape x itemsize compared with the
expected shape and the file size, PNG sizes are read from the header before decoding
(:func:`mast3r_ros.core.io.image.decode_image_bytes`, the package's one image entry point).
"""

from __future__ import annotations

import json
import logging
import math
import os
import sqlite3
import struct
import tokenize
import zipfile
import zlib
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import IO, Any, Optional

import numpy as np

from mast3r_ros.core.config import MapStoreConfig
from mast3r_ros.core.errors import ImageError, InputError, MapFormatError
from mast3r_ros.core.features import EncoderId, Features, Mast3rFeatures, features_from_arrays
from mast3r_ros.core.io.image import decode_image_bytes, max_file_bytes
from mast3r_ros.core.map.files import check_dir, open_regular
from mast3r_ros.core.map.format import DTYPES
from mast3r_ros.core.map.index_db import check_cells, connect
from mast3r_ros.core.map.keyframe import Keyframe, KeyframeMap, MapMeta
from mast3r_ros.core.types import Encoding

__all__ = ["LEGACY_INDEX", "load_v1"]

logger = logging.getLogger(__name__)

LEGACY_INDEX = "map.sqlite"
_MAX_JSON = 65536
#: schema-1 maps were read whole into memory; none had more keyframes than this
_MAX_V1_KEYFRAMES = 100_000
_MAX_CHANNELS = 2048
_MAX_FEATURE_BYTES = 64 << 20
#: errors of malformed input raised by zipfile / numpy / PIL / json parsing
_PARSE_ERRORS = (ValueError, SyntaxError, EOFError, OSError, KeyError, RuntimeError, TypeError,
                 NotImplementedError, zipfile.BadZipFile, zlib.error, struct.error, RecursionError,
                 tokenize.TokenError)


def _json(text: Any, what: str) -> Any:
    if not isinstance(text, str) or len(text) > _MAX_JSON:
        raise MapFormatError(f"{what}: expected a JSON text of at most {_MAX_JSON} characters")
    try:
        return json.loads(text)
    except (ValueError, RecursionError) as exc:
        raise MapFormatError(f"{what}: malformed JSON ({type(exc).__name__})") from exc


def _int(v: Any, what: str, lo: int = 0, hi: int = 2**62) -> int:
    if isinstance(v, bool) or not isinstance(v, int) or not lo <= v <= hi:
        raise MapFormatError(f"{what} must be an integer in [{lo}, {hi}], got {v!r:.40}")
    return v


def _matrix(text: Any, n: int, what: str) -> np.ndarray:
    vals = _json(text, what)
    if not isinstance(vals, list) or len(vals) != n * n or not all(
            isinstance(v, (int, float)) and not isinstance(v, bool) for v in vals):
        raise MapFormatError(f"{what} must be a list of {n * n} numbers")
    return np.array(vals, dtype=np.float64).reshape(n, n)


# ------------------------------------------------------------------------------------ arrays
def _read_npy(f: IO[bytes], size: int, what: str, dtype: Optional[str],
              shape_ok: Callable[[tuple], bool], max_bytes: int) -> np.ndarray:
    """One ``.npy`` stream of ``size`` bytes: header checked (dtype, shape, bytes against
    ``max_bytes`` and against what the stream holds) before the data is read (``dtype`` None:
    any dtype of :data:`DTYPES`)."""
    version = np.lib.format.read_magic(f)
    reader = {(1, 0): np.lib.format.read_array_header_1_0,
              (2, 0): np.lib.format.read_array_header_2_0}.get(version)
    if reader is None:
        raise MapFormatError(f"{what}: unsupported .npy version {version}")
    shape, fortran, dt = reader(f, max_header_size=1024)
    good_dtype = dt.str == dtype if dtype is not None else dt.str in DTYPES
    if not good_dtype or fortran or not isinstance(shape, tuple) or not shape_ok(shape):
        raise MapFormatError(f"{what}: {dt} {shape} is not the expected {dtype} array")
    nbytes = math.prod(shape) * dt.itemsize
    if nbytes > max_bytes:
        raise MapFormatError(f"{what}: shape {shape} needs {nbytes} bytes, more than {max_bytes}")
    if nbytes != size - f.tell():
        raise MapFormatError(f"{what}: truncated or padded: the header says {nbytes} bytes of "
                             f"data, the file holds {size - f.tell()}")
    data, done = bytearray(nbytes), 0  # writable: tensors may be made from it
    view = memoryview(data)
    while done < nbytes:
        n = f.readinto(view[done:])  # type: ignore[attr-defined]
        if not n:
            raise MapFormatError(f"{what}: truncated ({done} of {nbytes} bytes)")
        done += n
    return np.frombuffer(data, dt).reshape(shape)


def _open(path: Path) -> int:
    """A regular file of the version, in a real subdirectory (no links on the way)."""
    check_dir(path.parent)
    return open_regular(path)


def _read_npz(path: Path, want: Mapping[str, tuple[Optional[str], Callable[[tuple], bool], int]]
              ) -> dict[str, np.ndarray]:
    """The members ``want`` of an ``.npz`` file ({name: (dtype, shape check, max bytes)}); with
    ``want`` empty, every member (at most 8, any allowed dtype, 64 MiB each)."""
    fd = _open(path)
    bound = 2 * sum(m for _, _, m in want.values()) + 65536
    with os.fdopen(fd, "rb") as f:
        size = os.fstat(fd).st_size
        if size > bound:
            raise MapFormatError(f"{path}: {size} bytes is too large for the arrays it may hold")
        try:
            with zipfile.ZipFile(f) as z:
                out = {}
                if not want:
                    names = [n[:-4] for n in z.namelist()[:9] if n.endswith(".npy")]
                    if len(names) > 8 or len(names) != len(z.namelist()):
                        raise MapFormatError(f"{path}: unexpected members {z.namelist()[:9]}")
                    want = {n: (None, lambda s: len(s) <= 4, _MAX_FEATURE_BYTES) for n in names}
                for name, (dtype, ok, max_bytes) in want.items():
                    info = z.getinfo(f"{name}.npy")
                    with z.open(info) as m:
                        out[name] = _read_npy(m, info.file_size, f"{path}:{name}", dtype, ok,
                                              max_bytes)
                return out
        except _PARSE_ERRORS as exc:
            raise MapFormatError(f"{path}: corrupt .npz ({type(exc).__name__}: {exc})") from exc


def _read_png(path: Path, w: int, h: int, config: MapStoreConfig) -> np.ndarray:
    """A keyframe image, its size read from the header before anything is decoded."""
    fd = _open(path)
    with os.fdopen(fd, "rb") as f:
        data = f.read(max_file_bytes(config.max_image_pixels) + 1)
    try:
        if len(data) > max_file_bytes(config.max_image_pixels):
            raise ImageError("the file is larger than any image within the pixel limit")
        rgb = decode_image_bytes(data, config.max_image_pixels)
    except ImageError as exc:
        raise MapFormatError(f"{path}: {exc} (MapStoreConfig.max_image_pixels); the map is "
                             "corrupt or hostile") from exc
    if rgb.shape[:2] != (h, w):
        raise MapFormatError(f"{path}: image is {rgb.shape[1]}x{rgb.shape[0]}, the index says "
                             f"{w}x{h}")
    return rgb


def _descriptors(vdir: Path, shape: Any, n: int) -> Optional[np.ndarray]:
    if shape is None:
        return None
    if not (isinstance(shape, list) and len(shape) == 2 and shape[0] == n):
        raise MapFormatError(f"{vdir}: global_desc_shape {shape!r:.60} does not fit {n} keyframes")
    dim = _int(shape[1], f"{vdir}: descriptor dimension", 1, 1 << 16)
    path = vdir / "global_desc.npy"
    with os.fdopen(open_regular(path), "rb") as f:
        try:
            d = _read_npy(f, os.fstat(f.fileno()).st_size, str(path), "<f4",
                          lambda s: s == (n, dim), 4 * n * dim)
        except _PARSE_ERRORS as exc:
            raise MapFormatError(f"{path}: corrupt ({type(exc).__name__}: {exc})") from exc
    with np.errstate(over="ignore", invalid="ignore"):
        norms = np.linalg.norm(np.nan_to_num(d, nan=0.0, posinf=0.0, neginf=0.0), axis=1)
    if not np.all(np.isfinite(d)) or np.any(np.abs(norms - 1.0) > 1e-3):
        raise MapFormatError(f"{path}: global descriptors must be finite unit vectors; rebuild "
                             "the map")
    return d


# ------------------------------------------------------------------------------------ rows
def _meta(con: sqlite3.Connection, vdir: Path) -> dict[str, Any]:
    raw = {}
    for k, v in con.execute("SELECT key, value FROM meta LIMIT 64"):
        if isinstance(k, str):
            raw[k] = _json(v, f"{vdir}: meta {k[:40]}")
    if raw.get("schema_version") != 1:
        raise MapFormatError(f"{vdir}: schema version {raw.get('schema_version')!r:.20} is not "
                             "supported; rebuild the map")
    for k in ("model_id", "backend", "created", "preprocessing", "descriptor", "frame_id",
              "source"):
        if not isinstance(raw.get(k, ""), str):
            raise MapFormatError(f"{vdir}: meta {k} must be a text")
    return raw


def _encoder(raw: dict[str, Any]) -> Optional[EncoderId]:
    if "encoder" in raw:  # typed flavour
        enc = raw["encoder"]
        if enc is None:
            return None
        names = ("backend", "model_id", "image_size", "preprocessing", "descriptor", "features")
        if not isinstance(enc, dict) or set(enc) != set(names) or not all(
                isinstance(enc[n], str) for n in names if n != "image_size"):
            raise MapFormatError("meta encoder must hold the six EncoderId fields")
        _int(enc["image_size"], "meta encoder image_size", 0, 2048)
        return EncoderId(**{n: enc[n] for n in names})
    if raw.get("backend") != "mast3r":
        return None
    size = _int(raw.get("image_size"), "meta image_size", 16, 2048)
    return EncoderId("mast3r", raw.get("model_id", ""), size, raw.get("preprocessing", ""),
                     raw.get("descriptor", ""), Mast3rFeatures.KIND)


def _features(vdir: Path, kid: int, encoder: EncoderId, typed: bool) -> Features:
    path = vdir / "features" / f"{kid}.npz"
    if typed:
        try:
            return features_from_arrays(encoder.features, _read_npz(path, {}))
        except InputError as exc:
            raise MapFormatError(f"{path}: {exc}") from exc
    h, w = (int(v) for v in _read_npz(path, {"true_shape": ("<i8", lambda s: s == (2,), 16)})
            ["true_shape"])
    if not (0 < h <= encoder.image_size and 0 < w <= encoder.image_size and h % 16 == w % 16 == 0):
        raise MapFormatError(f"{path}: true_shape {(h, w)} does not fit image size "
                             f"{encoder.image_size}")
    tokens = (h // 16) * (w // 16)
    feat = _read_npz(path, {"feat": ("<f4", lambda s: len(s) == 2 and s[0] == tokens
                                     and 0 < s[1] <= _MAX_CHANNELS,
                                     4 * tokens * _MAX_CHANNELS)})["feat"]
    try:
        return Mast3rFeatures.from_arrays({"tokens": feat.astype(np.float16),
                                           "true_shape": np.array([h, w], np.int64)})
    except InputError as exc:
        raise MapFormatError(f"{path}: {exc}") from exc


def _keyframe(vdir: Path, row: tuple, config: MapStoreConfig) -> Keyframe:
    kid, _, w, h, K, T, stamp, has_d, has_p, _ = row
    what = f"{vdir}: keyframe {kid}"
    w, h = _int(w, f"{what}: width", 1, 1 << 20), _int(h, f"{what}: height", 1, 1 << 20)
    if w * h > config.max_image_pixels:
        raise MapFormatError(f"{what}: {w}x{h} pixels is above the limit of "
                             f"{config.max_image_pixels} (MapStoreConfig.max_image_pixels)")
    rgb = _read_png(vdir / "rgb" / f"{kid}.png", w, h, config)
    depth = pointmap = None
    if _int(has_d, f"{what}: has_depth", 0, 1) or _int(has_p, f"{what}: has_pointmap", 0, 1):
        want = {"depth": ("<f4", lambda s: s == (h, w), 4 * w * h)} if has_d else {}
        if has_p:
            want["pointmap"] = ("<f4", lambda s: s == (h, w, 3), 12 * w * h)
        arrays = _read_npz(vdir / "arrays" / f"{kid}.npz", want)
        depth, pointmap = arrays.get("depth"), arrays.get("pointmap")
    if isinstance(stamp, bool) or not isinstance(stamp, (int, float)):
        raise MapFormatError(f"{what}: stamp must be a number")
    try:
        return Keyframe(kid, rgb, _matrix(K, 3, f"{what}: K"), _matrix(T, 4, f"{what}: T_map_cam"),
                        float(stamp), depth, pointmap)
    except InputError as exc:
        raise MapFormatError(f"{what}: {exc}") from exc


def load_v1(vdir: Path, config: MapStoreConfig) -> KeyframeMap:
    """Read a schema-1 version directory into an in-memory map (see the module docstring).

    Raises:
        MapFormatError: anything malformed, with the keyframe or file at fault.
    """
    con = connect(vdir / LEGACY_INDEX, write=False)
    cols = ("id", "idx", "width", "height", "K", "T_map_cam", "stamp", "has_depth", "has_pointmap",
            "has_features")
    try:
        check_cells(con, "meta", ("key", "value"), 64, _MAX_JSON, str(vdir))
        check_cells(con, "keyframes", cols, _MAX_V1_KEYFRAMES, 2048, str(vdir))
        raw = _meta(con, vdir)
        rows = list(con.execute(f"SELECT {', '.join(cols)} FROM keyframes ORDER BY idx"))
    except sqlite3.Error as exc:
        raise MapFormatError(f"{vdir / LEGACY_INDEX}: {exc}; rebuild the map") from exc
    finally:
        con.close()
    if raw.get("num_keyframes") != len(rows) or [r[1] for r in rows] != list(range(len(rows))):
        raise MapFormatError(f"{vdir}: {len(rows)} keyframe rows, meta says "
                             f"{raw.get('num_keyframes')!r:.20}; the map is corrupt")
    encoder = _encoder(raw)
    desc = _descriptors(vdir, raw.get("global_desc_shape"), len(rows))
    kmap = KeyframeMap(MapMeta(raw.get("created", ""), raw.get("frame_id", "map"),
                               raw.get("source", "")))
    for i, row in enumerate(rows):
        kid = _int(row[0], f"{vdir}: keyframe id")
        if kid in kmap:
            raise MapFormatError(f"{vdir}: keyframe id {kid} appears twice")
        kf = _keyframe(vdir, row, config)
        enc = None
        if encoder is not None and desc is not None and _int(row[9], "has_features", 0, 1):
            feats = _features(vdir, kid, encoder, "encoder" in raw)
            enc = Encoding(encoder, kf.width, kf.height, desc[i], feats)
        try:
            kmap.add(kf, enc)
        except InputError as exc:
            raise MapFormatError(f"{vdir}: keyframe {kid}: {exc}") from exc
    logger.warning("map %s has schema 1: read into memory (%d keyframes, %s); save it to convert "
                   "it to schema 2 with lazy loading", vdir.parent, len(kmap),
                   "MASt3R encodings kept" if encoder else "no encodings, the localizer encodes it")
    return kmap
