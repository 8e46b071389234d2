"""Incremental saves: appending, moving, removing and encoding keyframes of a saved map writes only
the changes into the live version; anything else falls back to a full save."""

from __future__ import annotations

import os

import numpy as np
import pytest
from map_fixtures import (
    assert_same_map,
    demo_keyframes,
    demo_map,
    mast3r_encoding,
    sift_encoding,
    version_dir,
)

from mast3r_ros.core.map import Keyframe, KeyframeMap, load_map, save_map
from mast3r_ros.core.map import store as store_module


def _files(path):
    data = version_dir(path) / "data"
    return {p.name: (p.stat().st_ino, p.stat().st_size) for p in data.iterdir()}


def _shifted(kf: Keyframe, new_id: int, dx: float) -> Keyframe:
    T = kf.T_map_cam.copy()
    T[0, 3] += dx
    return Keyframe(new_id, kf.rgb, kf.K, T, kf.stamp + dx, kf.depth)


def test_append_writes_only_the_new_keyframes(tmp_path) -> None:
    path = tmp_path / "m"
    save_map(demo_map(4, "sift"), path)
    before_version, before = version_dir(path), _files(path)
    kmap = load_map(path)
    new = [_shifted(kf, 1000 + i, 0.5) for i, kf in enumerate(demo_keyframes(2))]
    for kf in new:
        kmap.add(kf, sift_encoding(kf))
    assert kmap.payload_in_memory(1000) and kmap.features_in_memory(1000)
    save_map(kmap, path)
    after = _files(path)
    assert version_dir(path) == before_version  # no new version: appended in place
    assert all(after[n][0] == before[n][0] for n in before)  # same files (inodes), not rewritten
    h, w = new[0].height, new[0].width
    assert after["rgb.bin"][1] - before["rgb.bin"][1] == 2 * h * w * 3  # exactly the new pixels
    assert after["depth.bin"][1] - before["depth.bin"][1] == 2 * h * w * 4
    assert not kmap.payload_in_memory(1000) and not kmap.features_in_memory(1000)  # released
    expected = demo_map(4, "sift")
    for kf in new:
        expected.add(kf, sift_encoding(kf))
    assert_same_map(expected, kmap)
    assert_same_map(expected, load_map(path))
    for i in range(3):  # repeated appends stay incremental
        kf = _shifted(demo_keyframes(1)[0], 2000 + i, 1.0 + i)
        kmap.add(kf, sift_encoding(kf))
        expected.add(kf, sift_encoding(kf))
        save_map(kmap, path)
        assert version_dir(path) == before_version
    assert_same_map(expected, load_map(path))


def test_moves_removals_and_readds_are_row_updates(tmp_path) -> None:
    path = tmp_path / "m"
    save_map(demo_map(4, "mast3r"), path)
    version = version_dir(path)
    kmap = load_map(path)
    ids = kmap.ids
    T = kmap.record(ids[0]).T_map_cam.copy()
    T[:3, 3] += [0.1, -0.2, 0.3]
    kmap.set_pose(ids[0], T)
    kmap.remove(ids[1])
    readd = kmap.keyframe(ids[2])
    kmap.remove(ids[2])
    kmap.add(_shifted(readd, ids[2], 2.0), mast3r_encoding(readd, np.random.default_rng(5)))
    size_before = _files(path)["rgb.bin"][1]
    save_map(kmap, path)
    assert version_dir(path) == version
    assert _files(path)["rgb.bin"][1] == size_before + readd.rgb.nbytes  # only the re-added pixels
    loaded = load_map(path)
    assert_same_map(kmap, loaded)
    assert np.array_equal(loaded.record(ids[0]).T_map_cam, T) and ids[1] not in loaded
    assert loaded.ids == [ids[0], ids[3], ids[2]]


def test_encoding_a_loaded_map_appends_its_features(tmp_path) -> None:
    path = tmp_path / "m"
    save_map(demo_map(3, "none"), path)
    version = version_dir(path)
    kmap = load_map(path)
    assert kmap.missing_encodings() == kmap.ids
    for kid in kmap.ids:
        kmap.set_encoding(kid, sift_encoding(kmap.keyframe(kid)))
    save_map(kmap, path)
    assert version_dir(path) == version and "features.bin" in _files(path)
    assert_same_map(demo_map(3, "sift"), load_map(path))


def test_another_encoder_forces_a_full_save(tmp_path) -> None:
    path = tmp_path / "m"
    save_map(demo_map(3, "sift"), path)
    version = version_dir(path)
    kmap = load_map(path)
    kmap.clear_encodings()
    rng = np.random.default_rng(0)
    for kid in kmap.ids:
        kmap.set_encoding(kid, mast3r_encoding(kmap.keyframe(kid), rng))
    save_map(kmap, path)
    assert version_dir(path) != version and not version.exists()
    assert_same_map(demo_map(3, "mast3r"), load_map(path))


def test_a_stale_base_forces_a_full_save(tmp_path) -> None:
    """Two writers loaded the same version; the second one's save is complete, not a merge."""
    path = tmp_path / "m"
    save_map(demo_map(3, "sift"), path)
    a, b = load_map(path), load_map(path)
    ka = _shifted(demo_keyframes(1)[0], 500, 1.0)
    a.add(ka, sift_encoding(ka))
    save_map(a, path)  # incremental
    version = version_dir(path)
    kb = _shifted(demo_keyframes(1)[0], 600, 2.0)
    b.add(kb, sift_encoding(kb))
    save_map(b, path)  # its base generation is stale: full save of b
    assert version_dir(path) != version
    assert_same_map(b, load_map(path))
    assert 500 not in load_map(path) and 600 in load_map(path)


def test_dead_space_triggers_compaction(tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(store_module, "_MIN_DEAD_BYTES", 0)
    path = tmp_path / "m"
    save_map(demo_map(4, "sift"), path)
    version = version_dir(path)
    kmap = load_map(path)
    kmap.remove(kmap.ids[0])
    save_map(kmap, path)  # 1/4 dead: append
    assert version_dir(path) == version
    for kid in kmap.ids[:2]:
        kmap.remove(kid)
    save_map(kmap, path)  # 3/4 dead: compacting full save
    assert version_dir(path) != version
    sizes = _files(path)
    kf = kmap.keyframe(kmap.ids[0])
    assert sizes["rgb.bin"][1] == kf.rgb.nbytes
    assert_same_map(kmap, load_map(path))


def test_garbage_of_a_killed_append_is_cut(tmp_path) -> None:
    path = tmp_path / "m"
    save_map(demo_map(2, "sift"), path)
    rgb = version_dir(path) / "data" / "rgb.bin"
    committed = rgb.stat().st_size
    with open(rgb, "ab") as f:  # what a writer killed before its commit leaves behind
        f.write(os.urandom(12345))
    kmap = load_map(path)
    assert_same_map(demo_map(2, "sift"), kmap)
    kf = _shifted(demo_keyframes(1)[0], 77, 1.0)
    kmap.add(kf, sift_encoding(kf))
    save_map(kmap, path)
    assert rgb.stat().st_size == committed + kf.rgb.nbytes
    assert_same_map(kmap, load_map(path))


def test_saving_a_loaded_map_elsewhere_is_a_copy(tmp_path) -> None:
    save_map(demo_map(3, "mast3r"), tmp_path / "a")
    kmap = load_map(tmp_path / "a")
    save_map(kmap, tmp_path / "b")
    assert kmap.source.map_dir == tmp_path / "b"  # follows its last save
    assert_same_map(load_map(tmp_path / "a"), load_map(tmp_path / "b"))


@pytest.mark.parametrize("n", [0, 1])
def test_small_maps_grow_from_empty(tmp_path, n) -> None:
    path = tmp_path / "m"
    save_map(KeyframeMap(), path)
    kmap = load_map(path)
    for kf in demo_keyframes(2)[:n + 1]:
        kmap.add(kf, sift_encoding(kf))
    save_map(kmap, path)
    assert_same_map(demo_map(n + 1, "sift"), load_map(path))
