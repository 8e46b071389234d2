"""Small real maps for the store tests: demo 7-Scenes keyframes with encodings of both kinds."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import cv2
import numpy as np
import torch

from mast3r_ros.core.features import EncoderId, Mast3rFeatures, SiftFeatures
from mast3r_ros.core.map import Keyframe, KeyframeMap, build_map_from_rgbd
from mast3r_ros.core.retrieval.descriptors import TINY_DESCRIPTOR, tiny_image_descriptor
from mast3r_ros.core.retrieval.index import l2_normalize
from mast3r_ros.core.types import Encoding

REPO = Path(__file__).resolve().parents[3]
DEMO = REPO / "demo_data" / "sevenscenes_redkitchen"

SIFT_ENCODER = EncoderId("sift", "opencv-sift-n200", 0, "", TINY_DESCRIPTOR, SiftFeatures.KIND)
MAST3R_ENCODER = EncoderId("mast3r", "sha256:test", 512, "dust3r-resize-crop16-v1",
                           "mast3r-encoder-mean-v1", Mast3rFeatures.KIND)


@lru_cache(maxsize=4)
def _demo_keyframes(n: int, scale: float) -> tuple[Keyframe, ...]:
    kmap = build_map_from_rgbd(DEMO, max_frames=n)
    out = []
    for kf in kmap.keyframes():
        if scale != 1.0:
            w, h = int(kf.width * scale), int(kf.height * scale)
            S = np.diag([w / kf.width, h / kf.height, 1.0])
            rgb = cv2.resize(kf.rgb, (w, h), interpolation=cv2.INTER_AREA)
            depth = cv2.resize(kf.depth, (w, h), interpolation=cv2.INTER_NEAREST)
            kf = Keyframe(kf.id, rgb, S @ kf.K, kf.T_map_cam, kf.stamp, depth)
        out.append(kf)
    return tuple(out)


def demo_keyframes(n: int = 4, scale: float = 0.25) -> list[Keyframe]:
    """The first ``n`` demo keyframes (colour, registered depth, pose), resized by ``scale``."""
    return list(_demo_keyframes(n, scale))


def sift_encoding(kf: Keyframe) -> Encoding:
    """Real SIFT features (OpenCV, 200 keypoints) and the tiny-image descriptor of a keyframe."""
    grey = cv2.cvtColor(kf.rgb, cv2.COLOR_RGB2GRAY)
    pts, desc = cv2.SIFT_create(200).detectAndCompute(grey, None)
    xy = np.array([p.pt for p in pts], np.float64).reshape(-1, 2)
    desc = np.zeros((0, 128), np.float32) if desc is None else desc.astype(np.float32)
    return Encoding(SIFT_ENCODER, kf.width, kf.height, tiny_image_descriptor(kf.rgb),
                    SiftFeatures(xy, desc))


def mast3r_encoding(kf: Keyframe, rng: np.random.Generator, channels: int = 16) -> Encoding:
    """A MASt3R-shaped encoding (random tokens for a 16-aligned crop of the keyframe)."""
    h, w = max(16, kf.height // 16 * 16), max(16, kf.width // 16 * 16)
    tokens = torch.from_numpy(rng.normal(size=((h // 16) * (w // 16), channels))
                              .astype(np.float32))
    desc = l2_normalize(tokens.mean(0).numpy())
    return Encoding(MAST3R_ENCODER, kf.width, kf.height, desc, Mast3rFeatures(tokens, (h, w)))


def demo_map(n: int = 4, encoder: str = "sift", scale: float = 0.25, seed: int = 0,
             pointmap_ids: tuple[int, ...] = ()) -> KeyframeMap:
    """A map of demo keyframes with encodings of ``encoder`` ("sift", "mast3r" or "none").

    Keyframes listed in ``pointmap_ids`` (positions) carry a pointmap instead of a depth.
    """
    rng = np.random.default_rng(seed)
    kmap = KeyframeMap()
    for i, kf in enumerate(demo_keyframes(n, scale)):
        if i in pointmap_ids:
            pm = rng.normal(size=(kf.height, kf.width, 3)).astype(np.float32)
            kf = Keyframe(kf.id, kf.rgb, kf.K, kf.T_map_cam, kf.stamp, None, pm)
        enc = {"sift": sift_encoding, "mast3r": lambda k: mast3r_encoding(k, rng),
               "none": lambda k: None}[encoder](kf)
        kmap.add(kf, enc)
    return kmap


def assert_same_map(a: KeyframeMap, b: KeyframeMap) -> None:
    """Every keyframe, record, feature array and descriptor of ``a`` equals ``b``'s, bit for bit."""
    assert a.ids == b.ids and a.meta == b.meta and a.encoder == b.encoder
    for kid in a.ids:
        ka, kb = a.keyframe(kid), b.keyframe(kid)
        for name in ("rgb", "K", "T_map_cam", "depth", "pointmap"):
            va, vb = getattr(ka, name), getattr(kb, name)
            assert (va is None) == (vb is None), (kid, name)
            if va is not None:
                assert va.dtype == vb.dtype and np.array_equal(va, vb, equal_nan=True), (kid, name)
        assert ka.stamp == kb.stamp
        fa, fb = a.features(kid), b.features(kid)
        assert (fa is None) == (fb is None), kid
        if fa is not None and fb is not None:
            xa, xb = fa.to_arrays(), fb.to_arrays()
            assert xa.keys() == xb.keys()
            for k in xa:
                assert xa[k].dtype == xb[k].dtype and np.array_equal(xa[k], xb[k]), (kid, k)
        ea, eb = a.encoding(kid), b.encoding(kid)
        assert (ea is None) == (eb is None)
        if ea is not None and eb is not None:
            assert np.array_equal(ea.global_desc, eb.global_desc)


FIXTURES = Path(__file__).resolve().parent / "fixtures"
TABLE_COLUMNS = __import__("mast3r_ros.core.map.format", fromlist=["TABLE_COLUMNS"]).TABLE_COLUMNS


def version_dir(path: Path) -> Path:
    """The live version directory of a map."""
    return path / (path / "CURRENT").read_text().strip()


def copy_fixture(name: str, dest: Path) -> Path:
    """A writable copy of a committed schema-1 fixture (``v1_sift`` / ``v1_mast3r``)."""
    import shutil

    shutil.copytree(FIXTURES / name, dest)
    return dest


def edit_index(path: Path, sql: str, params: tuple = (), rehash: bool = True) -> None:
    """Run ``sql`` on a v2 map's index; with ``rehash`` recompute every row digest afterwards,
    so that only the value checks (not the checksums) can catch the edit."""
    import sqlite3

    from mast3r_ros.core.map.format import TABLE_COLUMNS, row_digest

    con = sqlite3.connect(version_dir(path) / "index.sqlite", isolation_level=None)
    try:
        con.execute(sql, params)
        for table, cols in TABLE_COLUMNS.items():
            if not rehash:
                break
            for row in list(con.execute(f"SELECT rowid, {', '.join(cols[:-1])} FROM {table}")):
                con.execute(f"UPDATE {table} SET h = ? WHERE rowid = ?",
                            (row_digest(tuple(row[1:])), row[0]))
    finally:
        con.close()


def packed_extents(path: Path, kid: int) -> np.ndarray:
    """A writable copy of a keyframe's packed table of arrays (format.ARRAY_REC records)."""
    import sqlite3

    from mast3r_ros.core.map.format import ARRAY_REC

    con = sqlite3.connect(version_dir(path) / "index.sqlite")
    try:
        blob = con.execute("SELECT arrays FROM keyframes WHERE id = ?", (kid,)).fetchone()[0]
    finally:
        con.close()
    return np.frombuffer(blob, ARRAY_REC).copy()


def edit_extent(path: Path, kid: int, array: str, drop: bool = False, rehash: bool = True,
                **fields: object) -> None:
    """Change fields of one array record of a keyframe (``shape`` as a tuple), or drop it."""
    recs = packed_extents(path, kid)
    i = [r["name"].decode() for r in recs].index(array)
    for key, value in fields.items():
        if key == "shape":
            recs[i]["rank"] = len(value)  # type: ignore[arg-type]
            recs[i]["shape"] = (list(value) + [0, 0, 0, 0])[:4]  # type: ignore[operator]
        else:
            recs[i][key] = value
    if drop:
        recs = np.delete(recs, i)
    edit_index(path, "UPDATE keyframes SET arrays = ? WHERE id = ?", (recs.tobytes(), kid),
               rehash=rehash)


def extent(path: Path, kid: int, name: str) -> tuple[int, int]:
    """(offset, nbytes) of a stored array of a v2 map."""
    rec = next(r for r in packed_extents(path, kid) if r["name"].decode() == name)
    return int(rec["offset"]), int(rec["nbytes"])


def rewrite_array(path: Path, kid: int, name: str, values: np.ndarray) -> None:
    """Overwrite a stored array in place with ``values`` (same size) and fix its content hash and
    row digests: a deliberately wrong but internally consistent map."""
    from mast3r_ros.core.map.format import array_bytes, content_hash, file_of

    off, nbytes = extent(path, kid, name)
    dtype, shape, data = array_bytes(values)
    assert data.nbytes == nbytes
    with open(version_dir(path) / "data" / file_of(name), "r+b") as f:
        f.seek(off)
        f.write(data)
    edit_extent(path, kid, name, sha256=content_hash(dtype, shape, data))


def png_bomb(width: int = 32768, height: int = 32768) -> bytes:
    """A valid 1-bit greyscale PNG of ``width`` x ``height`` black pixels (~130 kB at 32768^2)."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))

    z = zlib.compressobj(9)
    row = bytes(1 + (width + 7) // 8)
    block = row * 1024
    idat = b"".join(z.compress(block) for _ in range(height // 1024)) + z.flush()
    ihdr = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")
