"""Pose covariance from the Gauss-Newton normal equations of the reprojection error.

Parametrisation (the one of ROS ``geometry_msgs/PoseWithCovariance``, expressed in the map frame):
a perturbation ``delta = (dx, dy, dz, rx, ry, rz)`` of a camera-to-map pose ``T_map_cam = (R, C)``
moves the camera centre to ``C + (dx, dy, dz)`` and rotates the camera about the map's fixed axes,
``R' = Exp((rx, ry, rz)) @ R`` (small angles, radians). The covariance is
``sigma^2 (J^T J)^-1`` with J the (2N, 6) Jacobian of the pixel residuals w.r.t. ``delta`` and
``sigma^2`` the residual variance ``sum(r^2) / (2N - 6)`` of the inliers.

A query pixel that appears in several correspondences (matched to several keyframes, each giving
its own 3D point) is one image measurement, not several: each of its k rows gets weight 1/k in
``J^T W J`` and in ``sigma^2``, so pooling keyframes does not make the pose look more certain.
"""

from __future__ import annotations

from typing import Optional

import numpy as np

from mast3r_ros.core.geometry.camera import project

__all__ = ["reprojection_residuals", "pose_jacobian", "pose_covariance"]


def reprojection_residuals(T_map_cam: np.ndarray, X_map: np.ndarray, xy: np.ndarray,
                           K: np.ndarray) -> np.ndarray:
    """Pixel residuals ``project(X) - xy`` as an (N, 2) array for a camera-to-map pose."""
    R, C = T_map_cam[:3, :3], T_map_cam[:3, 3]
    X_cam = (np.asarray(X_map, dtype=np.float64) - C) @ R
    return project(X_cam, K) - np.asarray(xy, dtype=np.float64)


def pose_jacobian(T_map_cam: np.ndarray, X_map: np.ndarray, K: np.ndarray) -> np.ndarray:
    """Analytic (2N, 6) Jacobian of the projections w.r.t. the map-frame perturbation above."""
    R, C = T_map_cam[:3, :3], T_map_cam[:3, 3]
    D = np.asarray(X_map, dtype=np.float64) - C          # (N, 3) map-frame offsets
    Y = D @ R                                            # (N, 3) camera-frame points
    x, y, z = Y[:, 0], Y[:, 1], Y[:, 2]
    fx, s, fy = K[0, 0], K[0, 1], K[1, 1]
    n = Y.shape[0]
    dpi = np.zeros((n, 2, 3))
    dpi[:, 0, 0] = fx / z
    dpi[:, 0, 1] = s / z
    dpi[:, 0, 2] = -(fx * x + s * y) / z**2
    dpi[:, 1, 1] = fy / z
    dpi[:, 1, 2] = -fy * y / z**2
    # dY/dp = -R^T ; dY/dtheta = R^T [D]x
    dY_dp = np.broadcast_to(-R.T, (n, 3, 3))
    Dx = np.zeros((n, 3, 3))
    Dx[:, 0, 1], Dx[:, 0, 2] = -D[:, 2], D[:, 1]
    Dx[:, 1, 0], Dx[:, 1, 2] = D[:, 2], -D[:, 0]
    Dx[:, 2, 0], Dx[:, 2, 1] = -D[:, 1], D[:, 0]
    dY_dth = np.einsum("ij,njk->nik", R.T, Dx)
    J = np.concatenate([dpi @ dY_dp, dpi @ dY_dth], axis=2)  # (N, 2, 6)
    return J.reshape(2 * n, 6)


def pose_covariance(T_map_cam: np.ndarray, X_map: np.ndarray, xy: np.ndarray, K: np.ndarray,
                    min_sigma_px: float = 0.0) -> Optional[np.ndarray]:
    """(6, 6) covariance of a refined pose (m^2, rad^2), or None when it is not observable.

    Args:
        T_map_cam: (4, 4) refined camera-to-map pose.
        X_map: (N, 3) inlier points in the map frame.
        xy: (N, 2) their observed pixels (repeated pixels are weighted down, see above).
        K: (3, 3) intrinsics.
        min_sigma_px: floor of the residual standard deviation in pixels (0 = none).
    """
    xy = np.asarray(xy, dtype=np.float64)
    n = int(xy.shape[0])
    if n < 4:
        return None
    _, inverse, counts = np.unique(xy, axis=0, return_inverse=True, return_counts=True)
    w = 1.0 / counts[inverse.reshape(-1)]                 # (N,) per-row weights
    n_eff = float(w.sum())                                # distinct image measurements
    if n_eff < 4:
        return None
    r = reprojection_residuals(T_map_cam, X_map, xy, K)
    sigma2 = max(float(np.sum(w[:, None] * r**2)) / max(2 * n_eff - 6, 1.0), min_sigma_px**2)
    J = pose_jacobian(T_map_cam, X_map, K)
    JtJ = J.T @ (np.repeat(w, 2)[:, None] * J)
    if not np.all(np.isfinite(JtJ)) or np.linalg.cond(JtJ) > 1e14:
        return None
    cov = sigma2 * np.linalg.inv(JtJ)
    return 0.5 * (cov + cov.T)
