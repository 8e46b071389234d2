"""Raw ``sensor_msgs/Image`` fields -> RGB / depth: every encoding, padding, byte order, and the
size checks that come before any allocation (D4)."""

from __future__ import annotations

import array
import tracemalloc

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mast3r_ros.core.config import InputConfig
from mast3r_ros.core.errors import ImageError
from mast3r_ros.core.io import RAW_ENCODINGS, decode_raw_depth, decode_raw_image
from mast3r_ros.core.io.raw import MAX_MISSING_TAIL

LIMIT = InputConfig().max_image_pixels


def _fields(arr: np.ndarray, encoding: str, pad: int = 0, bigendian: bool = False) -> dict:
    """Message fields of ``arr`` ((H, W) or (H, W, C)) with ``pad`` bytes of row padding."""
    h, w = arr.shape[:2]
    rows = np.ascontiguousarray(arr).reshape(h, -1).view(np.uint8).reshape(h, -1)
    data = np.concatenate([rows, np.full((h, pad), 7, np.uint8)], axis=1)
    return dict(encoding=encoding, height=h, width=w, step=data.shape[1], is_bigendian=bigendian,
                data=data.tobytes(), max_pixels=LIMIT)


@pytest.fixture()
def rgb(rng: np.random.Generator) -> np.ndarray:
    return rng.integers(0, 256, (5, 7, 3), dtype=np.uint8)


@pytest.mark.parametrize("pad", [0, 3])
def test_colour_encodings(rgb: np.ndarray, pad: int) -> None:
    alpha = np.full(rgb.shape[:2] + (1,), 9, np.uint8)
    cases = {"rgb8": rgb, "bgr8": rgb[..., ::-1], "8UC3": rgb[..., ::-1],
             "rgba8": np.concatenate([rgb, alpha], axis=2),
             "bgra8": np.concatenate([rgb[..., ::-1], alpha], axis=2)}
    for enc, arr in cases.items():
        out = decode_raw_image(**_fields(arr, enc, pad))
        assert out.dtype == np.uint8 and out.flags.c_contiguous, enc
        np.testing.assert_array_equal(out, rgb, err_msg=enc)
    for enc in ("mono8", "8UC1"):
        out = decode_raw_image(**_fields(rgb[..., 0], enc, pad))
        assert out.shape == rgb.shape and np.all(out == rgb[..., :1]), enc


@pytest.mark.parametrize("enc", ["mono16", "16UC1"])
def test_16bit_both_byte_orders(rng: np.random.Generator, enc: str) -> None:
    g16 = rng.integers(0, 65536, (4, 6), dtype=np.uint16)
    little = decode_raw_image(**_fields(g16.astype("<u2"), enc, pad=2))
    big = decode_raw_image(**_fields(g16.astype(">u2"), enc, pad=2, bigendian=True))
    np.testing.assert_array_equal(little[..., 0], (g16 >> 8).astype(np.uint8))
    np.testing.assert_array_equal(big, little)


def test_data_containers(rgb: np.ndarray) -> None:
    f = _fields(rgb, "rgb8")
    for data in (f["data"], bytearray(f["data"]), array.array("B", f["data"]),
                 np.frombuffer(f["data"], np.uint8), memoryview(f["data"])):
        np.testing.assert_array_equal(decode_raw_image(**{**f, "data": data}), rgb)
    f["height"], f["width"], f["step"] = np.uint32(5), np.int64(7), np.uint32(21)
    np.testing.assert_array_equal(decode_raw_image(**f), rgb)


def test_last_row_padding_may_be_missing(rgb: np.ndarray) -> None:
    f = _fields(rgb, "rgb8", pad=5)
    f["data"] = f["data"][:-5]
    np.testing.assert_array_equal(decode_raw_image(**f), rgb)
    f["data"] = f["data"][:-1]
    with pytest.raises(ImageError, match="truncated"):
        decode_raw_image(**f)


def test_step_far_beyond_data_refused_without_allocation() -> None:
    """D4: height=1, step=2**32-1 and 1,920 bytes must be an ImageError, not a 4 GB buffer."""
    tracemalloc.start()
    try:
        with pytest.raises(ImageError, match="step inconsistent"):
            decode_raw_image("rgb8", 1, 640, 2**32 - 1, 0, b"\x01" * 1920, LIMIT)
        with pytest.raises(ImageError, match="step inconsistent"):
            decode_raw_depth("16UC1", 1, 960, 2**32 - 1, 0, b"\x01" * 1920, LIMIT)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 1_000_000, peak


def test_missing_tail_bound() -> None:
    """The tolerated missing tail never exceeds MAX_MISSING_TAIL, whatever the padding."""
    row = 30
    step = row + MAX_MISSING_TAIL + 100
    ok = bytes(step + row + MAX_MISSING_TAIL + 100 - MAX_MISSING_TAIL)  # 2 rows, tail cut by 4096
    assert decode_raw_image("mono8", 2, row, step, 0, ok, LIMIT).shape == (2, row, 3)
    with pytest.raises(ImageError, match="step inconsistent"):
        decode_raw_image("mono8", 2, row, step, 0, ok[:-1], LIMIT)


@pytest.mark.parametrize("change, match", [
    (dict(encoding="yuv422"), "unsupported image encoding"),
    (dict(step=20), "step 20 < width"),
    (dict(data=b"\0" * 30), "truncated"),
    (dict(width=0, step=0), "zero size"),
    (dict(height=0), "zero size"),
    (dict(width=9000, height=9000), "exceeds the limit"),
    (dict(width=-7), "must not be negative"),
    (dict(height=2.5), "must be an integer"),
    (dict(data=[1, 2, 3]), "bytes-like"),
    (dict(data=None), "bytes-like"),
])
def test_bad_fields(rgb: np.ndarray, change: dict, match: str) -> None:
    with pytest.raises(ImageError, match=match):
        decode_raw_image(**{**_fields(rgb, "rgb8"), **change})


def test_depth_units_and_invalid(rng: np.random.Generator) -> None:
    mm = rng.integers(0, 65536, (3, 4), dtype=np.uint16)
    mm[0, 0] = 0
    got = decode_raw_depth(**_fields(mm.astype(">u2"), "16UC1", pad=4, bigendian=True))
    assert got.dtype == np.float32
    np.testing.assert_allclose(got, mm.astype(np.float32) / 1000, rtol=1e-6)
    metres = rng.random((3, 4), dtype=np.float32)
    metres[1, :3] = [np.nan, np.inf, -1.0]
    got = decode_raw_depth(**_fields(metres, "32FC1"))
    np.testing.assert_array_equal(got[1, :3], 0.0)
    np.testing.assert_array_equal(got[2], metres[2])
    with pytest.raises(ImageError, match="unsupported depth encoding"):
        decode_raw_depth(**_fields(metres, "rgb8"))


@settings(max_examples=150, deadline=None, derandomize=True)
@given(enc=st.sampled_from(sorted(RAW_ENCODINGS)), h=st.integers(1, 6), w=st.integers(1, 6),
       pad=st.integers(0, 9), cut=st.integers(0, 12), step_delta=st.integers(-3, 3),
       big=st.booleans())
def test_fuzz_fields_give_rgb_or_image_error(enc: str, h: int, w: int, pad: int, cut: int,
                                             step_delta: int, big: bool) -> None:
    """Random sizes, paddings, cuts and wrong steps: an RGB image of the declared size, or an
    ImageError; never another exception."""
    layout = RAW_ENCODINGS[enc]
    item = np.dtype(layout.dtype).itemsize
    step = w * layout.channels * item + pad
    data = bytes(range(256)) * (1 + step * h // 256)
    data = data[:max(0, step * h - cut)]
    try:
        out = decode_raw_image(enc, h, w, step + step_delta, big, data, LIMIT)
    except ImageError:
        return
    assert out.shape == (h, w, 3) and out.dtype == np.uint8
