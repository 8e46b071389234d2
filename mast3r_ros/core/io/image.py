"""Encoded images (PNG, JPEG, ...) from bytes or files, with the pixel limit checked first.

A 130 kB PNG can declare 32768 x 32768 pixels; decoding it takes gigabytes before its size is
known. Here the width and height are read from the header (:mod:`mast3r_ros.core.io.header`) and
compared with ``max_pixels`` *before* OpenCV decodes anything; formats whose header cannot be read
are refused. Every failure is an :class:`~mast3r_ros.core.errors.ImageError`; ``cv2.error`` and
Pillow's exceptions never escape.
"""

from __future__ import annotations

from typing import Callable, Union

import cv2
import numpy as np

from mast3r_ros.core.errors import ImageError
from mast3r_ros.core.io.files import PathLike, read_regular_file
from mast3r_ros.core.io.header import probe_image_size

__all__ = ["check_pixels", "decode_image_bytes", "decode_depth_bytes", "read_image_file",
           "read_depth_file", "max_file_bytes"]

#: bytes an encoded file may hold per pixel of ``max_pixels`` (4 channels x 32-bit, uncompressed)
_FILE_BYTES_PER_PIXEL = 16
#: bytes of metadata (EXIF, ICC profile, ...) an encoded file may hold beyond its pixels
_FILE_SLACK_BYTES = 16 * 2**20

Bytes = Union[bytes, bytearray, memoryview, np.ndarray]


def max_file_bytes(max_pixels: int) -> int:
    """Largest encoded file accepted for images of at most ``max_pixels`` pixels (bytes)."""
    return _FILE_BYTES_PER_PIXEL * int(max_pixels) + _FILE_SLACK_BYTES


def check_pixels(width: int, height: int, max_pixels: int, what: str = "image") -> None:
    """Refuse an empty image or one of more than ``max_pixels`` pixels.

    Raises:
        ImageError: ``width`` or ``height`` < 1, or ``width * height > max_pixels``.
    """
    if width < 1 or height < 1:
        raise ImageError(f"{what} has zero size ({width}x{height}); check the camera or the file")
    if width * height > max_pixels:
        raise ImageError(f"{what} of {width}x{height} pixels exceeds the limit of {max_pixels} "
                         "pixels (max_image_pixels); downscale it or raise the limit")


def _as_bytes(data: Bytes) -> bytes:
    if isinstance(data, bytes):
        return data
    try:
        return memoryview(data).cast("B").tobytes()  # type: ignore[arg-type]
    except (TypeError, ValueError) as exc:
        raise ImageError(f"encoded image data must be bytes-like, got "
                         f"{type(data).__name__}") from exc


def _decode(data: Bytes, max_pixels: int, flags: int, what: str) -> np.ndarray:
    raw = _as_bytes(data)
    width, height = probe_image_size(raw)
    check_pixels(width, height, max_pixels, what)
    try:
        img = cv2.imdecode(np.frombuffer(raw, np.uint8), flags)
    except cv2.error as exc:
        raise ImageError(f"OpenCV cannot decode the {what} ({width}x{height}): "
                         f"{str(exc).strip().splitlines()[-1]}") from exc
    if img is None or img.size == 0:
        raise ImageError(f"cannot decode the {what} ({width}x{height} in its header): corrupt or "
                         "truncated data")
    check_pixels(img.shape[1], img.shape[0], max_pixels, what)  # header and content agree
    return img


def decode_image_bytes(data: Bytes, max_pixels: int) -> np.ndarray:
    """Decode an encoded image (PNG, JPEG, or one of
    :data:`~mast3r_ros.core.io.header.PIL_FORMATS`) to RGB.

    Args:
        data: the encoded file content (e.g. ``sensor_msgs/CompressedImage.data``).
        max_pixels: largest accepted ``width * height``, checked on the header before decoding.

    Returns:
        (H, W, 3) uint8 RGB, contiguous (grey and 16-bit images are converted as OpenCV's
        ``IMREAD_COLOR`` does; EXIF orientation is applied).

    Raises:
        ImageError: empty, corrupt or unsupported data, or more than ``max_pixels`` pixels.
    """
    bgr = _decode(data, max_pixels, cv2.IMREAD_COLOR, "image")
    return np.ascontiguousarray(bgr[..., ::-1])


def decode_depth_bytes(data: Bytes, max_pixels: int) -> np.ndarray:
    """Decode a single-channel depth image (16-bit PNG, 32-bit float TIFF) as stored.

    Args:
        data: the encoded file content.
        max_pixels: largest accepted ``width * height``, checked on the header before decoding.

    Returns:
        (H, W) array, dtype as stored: uint16 (usually millimetres) or float32 (usually metres).

    Raises:
        ImageError: as :func:`decode_image_bytes`, or the image has several channels or another
            sample type.
    """
    img = _decode(data, max_pixels, cv2.IMREAD_UNCHANGED, "depth image")
    if img.ndim == 3 and img.shape[2] == 1:
        img = img[..., 0]
    if img.ndim != 2 or img.dtype not in (np.uint16, np.float32):
        chans = 1 if img.ndim == 2 else img.shape[2]
        raise ImageError(f"depth image must be single-channel uint16 or float32, got {chans} "
                         f"channel(s) of {img.dtype}")
    return img


def _read_file(path: PathLike, max_pixels: int,
               decoder: Callable[[Bytes, int], np.ndarray]) -> np.ndarray:
    data = read_regular_file(path, max_file_bytes(max_pixels), ImageError)
    try:
        return decoder(data, max_pixels)
    except ImageError as exc:
        raise ImageError(f"{path}: {exc}") from exc


def read_image_file(path: PathLike, max_pixels: int) -> np.ndarray:
    """Read an image file as (H, W, 3) uint8 RGB, never decoding more than ``max_pixels``.

    The file must be a regular file (a FIFO or device is refused without blocking) of at most
    :func:`max_file_bytes` bytes.

    Raises:
        ImageError: missing, not a regular file, too large, unreadable, corrupt or oversized image.
    """
    return _read_file(path, max_pixels, decode_image_bytes)


def read_depth_file(path: PathLike, max_pixels: int) -> np.ndarray:
    """Read a depth image file (see :func:`decode_depth_bytes`) with the checks of
    :func:`read_image_file`.

    Returns:
        (H, W) uint16 or float32, values as stored (no unit conversion).
    """
    return _read_file(path, max_pixels, decode_depth_bytes)
