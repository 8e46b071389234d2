"""Hostile and careless input to the schema-2 store (D1, D3, D6, D7, D8, D9 of the hardening
issue, CURRENT containment, integrity hashes): every case is a typed MapError, never another
exception, a hang, or a lost map."""

from __future__ import annotations

import errno
import os
import resource
import shutil
import signal
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
from map_fixtures import (
    assert_same_map,
    demo_keyframes,
    demo_map,
    edit_extent,
    edit_index,
    extent,
    rewrite_array,
    sift_encoding,
    version_dir,
)
from test_map_store_crash import _in_child

from mast3r_ros.core.errors import MapError, MapFormatError, MapLockedError
from mast3r_ros.core.map import load_map, save_map
from mast3r_ros.core.map import writer as writer_module


@contextmanager
def deadline(seconds: float):  # type: ignore[no-untyped-def]
    """Fail instead of hanging (SIGALRM interrupts blocking open/read calls)."""
    def on_alarm(*_: object) -> None:
        raise TimeoutError(f"hung for more than {seconds} s")

    old = signal.signal(signal.SIGALRM, on_alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


def read_everything(path: Path) -> None:
    """Open a map and read every payload (what a localizer may end up doing)."""
    with deadline(20):
        kmap = load_map(path)
        for kid in kmap.ids:
            kmap.keyframe(kid)
            kmap.features(kid)


@pytest.fixture()
def saved(tmp_path) -> Path:
    save_map(demo_map(3, "sift", pointmap_ids=(2,)), tmp_path / "m")
    return tmp_path / "m"


# ---------------------------------------------------------------------------- D1
@pytest.mark.parametrize("value", ["abc", b"\x00" * 71, 3.5, 12345])
def test_d1_k_holding_strings_or_garbage(saved, value) -> None:
    edit_index(saved, "UPDATE keyframes SET K = ? WHERE seq = 1", (value,))
    with pytest.raises(MapFormatError, match="K / T_map_cam"):
        read_everything(saved)


@pytest.mark.parametrize("shape,nbytes", [((100000, 100000, 3), None), ((100000, 100000, 3), 3e10),
                                          ((2**31, 2**31, 2**31, 2**31), None), ((1, 2), None)])
def test_d1_huge_or_malformed_shape_is_refused_before_allocating(saved, shape, nbytes) -> None:
    kid = load_map(saved).ids[0]
    fields = {"shape": shape} if nbytes is None else {"shape": shape, "nbytes": int(nbytes)}
    edit_extent(saved, kid, "rgb", **fields)
    with pytest.raises(MapFormatError, match=f"keyframe {kid}: .*(shape|above)"):
        read_everything(saved)


def test_d1_malformed_array_table(saved) -> None:
    edit_index(saved, "UPDATE keyframes SET arrays = ? WHERE seq = 1", (b"\x01" * 95,))
    with pytest.raises(MapFormatError, match="malformed table of arrays"):
        read_everything(saved)
    edit_index(saved, "UPDATE keyframes SET arrays = ? WHERE seq = 1", (b"\x01" * 96,))
    with pytest.raises(MapFormatError, match="the keyframes store 1[0-9] arrays, the index says"):
        read_everything(saved)
    edit_index(saved, "UPDATE info SET value = (SELECT SUM(length(arrays)) / 96 FROM keyframes) "
                      "WHERE key = 'num_arrays'")
    with pytest.raises(MapFormatError, match="unknown array name"):
        read_everything(saved)


def test_d1_wrong_counts_and_dtypes(saved) -> None:
    kid = load_map(saved).ids[0]
    edit_extent(saved, kid, "depth", drop=True)
    with pytest.raises(MapFormatError, match="index says"):
        read_everything(saved)
    edit_index(saved, "UPDATE info SET value = value - 1 WHERE key = 'num_arrays'")
    with pytest.raises(MapFormatError, match=f"keyframe {kid}: depth stored a wrong number"):
        read_everything(saved)
    save_map(demo_map(3, "sift"), saved)
    edit_index(saved, "UPDATE info SET value = 4 WHERE key = 'num_keyframes'")
    with pytest.raises(MapFormatError, match="index says 4"):
        read_everything(saved)
    save_map(demo_map(3, "sift"), saved)
    edit_extent(saved, kid, "depth", dtype=b"<f8")
    with pytest.raises(MapFormatError, match="do not take"):
        read_everything(saved)
    save_map(demo_map(3, "sift"), saved)
    edit_extent(saved, kid, "desc", dtype=b"|O")
    with pytest.raises(MapFormatError, match="dtype"):
        read_everything(saved)
    save_map(demo_map(3, "sift"), saved)
    edit_extent(saved, kid, "depth", shape=(10, 10), nbytes=400)
    with pytest.raises(MapFormatError, match="depth of the wrong dtype or shape"):
        read_everything(saved)
    save_map(demo_map(3, "sift"), saved)
    edit_index(saved, "UPDATE info SET value = 3 WHERE key = 'schema_version'")
    with pytest.raises(MapFormatError, match="schema version 3"):
        read_everything(saved)


def test_d1_features_not_following_their_schema(saved) -> None:
    kid = load_map(saved).ids[0]
    edit_extent(saved, kid, "f.xy", name=b"f.other")
    kmap = load_map(saved)
    with pytest.raises(MapFormatError, match=f"features of keyframe {kid}: .*missing array"):
        kmap.features(kid)


# ---------------------------------------------------------------------------- D3
def test_d3_huge_image_in_the_index_is_refused_before_reading(saved) -> None:
    edit_index(saved, "UPDATE keyframes SET width = 32768, height = 32768 WHERE seq = 0")
    with pytest.raises(MapFormatError, match="above the limit"):
        read_everything(saved)


# ---------------------------------------------------------------------------- D6
def test_d6_save_deletes_only_what_it_wrote(tmp_path) -> None:
    path = tmp_path / "m"
    save_map(demo_map(1, "sift"), path)
    (path / "NOTES.txt").write_text("calibrated on Monday")
    (path / "calib").mkdir()
    (path / "calib" / "cam.yaml").write_text("K: ...")
    foreign = [path / ("v-" + "a" * 32), path / (".tmp-1-" + "b" * 32)]  # our names, no marker
    for d in foreign:
        d.mkdir()
        (d / "keep.txt").write_text("x")
    stale = path / (".tmp-999999-" + "c" * 32)  # a dead writer's temp: name AND marker
    stale.mkdir()
    (stale / ".mast3r-map").write_text("")
    for n in (2, 3):
        save_map(demo_map(n, "sift"), path)
    assert (path / "NOTES.txt").read_text() == "calibrated on Monday"
    assert (path / "calib" / "cam.yaml").exists()
    assert all((d / "keep.txt").exists() for d in foreign)
    assert not stale.exists()
    assert len(load_map(path)) == 3


# ---------------------------------------------------------------------------- D7
def _failing_writes(monkeypatch, err: int, after: int) -> None:
    orig, calls = writer_module.write_all, [0]

    def write_all(fd, data):  # type: ignore[no-untyped-def]
        calls[0] += 1
        if calls[0] > after:
            raise OSError(err, os.strerror(err))
        orig(fd, data)

    monkeypatch.setattr(writer_module, "write_all", write_all)


@pytest.mark.parametrize("err,hint", [(errno.ENOSPC, "disk .* is full"), (errno.EROFS, "not writ"),
                                      (errno.EACCES, "not writable")])
@pytest.mark.parametrize("incremental", [False, True])
def test_d7_write_errors_are_typed_and_clean_up(tmp_path, monkeypatch, err, hint,
                                                incremental) -> None:
    path = tmp_path / "m"
    save_map(demo_map(2, "sift"), path)
    kmap = load_map(path) if incremental else demo_map(4, "sift")
    kf = demo_keyframes(4)[3]
    if incremental:
        kmap.add(kf.__class__(99, kf.rgb, kf.K, kf.T_map_cam, 0.0, kf.depth), sift_encoding(kf))
    _failing_writes(monkeypatch, err, after=3)
    with pytest.raises(MapError, match=f"cannot write the map to .*{hint}") as err:
        save_map(kmap, path)
    assert type(err.value) is MapError and "previous version of the map is intact" in str(err.value)
    monkeypatch.undo()
    assert not [p for p in os.listdir(path) if p.startswith(".tmp")]  # no leftover temp
    assert_same_map(demo_map(2, "sift"), load_map(path))  # previous map intact
    save_map(kmap, path)  # a save that fits works right after
    assert len(load_map(path)) == len(kmap)


def test_d7_real_file_size_limit(tmp_path) -> None:
    """The kernel refuses the writes (RLIMIT_FSIZE -> EFBIG): typed error, no temp left."""
    path = tmp_path / "m"
    save_map(demo_map(1, "sift"), path)

    def child() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (100_000, 100_000))
        try:
            save_map(demo_map(4, "sift"), path)
        except MapError as exc:
            assert "full" in str(exc), exc
            assert not [p for p in os.listdir(path) if p.startswith(".tmp")]
            return
        raise AssertionError("the save did not fail")

    assert _in_child(child) == 0
    assert_same_map(demo_map(1, "sift"), load_map(path))


# ---------------------------------------------------------------------------- D8, containment
@pytest.mark.parametrize("target", ["CURRENT", "index.sqlite", "data/rgb.bin", "data/desc.bin",
                                    "data/features.bin"])
@pytest.mark.parametrize("kind", ["fifo", "symlink", "dir"])
def test_d8_non_regular_files_are_refused_without_blocking(saved, target, kind) -> None:
    p = saved / target if target == "CURRENT" else version_dir(saved) / target
    outside = saved.parent / "outside"
    outside.write_bytes(p.read_bytes())
    p.unlink()
    {"fifo": lambda: os.mkfifo(p), "symlink": lambda: p.symlink_to(outside),
     "dir": lambda: p.mkdir()}[kind]()
    with pytest.raises(MapFormatError, match="not a regular file|symbolic link|cannot read"):
        read_everything(saved)


@pytest.mark.parametrize("content", ["/etc", "../other/v-" + "0" * 32, "v-" + "0" * 32 + "/..",
                                     "v-" + "0" * 31, "", "\x00" * 300])
def test_current_must_name_a_version_inside_the_map(saved, content) -> None:
    (saved / "CURRENT").write_text(content)
    with pytest.raises(MapFormatError):
        read_everything(saved)


def test_a_linked_data_dir_is_refused(tmp_path, saved) -> None:
    data = version_dir(saved) / "data"
    shutil.copytree(data, tmp_path / "elsewhere")
    shutil.rmtree(data)
    data.symlink_to(tmp_path / "elsewhere")
    with pytest.raises(MapFormatError, match="links are refused"):
        read_everything(saved)


def test_a_linked_version_dir_is_refused(tmp_path, saved) -> None:
    other = tmp_path / "other"
    save_map(demo_map(2, "sift"), other)
    vname = "v-" + "1" * 32
    (saved / vname).symlink_to(version_dir(other))
    (saved / "CURRENT").write_text(vname)
    with pytest.raises(MapFormatError, match="links are refused"):
        read_everything(saved)


# ---------------------------------------------------------------------------- D9
@pytest.mark.parametrize("bad", [np.nan, np.inf, 2.0])
def test_d9_global_descriptors_must_be_finite_unit_vectors(saved, bad) -> None:
    kmap = load_map(saved)
    kid = kmap.ids[1]
    desc = kmap.encoding(kid).global_desc.copy()
    desc = desc * bad if bad == 2.0 else np.where(np.arange(desc.size) == 3, bad, desc)
    rewrite_array(saved, kid, "desc", desc.astype(np.float32))
    with pytest.raises(MapFormatError, match=f"descriptor of keyframe {kid} is not a finite"):
        read_everything(saved)


@pytest.mark.parametrize("column,values", [("K", np.full(9, np.nan)),
                                           ("T_map_cam", np.full(16, np.inf))])
def test_d9_non_finite_intrinsics_and_poses(saved, column, values) -> None:
    edit_index(saved, f"UPDATE keyframes SET {column} = ? WHERE seq = 2",
               (values.astype("<f8").tobytes(),))
    with pytest.raises(MapFormatError, match="NaN/inf"):
        read_everything(saved)


def test_d9_stamps_and_flags(saved) -> None:
    edit_index(saved, "UPDATE keyframes SET stamp = 'yesterday' WHERE seq = 0")
    with pytest.raises(MapFormatError, match="stamp"):
        read_everything(saved)


# ---------------------------------------------------------------------------- integrity
def test_bit_rot_in_the_index_is_detected(saved) -> None:
    edit_index(saved, "UPDATE keyframes SET stamp = stamp + 1 WHERE seq = 1", rehash=False)
    with pytest.raises(MapFormatError, match="checksum"):
        read_everything(saved)


def test_truncated_or_missing_payload_files(saved) -> None:
    data = version_dir(saved) / "data"
    rgb = data / "rgb.bin"
    os.truncate(rgb, rgb.stat().st_size - 10)
    with pytest.raises(MapFormatError, match="truncated"):
        read_everything(saved)
    save_map(demo_map(3, "sift"), saved)
    (version_dir(saved) / "data" / "depth.bin").unlink()
    with pytest.raises(MapFormatError, match="cannot read"):
        read_everything(saved)
    save_map(demo_map(3, "sift"), saved)
    off, n = extent(saved, load_map(saved).ids[2], "rgb")
    kmap = load_map(saved)
    os.truncate(version_dir(saved) / "data" / "rgb.bin", off + n // 2)  # after the map was opened
    with pytest.raises(MapFormatError, match="ends after"):
        kmap.keyframe(kmap.ids[2])
    kmap.keyframe(kmap.ids[0])


def test_errors_are_map_errors(saved) -> None:
    assert issubclass(MapFormatError, MapError) and issubclass(MapLockedError, MapError)
    with pytest.raises(MapFormatError, match="not a map directory"):
        load_map(saved.parent / "nothing-here")


def test_d7_destination_under_a_file_is_a_typed_error(tmp_path) -> None:
    (tmp_path / "file").write_text("x")
    with pytest.raises(MapError, match="cannot write the map to .*Not a directory"):
        save_map(demo_map(1, "none"), tmp_path / "file" / "map")


@pytest.mark.parametrize("sql,value", [
    ("UPDATE info SET value = ? WHERE key = 'source'", "x" * 10**6),
    ("UPDATE keyframes SET arrays = ? WHERE seq = 0", b"\0" * 10**6)])
def test_d1_oversized_index_values_are_refused_before_fetching(saved, sql, value) -> None:
    edit_index(saved, sql, (value,))
    with pytest.raises(MapFormatError, match="values larger than"):
        read_everything(saved)
