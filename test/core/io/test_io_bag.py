"""The rosbag2 reader: typed records in bag order, topic filter, hostile bags -> InputError."""

from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np
import pytest
from io_helpers import in_thread

from mast3r_ros.core.config import InputConfig
from mast3r_ros.core.errors import ImageError, InputError
from mast3r_ros.core.io import (
    CameraInfoRecord,
    CompressedImageRecord,
    ImageRecord,
    bag_topics,
    is_bag,
    read_bag,
)

LIMIT = InputConfig().max_image_pixels
K = np.array([[50.0, 0, 31.5], [0, 51.0, 23.5], [0, 0, 1]])


def _write_bag(path: Path, frames: list[np.ndarray], storage: str = "mcap") -> None:
    from rosbags.rosbag2 import StoragePlugin, Writer
    from rosbags.typesys import Stores, get_typestore

    ts = get_typestore(Stores.ROS2_KILTED)
    T = ts.types
    Header, Time = T["std_msgs/msg/Header"], T["builtin_interfaces/msg/Time"]
    plugin = StoragePlugin.MCAP if storage == "mcap" else StoragePlugin.SQLITE3
    with Writer(path, version=8, storage_plugin=plugin) as w:
        ci = w.add_connection("/cam/camera_info", "sensor_msgs/msg/CameraInfo", typestore=ts)
        im = w.add_connection("/cam/image_raw", "sensor_msgs/msg/Image", typestore=ts)
        cm = w.add_connection("/cam/image_raw/compressed", "sensor_msgs/msg/CompressedImage",
                              typestore=ts)
        w.add_connection("/chatter", "std_msgs/msg/String", typestore=ts)
        for k, rgb in enumerate(frames):
            h, wd = rgb.shape[:2]
            head = Header(stamp=Time(sec=100 + k, nanosec=7), frame_id="cam")
            info = T["sensor_msgs/msg/CameraInfo"](
    header=head, height=h, width=wd, distortion_model="plumb_bob",
                d=np.zeros(5), k=K.reshape(-1), r=np.eye(3).reshape(-1),
                p=np.hstack([K, np.zeros((3, 1))]).reshape(-1), binning_x=2, binning_y=1,
                roi=T["sensor_msgs/msg/RegionOfInterest"](x_offset=3, y_offset=4, height=5,
                                                          width=6, do_rectify=True))
            rows = np.concatenate([rgb[..., ::-1].reshape(h, -1), np.zeros((h, 4), np.uint8)], 1)
            img = T["sensor_msgs/msg/Image"](header=head, height=h, width=wd, encoding="bgr8",
                                             is_bigendian=0, step=wd * 3 + 4, data=rows.reshape(-1))
            png = cv2.imencode(".png", rgb[..., ::-1])[1].reshape(-1)
            comp = T["sensor_msgs/msg/CompressedImage"](header=head, format="png", data=png)
            t = k * 10**9
            w.write(ci, t, ts.serialize_cdr(info, "sensor_msgs/msg/CameraInfo"))
            w.write(im, t + 1, ts.serialize_cdr(img, "sensor_msgs/msg/Image"))
            w.write(cm, t + 2, ts.serialize_cdr(comp, "sensor_msgs/msg/CompressedImage"))


@pytest.fixture()
def frames(rng: np.random.Generator) -> list[np.ndarray]:
    return [rng.integers(0, 256, (12, 16, 3), dtype=np.uint8) for _ in range(3)]


@pytest.mark.parametrize("storage", ["mcap", "sqlite3"])
def test_records_in_bag_order(tmp_path: Path, frames: list[np.ndarray], storage: str) -> None:
    bag = tmp_path / "bag"
    _write_bag(bag, frames, storage)
    assert is_bag(bag) and not is_bag(tmp_path)
    recs = list(read_bag(bag))
    assert [type(r) for r in recs] == [CameraInfoRecord, ImageRecord, CompressedImageRecord] * 3
    assert [r.bag_time_ns for r in recs[:3]] == [0, 1, 2]
    for k in range(3):
        info, img, comp = recs[3 * k:3 * k + 3]
        assert isinstance(info, CameraInfoRecord) and isinstance(img, ImageRecord)
        assert isinstance(comp, CompressedImageRecord)
        assert img.stamp_sec == 100 + k and img.stamp_nanosec == 7 and img.frame_id == "cam"
        assert img.stamp == pytest.approx(100 + k + 7e-9)
        np.testing.assert_array_equal(img.to_rgb(LIMIT), frames[k])
        np.testing.assert_array_equal(comp.to_rgb(LIMIT), frames[k])
        np.testing.assert_array_equal(info.K, K)
        assert info.P.shape == (3, 4) and (info.width, info.height) == (16, 12)
        assert info.binning == (2, 1) and info.roi == (3, 4, 5, 6, True)
        assert info.distortion_model == "plumb_bob" and info.D.shape == (5,)
    only = list(read_bag(bag, topics={"/cam/image_raw"}))
    assert len(only) == 3 and all(isinstance(r, ImageRecord) for r in only)
    assert bag_topics(bag)["/chatter"] == "std_msgs/msg/String"


def test_pixel_limit_applies_to_records(tmp_path: Path, frames: list[np.ndarray]) -> None:
    _write_bag(tmp_path / "bag", frames)
    for rec in read_bag(tmp_path / "bag", topics={"/cam/image_raw", "/cam/image_raw/compressed"}):
        with pytest.raises(ImageError, match="exceeds the limit of 100"):
            rec.to_rgb(100)  # type: ignore[union-attr]


def test_missing_topic_lists_topics(tmp_path: Path, frames: list[np.ndarray]) -> None:
    _write_bag(tmp_path / "bag", frames)
    pattern = r"no image topic .* named \['/other'\] in .*/cam/image_raw \(sensor"
    with pytest.raises(InputError, match=pattern):
        list(read_bag(tmp_path / "bag", topics={"/other"}))


def test_hostile_bags_give_input_error(tmp_path: Path, frames: list[np.ndarray]) -> None:
    with pytest.raises(InputError, match="does not exist"):
        list(read_bag(tmp_path / "none.mcap"))
    junk = tmp_path / "junk.mcap"
    junk.write_bytes(b"\x89MCAP0\r\n" + os.urandom(200))
    with pytest.raises(InputError, match="cannot read the rosbag"):
        list(read_bag(junk))
    bag = tmp_path / "bag"
    _write_bag(bag, frames)
    meta = bag / "metadata.yaml"
    meta.write_text(meta.read_text().replace("rosbag2_bagfile_information", "x"))
    with pytest.raises(InputError, match="cannot read the rosbag"):
        list(read_bag(bag))
    with pytest.raises(InputError, match="cannot read the rosbag"):
        bag_topics(bag)
    storage = next(bag.glob("*.mcap"))
    storage.write_bytes(storage.read_bytes()[:300])  # truncated storage file
    meta.write_text(meta.read_text().replace("x:", "rosbag2_bagfile_information:", 1))
    with pytest.raises(InputError, match="cannot read the rosbag"):
        list(read_bag(bag))


def test_fifo_in_bag_refused_without_blocking(tmp_path: Path, frames: list[np.ndarray]) -> None:
    bag = tmp_path / "bag"
    _write_bag(bag, frames)
    (bag / "metadata.yaml").unlink()
    os.mkfifo(bag / "metadata.yaml")
    exc = in_thread(lambda p: list(read_bag(p)), bag)
    assert isinstance(exc, InputError) and "named pipe" in str(exc)
    exc = in_thread(bag_topics, bag)
    assert isinstance(exc, InputError) and "named pipe" in str(exc)
