"""Pinhole camera helpers and THE pixel convention of mast3r_ros.

Pixel convention (used by every module): pixel coordinates ``xy`` are (N, 2) float arrays with
x = column and y = row, and the **centre** of the top-left pixel is (0, 0) (OpenCV's convention).
A pixel with integer indices (row i, column j) therefore has centre ``(j, i)``; its area spans
``[j - 0.5, j + 0.5]``. Resizing an image by factors (sx, sy) maps ``x' = (x + 0.5) * sx - 0.5``,
so the principal point transforms the same way while the focal lengths scale by (sx, sy).

Camera frames are OpenCV optical frames (x right, y down, z forward); a point ``X_cam`` projects to
``K @ X_cam / z``.
"""

from __future__ import annotations

from typing import Optional

import numpy as np

from mast3r_ros.core.errors import IntrinsicsError

__all__ = [
    "intrinsics_problem",
    "validate_intrinsics",
    "scale_intrinsics",
    "project",
    "backproject",
    "sample_depth",
    "depth_to_points",
]


def intrinsics_problem(K: Optional[np.ndarray]) -> Optional[str]:
    """Why ``K`` is not a usable pinhole matrix, or None when it is.

    Args:
        K: candidate (3, 3) camera matrix.

    Returns:
        A short reason ("K is missing", "K contains NaN/inf", ...) or None.
    """
    if K is None:
        return "K is missing"
    K = np.asarray(K)
    if K.shape != (3, 3):
        return f"K must be 3x3, got shape {K.shape}"
    if not np.all(np.isfinite(K)):
        return "K contains NaN/inf"
    if K[0, 0] <= 0 or K[1, 1] <= 0:
        return f"K focal lengths must be > 0, got fx={K[0, 0]}, fy={K[1, 1]}"
    if not np.allclose(K[2], [0.0, 0.0, 1.0]) or K[1, 0] != 0:
        return "K last row must be [0, 0, 1] and K[1, 0] must be 0"
    return None


def validate_intrinsics(K: Optional[np.ndarray]) -> np.ndarray:
    """Return ``K`` as a (3, 3) float64 array or raise.

    Raises:
        IntrinsicsError: when :func:`intrinsics_problem` finds a problem.
    """
    problem = intrinsics_problem(K)
    if problem is not None:
        raise IntrinsicsError(f"invalid camera matrix: {problem}; pass the CameraInfo K of the "
                              "image")
    return np.asarray(K, dtype=np.float64)


def scale_intrinsics(K: np.ndarray, sx: float, sy: float) -> np.ndarray:
    """Intrinsics of an image resized by (sx, sy), under the pixel-centre convention.

    Args:
        K: (3, 3) intrinsics of the original image.
        sx: new width / old width.
        sy: new height / old height.

    Returns:
        (3, 3) float64 intrinsics of the resized image.
    """
    K2 = np.array(K, dtype=np.float64, copy=True)
    K2[0, 0] *= sx
    K2[0, 1] *= sx
    K2[1, 1] *= sy
    K2[0, 2] = (K[0, 2] + 0.5) * sx - 0.5
    K2[1, 2] = (K[1, 2] + 0.5) * sy - 0.5
    return K2


def project(X_cam: np.ndarray, K: np.ndarray) -> np.ndarray:
    """Project camera-frame points to pixels.

    Args:
        X_cam: (N, 3) points in the camera optical frame (metres), z > 0 for visible points.
        K: (3, 3) intrinsics.

    Returns:
        (N, 2) float64 pixels (NaN-free only when z != 0).
    """
    X = np.asarray(X_cam, dtype=np.float64).reshape(-1, 3)
    uvw = X @ np.asarray(K, dtype=np.float64).T
    with np.errstate(divide="ignore", invalid="ignore"):
        return uvw[:, :2] / uvw[:, 2:3]


def backproject(xy: np.ndarray, depth: np.ndarray, K: np.ndarray) -> np.ndarray:
    """Lift pixels with known depth (z along the optical axis) to camera-frame points.

    Args:
        xy: (N, 2) pixels.
        depth: (N,) z in metres.
        K: (3, 3) intrinsics.

    Returns:
        (N, 3) float64 points in the camera optical frame.
    """
    xy = np.asarray(xy, dtype=np.float64).reshape(-1, 2)
    z = np.asarray(depth, dtype=np.float64).reshape(-1)
    ones = np.ones((xy.shape[0], 1))
    rays = np.concatenate([xy, ones], axis=1) @ np.linalg.inv(np.asarray(K, dtype=np.float64)).T
    return rays * z[:, None]


def sample_depth(depth: np.ndarray, xy: np.ndarray, max_rel_jump: float = 0.0) -> np.ndarray:
    """Nearest-pixel depth lookup with invalid (0/NaN/out-of-image) values returned as NaN.

    Args:
        depth: (H, W) depth in metres, 0 or NaN = invalid.
        xy: (N, 2) pixels (pixel-centre convention).
        max_rel_jump: when > 0, also reject pixels whose 3x3 neighbourhood spans a relative depth
            range above this (depth edges, where a match may land on either surface).

    Returns:
        (N,) float64 depth, NaN where invalid.
    """
    xy = np.asarray(xy, dtype=np.float64).reshape(-1, 2)
    h, w = depth.shape[:2]
    col = np.rint(xy[:, 0]).astype(np.int64)
    row = np.rint(xy[:, 1]).astype(np.int64)
    out = np.full(xy.shape[0], np.nan)
    ok = (col >= 0) & (col < w) & (row >= 0) & (row < h) & np.all(np.isfinite(xy), axis=1)
    d = depth[row[ok], col[ok]].astype(np.float64)
    d[~(d > 0)] = np.nan
    if max_rel_jump > 0 and d.size:
        dd = np.where(np.isfinite(depth) & (depth > 0), depth, np.nan).astype(np.float64)
        pad = np.pad(dd, 1, mode="edge")
        r, c = row[ok] + 1, col[ok] + 1
        neigh = np.stack([pad[r + i, c + j] for i in (-1, 0, 1) for j in (-1, 0, 1)], axis=1)
        with np.errstate(invalid="ignore"):
            span = np.fmax.reduce(neigh, axis=1) - np.fmin.reduce(neigh, axis=1)
        d[~(span <= max_rel_jump * d)] = np.nan
    out[ok] = d
    return out


def depth_to_points(depth: np.ndarray, K: np.ndarray,
                    step: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """Back-project a whole depth map (every ``step``-th pixel) to camera-frame points.

    Args:
        depth: (H, W) depth in metres, 0/NaN invalid.
        K: (3, 3) intrinsics of the depth image.
        step: pixel stride in both directions.

    Returns:
        ``(X_cam (M, 3) float64, xy (M, 2) float64)`` of the valid pixels.
    """
    h, w = depth.shape[:2]
    rows, cols = np.mgrid[0:h:step, 0:w:step]
    z = depth[rows, cols].astype(np.float64).reshape(-1)
    xy = np.stack([cols.reshape(-1), rows.reshape(-1)], axis=1).astype(np.float64)
    valid = np.isfinite(z) & (z > 0)
    return backproject(xy[valid], z[valid], K), xy[valid]
