"""Schema-1 maps: untyped (the store of commit c1176e2, fixtures/make_v1_fixtures.py) and typed
(the interim store of the core contract, commit c202f2d, fixtures/make_v1_typed_fixtures.py).
Migration of MASt3R and SIFT maps, and the hostile schema-1 inputs of the hardening issue."""

from __future__ import annotations

import io
import json
import os
import resource
import shutil
import sqlite3
import zipfile

import numpy as np
import pytest
from map_fixtures import assert_same_map, copy_fixture, png_bomb, version_dir
from test_map_store_crash import _in_child
from test_map_store_hostile import read_everything

from mast3r_ros.core.errors import MapFormatError
from mast3r_ros.core.features import Mast3rFeatures
from mast3r_ros.core.map import load_map, save_map


def _v1_rows(path) -> tuple[dict, list]:
    con = sqlite3.connect(version_dir(path) / "map.sqlite")
    meta = {k: json.loads(v) for k, v in con.execute("SELECT key, value FROM meta")}
    rows = list(con.execute("SELECT id, width, height, has_features FROM keyframes ORDER BY idx"))
    con.close()
    return meta, rows


def _v1_sql(path, sql: str, params: tuple = ()) -> None:
    con = sqlite3.connect(version_dir(path) / "map.sqlite")
    with con:
        con.execute(sql, params)
    con.close()


def test_v1_mast3r_map_migrates_with_its_encodings(tmp_path) -> None:
    path = copy_fixture("v1_mast3r", tmp_path / "m")
    meta, rows = _v1_rows(path)
    old = version_dir(path)
    kmap = load_map(path)
    assert kmap.ids == [r[0] for r in rows] and kmap.missing_encodings() == []
    enc = kmap.encoder
    assert (enc.backend, enc.model_id, enc.image_size, enc.preprocessing, enc.descriptor,
            enc.features) == ("mast3r", meta["model_id"], meta["image_size"],
                              "dust3r-resize-crop16-v1", "mast3r-encoder-mean-v1",
                              Mast3rFeatures.KIND)
    desc = np.load(old / "global_desc.npy")
    for i, kid in enumerate(kmap.ids):
        with np.load(old / "features" / f"{kid}.npz") as z:
            feat, true_shape = z["feat"], tuple(z["true_shape"])
        f = kmap.features(kid)
        assert f.tokens.dtype.itemsize == 2 and f.true_shape == true_shape
        assert np.array_equal(f.tokens.numpy(), feat.astype(np.float16))
        assert np.allclose(kmap.encoding(kid).global_desc, desc[i], atol=1e-6)
    assert kmap.keyframe(20).pointmap is not None and kmap.keyframe(0).depth is not None
    save_map(kmap, path)  # migrate in place: schema 2, the schema-1 version is gone
    assert not old.exists() and (version_dir(path) / "index.sqlite").exists()
    assert_same_map(kmap, load_map(path))


@pytest.mark.parametrize("fixture", ["v1t_sift", "v1t_mast3r"])
def test_v1_typed_maps_migrate_with_their_encodings(tmp_path, fixture) -> None:
    from mast3r_ros.core.features import features_from_arrays

    path = copy_fixture(fixture, tmp_path / "m")
    meta, rows = _v1_rows(path)
    old = version_dir(path)
    kmap = load_map(path)
    assert kmap.encoder.__dict__ == meta["encoder"] and kmap.missing_encodings() == []
    desc = np.load(old / "global_desc.npy")
    for i, kid in enumerate(kmap.ids):
        with np.load(old / "features" / f"{kid}.npz") as z:
            want = features_from_arrays(meta["encoder"]["features"], dict(z)).to_arrays()
        got = kmap.features(kid).to_arrays()
        assert want.keys() == got.keys()
        assert all(np.array_equal(want[k], got[k]) for k in want)
        assert np.allclose(kmap.encoding(kid).global_desc, desc[i], atol=1e-6)
    save_map(kmap, path)
    assert not old.exists()
    assert_same_map(kmap, load_map(path))


def test_v1_typed_features_are_checked(tmp_path) -> None:
    path = copy_fixture("v1t_sift", tmp_path / "m")
    p = version_dir(path) / "features" / "20.npz"
    with np.load(p) as z:
        arrays = dict(z)
    np.savez(p, xy=arrays["xy"], desc=arrays["desc"].astype(np.float64))
    with pytest.raises(MapFormatError, match="20.npz: .*desc must be 2-d uint8"):
        read_everything(path)
    with zipfile.ZipFile(p, "w") as z:
        for i in range(12):
            z.writestr(f"a{i}.npy", _npy_header((1,)) + b"\x00" * 4)
    with pytest.raises(MapFormatError, match="unexpected members"):
        read_everything(path)
    _v1_sql(path, "UPDATE meta SET value = ? WHERE key = 'encoder'", ('{"backend": 1}',))
    with pytest.raises(MapFormatError, match="six EncoderId fields"):
        read_everything(path)


def test_v1_sift_map_loads_without_encodings(tmp_path) -> None:
    path = copy_fixture("v1_sift", tmp_path / "m")
    kmap = load_map(path)
    assert len(kmap) == 3 and kmap.encoder is None and kmap.missing_encodings() == kmap.ids
    kf = kmap.keyframe(40)
    assert kf.rgb.shape == (60, 80, 3) and kf.depth.shape == (60, 80) and kf.K[0, 0] > 0
    assert np.isclose(kf.stamp, 40 / 30.0)


# ---------------------------------------------------------------------------- D1
@pytest.mark.parametrize("k_json", ['["a", "b", "c", 1, 2, 3, 4, 5, 6]', '"K"', '[1, 2]',
                                    '{"fx": 1}', "[[1, 0, 0], [0, 1, 0], [0, 0, 1]]"])
def test_d1_v1_k_holding_strings(tmp_path, k_json) -> None:
    path = copy_fixture("v1_sift", tmp_path / "m")
    _v1_sql(path, "UPDATE keyframes SET K = ? WHERE idx = 1", (k_json,))
    with pytest.raises(MapFormatError, match="K must be a list of 9 numbers"):
        read_everything(path)


@pytest.mark.parametrize("depth", [100_000, 30_000])
@pytest.mark.parametrize("where", ["meta", "K"])
def test_d1_v1_deeply_nested_json(tmp_path, depth, where) -> None:
    path = copy_fixture("v1_sift", tmp_path / "m")
    deep = "[" * depth + "]" * depth
    if where == "meta":
        _v1_sql(path, "UPDATE meta SET value = ? WHERE key = 'source'", (deep,))
    else:
        _v1_sql(path, "UPDATE keyframes SET T_map_cam = ? WHERE idx = 0", (deep,))
    with pytest.raises(MapFormatError, match="JSON"):  # too deep, or too long to be a map's
        read_everything(path)


def _npy_header(shape: tuple, dtype: str = "<f4") -> bytes:
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(buf, {"descr": dtype, "fortran_order": False,
                                               "shape": shape})
    return buf.getvalue()


def test_d1_v1_npz_and_npy_headers_claiming_huge_shapes(tmp_path) -> None:
    path = copy_fixture("v1_sift", tmp_path / "m")
    with zipfile.ZipFile(version_dir(path) / "arrays" / "0.npz", "w") as z:
        z.writestr("depth.npy", _npy_header((1_000_000, 1_000_000)) + b"\x00" * 64)
    with pytest.raises(MapFormatError, match="not the expected"):
        read_everything(path)
    path = copy_fixture("v1_mast3r", tmp_path / "n")
    for feat_shape, true_shape in (((60_000, 4000), (48, 64)), ((12, 64), (4096, 4096))):
        with zipfile.ZipFile(version_dir(path) / "features" / "0.npz", "w") as z:
            z.writestr("feat.npy", _npy_header(feat_shape) + b"\x00" * 64)
            z.writestr("true_shape.npy", _npy_header((2,), "<i8")
                       + np.array(true_shape, "<i8").tobytes())
        with pytest.raises(MapFormatError, match="not the expected|does not fit image size 64"):
            read_everything(path)
    with zipfile.ZipFile(version_dir(path) / "features" / "0.npz", "w") as z:  # short data
        z.writestr("feat.npy", _npy_header((12, 64)) + b"\x00" * 64)
        z.writestr("true_shape.npy", _npy_header((2,), "<i8") + np.array([48, 64], "<i8").tobytes())
    with pytest.raises(MapFormatError, match="truncated"):
        read_everything(path)
    path = copy_fixture("v1_mast3r", tmp_path / "o")
    (version_dir(path) / "global_desc.npy").write_bytes(_npy_header((10**9, 64)) + b"\x00" * 64)
    with pytest.raises(MapFormatError, match="not the expected"):
        read_everything(path)


@pytest.mark.parametrize("header", [b"{'descr': '<f4', 'shape': (3,", b"{'descr': " + b"(" * 500,
                                    b"\xff\xfe", b"{'descr': '<f4', 'fortran_order': False, "
                                    b"'shape': (3, 10**100)}"])
def test_d1_v1_malformed_npy_headers(tmp_path, header) -> None:
    path = copy_fixture("v1_mast3r", tmp_path / "m")
    raw = b"\x93NUMPY\x01\x00" + len(header + b"\n").to_bytes(2, "little") + header + b"\n"
    (version_dir(path) / "global_desc.npy").write_bytes(raw + b"\x00" * 64)
    with pytest.raises(MapFormatError, match="global_desc.npy"):
        read_everything(path)


def test_d1_v1_wrong_counts(tmp_path) -> None:
    path = copy_fixture("v1_sift", tmp_path / "m")
    _v1_sql(path, "UPDATE meta SET value = '7' WHERE key = 'num_keyframes'")
    with pytest.raises(MapFormatError, match="meta says 7"):
        read_everything(path)


# ---------------------------------------------------------------------------- D3
def test_d3_v1_png_bomb_is_refused_from_its_header(tmp_path) -> None:
    """A 130 kB PNG of 32768x32768 pixels (1 bit): refused before decoding (the old store
    decoded it: 6.25 GB). Checked in a child process by its peak memory."""
    path = copy_fixture("v1_sift", tmp_path / "m")
    bomb = png_bomb()
    assert len(bomb) < 200_000
    (version_dir(path) / "rgb" / "20.png").write_bytes(bomb)

    def child() -> None:
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        try:
            read_everything(path)
        except MapFormatError as exc:
            assert "32768x32768" in str(exc) or "DecompressionBomb" in str(exc), exc
        else:
            raise AssertionError("the bomb was accepted")
        grown_mb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
        assert grown_mb < 100, f"peak memory grew by {grown_mb:.0f} MB"

    assert _in_child(child) == 0


def test_d3_v1_image_within_the_decoder_limit_but_above_ours(tmp_path) -> None:
    path = copy_fixture("v1_sift", tmp_path / "m")
    (version_dir(path) / "rgb" / "0.png").write_bytes(png_bomb(8192, 4096))
    with pytest.raises(MapFormatError, match="8192x4096 pixels exceeds the limit"):
        read_everything(path)


# ---------------------------------------------------------------------------- D8
@pytest.mark.parametrize("target", ["map.sqlite", "rgb/0.png", "arrays/20.npz", "features/40.npz",
                                    "global_desc.npy", "arrays", "rgb"])
def test_d8_v1_fifo_is_refused_without_blocking(tmp_path, target) -> None:
    path = copy_fixture("v1_mast3r", tmp_path / "m")
    p = version_dir(path) / target
    if p.is_dir():  # a directory replaced by a link to a copy of it
        shutil.copytree(p, tmp_path / "elsewhere")
        shutil.rmtree(p)
        p.symlink_to(tmp_path / "elsewhere")
    else:
        p.unlink()
        os.mkfifo(p)
    with pytest.raises(MapFormatError, match="not a regular file|links are refused"):
        read_everything(path)


# ---------------------------------------------------------------------------- D9
@pytest.mark.parametrize("fixture", ["v1_sift", "v1_mast3r"])
def test_d9_v1_nan_global_descriptors(tmp_path, fixture) -> None:
    path = copy_fixture(fixture, tmp_path / "m")
    p = version_dir(path) / "global_desc.npy"
    d = np.load(p)
    d[1, 5] = np.nan
    np.save(p, d)
    with pytest.raises(MapFormatError, match="finite unit vectors"):
        read_everything(path)


def test_d9_v1_nan_pose(tmp_path) -> None:
    path = copy_fixture("v1_sift", tmp_path / "m")
    _v1_sql(path, "UPDATE keyframes SET T_map_cam = ? WHERE idx = 2",
            (json.dumps([1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1]).replace("1]", "NaN]"),))
    with pytest.raises(MapFormatError, match="T_map_cam"):
        read_everything(path)
