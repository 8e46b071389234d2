"""Training-free global image descriptors for the classical backend.

``tiny-grad-v1``: the image is reduced to a small grey thumbnail (fixed size, any aspect) and
described by its normalised intensities concatenated with its normalised gradient magnitudes and
a coarse colour layout. It is cheap, needs no model and works for re-localization near the mapped
trajectory (the regime of a robot map); it is not viewpoint invariant. Recall@k on the 7-Scenes
sample is measured by ``mast3r-ros eval-retrieval``.
"""

from __future__ import annotations

import cv2
import numpy as np

from mast3r_ros.core.retrieval.index import l2_normalize

__all__ = ["TINY_DESCRIPTOR", "tiny_image_descriptor"]

TINY_DESCRIPTOR = "tiny-grad-v1"


def _zscore(x: np.ndarray) -> np.ndarray:
    x = x.astype(np.float32).reshape(-1)
    x = x - x.mean()
    return x / max(float(np.linalg.norm(x)), 1e-6)


def tiny_image_descriptor(rgb: np.ndarray, size: tuple[int, int] = (32, 24)) -> np.ndarray:
    """Descriptor ``tiny-grad-v1`` of an RGB image.

    Args:
        rgb: (H, W, 3) uint8 image.
        size: thumbnail (width, height).

    Returns:
        (D,) float32 L2-normalised descriptor, D = 2 * w * h + 3 * (w // 4) * (h // 4).
    """
    small = cv2.resize(rgb, size, interpolation=cv2.INTER_AREA).astype(np.float32)
    grey = small.mean(axis=2)
    gx = cv2.Sobel(grey, cv2.CV_32F, 1, 0, ksize=3)
    gy = cv2.Sobel(grey, cv2.CV_32F, 0, 1, ksize=3)
    mag = np.sqrt(gx**2 + gy**2)
    colour = cv2.resize(small, (size[0] // 4, size[1] // 4), interpolation=cv2.INTER_AREA)
    colour = colour / np.maximum(colour.sum(axis=2, keepdims=True), 1.0)
    parts = [_zscore(grey), _zscore(mag), 0.5 * _zscore(colour)]
    return l2_normalize(np.concatenate(parts))
