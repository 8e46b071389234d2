"""Conversions between ROS 2 messages and the core's numpy types (our small cv_bridge).

Reads ``sensor_msgs/Image`` (rgb8, bgr8, mono8, bgra8, rgba8, mono16/16UC1, with row padding and
either byte order), ``sensor_msgs/CompressedImage`` (any format OpenCV decodes) and
``sensor_msgs/CameraInfo``; writes images, poses, transforms and ``PointCloud2`` clouds.
Bad input raises :class:`~mast3r_ros.core.errors.ImageError` /
:class:`~mast3r_ros.core.errors.IntrinsicsError` with a reason a user can act on.

When ``cv_bridge`` imports (apt ROS 2), plain Image messages that passed our checks are converted
with it; results are identical. Pixel and pose conventions: see :mod:`mast3r_ros.core.types`.
"""

from __future__ import annotations

import functools
import math
from typing import Any, Optional

import cv2
import numpy as np
from builtin_interfaces.msg import Time
from geometry_msgs.msg import Pose, Quaternion, Transform
from scipy.spatial.transform import Rotation
from sensor_msgs.msg import CameraInfo, CompressedImage, Image, PointCloud2, PointField
from std_msgs.msg import Header

from mast3r_ros.core.errors import ImageError, InputError, IntrinsicsError
from mast3r_ros.core.geometry.camera import intrinsics_problem, scale_intrinsics

__all__ = [
    "ENCODINGS", "image_to_rgb", "compressed_to_rgb", "rgb_to_image", "camera_info_to_K",
    "K_for_image", "stamp_to_sec", "sec_to_stamp", "stamp_to_ns", "ns_to_stamp",
    "matrix_to_pose", "pose_to_matrix", "matrix_to_transform", "points_to_cloud",
    "cloud_to_points", "covariance_to_ros",
]

#: encoding -> (channels, numpy dtype, OpenCV conversion to RGB or None)
ENCODINGS: dict[str, tuple[int, Any, Optional[int]]] = {
    "rgb8": (3, np.uint8, None),
    "bgr8": (3, np.uint8, cv2.COLOR_BGR2RGB),
    "rgba8": (4, np.uint8, cv2.COLOR_RGBA2RGB),
    "bgra8": (4, np.uint8, cv2.COLOR_BGRA2RGB),
    "mono8": (1, np.uint8, cv2.COLOR_GRAY2RGB),
    "8UC1": (1, np.uint8, cv2.COLOR_GRAY2RGB),
    "8UC3": (3, np.uint8, cv2.COLOR_BGR2RGB),
    "mono16": (1, np.uint16, cv2.COLOR_GRAY2RGB),
    "16UC1": (1, np.uint16, cv2.COLOR_GRAY2RGB),
}

#: default upper bound on width * height (pixels) accepted from the network
DEFAULT_MAX_PIXELS = 4096 * 4096


@functools.lru_cache(maxsize=1)
def _cv_bridge() -> Any:
    """A ``cv_bridge.CvBridge`` when the ROS 2 package imports, else None."""
    try:
        from cv_bridge import CvBridge
    except Exception:  # noqa: BLE001 - absent or broken (PyPI's ROS 1 cv-bridge): use ours
        return None
    return CvBridge()


def _check_size(width: int, height: int, max_pixels: int) -> None:
    if width <= 0 or height <= 0:
        raise ImageError(f"image has zero size ({width}x{height}); check the camera driver")
    if width * height > max_pixels:
        raise ImageError(f"image {width}x{height} exceeds the limit of {max_pixels} pixels; "
                         "downscale it on the camera side or raise max_image_pixels")


def image_to_rgb(msg: Image, max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """Convert a ``sensor_msgs/Image`` to an RGB array.

    Args:
        msg: the image; ``step`` may include row padding; ``is_bigendian`` is honoured for 16-bit.
        max_pixels: largest accepted ``width * height``.

    Returns:
        (H, W, 3) uint8 RGB, a new contiguous array (16-bit images are scaled by 1/256).

    Raises:
        ImageError: unknown encoding, zero or oversized image, ``step`` too small, truncated data.
    """
    enc = msg.encoding
    if enc not in ENCODINGS:
        raise ImageError(f"unsupported image encoding {enc!r}; use one of {sorted(ENCODINGS)}")
    channels, dtype, code = ENCODINGS[enc]
    width, height, step = int(msg.width), int(msg.height), int(msg.step)
    _check_size(width, height, max_pixels)
    itemsize = np.dtype(dtype).itemsize
    row_bytes = width * channels * itemsize
    n = len(msg.data)
    # every size check comes before any allocation: nothing below depends on step beyond n bytes
    if step < row_bytes:
        raise ImageError(f"image step {step} < width*channels*bytes = {row_bytes} ({enc})")
    if n < step * (height - 1) + row_bytes:
        raise ImageError(f"image data truncated: {n} bytes for {height} rows of step {step}")
    if step > n:  # only reachable with one row
        raise ImageError(f"image step {step} exceeds the data size ({n} bytes): a row cannot be "
                         "longer than the whole image; check the camera driver")
    bridge = _cv_bridge()
    if bridge is not None and itemsize == 1:
        return np.ascontiguousarray(bridge.imgmsg_to_cv2(msg, desired_encoding="rgb8"))
    buf = np.frombuffer(msg.data, dtype=np.uint8, count=n)
    # a strided view of the rows (the last row may lack its padding): no copy, no padding buffer
    rows = np.lib.stride_tricks.as_strided(buf, shape=(height, row_bytes), strides=(step, 1),
                                           writeable=False)
    if itemsize == 1:
        img = rows.reshape(height, width, channels)
    else:
        order = ">" if msg.is_bigendian else "<"
        px = np.ascontiguousarray(rows).view(np.dtype(dtype).newbyteorder(order))
        img = (px.reshape(height, width, channels) >> 8).astype(np.uint8)
    if code is None:
        return np.ascontiguousarray(img)
    return cv2.cvtColor(np.ascontiguousarray(img), code)


def compressed_to_rgb(msg: CompressedImage, max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """Decode a ``sensor_msgs/CompressedImage`` (jpeg, png, ...) to (H, W, 3) uint8 RGB.

    Raises:
        ImageError: empty or corrupt data, or an image larger than ``max_pixels``.
    """
    data = np.frombuffer(bytes(msg.data), dtype=np.uint8)
    if data.size == 0:
        raise ImageError("compressed image has no data")
    bgr = cv2.imdecode(data, cv2.IMREAD_COLOR)
    if bgr is None or bgr.size == 0:
        raise ImageError(f"cannot decode compressed image (format {msg.format!r}, "
                         f"{data.size} bytes): corrupt or unsupported data")
    _check_size(bgr.shape[1], bgr.shape[0], max_pixels)
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def rgb_to_image(rgb: np.ndarray, stamp: Time, frame_id: str, encoding: str = "rgb8") -> Image:
    """Build a ``sensor_msgs/Image`` from an (H, W, 3) uint8 RGB array (rgb8 or bgr8)."""
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
        raise ImageError(f"expected (H, W, 3) uint8, got {rgb.shape} {rgb.dtype}")
    arr = rgb if encoding == "rgb8" else cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)
    msg = Image()
    msg.header = Header(stamp=stamp, frame_id=frame_id)
    msg.height, msg.width = int(arr.shape[0]), int(arr.shape[1])
    msg.encoding = encoding
    msg.is_bigendian = 0
    msg.step = int(arr.shape[1] * 3)
    msg.data = np.ascontiguousarray(arr).tobytes()  # tobytes: ~0.2 ms vs ~100 ms for a list
    return msg


def camera_info_to_K(msg: CameraInfo) -> np.ndarray:
    """The (3, 3) float64 K of a CameraInfo (``k``, row-major).

    Raises:
        IntrinsicsError: K is zero, non-finite or not a pinhole matrix.
    """
    K = np.asarray(msg.k, dtype=np.float64).reshape(3, 3)
    problem = intrinsics_problem(K)
    if problem is not None:
        raise IntrinsicsError(f"camera_info K is unusable: {problem}; fix the camera calibration")
    return K


def K_for_image(K: np.ndarray, info_size: tuple[int, int],
                image_size: tuple[int, int]) -> np.ndarray:
    """Rescale K of a CameraInfo of size ``info_size`` to an image of ``image_size`` (both (W, H)).

    CameraInfo width/height of 0 mean "same as the image". Pixel-centre convention.
    """
    iw, ih = info_size
    w, h = image_size
    if iw <= 0 or ih <= 0 or (iw, ih) == (w, h):
        return K
    return scale_intrinsics(K, w / iw, h / ih)


def stamp_to_sec(stamp: Time) -> float:
    """ROS time to float seconds."""
    return float(stamp.sec) + 1e-9 * float(stamp.nanosec)


def stamp_to_ns(stamp: Time) -> int:
    """ROS time to integer nanoseconds (exact)."""
    return int(stamp.sec) * 1_000_000_000 + int(stamp.nanosec)


def ns_to_stamp(ns: int) -> Time:
    """Integer nanoseconds (>= 0) to ROS time (exact)."""
    return Time(sec=int(ns // 1_000_000_000), nanosec=int(ns % 1_000_000_000))


def sec_to_stamp(t: float) -> Time:
    """Float seconds (>= 0) to ROS time."""
    sec = int(math.floor(t))
    nsec = int(round((t - sec) * 1e9))
    if nsec >= 1_000_000_000:
        sec, nsec = sec + 1, nsec - 1_000_000_000
    return Time(sec=sec, nanosec=nsec)


def _quat(R: np.ndarray) -> Quaternion:
    x, y, z, w = Rotation.from_matrix(R).as_quat()
    return Quaternion(x=float(x), y=float(y), z=float(z), w=float(w))


def matrix_to_pose(T: np.ndarray) -> Pose:
    """(4, 4) homogeneous transform -> ``geometry_msgs/Pose``."""
    pose = Pose()
    pose.position.x, pose.position.y, pose.position.z = (float(v) for v in T[:3, 3])
    pose.orientation = _quat(T[:3, :3])
    return pose


def pose_to_matrix(pose: Pose) -> np.ndarray:
    """``geometry_msgs/Pose`` -> (4, 4) float64 transform (quaternion normalised)."""
    q = np.array([pose.orientation.x, pose.orientation.y, pose.orientation.z, pose.orientation.w])
    n = np.linalg.norm(q)
    if not np.isfinite(n) or n < 1e-9:
        raise InputError("pose quaternion is zero or non-finite; send a unit quaternion")
    T = np.eye(4)
    T[:3, :3] = Rotation.from_quat(q / n).as_matrix()
    T[:3, 3] = [pose.position.x, pose.position.y, pose.position.z]
    return T


def matrix_to_transform(T: np.ndarray) -> Transform:
    """(4, 4) transform -> ``geometry_msgs/Transform``."""
    tf = Transform()
    tf.translation.x, tf.translation.y, tf.translation.z = (float(v) for v in T[:3, 3])
    tf.rotation = _quat(T[:3, :3])
    return tf


def covariance_to_ros(cov: Optional[np.ndarray], fallback_std: tuple[float, float]) -> list[float]:
    """A 6x6 covariance (x, y, z, rx, ry, rz) as the 36 row-major floats of ``PoseWithCovariance``.

    Args:
        cov: (6, 6) covariance (m^2, rad^2) or None / non-finite.
        fallback_std: (position m, rotation rad) standard deviations used when ``cov`` is unusable.
    """
    if cov is not None:
        c = np.asarray(cov, dtype=np.float64)
        if c.shape == (6, 6) and np.all(np.isfinite(c)):
            return [float(v) for v in c.reshape(-1)]
    sp, sr = fallback_std
    return [float(v) for v in np.diag([sp**2] * 3 + [sr**2] * 3).reshape(-1)]


_XYZ_FIELDS = [PointField(name=n, offset=4 * i, datatype=PointField.FLOAT32, count=1)
               for i, n in enumerate("xyz")]


def points_to_cloud(points: np.ndarray, header: Header,
                    colors: Optional[np.ndarray] = None) -> PointCloud2:
    """(N, 3) points (metres, frame ``header.frame_id``) -> ``PointCloud2`` (x, y, z [, rgb])."""
    pts = np.asarray(points, dtype=np.float32).reshape(-1, 3)
    fields = list(_XYZ_FIELDS)
    if colors is not None:
        c = np.asarray(colors, dtype=np.uint32).reshape(-1, 3)
        packed = (c[:, 0] << 16) | (c[:, 1] << 8) | c[:, 2]
        rec = np.empty(len(pts), dtype=[("xyz", np.float32, 3), ("rgb", np.uint32)])
        rec["xyz"], rec["rgb"] = pts, packed
        fields.append(PointField(name="rgb", offset=12, datatype=PointField.FLOAT32, count=1))
        data, point_step = rec.tobytes(), 16
    else:
        data, point_step = np.ascontiguousarray(pts).tobytes(), 12
    return PointCloud2(header=header, height=1, width=len(pts), fields=fields,
                       is_bigendian=False, point_step=point_step, row_step=point_step * len(pts),
                       data=data, is_dense=True)


def cloud_to_points(msg: PointCloud2) -> np.ndarray:
    """x, y, z of a ``PointCloud2`` with float32 x/y/z at offsets 0/4/8 -> (N, 3) float32."""
    n = int(msg.width) * int(msg.height)
    raw = np.frombuffer(bytes(msg.data), dtype=np.uint8).reshape(n, int(msg.point_step))
    return np.ascontiguousarray(raw[:, :12]).view(np.float32).reshape(n, 3)
