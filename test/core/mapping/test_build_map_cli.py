"""The build-map CLI: image folders, rosbag2 input, ``--ray`` errors."""

from __future__ import annotations

import numpy as np
import pytest
from _mapping_fixture import load_fixture


@pytest.fixture(scope="module")
def images(golden_dir):
    fx = load_fixture(golden_dir)
    return [np.round((fx[f"img_{k}"][0].transpose(1, 2, 0) * 0.5 + 0.5) * 255).astype(np.uint8)
            for k in range(3)]


def _folder(images, path):
    import cv2

    path.mkdir()
    for k, im in enumerate(images):
        cv2.imwrite(str(path / f"{k:03d}.png"), im[..., ::-1])
    return path


def test_build_map_cli(images, tmp_path, tiny_checkpoint, capsys):
    from mast3r_ros.cli import main
    from mast3r_ros.core.map import load_map

    folder = _folder(images, tmp_path / "imgs")
    out = tmp_path / "map"
    args = ["build-map", str(folder), str(out), "--checkpoint", str(tiny_checkpoint),
            "--image-size", "64", "--scene-graph", "complete", "--niter1", "10", "--niter2", "10",
            "--cache-dir", str(tmp_path / "cache"), "--device", "cpu"]
    assert main(args) == 0
    assert '"keyframes": 3' in capsys.readouterr().out
    m = load_map(out)
    assert len(m) == 3 and not m.missing_encodings() and m.encoder.backend == "mast3r"
    assert main(args) == 0  # second run: every pair from the cache
    assert '"pairs_computed": 0, "pairs_cached": 3' in capsys.readouterr().out
    assert main(["build-map", str(tmp_path / "missing"), str(out), "--checkpoint",
                 str(tiny_checkpoint)]) == 2


def test_build_map_cli_unreachable_ray(images, tmp_path, tiny_checkpoint, caplog):
    from mast3r_ros.cli import main

    folder = _folder(images, tmp_path / "imgs")
    rc = main(["build-map", str(folder), str(tmp_path / "map"), "--checkpoint",
               str(tiny_checkpoint), "--image-size", "64", "--device", "cpu", "--cache-dir",
               str(tmp_path / "cache"), "--ray", "127.0.0.1:9"])
    assert rc == 2
    assert "cannot reach the Ray cluster at 127.0.0.1:9" in caplog.text


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


def test_rosbag_reader(images, tmp_path):
    from mast3r_ros.cli.build_map import _read_bag
    from mast3r_ros.core.errors import InputError

    for enc in ("rgb8", "bgr8"):
        bag = tmp_path / f"bag_{enc}"
        _write_bag(bag, images, enc)
        got, stamps = _read_bag(bag, "")
        assert len(got) == 3 and stamps[1] == pytest.approx(1 + 5e-9)
        for a, b in zip(got, images):
            np.testing.assert_array_equal(a, b)
    with pytest.raises(InputError, match="no image topic"):
        _read_bag(tmp_path / "bag_rgb8", "/other")
