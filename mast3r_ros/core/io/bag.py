"""One rosbag2 reader (with ``rosbags``, no ROS install) yielding typed camera records.

:func:`read_bag` yields :class:`ImageRecord`, :class:`CompressedImageRecord` and
:class:`CameraInfoRecord` values in bag order: plain fields of ``sensor_msgs/Image``,
``CompressedImage`` and ``CameraInfo``, with the topic, the recording time and the header stamp.
Nothing is decoded until a caller asks (``record.to_rgb(max_pixels)``), so the pixel limit and the
step checks of :mod:`mast3r_ros.core.io.raw` / :mod:`mast3r_ros.core.io.image` apply to bags too.

Hostile bags: a path that is not a regular file or a directory of regular files (a FIFO named
``metadata.yaml``) is refused before ``rosbags`` opens it; every error of ``rosbags`` or of the
message deserialiser becomes an :class:`~mast3r_ros.core.errors.InputError`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Collection, Iterator, Optional, Union

import numpy as np

from mast3r_ros.core.errors import InputError, Mast3rRosError
from mast3r_ros.core.io.files import PathLike, check_regular_file
from mast3r_ros.core.io.image import decode_image_bytes
from mast3r_ros.core.io.raw import decode_raw_depth, decode_raw_image

__all__ = ["BagRecord", "ImageRecord", "CompressedImageRecord", "CameraInfoRecord", "BagItem",
           "IMAGE_MSGTYPE", "COMPRESSED_MSGTYPE", "CAMERA_INFO_MSGTYPE", "is_bag",
           "bag_topics", "read_bag"]

IMAGE_MSGTYPE = "sensor_msgs/msg/Image"
COMPRESSED_MSGTYPE = "sensor_msgs/msg/CompressedImage"
CAMERA_INFO_MSGTYPE = "sensor_msgs/msg/CameraInfo"
_MSGTYPES = (IMAGE_MSGTYPE, COMPRESSED_MSGTYPE, CAMERA_INFO_MSGTYPE)
_MAX_METADATA_BYTES = 16 * 2**20


@dataclass(frozen=True)
class BagRecord:
    """What every record has.

    Attributes:
        topic: the topic name.
        bag_time_ns: recording (receive) time in nanoseconds.
        stamp_sec: ``header.stamp.sec``.
        stamp_nanosec: ``header.stamp.nanosec``.
        frame_id: ``header.frame_id``.
    """

    topic: str
    bag_time_ns: int
    stamp_sec: int
    stamp_nanosec: int
    frame_id: str

    @property
    def stamp(self) -> float:
        """Header stamp in seconds."""
        return self.stamp_sec + 1e-9 * self.stamp_nanosec


@dataclass(frozen=True)
class ImageRecord(BagRecord):
    """A ``sensor_msgs/Image``; ``data`` is the raw uint8 buffer (rows of ``step`` bytes)."""

    encoding: str
    height: int
    width: int
    step: int
    is_bigendian: bool
    data: np.ndarray

    def to_rgb(self, max_pixels: int) -> np.ndarray:
        """(H, W, 3) uint8 RGB (see :func:`~mast3r_ros.core.io.raw.decode_raw_image`)."""
        return decode_raw_image(self.encoding, self.height, self.width, self.step,
                                self.is_bigendian, self.data, max_pixels)

    def to_depth(self, max_pixels: int) -> np.ndarray:
        """(H, W) float32 metres (see :func:`~mast3r_ros.core.io.raw.decode_raw_depth`)."""
        return decode_raw_depth(self.encoding, self.height, self.width, self.step,
                                self.is_bigendian, self.data, max_pixels)


@dataclass(frozen=True)
class CompressedImageRecord(BagRecord):
    """A ``sensor_msgs/CompressedImage`` (``format`` as recorded, e.g. ``jpeg``)."""

    format: str
    data: np.ndarray

    def to_rgb(self, max_pixels: int) -> np.ndarray:
        """(H, W, 3) uint8 RGB (see :func:`~mast3r_ros.core.io.image.decode_image_bytes`)."""
        return decode_image_bytes(self.data, max_pixels)


@dataclass(frozen=True)
class CameraInfoRecord(BagRecord):
    """A ``sensor_msgs/CameraInfo``: K (3, 3), R (3, 3), P (3, 4) float64, D as recorded,
    ``binning`` (x, y) and ``roi`` (x_offset, y_offset, height, width, do_rectify)."""

    width: int
    height: int
    distortion_model: str
    D: np.ndarray
    K: np.ndarray
    R: np.ndarray
    P: np.ndarray
    binning: tuple[int, int]
    roi: tuple[int, int, int, int, bool]


BagItem = Union[ImageRecord, CompressedImageRecord, CameraInfoRecord]


def is_bag(path: PathLike) -> bool:
    """True for a rosbag2 directory (``metadata.yaml``) or a ``.mcap``/``.db3``/``.bag`` file."""
    p = Path(path)
    return (p / "metadata.yaml").exists() if p.is_dir() else p.suffix in (".mcap", ".db3", ".bag")


def _check_bag_path(path: Path) -> None:
    """Refuse FIFOs, devices and oversized metadata before ``rosbags`` opens anything."""
    if not path.is_dir():
        check_regular_file(path)
        return
    meta = check_regular_file(path / "metadata.yaml")
    if meta.st_size > _MAX_METADATA_BYTES:
        raise InputError(f"{path}/metadata.yaml has {meta.st_size} bytes; not a rosbag2")
    for entry in os.scandir(path):
        if not entry.is_dir():
            check_regular_file(entry.path)


def _header(topic: str, t_ns: int, msg: Any) -> dict[str, Any]:
    return {"topic": topic, "bag_time_ns": int(t_ns), "stamp_sec": int(msg.header.stamp.sec),
            "stamp_nanosec": int(msg.header.stamp.nanosec),
            "frame_id": str(msg.header.frame_id)}


def _uint8(data: Any) -> np.ndarray:
    return np.ascontiguousarray(np.asarray(data, dtype=np.uint8).reshape(-1))


def _matrix(values: Any, shape: tuple[int, int], name: str) -> np.ndarray:
    arr = np.asarray(values, dtype=np.float64).reshape(-1)
    if arr.size != shape[0] * shape[1]:
        raise InputError(f"CameraInfo {name} has {arr.size} values, expected {shape[0] * shape[1]}")
    return arr.reshape(shape)


def _record(msgtype: str, topic: str, t_ns: int, msg: Any) -> BagItem:
    head = _header(topic, t_ns, msg)
    if msgtype == IMAGE_MSGTYPE:
        return ImageRecord(**head, encoding=str(msg.encoding), height=int(msg.height),
                           width=int(msg.width), step=int(msg.step),
                           is_bigendian=bool(msg.is_bigendian), data=_uint8(msg.data))
    if msgtype == COMPRESSED_MSGTYPE:
        return CompressedImageRecord(**head, format=str(msg.format), data=_uint8(msg.data))
    return CameraInfoRecord(**head, width=int(msg.width), height=int(msg.height),
                            distortion_model=str(msg.distortion_model),
                            D=np.asarray(msg.d, dtype=np.float64).reshape(-1),
                            K=_matrix(msg.k, (3, 3), "K"), R=_matrix(msg.r, (3, 3), "R"),
                            P=_matrix(msg.p, (3, 4), "P"),
                            binning=(int(msg.binning_x), int(msg.binning_y)),
                            roi=(int(msg.roi.x_offset), int(msg.roi.y_offset),
                                 int(msg.roi.height), int(msg.roi.width),
                                 bool(msg.roi.do_rectify)))


def _open(path: Path) -> Any:
    from rosbags.highlevel import AnyReader
    from rosbags.typesys import Stores, get_typestore

    return AnyReader([path], default_typestore=get_typestore(Stores.ROS2_KILTED))


def bag_topics(path: PathLike) -> dict[str, str]:
    """``{topic: message type}`` of every topic of a bag (e.g. for error messages).

    Raises:
        InputError: not a readable bag.
    """
    p = Path(path)
    _check_bag_path(p)
    try:
        with _open(p) as reader:
            return {c.topic: c.msgtype for c in reader.connections}
    except Exception as exc:  # rosbags raises many types on a broken bag
        raise InputError(f"cannot read the rosbag {p}: {type(exc).__name__}: {exc}") from exc


def read_bag(path: PathLike, topics: Optional[Collection[str]] = None) -> Iterator[BagItem]:
    """Image, CompressedImage and CameraInfo records of a rosbag2 (or ROS 1 bag), in bag order.

    Args:
        path: a rosbag2 directory, a ``.mcap`` / ``.db3`` file, or a ROS 1 ``.bag`` file.
        topics: only these topics (default: every topic of the three message types).

    Yields:
        :class:`ImageRecord`, :class:`CompressedImageRecord` or :class:`CameraInfoRecord`.

    Raises:
        InputError: not a bag, a non-regular file in it, no topic of those types (the message
            lists the bag's topics), or a message that cannot be read.
    """
    p = Path(path)
    _check_bag_path(p)
    try:
        with _open(p) as reader:
            conns = [c for c in reader.connections if c.msgtype in _MSGTYPES
                     and (topics is None or c.topic in topics)]
            if not conns:
                found = sorted(f"{c.topic} ({c.msgtype})" for c in reader.connections)
                named = f" named {sorted(topics)}" if topics is not None else ""
                raise InputError(f"no image topic (Image, CompressedImage, CameraInfo){named} in "
                                 f"{p}; topics: {found}")
            for conn, t_ns, raw in reader.messages(connections=conns):
                yield _record(conn.msgtype, conn.topic, t_ns,
                              reader.deserialize(raw, conn.msgtype))
    except Mast3rRosError:
        raise
    except Exception as exc:  # rosbags / its deserialiser raise many types
        raise InputError(f"cannot read the rosbag {p}: {type(exc).__name__}: {exc}") from exc
