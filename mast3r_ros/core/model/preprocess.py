"""Image preprocessing identical to the official loader (``dust3r.utils.image.load_images``), plus
the transform that maps network pixels back to the original image.

Steps for ``size != 224``: resize so the long side equals ``size`` (each side scaled by
``size / long side`` and rounded half-to-even like Python's ``round``; PIL LANCZOS when shrinking,
BICUBIC otherwise), then a centred crop whose sides are the largest multiples of 16 not exceeding
``2 * floor(W/2)`` and ``2 * floor(H/2)``, centred on ``(floor(W/2), floor(H/2))``; a square image
(unless ``square_ok``) is cropped to 4:3 (height 3/4 of the width). ``size == 224``: short side
to 224 and a square centre crop. Then ``(u8 / 255 - 0.5) / 0.5``.

Pixel convention: ``(0, 0)`` is the centre of the top-left pixel, ``x`` right, ``y`` down.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import PIL.Image
import torch

from mast3r_ros.core.errors import ConfigError, ImageError, InputError

__all__ = ["PREPROCESSING", "ImageTransform", "PreprocessedImage", "image_transform",
           "preprocess_image", "normalize_rgb"]

#: name/version of this preprocessing (official resize long side + centred crop to multiples of
#: 16), recorded with every encoding and cached network output made from it
PREPROCESSING = "dust3r-resize-crop16-v1"


@dataclass(frozen=True)
class ImageTransform:
    """Scale-then-crop mapping between original and network pixels.

    Attributes:
        orig_size: (W, H) of the original image in pixels.
        resized_size: (W, H) after resizing, before cropping.
        crop_xy: (x0, y0) top-left corner of the crop in the resized image (pixels).
        net_size: (W, H) of the network image.
    """

    orig_size: tuple[int, int]
    resized_size: tuple[int, int]
    crop_xy: tuple[int, int]
    net_size: tuple[int, int]

    @property
    def scale(self) -> np.ndarray:
        """(2,) network-per-original pixel scale factors ``(sx, sy)``."""
        return np.array([self.resized_size[0] / self.orig_size[0],
                         self.resized_size[1] / self.orig_size[1]])

    def to_original(self, xy_net: np.ndarray) -> np.ndarray:
        """Network pixel coordinates (N, 2) -> original image coordinates (N, 2), float64.

        ``x_orig = (x_net + x0 + 0.5) * W_orig / W_resized - 0.5`` (same for y).
        """
        xy = np.asarray(xy_net, dtype=np.float64).reshape(-1, 2)
        return (xy + np.asarray(self.crop_xy) + 0.5) / self.scale - 0.5

    def to_network(self, xy_orig: np.ndarray) -> np.ndarray:
        """Original image coordinates (N, 2) -> network pixel coordinates (N, 2), float64."""
        xy = np.asarray(xy_orig, dtype=np.float64).reshape(-1, 2)
        return (xy + 0.5) * self.scale - 0.5 - np.asarray(self.crop_xy)

    def scale_intrinsics(self, K_orig: np.ndarray) -> np.ndarray:
        """Camera matrix of the original image (3, 3) -> camera matrix of the network image."""
        K = np.asarray(K_orig, dtype=np.float64)
        if K.shape != (3, 3):
            raise InputError(f"K must be 3x3, got shape {K.shape}")
        sx, sy = self.scale
        out = K.copy()
        out[0, :] *= sx
        out[1, :] *= sy
        out[0, 2] += 0.5 * sx - 0.5 - self.crop_xy[0]
        out[1, 2] += 0.5 * sy - 0.5 - self.crop_xy[1]
        return out


@dataclass(frozen=True)
class PreprocessedImage:
    """A network-ready image.

    Attributes:
        tensor: (1, 3, h, w) float32, values ``(u8/255 - 0.5)/0.5``.
        rgb: (h, w, 3) uint8 network image.
        transform: mapping to the original image.
    """

    tensor: torch.Tensor
    rgb: np.ndarray
    transform: ImageTransform


def normalize_rgb(rgb: np.ndarray) -> torch.Tensor:
    """uint8 (h, w, 3) RGB -> float32 (1, 3, h, w) tensor ``(u8/255 - 0.5)/0.5``."""
    arr = np.ascontiguousarray(rgb)
    if not arr.flags.writeable:
        arr = arr.copy()
    t = torch.from_numpy(arr).permute(2, 0, 1).float().div(255)
    return ((t - 0.5) / 0.5).unsqueeze(0).contiguous()


def _check_rgb(rgb: object) -> np.ndarray:
    if not isinstance(rgb, np.ndarray):
        raise ImageError(f"image must be a numpy array, got {type(rgb).__name__}")
    if rgb.dtype != np.uint8:
        raise ImageError(f"image must be uint8 RGB, got dtype {rgb.dtype}")
    if rgb.ndim != 3 or rgb.shape[2] != 3:
        raise ImageError(f"image must have shape (H, W, 3), got {rgb.shape}")
    if rgb.shape[0] < 1 or rgb.shape[1] < 1:
        raise ImageError(f"image is empty: {rgb.shape}")
    return rgb


def _resized_size(w: int, h: int, long_edge: int) -> tuple[int, int]:
    s = max(w, h)
    return int(round(w * long_edge / s)), int(round(h * long_edge / s))


def image_transform(width: int, height: int, size: int = 512,
                    square_ok: bool = False) -> ImageTransform:
    """The preprocessing transform of a ``width`` x ``height`` image, without the image.

    It depends on the image size only, so a map can recover a keyframe's transform from its
    record. :func:`preprocess_image` uses it.

    Raises:
        ConfigError: ``size`` is not a positive multiple of 16.
        ImageError: the image is too small for the network.
        InputError: the crop is not a multiple of 16 (see :func:`preprocess_image`).
    """
    if isinstance(size, bool) or not isinstance(size, int) or size < 16 or size % 16:
        raise ConfigError(f"size must be a positive multiple of 16, got {size!r}")
    w1, h1 = int(width), int(height)
    if w1 < 1 or h1 < 1:
        raise ImageError(f"image is empty: {w1}x{h1}")
    long_edge = round(size * max(w1 / h1, h1 / w1)) if size == 224 else size
    w, h = _resized_size(w1, h1, long_edge)
    cx, cy = w // 2, h // 2
    if size == 224:
        half = min(cx, cy)
        box: tuple[int, ...] = (cx - half, cy - half, cx + half, cy + half)
    else:
        halfw, halfh = ((2 * cx) // 16) * 8, float(((2 * cy) // 16) * 8)
        if not square_ok and w == h:
            halfh = 3 * halfw / 4
        box = tuple(int(round(v)) for v in (cx - halfw, cy - halfh, cx + halfw, cy + halfh))
    net_w, net_h = box[2] - box[0], box[3] - box[1]
    if net_w < 16 or net_h < 16:
        raise ImageError(f"image {w1}x{h1} is too small for the network (crop {net_w}x{net_h})")
    if net_w % 16 or net_h % 16:
        raise InputError(f"crop {net_w}x{net_h} of a {w1}x{h1} image is not a multiple of 16; "
                         "use a size that is a multiple of 64 or square_ok=True")
    return ImageTransform(orig_size=(w1, h1), resized_size=(w, h), crop_xy=(box[0], box[1]),
                          net_size=(net_w, net_h))


def preprocess_image(rgb: np.ndarray, size: int = 512,
                     square_ok: bool = False) -> PreprocessedImage:
    """Resize and crop like the official loader and normalise.

    Args:
        rgb: (H, W, 3) uint8 RGB image (original camera image, no EXIF handling).
        size: long side after resizing (512 for the release; 224 uses the square path).
        square_ok: keep square images square instead of cropping them to 4:3.

    Returns:
        The network image, its tensor and the transform back to ``rgb``'s pixels.

    Raises:
        ImageError: not a non-empty uint8 (H, W, 3) array, or too small for a 16x16 crop.
        ConfigError: ``size`` is not a positive multiple of 16.
        InputError: the crop is not a multiple of 16 (square image, ``size`` not a multiple of 64).
    """
    rgb = _check_rgb(rgb)
    tr = image_transform(rgb.shape[1], rgb.shape[0], size, square_ok)
    img = PIL.Image.fromarray(rgb)
    shrink = max(tr.resized_size) < max(img.size)
    interp = PIL.Image.Resampling.LANCZOS if shrink else PIL.Image.Resampling.BICUBIC
    img = img.resize(tr.resized_size, interp)
    x0, y0 = tr.crop_xy
    box = (x0, y0, x0 + tr.net_size[0], y0 + tr.net_size[1])
    out = np.array(img.crop(box), dtype=np.uint8)
    return PreprocessedImage(tensor=normalize_rgb(out), rgb=out, transform=tr)
