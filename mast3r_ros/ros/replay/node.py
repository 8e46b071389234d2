"""Replay node: publishes images + camera_info as a camera driver would, from a folder or a rosbag2.

* Folder: every ``*.jpg|*.jpeg|*.png`` in name order (``glob`` selects), K from ``K`` (9 numbers)
  or ``intrinsics_file`` (3x3 text). Published as ``image`` (rgb8/bgr8) + ``camera_info``.
* rosbag2 (mcap or sqlite3, read with ``rosbags``): Image / CompressedImage / CameraInfo messages
  of the bag are re-published on ``image``, ``image/compressed`` and ``camera_info`` in bag order.

Stamps are "now" (a live camera) unless ``stamp_mode:=original`` (folder: 0, 1/rate, ...; bag: the
recorded stamps). ``lockstep_topic`` makes the replay wait for the localizer's
``LocalizationStatus`` of each frame before sending the next (offline evaluation without drops).
``index_out`` writes one JSON line per published frame (stamp, source) for evaluation tools.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Optional

import numpy as np
import rclpy
from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
from rclpy.node import Node
from rclpy.qos import qos_profile_sensor_data
from sensor_msgs.msg import CameraInfo, CompressedImage, Image

from mast3r_ros.core.config import opt, validate_fields
from mast3r_ros.core.errors import ConfigError, InputError
from mast3r_ros.core.io import read_bag
from mast3r_ros.core.map import read_matrix, read_rgb
from mast3r_ros.msg import LocalizationStatus
from mast3r_ros.ros.common.conversions import (
    record_to_msg,
    rgb_to_image,
    sec_to_stamp,
    stamp_to_sec,
)
from mast3r_ros.ros.common.params import config_from_values, declare_spec, iter_param_specs

__all__ = ["ReplayConfig", "ReplayNode", "iter_folder", "iter_bag", "main"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ReplayConfig:
    """What the replay node publishes and how fast."""

    source: str = opt("", "folder of images or a rosbag2 directory/file")
    glob: str = opt("*", "file name pattern inside a folder source (e.g. '*.color.jpg')")
    rate: float = opt(10.0, "frames per second (folder; bag: 0 = recorded timing)",
                      range=(0.0, 1000.0))
    K: tuple = opt((), "3x3 intrinsics row-major (9 numbers) for a folder source")
    intrinsics_file: str = opt("", "text file with a 3x3 K (used when K is empty)")
    frame_id: str = opt("camera_optical_frame", "header.frame_id of images and camera_info")
    encoding: str = opt("rgb8", "encoding of published images", choices=("rgb8", "bgr8"))
    stamp_mode: str = opt("now", "header stamps: now (live camera) or original",
                          choices=("now", "original"))
    loop: bool = opt(False, "start again at the end")
    start_delay: float = opt(1.0, "seconds to wait before the first frame (discovery)",
                             range=(0.0, 60.0))
    wait_for_subscribers: int = opt(0, "wait until the image topic has this many subscribers",
                                    range=(0, 100))
    subscriber_timeout: float = opt(120.0, "stop waiting for subscribers after this many seconds",
                                    range=(0.0, None))
    lockstep_topic: str = opt("", "LocalizationStatus topic to wait on after each frame "
                                  "(empty = free running)")
    lockstep_timeout: float = opt(30.0, "seconds to wait for each lockstep status",
                                  range=(0.1, None))
    index_out: str = opt("", "JSON-lines file: stamp and source of each published frame")

    def __post_init__(self) -> None:
        validate_fields(self)
        if self.K and len(self.K) != 9:
            raise ConfigError(f"ReplayConfig.K needs 9 numbers, got {len(self.K)}")


def iter_folder(cfg: ReplayConfig) -> Iterator[tuple[str, np.ndarray]]:
    """(name, RGB image) of every image file of a folder source, in name order."""
    folder = Path(cfg.source)
    files = sorted(p for p in folder.glob(cfg.glob)
                   if p.suffix.lower() in (".jpg", ".jpeg", ".png"))
    if not files:
        raise InputError(f"no images matching {cfg.glob!r} in {folder}")
    for path in files:
        yield path.name, read_rgb(path)


def iter_bag(path: str) -> Iterator[tuple[str, Any, float]]:
    """(topic, rclpy message, bag time s) of every image/camera_info message of a rosbag2, read
    with the package's one bag reader (:func:`mast3r_ros.core.io.read_bag`)."""
    found = False
    for record in read_bag(path):
        found = True
        yield record.topic, record_to_msg(record), record.bag_time_ns * 1e-9
    if not found:
        raise InputError(f"{path}: no sensor_msgs Image/CompressedImage/CameraInfo messages")


class ReplayNode(Node):
    """Publishes a folder or bag as a camera (see module docstring)."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__("replay", **kwargs)
        values = {s.name: declare_spec(self, s) for s in iter_param_specs(ReplayConfig)}
        self.cfg: ReplayConfig = config_from_values(ReplayConfig, values)
        self.image_pub = self.create_publisher(Image, "image", qos_profile_sensor_data)
        self.compressed_pub = self.create_publisher(CompressedImage, "image/compressed",
                                                    qos_profile_sensor_data)
        self.info_pub = self.create_publisher(CameraInfo, "camera_info", qos_profile_sensor_data)
        self._acked: set[tuple[int, int]] = set()
        self._ack = threading.Condition()
        if self.cfg.lockstep_topic:
            self.create_subscription(LocalizationStatus, self.cfg.lockstep_topic, self._on_status,
                                     50)
        self.published = 0

    def _on_status(self, msg: LocalizationStatus) -> None:
        with self._ack:
            self._acked.add((msg.header.stamp.sec, msg.header.stamp.nanosec))
            self._ack.notify_all()

    def _camera_info(self, K: np.ndarray, w: int, h: int, stamp: Any) -> CameraInfo:
        info = CameraInfo(width=w, height=h, distortion_model="plumb_bob", d=[0.0] * 5)
        info.header.stamp, info.header.frame_id = stamp, self.cfg.frame_id
        info.k = [float(v) for v in K.reshape(-1)]
        info.r = [1.0, 0, 0, 0, 1.0, 0, 0, 0, 1.0]
        info.p = [float(K[0, 0]), 0.0, float(K[0, 2]), 0.0, 0.0, float(K[1, 1]), float(K[1, 2]),
                  0.0, 0.0, 0.0, 1.0, 0.0]
        return info

    def _stamp(self, original: float) -> Any:
        if self.cfg.stamp_mode == "original":
            return sec_to_stamp(original)
        return self.get_clock().now().to_msg()

    def _wait_ack(self, stamp: Any) -> bool:
        if not self.cfg.lockstep_topic:
            return True
        key = (stamp.sec, stamp.nanosec)
        with self._ack:
            return self._ack.wait_for(lambda: key in self._acked, self.cfg.lockstep_timeout)

    def _record(self, stamp: Any, source: str) -> None:
        self.published += 1
        if self.cfg.index_out:
            with open(self.cfg.index_out, "a") as f:
                f.write(json.dumps({"stamp": stamp_to_sec(stamp), "sec": stamp.sec,
                                    "nanosec": stamp.nanosec, "source": source}) + "\n")

    def _pace(self, t_next: float) -> float:
        time.sleep(max(0.0, t_next - time.monotonic()))
        return time.monotonic()

    def run_folder(self) -> None:
        cfg = self.cfg
        K = (np.asarray(cfg.K, dtype=np.float64).reshape(3, 3) if cfg.K
             else read_matrix(Path(cfg.intrinsics_file), (3, 3)))
        period = 1.0 / cfg.rate if cfg.rate > 0 else 0.0
        t_next = time.monotonic()
        for i, (name, rgb) in enumerate(iter_folder(cfg)):
            t_next = self._pace(t_next) + period
            stamp = self._stamp(i * period)
            self.info_pub.publish(self._camera_info(K, rgb.shape[1], rgb.shape[0], stamp))
            self.image_pub.publish(rgb_to_image(rgb, stamp, cfg.frame_id, cfg.encoding))
            self._record(stamp, name)
            if not self._wait_ack(stamp):
                self.get_logger().warning(f"no status for {name} within {cfg.lockstep_timeout} s")

    def run_bag(self) -> None:
        t_first, t_start, info = None, time.monotonic(), None
        for topic, msg, t_bag in iter_bag(self.cfg.source):
            if isinstance(msg, CameraInfo):
                info = msg
                continue
            t_first = t_bag if t_first is None else t_first
            if self.cfg.rate == 0:
                self._pace(t_start + (t_bag - t_first))
            else:
                self._pace(t_start + self.published / self.cfg.rate)
            stamp = self._stamp(stamp_to_sec(msg.header.stamp))
            msg.header.stamp = stamp
            if info is not None:
                info.header.stamp = stamp
                self.info_pub.publish(info)
            pub = self.compressed_pub if isinstance(msg, CompressedImage) else self.image_pub
            pub.publish(msg)
            self._record(stamp, f"{topic}@{t_bag:.6f}")
            self._wait_ack(stamp)

    def run(self) -> None:
        """Publish the whole source (again and again with ``loop``)."""
        deadline = time.monotonic() + self.cfg.subscriber_timeout
        while (self.count_subscribers(self.image_pub.topic_name) < self.cfg.wait_for_subscribers
               and time.monotonic() < deadline):
            time.sleep(0.1)
        time.sleep(self.cfg.start_delay)
        while rclpy.ok(context=self.context):
            if Path(self.cfg.source).is_dir() and not _is_bag_dir(Path(self.cfg.source)):
                self.run_folder()
            else:
                self.run_bag()
            if not self.cfg.loop:
                break
        self.get_logger().info(f"replay finished: {self.published} frames")


def _is_bag_dir(path: Path) -> bool:
    return (path / "metadata.yaml").exists()


def main(args: Optional[list[str]] = None) -> int:
    """``ros2 run mast3r_ros replay --ros-args -p source:=<folder|bag> ...``"""
    logging.basicConfig(level=logging.INFO, format="[%(levelname)s] [%(name)s]: %(message)s")
    rclpy.init(args=args)
    try:
        node = ReplayNode()
    except (ConfigError, InputError) as exc:
        logger.error("invalid replay parameters: %s", exc)
        rclpy.try_shutdown()
        return 2
    executor = SingleThreadedExecutor()
    executor.add_node(node)
    spinner = threading.Thread(target=executor.spin, daemon=True)
    spinner.start()
    code = 0
    try:
        node.run()
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    except InputError as exc:
        node.get_logger().error(str(exc))
        code = 2
    finally:
        executor.shutdown()
        spinner.join(timeout=5.0)
        node.destroy_node()
        rclpy.try_shutdown()
    return code


if __name__ == "__main__":
    raise SystemExit(main())
