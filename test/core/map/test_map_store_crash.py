"""Crash safety: a writer killed with SIGKILL at any point of a full save or an append leaves the
previous map loadable and complete (checked by reading every payload, hashes included)."""

from __future__ import annotations

import os
import signal
import time
import traceback
from collections.abc import Callable

import numpy as np
import pytest
from map_fixtures import assert_same_map, demo_keyframes, demo_map, sift_encoding, version_dir

from mast3r_ros.core.map import Keyframe, KeyframeMap, load_map, save_map
from mast3r_ros.core.map import reader as reader_module
from mast3r_ros.core.map import writer as writer_module


def start_child(fn: Callable[[], None]) -> int:
    """Fork a child running ``fn``; its pid. Fork only from the main thread while no other
    thread is inside SQLite or OpenCV (a child would inherit their locks held)."""
    pid = os.fork()
    if pid == 0:  # child: never returns into pytest
        code = 0
        try:
            fn()
        except BaseException:  # noqa: BLE001 - reported through the exit code
            traceback.print_exc()
            code = 3
        finally:
            os._exit(code)
    return pid


def child_status(pid: int, block: bool = True, timeout: float = 120.0) -> int | None:
    """The signal that ended child ``pid`` (0: normal exit), None while it runs (``block``
    False); fails the test when it hangs past ``timeout`` or exits with an error."""
    deadline = time.monotonic() + timeout
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            break
        if not block:
            return None
        if time.monotonic() > deadline:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            pytest.fail("the child writer hung")
        time.sleep(0.01)
    if os.WIFSIGNALED(status):
        return os.WTERMSIG(status)
    assert os.WEXITSTATUS(status) == 0, "the child writer failed"
    return 0


def _in_child(fn: Callable[[], None], kill_after: float | None = None) -> int:
    """Run ``fn`` in a forked child; SIGKILL it after ``kill_after`` s. Returns the signal that
    ended it (0 when it exited normally)."""
    pid = start_child(fn)
    if kill_after is not None:
        time.sleep(kill_after)
        os.kill(pid, signal.SIGKILL)
    status = child_status(pid)
    assert status is not None
    return status


def _die_on_call(monkeypatch_target: object, name: str, n: int, after: bool = False) -> None:
    """Make the ``n``-th call of ``target.name`` kill the process (before or after it runs)."""
    orig = getattr(monkeypatch_target, name)
    calls = [0]

    def dying(*args, **kwargs):  # type: ignore[no-untyped-def]
        calls[0] += 1
        if calls[0] == n and not after:
            os.kill(os.getpid(), signal.SIGKILL)
        out = orig(*args, **kwargs)
        if calls[0] == n and after:
            os.kill(os.getpid(), signal.SIGKILL)
        return out

    setattr(monkeypatch_target, name, dying)


def _bigger_map(n: int) -> KeyframeMap:
    kmap = KeyframeMap()
    for i in range(n):
        kf = demo_keyframes(4)[i % 4]
        kf = Keyframe(100 + i, kf.rgb, kf.K, kf.T_map_cam, kf.stamp, kf.depth)
        kmap.add(kf, sift_encoding(kf))
    return kmap


@pytest.mark.parametrize("nth_write", [1, 7, 20])
def test_killed_full_save_leaves_previous_map(tmp_path, nth_write) -> None:
    path = tmp_path / "m"
    save_map(demo_map(2, "sift"), path)

    def child() -> None:
        _die_on_call(writer_module.PayloadWriter, "write", nth_write)
        save_map(_bigger_map(6), path)

    assert _in_child(child) == signal.SIGKILL
    assert any(p.name.startswith(".tmp-") for p in path.iterdir())  # it died mid-save
    assert_same_map(demo_map(2, "sift"), load_map(path))
    save_map(demo_map(3, "sift"), path)  # the next save removes the dead writer's temp
    assert not any(p.name.startswith(".tmp-") for p in path.iterdir())
    assert len([p for p in path.iterdir() if p.name.startswith("v-")]) == 1


def test_killed_after_rename_before_current_swap(tmp_path, monkeypatch) -> None:
    path = tmp_path / "m"
    save_map(demo_map(2, "sift"), path)
    from mast3r_ros.core.map import store as store_module

    def child() -> None:
        _die_on_call(store_module, "_swap_current", 1)
        save_map(_bigger_map(3), path)

    assert _in_child(child) == signal.SIGKILL
    assert len([p for p in path.iterdir() if p.name.startswith("v-")]) == 2  # orphan version
    assert_same_map(demo_map(2, "sift"), load_map(path))
    save_map(demo_map(1, "sift"), path)
    assert len([p for p in path.iterdir() if p.name.startswith("v-")]) == 1


@pytest.mark.parametrize("point", ["payload", "before_commit", "after_commit"])
def test_killed_append_leaves_a_consistent_map(tmp_path, point) -> None:
    path = tmp_path / "m"
    save_map(demo_map(3, "sift"), path)
    new = [Keyframe(900 + i, kf.rgb, kf.K, kf.T_map_cam, kf.stamp, kf.depth)
           for i, kf in enumerate(demo_keyframes(2))]

    def child() -> None:
        if point == "payload":
            _die_on_call(writer_module.PayloadWriter, "write", 4)
        elif point == "before_commit":  # rows inserted, transaction open
            _die_on_call(writer_module, "_commit_rows", 1, after=True)
        else:
            _die_on_call(reader_module.StoreSource, "update", 1)
        kmap = load_map(path)
        for kf in new:
            kmap.add(kf, sift_encoding(kf))
        save_map(kmap, path)

    assert _in_child(child) == signal.SIGKILL
    loaded = load_map(path)
    expected = demo_map(3, "sift")
    if point == "after_commit":
        for kf in new:
            expected.add(kf, sift_encoding(kf))
    assert_same_map(expected, loaded)
    loaded.add(new[0] if point != "after_commit" else
               Keyframe(999, new[0].rgb, new[0].K, new[0].T_map_cam), None)
    save_map(loaded, path)  # the next append works on top (cuts the garbage tail)
    assert len(load_map(path)) == len(expected) + 1


def test_append_killed_at_random_moments(tmp_path) -> None:
    """A writer appending in a loop, killed at random times: every state is a committed one."""
    path = tmp_path / "m"
    save_map(demo_map(2, "sift"), path)
    rng = np.random.default_rng(7)
    kfs = demo_keyframes(4)
    for trial in range(6):
        start = len(load_map(path))

        def child(start: int = start) -> None:
            kmap = load_map(path)
            for i in range(1000):
                kf = kfs[i % 4]
                kf = Keyframe(10_000 + start + i, kf.rgb, kf.K, kf.T_map_cam, 0.0, kf.depth)
                kmap.add(kf, sift_encoding(kf))
                save_map(kmap, path)

        _in_child(child, kill_after=float(rng.uniform(0.05, 0.6)))
        loaded = load_map(path)
        assert len(loaded) >= start
        for kid in loaded.ids:  # every committed keyframe is complete and hash-correct
            assert loaded.keyframe(kid).depth is not None and loaded.features(kid) is not None
        assert sorted(os.listdir(path))[:2] == [".lock", "CURRENT"], trial
    assert len(load_map(path)) > 2  # the writers did get appends committed
    assert version_dir(path).name.startswith("v-")
