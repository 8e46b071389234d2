"""Preprocessing identical to the official loader, and the network <-> original pixel transform."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import PIL.Image
import pytest

from mast3r_ros.core.errors import ConfigError, ImageError, InputError
from mast3r_ros.core.model import ImageTransform, normalize_rgb, preprocess_image

LANCZOS, BICUBIC = PIL.Image.Resampling.LANCZOS, PIL.Image.Resampling.BICUBIC


def _image(rng: np.random.Generator, w: int, h: int) -> np.ndarray:
    """Smooth random image (a few blurred blobs) so interpolation choices matter."""
    small = rng.integers(0, 256, size=(max(h // 16, 2), max(w // 16, 2), 3), dtype=np.uint8)
    return np.asarray(PIL.Image.fromarray(small).resize((w, h), BICUBIC))


def _reference(rgb: np.ndarray, size_wh: tuple[int, int], interp, box) -> np.ndarray:
    return np.asarray(PIL.Image.fromarray(rgb).resize(size_wh, interp).crop(box))


@pytest.mark.parametrize("w,h,resized,box,interp", [
    (640, 480, (512, 384), (0, 0, 512, 384), LANCZOS),      # landscape 4:3, no crop
    (700, 500, (512, 366), (0, 7, 512, 359), LANCZOS),      # landscape, crop to 352 rows
    (500, 700, (366, 512), (7, 0, 359, 512), LANCZOS),      # portrait, crop to 352 columns
    (300, 300, (512, 512), (0, 64, 512, 448), BICUBIC),     # square, upscaled, 4:3 crop
    (333, 250, (512, 384), (0, 0, 512, 384), BICUBIC),      # round(384.38)
])
def test_resize_and_crop_like_official(rng, w, h, resized, box, interp) -> None:
    rgb = _image(rng, w, h)
    out = preprocess_image(rgb, size=512)
    expected = _reference(rgb, resized, interp, box)
    np.testing.assert_array_equal(out.rgb, expected)
    t = out.transform
    assert t.orig_size == (w, h) and t.resized_size == resized
    assert t.crop_xy == box[:2] and t.net_size == (box[2] - box[0], box[3] - box[1])
    assert out.tensor.shape == (1, 3, expected.shape[0], expected.shape[1])
    assert out.tensor.shape[2] % 16 == 0 and out.tensor.shape[3] % 16 == 0
    other = BICUBIC if interp == LANCZOS else LANCZOS
    assert not np.array_equal(out.rgb, _reference(rgb, resized, other, box))


def test_square_ok_and_size_224(rng) -> None:
    sq = _image(rng, 300, 300)
    assert preprocess_image(sq, size=512, square_ok=True).rgb.shape == (512, 512, 3)
    rgb = _image(rng, 640, 480)
    out = preprocess_image(rgb, size=224)
    np.testing.assert_array_equal(out.rgb, _reference(rgb, (299, 224), LANCZOS, (37, 0, 261, 224)))
    assert out.transform.crop_xy == (37, 0)


def test_normalisation_matches_golden_inputs(golden_dir: Path) -> None:
    for pair in ("tiny_pair", "tiny_pair_mixed"):
        ref = np.load(golden_dir / "tiny" / f"{pair}.npz")
        for view in (1, 2):
            png = np.asarray(PIL.Image.open(golden_dir / "tiny" / f"{pair}_view{view}.png")
                             .convert("RGB"))
            np.testing.assert_array_equal(normalize_rgb(png).numpy(), ref[f"view{view}_img"])


def test_transform_pixel_centre_convention() -> None:
    t = ImageTransform(orig_size=(700, 500), resized_size=(512, 366), crop_xy=(0, 7),
                       net_size=(512, 352))
    xy_net = np.array([[0.0, 0.0], [511.0, 351.0], [100.25, 40.5]])
    sx, sy = 700 / 512, 500 / 366
    expected = np.stack([(xy_net[:, 0] + 0.5) * sx - 0.5, (xy_net[:, 1] + 7 + 0.5) * sy - 0.5], 1)
    np.testing.assert_allclose(t.to_original(xy_net), expected, rtol=0, atol=1e-12)
    np.testing.assert_allclose(t.to_network(t.to_original(xy_net)), xy_net, atol=1e-9)
    # the resized image's corner pixels' outer edges coincide with the original's
    edge = t.to_original(np.array([[-0.5, -0.5 - 7]]))
    np.testing.assert_allclose(edge, [[-0.5, -0.5]], atol=1e-12)


def test_scale_intrinsics_consistent_with_point_transform(rng) -> None:
    t = ImageTransform(orig_size=(640, 480), resized_size=(512, 384), crop_xy=(16, 8),
                       net_size=(480, 368))
    K = np.array([[525.0, 0.0, 319.5], [0.0, 520.0, 239.5], [0.0, 0.0, 1.0]])
    X = rng.uniform([-1, -1, 1], [1, 1, 4], size=(20, 3))
    proj = lambda KK: (X @ KK.T)[:, :2] / X[:, 2:]  # noqa: E731
    Kn = t.scale_intrinsics(K)
    np.testing.assert_allclose(proj(Kn), t.to_network(proj(K)), atol=1e-9)
    assert Kn[2, 2] == 1.0 and Kn[0, 1] == 0.0
    with pytest.raises(InputError):
        t.scale_intrinsics(np.eye(4))


@pytest.mark.parametrize("bad", [
    np.zeros((48, 64, 3), np.float32),        # float instead of uint8
    np.zeros((48, 64), np.uint8),             # gray
    np.zeros((48, 64, 4), np.uint8),          # RGBA
    np.zeros((0, 64, 3), np.uint8),           # empty
    [[0, 0, 0]],                              # not an array
])
def test_bad_images_rejected(bad) -> None:
    with pytest.raises(ImageError):
        preprocess_image(bad)


def test_bad_sizes_rejected(rng) -> None:
    with pytest.raises(ConfigError):
        preprocess_image(_image(rng, 64, 48), size=100)
    with pytest.raises(ImageError, match="too small"):
        preprocess_image(np.zeros((200, 4, 3), np.uint8), size=64)
    with pytest.raises(InputError, match="multiple of 16"):   # official quirk: 160x120 crop
        preprocess_image(_image(rng, 100, 100), size=160)
