"""Encoded images: the pixel limit is checked on the header before decoding (D3), cv2.error never
escapes (D11), non-regular files are refused without blocking."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
from io_helpers import in_thread, png_bytes

from mast3r_ros.core.config import InputConfig
from mast3r_ros.core.errors import ImageError
from mast3r_ros.core.io import (
    decode_depth_bytes,
    decode_image_bytes,
    probe_image_size,
    read_depth_file,
    read_image_file,
)
from mast3r_ros.core.io.image import max_file_bytes

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[2]
LIMIT = InputConfig().max_image_pixels


def test_roundtrip_png_jpeg_and_grey(rng: np.random.Generator, tmp_path: Path) -> None:
    rgb = rng.integers(0, 256, (21, 34, 3), dtype=np.uint8)
    png = cv2.imencode(".png", rgb[..., ::-1])[1].tobytes()
    assert probe_image_size(png) == (34, 21)
    out = decode_image_bytes(png, LIMIT)
    assert out.dtype == np.uint8 and out.flags.c_contiguous
    np.testing.assert_array_equal(out, rgb)
    (tmp_path / "a.png").write_bytes(png)
    np.testing.assert_array_equal(read_image_file(tmp_path / "a.png", LIMIT), rgb)
    jpg = cv2.imencode(".jpg", rgb[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, 100])[1]
    np.testing.assert_array_equal(decode_image_bytes(jpg, LIMIT),  # ndarray input
                                  cv2.imdecode(jpg, cv2.IMREAD_COLOR)[..., ::-1])
    grey = cv2.imencode(".png", rgb[..., 0])[1].tobytes()
    out = decode_image_bytes(bytearray(grey), LIMIT)
    assert out.shape == rgb.shape and np.all(out == rgb[..., :1])


def test_depth_files_as_stored(rng: np.random.Generator, tmp_path: Path) -> None:
    mm = rng.integers(0, 65536, (9, 13), dtype=np.uint16)
    cv2.imwrite(str(tmp_path / "d.png"), mm)
    got = read_depth_file(tmp_path / "d.png", LIMIT)
    assert got.dtype == np.uint16
    np.testing.assert_array_equal(got, mm)
    metres = rng.random((9, 13), dtype=np.float32)
    tif = cv2.imencode(".tiff", metres)[1].tobytes()
    np.testing.assert_array_equal(decode_depth_bytes(tif, LIMIT), metres)
    colour = cv2.imencode(".png", rng.integers(0, 256, (4, 4, 3), dtype=np.uint8))[1].tobytes()
    with pytest.raises(ImageError, match="single-channel"):
        decode_depth_bytes(colour, LIMIT)


def test_pixel_limit_on_header(tmp_path: Path) -> None:
    bomb = png_bytes(8192, 8192)  # 8 kB declaring 67 M pixels
    assert len(bomb) < 20_000 and probe_image_size(bomb) == (8192, 8192)
    with pytest.raises(ImageError, match=f"8192x8192 pixels exceeds the limit of {LIMIT}"):
        decode_image_bytes(bomb, LIMIT)
    (tmp_path / "bomb.png").write_bytes(bomb)
    with pytest.raises(ImageError, match="bomb.png.*exceeds the limit"):
        read_image_file(tmp_path / "bomb.png", LIMIT)
    with pytest.raises(ImageError, match="exceeds the limit"):
        read_depth_file(tmp_path / "bomb.png", LIMIT)
    small = png_bytes(1024, 1024)  # a valid image within the limit decodes
    assert decode_image_bytes(small, 1024 * 1024).shape == (1024, 1024, 3)
    with pytest.raises(ImageError, match="exceeds the limit of 1048575"):
        decode_image_bytes(small, 1024 * 1024 - 1)


_RSS_PROBE = """
import resource, sys
sys.path.insert(0, {helpers!r})
from io_helpers import in_thread, png_bytes
from mast3r_ros.core.errors import ImageError
from mast3r_ros.core.io import decode_image_bytes
bomb = png_bytes(8192, 8192)
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
try:
    decode_image_bytes(bomb, {limit})
except ImageError as exc:
    print("refused:", exc)
print("peak_delta_kb", resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before)
"""


def test_bomb_refused_before_decoding_memory() -> None:
    """D3: the 8 kB bomb would decode to 200 MB; refused with < 30 MB of peak RSS growth."""
    code = _RSS_PROBE.format(helpers=str(HERE), limit=LIMIT)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO,
                         timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "refused:" in out.stdout and "exceeds the limit" in out.stdout
    delta_kb = int(out.stdout.split("peak_delta_kb")[1])
    assert delta_kb < 30_000, delta_kb


def _jpeg_with_app1_thumbnail(rgb: np.ndarray) -> bytes:
    jpg = cv2.imencode(".jpg", rgb[..., ::-1])[1].tobytes()
    thumb = cv2.imencode(".jpg", np.zeros((10, 12, 3), np.uint8))[1].tobytes()
    app1 = b"Exif\0\0" + thumb
    seg = b"\xff\xe1" + (len(app1) + 2).to_bytes(2, "big") + app1
    return jpg[:2] + seg + jpg[2:]


def test_jpeg_header(rng: np.random.Generator) -> None:
    rgb = rng.integers(0, 256, (40, 56, 3), dtype=np.uint8)
    jpg = _jpeg_with_app1_thumbnail(rgb)
    assert probe_image_size(jpg) == (56, 40)  # not the 12x10 thumbnail inside APP1
    assert decode_image_bytes(jpg, LIMIT).shape == (40, 56, 3)
    plain = cv2.imencode(".jpg", rgb[..., ::-1])[1].tobytes()
    sof = plain.index(b"\xff\xc0")
    bomb = plain[:sof + 5] + (60000).to_bytes(2, "big") * 2 + plain[sof + 9:]
    assert probe_image_size(bomb) == (60000, 60000)
    with pytest.raises(ImageError, match="60000x60000 pixels exceeds the limit"):
        decode_image_bytes(bomb, LIMIT)


def test_cv2_error_becomes_image_error() -> None:
    """D11: above 2^30 pixels OpenCV raises cv2.error; with a generous limit it is typed."""
    huge = png_bytes(32769, 32768, idat=b"not zlib")
    with pytest.raises(ImageError, match="OpenCV cannot decode"):
        decode_image_bytes(huge, 2**31)
    with pytest.raises(ImageError, match="exceeds the limit"):
        decode_image_bytes(huge, LIMIT)


@pytest.mark.parametrize("data, match", [
    (b"", "empty"),
    (b"GIF89a junk" * 10, "cannot read the image header"),
    (b"\x89PNG\r\n\x1a\n" + b"\0" * 40, "no IHDR"),
    (b"\xff\xd8\xff\xe0\x00\x10JFIF", "no frame header"),
    (b"\xff\xd8\x00\x00", "segment expected"),
    (png_bytes(64, 64)[:60], "cannot decode"),  # header fine, data cut
    (png_bytes(0, 5), "image header|zero size"),
    ([1, 2, 3], "bytes-like"),
])
def test_bad_data(data: object, match: str) -> None:
    with pytest.raises(ImageError, match=match):
        decode_image_bytes(data, LIMIT)  # type: ignore[arg-type]


def test_non_regular_files_refused_without_blocking(tmp_path: Path) -> None:
    fifo = tmp_path / "frame.png"
    os.mkfifo(fifo)
    for fn in (read_image_file, read_depth_file):
        exc = in_thread(fn, fifo, LIMIT)
        assert isinstance(exc, ImageError) and "named pipe" in str(exc)
    exc = in_thread(read_image_file, "/dev/zero", LIMIT)
    assert isinstance(exc, ImageError) and "a device" in str(exc)
    exc = in_thread(read_image_file, tmp_path, LIMIT)
    assert isinstance(exc, ImageError) and "a directory" in str(exc)
    exc = in_thread(read_image_file, tmp_path / "missing.png", LIMIT)
    assert isinstance(exc, ImageError) and "does not exist" in str(exc)


def test_file_size_bound(tmp_path: Path) -> None:
    big = tmp_path / "big.png"
    with open(big, "wb") as f:  # sparse: no disk space used
        f.write(png_bytes(16, 16))
        f.truncate(max_file_bytes(256) + 1)
    with pytest.raises(ImageError, match="more than the limit"):
        read_image_file(big, 256)
