"""Pairwise stage, cache, build_map and the build-map CLI with the tiny official-format checkpoint,
against the official sparse_ga fixture (same images, same model)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mast3r_ros.core.config import MappingConfig
from mast3r_ros.core.mapping.pairwise import PairCache, compute_pairs, image_key
from mast3r_ros.core.mapping.scene_graph import make_pairs

from _mapping_fixture import load_fixture


class _NoNetwork:
    """An engine that fails if the network is used (everything must come from the cache)."""

    def encode(self, *a, **k):
        raise AssertionError("network used despite a warm cache")

    decode = global_descriptor = encode


@pytest.fixture(scope="module")
def fx(golden_dir):
    return load_fixture(golden_dir)


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("pair_cache")


@pytest.fixture(scope="module")
def computed(fx, tiny_checkpoint, cache_dir):
    from mast3r_ros.core.model import InferenceEngine, load_model

    from mast3r_ros.core.model.factory import checkpoint_id

    engine = InferenceEngine(load_model(tiny_checkpoint, "cpu"), "cpu")
    imgs = [torch.from_numpy(fx[f"img_{k}"]) for k in range(3)]
    # the model id the CLI's backend uses, so that the CLI test hits this cache
    cache = PairCache(cache_dir, checkpoint_id(tiny_checkpoint), 8)
    return imgs, compute_pairs(engine, imgs, make_pairs(3, "complete"), 8, cache)


def _uint8_images(fx):
    return [np.round((fx[f"img_{k}"][0].transpose(1, 2, 0) * 0.5 + 0.5) * 255).astype(np.uint8)
            for k in range(3)]


def test_pairwise_matches_official_cache(computed, fx):
    _, pairs = computed
    assert [(p.i, p.j) for p in pairs] == [(1, 0), (2, 0), (2, 1)]
    for p in pairs:
        f, g, c = (f"cache__fwd_{p.i}{p.j}__", f"cache__fwd_{p.j}{p.i}__",
                   f"cache__corres_{p.i}{p.j}__")
        for ours, key in ((p.X_i_in_i, f + "X_a_in_a"), (p.X_j_in_i, f + "X_b_in_a"),
                          (p.C_i, f + "C_a"), (p.C_j_in_i, f + "C_b_in_a"),
                          (p.X_j_in_j, g + "X_a_in_a"), (p.X_i_in_j, g + "X_b_in_a")):
            np.testing.assert_allclose(ours, fx[key], atol=1e-3, rtol=1e-4)
        np.testing.assert_array_equal(p.xy_i, fx[c + "xy_a"])
        np.testing.assert_array_equal(p.xy_j, fx[c + "xy_b"])
        np.testing.assert_allclose(p.conf, fx[c + "conf"], rtol=1e-4)
        np.testing.assert_allclose(p.score, fx[c + "score"], rtol=1e-5)


def test_cache_hit_skips_network_and_swaps(computed, cache_dir, tiny_checkpoint):
    imgs, pairs = computed
    from mast3r_ros.core.model.factory import checkpoint_id

    cache = PairCache(cache_dir, checkpoint_id(tiny_checkpoint), 8)
    again = compute_pairs(_NoNetwork(), imgs, [(1, 0), (2, 0), (2, 1)], 8, cache)
    np.testing.assert_array_equal(again[0].xy_i, pairs[0].xy_i)
    swapped = compute_pairs(_NoNetwork(), imgs, [(0, 1)], 8, cache)[0]  # stored as (1, 0)
    np.testing.assert_array_equal(swapped.xy_i, pairs[0].xy_j)
    np.testing.assert_array_equal(swapped.X_i_in_i, pairs[0].X_j_in_j)
    # another model id or subsample is another key
    other = PairCache(cache_dir, "other-model", 8)
    assert other.load(1, 0, image_key(imgs[1]), image_key(imgs[0])) is None


def test_build_map_reproduces_official_and_round_trips(computed, fx, cache_dir, tmp_path,
                                                       tiny_checkpoint):
    from mast3r_ros.core.model.factory import checkpoint_id
    from mast3r_ros.core.map import load_map, save_map
    from mast3r_ros.core.mapping.build import build_map

    cfg = MappingConfig(scene_graph="complete", niter1=30, niter2=30, matching_conf_thr=0.0,
                        cache_dir=str(cache_dir), device="cpu")
    res = build_map(_uint8_images(fx), _NoNetwork(), cfg, model_id=checkpoint_id(tiny_checkpoint),
                    image_size=64)
    np.testing.assert_allclose(res.alignment.focals, fx["coarse30_fine30__focals"], rtol=5e-3)
    gt = fx["coarse30_fine30__cam2w"].astype(np.float64)
    T = res.alignment.T_world_cam
    # (network outputs differ from the official ones by ~5e-5; 60 Adam steps amplify that)
    np.testing.assert_allclose(np.linalg.inv(T[0]) @ T, np.linalg.inv(gt[0]) @ gt, atol=3e-2)
    save_map(res.kmap, tmp_path / "map")
    back = load_map(tmp_path / "map")
    assert len(back) == 3
    np.testing.assert_allclose(back.poses(), res.kmap.poses())
    for a, b in zip(back.keyframes(), res.kmap.keyframes()):
        np.testing.assert_allclose(a.K, b.K)
        np.testing.assert_allclose(a.depth, b.depth)
        assert a.depth.shape == (48, 64) and (a.depth > 0).mean() > 0.9
    # dense depth equals the depth of the sparse points at the matched pixels (camera frame z)
    kf = list(res.kmap.keyframes())[1]
    X = res.alignment.pts3d[1]
    z = ((X - kf.T_map_cam[:3, 3]) @ kf.T_map_cam[:3, :3])[:, 2]
    xy = np.concatenate([fx["cache__corres_10__xy_a"], fx["cache__corres_21__xy_b"]])
    np.testing.assert_allclose(kf.depth[xy[:, 1], xy[:, 0]], z, rtol=1e-4)


def test_build_map_cli(computed, fx, cache_dir, tmp_path, tiny_checkpoint, capsys):
    import cv2

    from mast3r_ros.cli import main
    from mast3r_ros.core.map import load_map

    folder = tmp_path / "imgs"
    folder.mkdir()
    for k, im in enumerate(_uint8_images(fx)):
        cv2.imwrite(str(folder / f"{k:03d}.png"), im[..., ::-1])
    out = tmp_path / "map"
    rc = main(["build-map", str(folder), str(out), "--checkpoint", str(tiny_checkpoint),
               "--image-size", "64", "--scene-graph", "complete", "--niter1", "10", "--niter2",
               "10", "--cache-dir", str(cache_dir), "--device", "cpu"])
    assert rc == 0
    assert '"keyframes": 3' in capsys.readouterr().out
    m = load_map(out)
    assert len(m) == 3 and not m.missing_encodings() and m.encoder.backend == "mast3r"
    assert main(["build-map", str(tmp_path / "missing"), str(out), "--checkpoint",
                 str(tiny_checkpoint)]) == 2


def _write_bag(path, images, encoding):
    from rosbags.rosbag2 import Writer
    from rosbags.typesys import Stores, get_typestore

    ts = get_typestore(Stores.ROS2_KILTED)
    Image, Header, Time = (ts.types[k] for k in ("sensor_msgs/msg/Image", "std_msgs/msg/Header",
                                                  "builtin_interfaces/msg/Time"))
    with Writer(path, version=8) as w:
        c = w.add_connection("/cam/image_raw", "sensor_msgs/msg/Image", typestore=ts)
        for k, im in enumerate(images):
            h, wd = im.shape[:2]
            data = im[..., ::-1] if encoding == "bgr8" else im
            pad = np.zeros((h, 4), np.uint8)  # row padding: step > width * 3
            rows = np.concatenate((np.ascontiguousarray(data).reshape(h, -1), pad), 1)
            msg = Image(header=Header(stamp=Time(sec=k, nanosec=5), frame_id="cam"), height=h,
                        width=wd, encoding=encoding, is_bigendian=0, step=wd * 3 + 4,
                        data=rows.reshape(-1))
            w.write(c, k * 10 ** 9, ts.serialize_cdr(msg, "sensor_msgs/msg/Image"))


def test_rosbag_reader(fx, tmp_path):
    from mast3r_ros.cli.build_map import _read_bag

    ims = _uint8_images(fx)
    for enc in ("rgb8", "bgr8"):
        bag = tmp_path / f"bag_{enc}"
        _write_bag(bag, ims, enc)
        got, stamps = _read_bag(bag, "")
        assert len(got) == 3 and stamps[1] == pytest.approx(1 + 5e-9)
        for a, b in zip(got, ims):
            np.testing.assert_array_equal(a, b)
    from mast3r_ros.core.errors import InputError

    with pytest.raises(InputError, match="no image topic"):
        _read_bag(tmp_path / "bag_rgb8", "/other")


def test_build_map_with_known_intrinsics_and_poses(computed, fx, cache_dir, tiny_checkpoint):
    from mast3r_ros.core.model.factory import checkpoint_id
    from mast3r_ros.core.mapping.build import build_map

    cfg = MappingConfig(scene_graph="complete", niter1=10, niter2=10, matching_conf_thr=0.0,
                        cache_dir=str(cache_dir), device="cpu")
    K = np.array([[30.0, 0, 31.5], [0, 30.0, 23.5], [0, 0, 1]])  # 64x48 originals: no rescale
    poses = [np.eye(4), None, np.eye(4)]
    poses[2][:3, 3] = [1.0, 0.0, 0.0]
    res = build_map(_uint8_images(fx), _NoNetwork(), cfg, model_id=checkpoint_id(tiny_checkpoint),
                    image_size=64, K=K, poses=poses, intrinsics_mode="fixed", poses_mode="prior")
    np.testing.assert_allclose(res.alignment.K, np.stack([K] * 3), atol=1e-4)
    T = res.alignment.T_world_cam
    np.testing.assert_allclose(T[0], np.eye(4), atol=1e-5)  # first known camera is the anchor
    assert np.linalg.norm(T[2, :3, 3] - T[0, :3, 3]) == pytest.approx(1.0, rel=1e-5)  # its scale
    assert [kf.stamp for kf in res.kmap.keyframes()] == [0.0, 1.0, 2.0]
