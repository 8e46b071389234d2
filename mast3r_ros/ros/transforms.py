"""Frame bookkeeping of the localizer (pure numpy; no rclpy, testable on its own).

REP-105: ``map -> odom -> base_link``. Odometry owns ``odom -> base``; a localizer publishes the
correction ``map -> odom`` such that ``T_map_base = T_map_odom @ T_odom_base`` equals its estimate.
Transforms ``T_a_b`` map points from frame b to frame a (see :mod:`mast3r_ros.core.types`).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
from scipy.spatial.transform import Rotation

from mast3r_ros.core.errors import InputError

__all__ = ["compute_map_to_odom", "base_pose_from_camera", "camera_prior_from_base",
           "xyzquat_to_matrix", "nearest_in_time"]


def _check_T(T: np.ndarray, name: str) -> np.ndarray:
    T = np.asarray(T, dtype=np.float64)
    if T.shape != (4, 4) or not np.all(np.isfinite(T)):
        raise InputError(f"{name} must be a finite 4x4 matrix, got shape {T.shape}")
    return T


def _inv(T: np.ndarray) -> np.ndarray:
    Ti = np.eye(4)
    Ti[:3, :3] = T[:3, :3].T
    Ti[:3, 3] = -T[:3, :3].T @ T[:3, 3]
    return Ti


def compute_map_to_odom(T_map_base: np.ndarray, T_odom_base: np.ndarray) -> np.ndarray:
    """The REP-105 correction ``T_map_odom = T_map_base @ inv(T_odom_base)``.

    Args:
        T_map_base: (4, 4) base pose in the map frame (the localizer's estimate).
        T_odom_base: (4, 4) base pose in the odom frame at the same time (from odometry).

    Returns:
        (4, 4) float64 ``T_map_odom``.

    Raises:
        InputError: a matrix is not a finite 4x4.
    """
    return _check_T(T_map_base, "T_map_base") @ _inv(_check_T(T_odom_base, "T_odom_base"))


def base_pose_from_camera(T_map_cam: np.ndarray, T_base_cam: np.ndarray) -> np.ndarray:
    """Base pose in the map from the camera pose and mounting: ``T_map_cam @ inv(T_base_cam)``."""
    return _check_T(T_map_cam, "T_map_cam") @ _inv(_check_T(T_base_cam, "T_base_cam"))


def camera_prior_from_base(T_map_base: np.ndarray, T_base_cam: np.ndarray) -> np.ndarray:
    """Camera pose prior from a base pose (e.g. ``initialpose``): ``T_map_base @ T_base_cam``."""
    return _check_T(T_map_base, "T_map_base") @ _check_T(T_base_cam, "T_base_cam")


def xyzquat_to_matrix(values: Sequence[float]) -> np.ndarray:
    """``[x, y, z, qx, qy, qz, qw]`` (m, unit-normalised quaternion) -> (4, 4) transform.

    Raises:
        InputError: not 7 finite numbers or a zero quaternion.
    """
    v = np.asarray(values, dtype=np.float64).reshape(-1)
    if v.size != 7 or not np.all(np.isfinite(v)):
        raise InputError(f"expected 7 finite numbers x y z qx qy qz qw, got {list(values)}")
    q = v[3:]
    n = np.linalg.norm(q)
    if n < 1e-9:
        raise InputError("quaternion is zero; identity is 0 0 0 1")
    T = np.eye(4)
    T[:3, :3] = Rotation.from_quat(q / n).as_matrix()
    T[:3, 3] = v[:3]
    return T


def nearest_in_time(stamps: Sequence[float], t: float, max_dt: float) -> int:
    """Index of the stamp nearest to ``t`` within ``max_dt`` seconds, or -1."""
    if len(stamps) == 0:
        return -1
    d = np.abs(np.asarray(stamps, dtype=np.float64) - t)
    i = int(np.argmin(d))
    return i if d[i] <= max_dt else -1
