"""Raw images as ``sensor_msgs/Image`` carries them (encoding, size, step, byte order, data).

Pure numpy, no ROS import: the node, the replay node and the bag reader pass the message fields.
Every size is checked against the data *before* anything is allocated: a message claiming
``height=1, step=2**32-1`` with 1,920 bytes of data is an :class:`ImageError`, not a 4 GB buffer.
Rows are read through a strided view of the data (no padded copy).

Row padding: ``step`` may exceed ``width * channels * bytes``; the data must hold ``step * height``
bytes, except that some drivers omit the padding of the last row, so up to
:data:`MAX_MISSING_TAIL` bytes (and never more than that padding) may be missing at the end. Data
beyond ``step * height`` is ignored.
"""

from __future__ import annotations

import operator
from dataclasses import dataclass
from typing import Any

import numpy as np

from mast3r_ros.core.errors import ImageError
from mast3r_ros.core.io.image import check_pixels

__all__ = ["RawEncoding", "RAW_ENCODINGS", "DEPTH_ENCODINGS", "MAX_MISSING_TAIL",
           "check_raw_image", "decode_raw_image", "decode_raw_depth"]

#: bytes of the last row's padding that may be missing from the data (see the module docstring)
MAX_MISSING_TAIL = 4096


@dataclass(frozen=True)
class RawEncoding:
    """Layout of one ``sensor_msgs/Image`` encoding.

    Attributes:
        channels: samples per pixel.
        dtype: numpy sample type (native order; the message's ``is_bigendian`` decides the order).
        order: channel order: ``rgb``, ``bgr`` (alpha, if any, last) or ``gray``.
    """

    channels: int
    dtype: Any
    order: str


#: colour encodings accepted by :func:`decode_raw_image` (8UC3 is BGR, OpenCV's convention)
RAW_ENCODINGS: dict[str, RawEncoding] = {
    "rgb8": RawEncoding(3, np.uint8, "rgb"),
    "bgr8": RawEncoding(3, np.uint8, "bgr"),
    "rgba8": RawEncoding(4, np.uint8, "rgb"),
    "bgra8": RawEncoding(4, np.uint8, "bgr"),
    "mono8": RawEncoding(1, np.uint8, "gray"),
    "8UC1": RawEncoding(1, np.uint8, "gray"),
    "8UC3": RawEncoding(3, np.uint8, "bgr"),
    "mono16": RawEncoding(1, np.uint16, "gray"),
    "16UC1": RawEncoding(1, np.uint16, "gray"),
}

#: depth encodings accepted by :func:`decode_raw_depth` -> (layout, metres per unit) (REP 118)
DEPTH_ENCODINGS: dict[str, tuple[RawEncoding, float]] = {
    "16UC1": (RawEncoding(1, np.uint16, "gray"), 1e-3),
    "mono16": (RawEncoding(1, np.uint16, "gray"), 1e-3),
    "32FC1": (RawEncoding(1, np.float32, "gray"), 1.0),
}


def _dim(value: Any, name: str) -> int:
    try:
        v = operator.index(value)
    except TypeError as exc:
        raise ImageError(f"image {name} must be an integer, got {value!r}") from exc
    if v < 0:
        raise ImageError(f"image {name} must not be negative, got {v}")
    return v


def _checked(layout: RawEncoding, encoding: str, height: Any, width: Any, step: Any,
             data: Any, max_pixels: int) -> tuple[np.ndarray, int, int, int, int]:
    """The data as uint8 and (h, w, step, row bytes), every size checked, nothing copied."""
    h, w, s = _dim(height, "height"), _dim(width, "width"), _dim(step, "step")
    check_pixels(w, h, max_pixels)
    item = np.dtype(layout.dtype).itemsize
    row_bytes = w * layout.channels * item
    if s < row_bytes:
        raise ImageError(f"image step {s} < width*channels*bytes = {row_bytes} ({encoding} "
                         f"{w}x{h}); the step is wrong")
    try:
        buf = np.frombuffer(memoryview(data).cast("B"), np.uint8)
    except (TypeError, ValueError) as exc:
        raise ImageError(f"image data must be bytes-like, got {type(data).__name__}") from exc
    full = s * h
    if buf.size < full - min(s - row_bytes, MAX_MISSING_TAIL):
        raise ImageError(f"image data truncated or step inconsistent: {buf.size} bytes for {h} "
                         f"rows of step {s} ({full} bytes expected); check step and height")
    return buf, h, w, s, row_bytes


def check_raw_image(encoding: str, height: Any, width: Any, step: Any, data: Any,
                    max_pixels: int) -> None:
    """Every check of :func:`decode_raw_image` without decoding (for another decoder).

    Raises:
        ImageError: as :func:`decode_raw_image`.
    """
    layout = RAW_ENCODINGS.get(encoding)
    if layout is None:
        raise ImageError(f"unsupported image encoding {encoding!r}; use one of "
                         f"{sorted(RAW_ENCODINGS)}")
    _checked(layout, encoding, height, width, step, data, max_pixels)


def _rows(layout: RawEncoding, encoding: str, height: Any, width: Any, step: Any,
          is_bigendian: Any, data: Any, max_pixels: int) -> np.ndarray:
    """(H, W, C) samples of the message in native byte order, sizes checked before any copy."""
    buf, h, w, s, row_bytes = _checked(layout, encoding, height, width, step, data, max_pixels)
    rows = np.lib.stride_tricks.as_strided(buf, shape=(h, row_bytes), strides=(s, 1),
                                           writeable=False)
    dtype = np.dtype(layout.dtype).newbyteorder(">" if is_bigendian else "<")
    samples = np.ascontiguousarray(rows).view(dtype).reshape(h, w, layout.channels)
    return samples.astype(np.dtype(layout.dtype), copy=False)


def decode_raw_image(encoding: str, height: int, width: int, step: int, is_bigendian: Any,
                     data: Any, max_pixels: int) -> np.ndarray:
    """Convert the fields of a ``sensor_msgs/Image`` to RGB.

    Args:
        encoding: one of :data:`RAW_ENCODINGS` (rgb8, bgr8, rgba8, bgra8, mono8, 8UC1, 8UC3,
            mono16, 16UC1).
        height: rows (pixels).
        width: columns (pixels).
        step: bytes per row including padding (see the module docstring).
        is_bigendian: byte order of 16-bit samples (truthy = big-endian).
        data: the pixel bytes (``bytes``, ``array.array``, numpy uint8 array: any buffer).
        max_pixels: largest accepted ``width * height``.

    Returns:
        (H, W, 3) uint8 RGB, a new contiguous array; alpha is dropped, grey is replicated,
        16-bit samples are scaled by 1/256.

    Raises:
        ImageError: unknown encoding, zero or oversized image, ``step`` below a row, data shorter
            than ``step * height`` (beyond the tolerated missing tail), data not bytes-like.
    """
    layout = RAW_ENCODINGS.get(encoding)
    if layout is None:
        raise ImageError(f"unsupported image encoding {encoding!r}; use one of "
                         f"{sorted(RAW_ENCODINGS)}")
    img = _rows(layout, encoding, height, width, step, is_bigendian, data, max_pixels)
    if img.dtype != np.uint8:
        img = (img >> 8).astype(np.uint8)
    if layout.order == "gray":
        return np.repeat(img, 3, axis=2)
    rgb = img[..., 2::-1] if layout.order == "bgr" else img[..., :3]
    return np.ascontiguousarray(rgb)


def decode_raw_depth(encoding: str, height: int, width: int, step: int, is_bigendian: Any,
                     data: Any, max_pixels: int) -> np.ndarray:
    """Convert the fields of a depth ``sensor_msgs/Image`` to metres (REP 118).

    Args:
        encoding: ``16UC1`` / ``mono16`` (millimetres, 0 = no measurement) or ``32FC1`` (metres,
            NaN / inf = no measurement).
        height, width, step, is_bigendian, data, max_pixels: as :func:`decode_raw_image`.

    Returns:
        (H, W) float32 depth in metres; 0 where there is no valid measurement (non-finite or
        negative values, zero).

    Raises:
        ImageError: as :func:`decode_raw_image`, with the depth encodings.
    """
    entry = DEPTH_ENCODINGS.get(encoding)
    if entry is None:
        raise ImageError(f"unsupported depth encoding {encoding!r}; use one of "
                         f"{sorted(DEPTH_ENCODINGS)}")
    layout, scale = entry
    raw = _rows(layout, encoding, height, width, step, is_bigendian, data, max_pixels)[..., 0]
    depth = raw.astype(np.float32) * np.float32(scale)
    depth[~np.isfinite(depth) | (depth < 0)] = 0.0
    return depth
