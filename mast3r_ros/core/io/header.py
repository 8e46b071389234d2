"""Image size from the header of an encoded image, without decoding a pixel.

PNG (the ``IHDR`` chunk) and JPEG (the first ``SOFn`` segment, skipping other segments by their
length, so an EXIF thumbnail is never mistaken for the image) are parsed here; the other formats
OpenCV decodes go through Pillow's lazy ``open`` (which refuses more than ~179 M pixels itself).
"""

from __future__ import annotations

import io
import struct

from mast3r_ros.core.errors import ImageError

__all__ = ["probe_image_size", "PIL_FORMATS"]

#: formats sized by Pillow (PNG and JPEG are parsed here); OpenCV decodes all of them
PIL_FORMATS = ("BMP", "TIFF", "WEBP", "PPM", "JPEG2000")

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
#: JPEG start-of-frame markers (baseline, extended, progressive, lossless, arithmetic)
_SOF_MARKERS = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}
#: JPEG markers without a length field
_STANDALONE = frozenset([0x01, *range(0xD0, 0xD8)])


def _png_size(data: bytes) -> tuple[int, int]:
    if len(data) < 24 or data[12:16] != b"IHDR":
        raise ImageError("PNG has no IHDR chunk first; the file is corrupt")
    width, height = struct.unpack(">II", data[16:24])
    return width, height


def _jpeg_size(data: bytes) -> tuple[int, int]:
    pos, n = 2, len(data)
    while pos < n:
        if data[pos] != 0xFF:
            raise ImageError(f"JPEG segment expected at byte {pos}; the file is corrupt")
        while pos < n and data[pos] == 0xFF:  # fill bytes
            pos += 1
        if pos >= n:
            break
        marker = data[pos]
        pos += 1
        if marker in _STANDALONE:
            continue
        if marker in (0xD9, 0xDA):  # end of image / start of scan before any frame header
            break
        if pos + 2 > n:
            break
        (length,) = struct.unpack(">H", data[pos:pos + 2])
        if length < 2:
            raise ImageError("JPEG segment with a length below 2; the file is corrupt")
        if marker in _SOF_MARKERS:
            if pos + 7 > n:
                break
            height, width = struct.unpack(">HH", data[pos + 3:pos + 7])
            return width, height
        pos += length
    raise ImageError("JPEG has no frame header (SOF) before its image data; the file is corrupt "
                     "or truncated")


def _pil_size(data: bytes) -> tuple[int, int]:
    from PIL import Image

    try:
        with Image.open(io.BytesIO(data), formats=PIL_FORMATS) as im:
            width, height = im.size
    except Image.DecompressionBombError as exc:  # Pillow's own limit, ~179 M pixels
        raise ImageError(f"image header declares too many pixels ({exc}); downscale it") from exc
    except Exception as exc:  # Pillow raises many types on hostile headers
        raise ImageError(f"cannot read the image header ({type(exc).__name__}: {exc}); the data "
                         f"is corrupt or not PNG, JPEG, {', '.join(PIL_FORMATS)}") from exc
    return int(width), int(height)


def probe_image_size(data: bytes) -> tuple[int, int]:
    """(width, height) in pixels from the header of an encoded image, decoding no pixel.

    Args:
        data: the encoded file content (PNG, JPEG, or one of :data:`PIL_FORMATS`).

    Returns:
        (width, height) as declared by the header (0 where the header says 0).

    Raises:
        ImageError: empty data, an unsupported format, or an unreadable header.
    """
    if not data:
        raise ImageError("encoded image is empty")
    if data.startswith(_PNG_SIGNATURE):
        return _png_size(data)
    if data.startswith(b"\xff\xd8"):
        return _jpeg_size(data)
    return _pil_size(data)
