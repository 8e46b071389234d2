"""Map store: round trip, crash safety (a save killed mid-way), validation and compatibility."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from mast3r_ros.core.errors import InputError, MapFormatError
from mast3r_ros.core.features import EncoderId, SiftFeatures
from mast3r_ros.core.map import Keyframe, KeyframeMap, MapMeta, load_map, save_map
from mast3r_ros.core.types import Encoding

REPO = Path(__file__).resolve().parents[3]


def make_map(rng: np.random.Generator, n: int = 3, h: int = 24, w: int = 32) -> KeyframeMap:
    K = np.array([[30.0, 0, 15.5], [0, 30.0, 11.5], [0, 0, 1]])
    kfs = []
    for i in range(n):
        T = np.eye(4)
        T[:3, 3] = [i * 0.1, 0, 0]
        depth = rng.uniform(1, 3, (h, w)).astype(np.float32)
        depth[0, :5] = 0.0
        pm = rng.normal(size=(h, w, 3)).astype(np.float32) if i == 1 else None
        kfs.append(Keyframe(10 + i, rng.integers(0, 255, (h, w, 3), dtype=np.uint8), K, T,
                            stamp=i / 30.0, depth=None if i == 1 else depth, pointmap=pm))
    kmap = KeyframeMap(MapMeta(created="now", source="test"))
    enc_id = EncoderId("sift", "test", 0, "", "d1", SiftFeatures.KIND)
    for kf in kfs:
        feats = SiftFeatures(rng.uniform(0, 20, (6, 2)), rng.integers(0, 255, (6, 128)).astype(
            np.float32))
        kmap.add(kf, Encoding(enc_id, w, h, rng.normal(size=16).astype(np.float32), feats))
    return kmap


def test_roundtrip(tmp_path, rng) -> None:
    m = make_map(rng)
    save_map(m, tmp_path / "m")
    m2 = load_map(tmp_path / "m")
    assert m2.meta == m.meta and m2.ids == m.ids
    for a, b in zip(m.keyframes(), m2.keyframes()):
        assert np.array_equal(a.rgb, b.rgb) and np.array_equal(a.K, b.K)
        assert np.array_equal(a.T_map_cam, b.T_map_cam) and a.stamp == b.stamp
        assert (a.depth is None) == (b.depth is None) and (a.pointmap is None) == (b.pointmap is None)
        if a.depth is not None:
            assert np.array_equal(a.depth, b.depth)
        if a.pointmap is not None:
            assert np.array_equal(a.pointmap, b.pointmap)
    assert m2.encoder == m.encoder and not m2.missing_encodings()
    assert np.array_equal(m.index.descriptors(m.ids), m2.index.descriptors(m2.ids))
    for i in m.ids:
        assert np.array_equal(m2.features(i).desc, m.features(i).desc)
        assert np.array_equal(m2.features(i).xy, m.features(i).xy)
    assert m2.poses().shape == (3, 4, 4)
    pts, cols = m2.points_map(500)
    assert 0 < pts.shape[0] <= 500 and cols.shape == pts.shape and cols.dtype == np.uint8


def test_overwrite_keeps_one_version(tmp_path, rng) -> None:
    save_map(make_map(rng, 2), tmp_path / "m")
    save_map(make_map(rng, 4), tmp_path / "m")
    assert len(load_map(tmp_path / "m")) == 4
    assert sorted(p.name for p in (tmp_path / "m").iterdir())[0] == "CURRENT"
    assert len(list((tmp_path / "m").iterdir())) == 2  # CURRENT + one version


def test_empty_map_roundtrip(tmp_path) -> None:
    save_map(KeyframeMap(), tmp_path / "e")
    assert len(load_map(tmp_path / "e")) == 0


def test_killed_save_leaves_previous_map(tmp_path, rng) -> None:
    path = tmp_path / "m"
    save_map(make_map(rng, 2), path)
    script = textwrap.dedent(f"""
        import os, signal, numpy as np, sys
        sys.path.insert(0, {str(REPO)!r})
        sys.path.insert(0, {str(Path(__file__).parent)!r})
        import mast3r_ros.core.map.store as store
        from test_map_store import make_map
        calls = []
        orig = store._write_keyframe_files
        def dying(*a, **k):
            calls.append(1)
            if len(calls) == 3:
                os.kill(os.getpid(), signal.SIGKILL)
            return orig(*a, **k)
        store._write_keyframe_files = dying
        store.save_map(make_map(np.random.default_rng(1), 5), {str(path)!r})
    """)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, timeout=120)
    assert proc.returncode == -9, proc.stderr.decode()[-2000:]
    assert any(p.name.startswith(".tmp-") for p in path.iterdir())  # it really died mid-save
    m = load_map(path)
    assert len(m) == 2  # the previous map, intact
    save_map(make_map(rng, 3), path)  # next save cleans the leftovers
    assert not any(p.name.startswith(".tmp-") for p in path.iterdir())


def _version_dir(path: Path) -> Path:
    return path / (path / "CURRENT").read_text()


def test_format_errors(tmp_path, rng) -> None:
    with pytest.raises(MapFormatError, match="not a map directory"):
        load_map(tmp_path / "missing")
    path = tmp_path / "m"
    save_map(make_map(rng), path)
    db = _version_dir(path) / "map.sqlite"
    con = sqlite3.connect(db)
    with con:
        con.execute("UPDATE meta SET value=? WHERE key='schema_version'", (json.dumps(99),))
    con.close()
    with pytest.raises(MapFormatError, match="schema version"):
        load_map(path)
    save_map(make_map(rng), path)
    (_version_dir(path) / "rgb" / "11.png").write_bytes(b"garbage")
    with pytest.raises(MapFormatError, match="keyframe 11"):
        load_map(path)
    save_map(make_map(rng), path)
    (_version_dir(path) / "arrays" / "10.npz").write_bytes(b"PK\x03\x04trunc")
    with pytest.raises(MapFormatError, match="corrupt"):
        load_map(path)
    save_map(make_map(rng), path)
    np.save(_version_dir(path) / "global_desc.npy", np.zeros((2, 16), np.float32))
    with pytest.raises(MapFormatError, match="global_desc"):
        load_map(path)


def test_refuses_to_overwrite_non_map(tmp_path, rng) -> None:
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "precious.txt").write_text("x")
    with pytest.raises(MapFormatError):
        save_map(make_map(rng), tmp_path / "d")


def test_keyframe_validation(rng) -> None:
    K, T = np.eye(3), np.eye(4)
    img = np.zeros((4, 5, 3), np.uint8)
    with pytest.raises(InputError, match="rgb"):
        Keyframe(0, np.zeros((4, 5), np.uint8), K, T)
    with pytest.raises(InputError, match="focal"):
        Keyframe(0, img, np.zeros((3, 3)), T)
    with pytest.raises(InputError, match="T_map_cam"):
        Keyframe(0, img, K, np.full((4, 4), np.nan))
    with pytest.raises(InputError, match="depth shape"):
        Keyframe(0, img, K, T, depth=np.ones((5, 4)))
    with pytest.raises(InputError, match="already in the map"):
        KeyframeMap(MapMeta(), [Keyframe(1, img, K, T), Keyframe(1, img, K, T)])


def test_save_spares_tmp_dir_of_a_live_concurrent_save(tmp_path, rng) -> None:
    import os

    path = tmp_path / "m"
    save_map(make_map(rng, 1), path)
    live = path / f".tmp-{os.getppid()}-abc"   # the parent process is alive
    dead = path / ".tmp-999999999-abc"          # no such pid
    live.mkdir()
    dead.mkdir()
    save_map(make_map(rng, 1), path)
    assert live.exists() and not dead.exists()
