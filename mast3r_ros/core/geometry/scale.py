"""Metric scale and focal length from MASt3R pointmaps.

Focal estimation follows the idea of the official ``estimate_focal_knowing_depth`` (Weiszfeld
iterations for a robust L1 fit of ``xy - pp = f * (X/Z, Y/Z)`` under a known principal point); this
implementation uses the pixel-centre convention of :mod:`mast3r_ros.core.geometry.camera`, so the
centred principal point of a W x H image is ((W - 1) / 2, (H - 1) / 2).
"""

from __future__ import annotations

from typing import Optional

import numpy as np

__all__ = ["estimate_focal", "estimate_scale", "intrinsics_from_focal"]


def estimate_focal(pts3d: np.ndarray, pp: Optional[tuple[float, float]] = None,
                   mask: Optional[np.ndarray] = None, iters: int = 10,
                   eps: float = 1e-6) -> float:
    """Robust focal length (pixels) of a camera-frame pointmap under a known principal point.

    Args:
        pts3d: (H, W, 3) points in the camera optical frame of the image they were predicted for.
        pp: principal point (x, y) in pixels; default the image centre ((W-1)/2, (H-1)/2).
        mask: optional (H, W) bool of pixels to use (e.g. confident ones).
        iters: Weiszfeld iterations.
        eps: floor of the residual used in the weights (pixels).

    Returns:
        Focal length in pixels of the pointmap's image, or NaN when no valid pixel exists.
    """
    h, w = pts3d.shape[:2]
    cx, cy = pp if pp is not None else ((w - 1) / 2.0, (h - 1) / 2.0)
    rows, cols = np.mgrid[0:h, 0:w]
    u = np.stack([cols - cx, rows - cy], axis=-1).reshape(-1, 2).astype(np.float64)
    P = pts3d.reshape(-1, 3).astype(np.float64)
    valid = np.all(np.isfinite(P), axis=1) & (P[:, 2] > 0)
    if mask is not None:
        valid &= mask.reshape(-1).astype(bool)
    if not valid.any():
        return float("nan")
    u, v = u[valid], P[valid, :2] / P[valid, 2:3]
    wts = np.ones(u.shape[0])
    f = float("nan")
    for _ in range(max(iters, 1) + 1):
        den = np.sum(wts * np.sum(v * v, axis=1))
        if den <= 0:
            return float("nan")
        f = float(np.sum(wts * np.sum(u * v, axis=1)) / den)
        wts = 1.0 / np.maximum(np.linalg.norm(u - f * v, axis=1), eps)
    return f


def estimate_scale(depth_metric: np.ndarray, depth_unscaled: np.ndarray,
                   min_valid: int = 5) -> float:
    """Robust scale ``s`` with ``depth_metric ~= s * depth_unscaled`` (median of ratios).

    Args:
        depth_metric: (N,) metric depths (e.g. from a MASt3R pointmap or a depth image).
        depth_unscaled: (N,) depths of the same points up to scale (e.g. triangulated with a unit
            baseline).
        min_valid: fewer valid positive pairs than this -> NaN.

    Returns:
        The scale, or NaN.
    """
    a = np.asarray(depth_metric, dtype=np.float64).reshape(-1)
    b = np.asarray(depth_unscaled, dtype=np.float64).reshape(-1)
    ok = np.isfinite(a) & np.isfinite(b) & (a > 0) & (b > 0)
    if ok.sum() < min_valid:
        return float("nan")
    return float(np.exp(np.median(np.log(a[ok] / b[ok]))))


def intrinsics_from_focal(focal: float, width: int, height: int) -> np.ndarray:
    """(3, 3) K with square pixels and a centred principal point for a W x H image."""
    return np.array([[focal, 0.0, (width - 1) / 2.0], [0.0, focal, (height - 1) / 2.0],
                     [0.0, 0.0, 1.0]])
