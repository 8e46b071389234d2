"""Map store: round trip of both feature kinds, lazy hash-checked reads, cache budgets, layout."""

from __future__ import annotations

import numpy as np
import pytest
from map_fixtures import (
    MAST3R_ENCODER,
    assert_same_map,
    demo_map,
    extent,
    version_dir,
)

from mast3r_ros.core.config import MapStoreConfig
from mast3r_ros.core.errors import (
    ConfigError,
    InputError,
    MapError,
    MapFormatError,
)
from mast3r_ros.core.map import Keyframe, KeyframeMap, MapMeta, load_map, save_map


@pytest.mark.parametrize("encoder", ["sift", "mast3r", "none"])
def test_roundtrip_is_exact(tmp_path, encoder) -> None:
    kmap = demo_map(4, encoder, pointmap_ids=(1,))
    kmap.meta = MapMeta(created="2026-01-01T00:00:00+00:00", frame_id="world", source="test")
    save_map(kmap, tmp_path / "m")
    loaded = load_map(tmp_path / "m")
    reference = demo_map(4, encoder, pointmap_ids=(1,))
    reference.meta = kmap.meta
    assert_same_map(reference, loaded)
    assert_same_map(reference, kmap)  # the saved map now reads from disk, unchanged
    assert loaded.ids == reference.ids and np.array_equal(loaded.poses(), reference.poses())
    if encoder != "none":
        assert loaded.missing_encodings() == []
        q = reference.encoding(reference.ids[2]).global_desc
        assert loaded.index.search(q, 1)[0][0] == reference.ids[2]
    pts, cols = loaded.points_map(500)
    assert 0 < pts.shape[0] <= 500 and cols.shape == pts.shape and cols.dtype == np.uint8


def test_mast3r_tokens_are_float16_on_disk(tmp_path) -> None:
    kmap = demo_map(2, "mast3r")
    save_map(kmap, tmp_path / "m")
    kid = kmap.ids[0]
    off, nbytes = extent(tmp_path / "m", kid, "f.tokens")
    feats = load_map(tmp_path / "m").features(kid)
    assert feats.tokens.dtype.itemsize == 2 and nbytes == feats.tokens.numel() * 2
    assert load_map(tmp_path / "m").encoder == MAST3R_ENCODER


def test_open_reads_only_the_index(tmp_path) -> None:
    """A corrupt payload does not stop the map from opening; reading that keyframe names it."""
    kmap = demo_map(3, "sift")
    save_map(kmap, tmp_path / "m")
    bad = kmap.ids[1]
    off, nbytes = extent(tmp_path / "m", bad, "depth")
    data = version_dir(tmp_path / "m") / "data" / "depth.bin"
    raw = bytearray(data.read_bytes())
    raw[off + nbytes // 2] ^= 0x40
    data.write_bytes(bytes(raw))
    loaded = load_map(tmp_path / "m")
    assert not loaded.payload_in_memory(bad)
    loaded.keyframe(kmap.ids[0])
    loaded.features(bad)  # other arrays of the same keyframe are fine
    with pytest.raises(MapFormatError, match=rf"depth of keyframe {bad}: content hash"):
        loaded.keyframe(bad)


def test_cache_budget(tmp_path) -> None:
    kmap = demo_map(4, "sift")
    save_map(kmap, tmp_path / "m")
    kf_bytes = sum(a.nbytes for a in (kmap.keyframe(kmap.ids[0]).rgb,
                                      kmap.keyframe(kmap.ids[0]).depth))
    cached = load_map(tmp_path / "m")
    a = cached.keyframe(cached.ids[0])
    assert cached.keyframe(cached.ids[0]).rgb is a.rgb  # second read from the cache
    assert not a.rgb.flags.writeable and not a.depth.flags.writeable  # cache cannot be corrupted
    uncached = load_map(tmp_path / "m", config=MapStoreConfig(host_cache_bytes=0))
    b = uncached.keyframe(uncached.ids[0])
    assert uncached.keyframe(uncached.ids[0]).rgb is not b.rgb
    assert uncached.source.cache.nbytes == 0
    small = load_map(tmp_path / "m", config=MapStoreConfig(host_cache_bytes=int(1.5 * kf_bytes)))
    for kid in small.ids:
        small.keyframe(kid)
        small.features(kid)
        assert small.source.cache.nbytes <= 1.5 * kf_bytes
    assert len(small.source.cache) >= 1
    with pytest.raises(ConfigError, match="host_cache_bytes"):
        MapStoreConfig(host_cache_bytes=-1)


def test_empty_map_roundtrip(tmp_path) -> None:
    save_map(KeyframeMap(), tmp_path / "e")
    assert len(load_map(tmp_path / "e")) == 0


def test_full_save_keeps_one_version(tmp_path) -> None:
    save_map(demo_map(2, "sift"), tmp_path / "m")
    save_map(demo_map(4, "mast3r"), tmp_path / "m")  # not read from there: a full save
    assert len(load_map(tmp_path / "m")) == 4
    names = sorted(p.name for p in (tmp_path / "m").iterdir())
    assert names[:2] == [".lock", "CURRENT"] and len(names) == 3 and names[2].startswith("v-")


def test_refuses_to_overwrite_non_map(tmp_path) -> None:
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "precious.txt").write_text("x")
    with pytest.raises(MapError, match="not a map directory"):
        save_map(demo_map(1, "none"), tmp_path / "d")
    assert (tmp_path / "d" / "precious.txt").read_text() == "x"
    (tmp_path / "f").write_text("x")
    with pytest.raises(MapError, match="not a directory"):
        save_map(demo_map(1, "none"), tmp_path / "f")


def test_zero_descriptor_is_refused_at_save(tmp_path) -> None:
    kmap = demo_map(2, "none")
    enc = demo_map(2, "mast3r").encoding(kmap.ids[0])
    kmap.set_encoding(kmap.ids[0], enc.__class__(enc.encoder, enc.width, enc.height,
                                                 np.zeros_like(enc.global_desc), enc.features))
    with pytest.raises(InputError, match="global descriptor"):
        save_map(kmap, tmp_path / "m")
    assert not any(p.name.startswith((".tmp", "v-")) for p in (tmp_path / "m").iterdir())


def test_keyframe_validation() -> None:
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
    kmap = KeyframeMap(MapMeta(), [Keyframe(1, img, K, T)])
    with pytest.raises(InputError, match="T_map_cam"):
        kmap.set_pose(1, np.full((4, 4), np.inf))
    T2 = np.eye(4)
    T2[0, 3] = 2.0
    kmap.set_pose(1, T2)
    assert kmap.record(1).T_map_cam[0, 3] == 2.0 and kmap.keyframe(1).T_map_cam[0, 3] == 2.0
    assert kmap.positions()[0, 0] == 2.0


def test_display_cloud_of_a_large_map_reads_a_bounded_set_of_keyframes(tmp_path) -> None:
    kmap = demo_map(4, "none")
    save_map(kmap, tmp_path / "m")
    off, nbytes = extent(tmp_path / "m", kmap.ids[1], "rgb")
    data = version_dir(tmp_path / "m") / "data" / "rgb.bin"
    raw = bytearray(data.read_bytes())
    raw[off] ^= 1
    data.write_bytes(bytes(raw))
    loaded = load_map(tmp_path / "m")
    pts, cols = loaded.points_map(128)  # 2 keyframes of 4: ids[0] and ids[2]
    assert 0 < len(pts) <= 128 and len(cols) == len(pts)
    with pytest.raises(MapFormatError):
        loaded.points_map(100_000)  # every keyframe, the corrupt one included
