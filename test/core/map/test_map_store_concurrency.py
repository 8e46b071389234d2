"""D5: concurrent writers are serialised by the map's lock; readers never see a broken map."""

from __future__ import annotations

import os
import signal
import time

import pytest
from map_fixtures import assert_same_map, demo_map
from test_map_store_crash import _in_child, child_status, start_child

from mast3r_ros.core.config import MapStoreConfig
from mast3r_ros.core.errors import MapLockedError
from mast3r_ros.core.map import load_map, save_map
from mast3r_ros.core.map import store as store_module
from mast3r_ros.core.map.files import MapLock


def _versions(path):
    return sorted(p.name for p in path.iterdir() if p.name.startswith("v-"))


def test_d5_second_writer_gets_map_is_being_saved(tmp_path) -> None:
    path = tmp_path / "m"
    save_map(demo_map(2, "sift"), path)
    with MapLock(path, timeout=0.0):  # another writer holds the map
        t0 = time.monotonic()
        with pytest.raises(MapLockedError, match="is being saved by another process"):
            save_map(demo_map(3, "sift"), path, config=MapStoreConfig(lock_timeout=0.3))
        assert 0.25 < time.monotonic() - t0 < 5.0
    assert_same_map(demo_map(2, "sift"), load_map(path))
    assert len(_versions(path)) == 1


def test_d5_saver_paused_after_rename_does_not_lose_the_map(tmp_path) -> None:
    """The defect: saver A pauses right after renaming its version; saver B saves meanwhile.
    Both must succeed, in turn, and CURRENT must name a complete version."""
    path = tmp_path / "m"
    save_map(demo_map(1, "sift"), path)
    a_map, b_map = demo_map(2, "sift"), demo_map(3, "sift")
    started = tmp_path / "a-renamed"

    def saver_a() -> None:
        orig = store_module._swap_current

        def paused(p, name):  # type: ignore[no-untyped-def]
            started.touch()
            time.sleep(1.5)
            orig(p, name)

        store_module._swap_current = paused
        save_map(a_map, path)

    pid = start_child(saver_a)
    deadline = time.monotonic() + 60
    while not started.exists() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert started.exists()
    save_map(b_map, path, config=MapStoreConfig(lock_timeout=30))  # waits for A
    assert child_status(pid) == 0
    assert_same_map(demo_map(3, "sift"), load_map(path))  # B came last
    assert len(_versions(path)) == 1


def test_d5_concurrent_savers_and_readers(tmp_path) -> None:
    """Two processes saving in a loop, this one reading: every read is a complete map of one
    writer, and the directory ends with exactly one version."""
    path = tmp_path / "m"
    maps = {n: demo_map(n, "sift") for n in (1, 2, 3)}  # built before forking (OpenCV)
    save_map(maps[1], path)

    def saver(n: int) -> None:
        for _ in range(4):
            save_map(maps[n], path, config=MapStoreConfig(lock_timeout=60))
            kmap = load_map(path)  # and some appends on top of what is there
            save_map(kmap, path, config=MapStoreConfig(lock_timeout=60))

    pids = [start_child(lambda n=n: saver(n)) for n in (2, 3)]
    reads, done = 0, {}
    while len(done) < len(pids):
        kmap = load_map(path)
        assert len(kmap) in (1, 2, 3)
        assert_same_map(demo_map(len(kmap), "sift"), kmap)
        reads += 1
        for pid in set(pids) - set(done):
            status = child_status(pid, block=False)
            if status is not None:
                done[pid] = status
    assert list(done.values()) == [0, 0] and reads > 0
    assert len(load_map(path)) in (2, 3) and len(_versions(path)) == 1
    assert not [p for p in os.listdir(path) if p.startswith((".tmp", ".CURRENT"))]


def test_lock_is_released_when_the_holder_dies(tmp_path) -> None:
    path = tmp_path / "m"
    save_map(demo_map(1, "sift"), path)

    def holder() -> None:
        with MapLock(path, timeout=0.0):
            os.kill(os.getpid(), signal.SIGKILL)

    assert _in_child(holder) == signal.SIGKILL
    save_map(demo_map(2, "sift"), path, config=MapStoreConfig(lock_timeout=0.0))
    assert len(load_map(path)) == 2
