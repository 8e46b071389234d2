"""Metric scale and focal length from MASt3R pointmaps.

:func:`estimate_focal` is the one focal estimator of the package (localizer backend and mapping).
It follows the idea of the official ``estimate_focal_knowing_depth`` (Weiszfeld iterations for a
robust L1 fit of ``xy - pp = f * (X/Z, Y/Z)``) and takes the principal point explicitly, in the
pixel-centre convention of :mod:`mast3r_ros.core.geometry.camera`: pixel (row i, column j) sits at
``(x, y) = (j, i)``, so the centre of a W x H image is ``((W - 1) / 2, (H - 1) / 2)``. Callers
choose the principal point; the mapping passes ``(W / 2, H / 2)``, the official sparse-GA choice,
to reproduce its fixtures.
"""

from __future__ import annotations

import math
from typing import Optional, Union

import numpy as np
import torch

__all__ = ["estimate_focal", "estimate_scale", "intrinsics_from_focal"]


def estimate_focal(pts3d: Union[np.ndarray, torch.Tensor], pp: tuple[float, float],
                   mask: Optional[Union[np.ndarray, torch.Tensor]] = None, iters: int = 10,
                   eps: float = 1e-8) -> float:
    """Robust focal length (pixels) of a camera-frame pointmap under a known principal point.

    The first estimate is the least-squares one; each of the ``iters`` Weiszfeld steps then
    re-weights every pixel by ``1 / max(|xy - pp - f * (X/Z, Y/Z)|, eps)`` (as the official code).
    Computed in float64.

    Args:
        pts3d: (H, W, 3) points in the camera optical frame of the image they were predicted for.
        pp: principal point (x, y) in pixels of that image (pixel-centre convention, see the
            module docstring).
        mask: optional (H, W) bool of pixels to use (e.g. confident ones). Pixels with a
            non-finite point or ``Z <= 0`` are never used.
        iters: Weiszfeld iterations.
        eps: floor of the residual used in the weights (pixels).

    Returns:
        Focal length in pixels of the pointmap's image, or NaN when no valid pixel exists.
    """
    P = torch.as_tensor(pts3d).detach().to("cpu", torch.float64)
    h, w = P.shape[:2]
    ys, xs = torch.meshgrid(torch.arange(h, dtype=torch.float64),
                            torch.arange(w, dtype=torch.float64), indexing="ij")
    u = torch.stack((xs - float(pp[0]), ys - float(pp[1])), -1).reshape(-1, 2)
    P = P.reshape(-1, 3)
    valid = torch.isfinite(P).all(1) & (P[:, 2] > 0)
    if mask is not None:
        valid &= torch.as_tensor(mask).reshape(-1).to("cpu", torch.bool)
    if not bool(valid.any()):
        return float("nan")
    u, v = u[valid], P[valid, :2] / P[valid, 2:3]
    dot_uv, dot_vv = (u * v).sum(-1), (v * v).sum(-1)
    f = dot_uv.mean() / dot_vv.mean()
    for _ in range(max(int(iters), 0)):
        wts = (u - f * v).norm(dim=-1).clip(min=eps).reciprocal()
        f = (wts * dot_uv).mean() / (wts * dot_vv).mean()
    out = float(f)
    return out if math.isfinite(out) else float("nan")


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
