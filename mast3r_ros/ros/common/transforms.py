"""Frame bookkeeping of the nodes (pure numpy; no rclpy, testable on its own).

REP-105: ``map -> odom -> base_link -> camera_optical_frame``. Odometry owns ``odom -> base``; the
robot description owns ``base -> camera``; a localizer publishes the correction ``map -> odom``
such that ``T_map_base = T_map_odom @ T_odom_base`` equals its estimate. Transforms ``T_a_b`` map
points from frame b to frame a (see :mod:`mast3r_ros.core.types`).

Covariance convention (that of the core's solver, :mod:`mast3r_ros.core.geometry.covariance`, and
of ROS ``PoseWithCovariance``): a 6-vector ``(dx, dy, dz, rx, ry, rz)`` perturbs a pose
``T_map_x = (R, p)`` to ``(Exp(r) @ R, p + d)``: position in the map frame, rotation about the
map's fixed axes through the frame's own origin.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
from scipy.spatial.transform import Rotation

from mast3r_ros.core.errors import InputError
from mast3r_ros.core.geometry.se3 import invert_pose

__all__ = ["compute_map_to_odom", "base_pose_from_camera", "camera_prior_from_base",
           "xyzquat_to_matrix", "matrix_to_xyzquat", "covariance_to_base", "skew",
           "interpolate_pose"]


def _check_T(T: np.ndarray, name: str) -> np.ndarray:
    T = np.asarray(T, dtype=np.float64)
    if T.shape != (4, 4) or not np.all(np.isfinite(T)):
        raise InputError(f"{name} must be a finite 4x4 matrix, got shape {T.shape}")
    return T


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
    return _check_T(T_map_base, "T_map_base") @ invert_pose(_check_T(T_odom_base, "T_odom_base"))


def base_pose_from_camera(T_map_cam: np.ndarray, T_base_cam: np.ndarray) -> np.ndarray:
    """Base pose in the map from the camera pose and mounting: ``T_map_cam @ inv(T_base_cam)``."""
    return _check_T(T_map_cam, "T_map_cam") @ invert_pose(_check_T(T_base_cam, "T_base_cam"))


def camera_prior_from_base(T_map_base: np.ndarray, T_base_cam: np.ndarray) -> np.ndarray:
    """Camera pose prior from a base pose (e.g. ``initialpose``): ``T_map_base @ T_base_cam``."""
    return _check_T(T_map_base, "T_map_base") @ _check_T(T_base_cam, "T_base_cam")


def skew(v: np.ndarray) -> np.ndarray:
    """(3, 3) cross-product matrix ``[v]x`` of a 3-vector (``skew(a) @ b == cross(a, b)``)."""
    x, y, z = (float(c) for c in np.asarray(v, dtype=np.float64).reshape(3))
    return np.array([[0.0, -z, y], [z, 0.0, -x], [-y, x, 0.0]])


def covariance_to_base(cov_cam: np.ndarray, T_map_cam: np.ndarray,
                       T_base_cam: np.ndarray) -> np.ndarray:
    """Move a 6x6 pose covariance from the camera to the base it is rigidly mounted on.

    In the convention of the module docstring, the camera perturbation ``(d, r)`` moves the base
    (origin at ``p_base = p_cam + l`` with the map-frame lever arm ``l = R_map_cam @ t_cam_base``)
    by ``d + r x l = d - [l]x r`` and rotates it by the same ``r``. So ``cov_base = A cov_cam A^T``
    with ``A = [[I, -[l]x], [0, I]]``: the SE(3) adjoint of the pure translation ``l`` between the
    two reference points, for perturbations expressed in the (fixed) map axes.

    Args:
        cov_cam: (6, 6) camera covariance (m^2, rad^2), order (x, y, z, rx, ry, rz).
        T_map_cam: (4, 4) camera pose in the map frame.
        T_base_cam: (4, 4) camera pose in the base frame (the extrinsic).

    Returns:
        (6, 6) symmetric base covariance, same order and units.

    Raises:
        InputError: a matrix is not finite or of the wrong shape.
    """
    cov = np.asarray(cov_cam, dtype=np.float64)
    if cov.shape != (6, 6) or not np.all(np.isfinite(cov)):
        raise InputError(f"covariance must be a finite 6x6 matrix, got shape {cov.shape}")
    T_map_cam = _check_T(T_map_cam, "T_map_cam")
    T_cam_base = invert_pose(_check_T(T_base_cam, "T_base_cam"))
    lever = T_map_cam[:3, :3] @ T_cam_base[:3, 3]
    A = np.eye(6)
    A[:3, 3:] = -skew(lever)
    out = A @ cov @ A.T
    return 0.5 * (out + out.T)


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


def matrix_to_xyzquat(T: np.ndarray) -> np.ndarray:
    """(4, 4) transform -> (7,) ``[x, y, z, qx, qy, qz, qw]`` with ``qw >= 0``."""
    q = Rotation.from_matrix(np.asarray(T, dtype=np.float64)[:3, :3]).as_quat()
    if q[3] < 0:
        q = -q
    return np.concatenate([np.asarray(T, dtype=np.float64)[:3, 3], q])


def interpolate_pose(xyzq_a: np.ndarray, xyzq_b: np.ndarray, ratio: float) -> np.ndarray:
    """Interpolate two ``[x, y, z, qx, qy, qz, qw]`` poses as tf2 does.

    Translation linearly, rotation by spherical linear interpolation along the shorter arc.

    Args:
        xyzq_a: (7,) pose at ratio 0.
        xyzq_b: (7,) pose at ratio 1.
        ratio: in [0, 1] (not clamped).

    Returns:
        (7,) interpolated pose with a unit quaternion.
    """
    a, b = np.asarray(xyzq_a, dtype=np.float64), np.asarray(xyzq_b, dtype=np.float64)
    out = np.empty(7)
    out[:3] = a[:3] + ratio * (b[:3] - a[:3])
    qa, qb = a[3:] / np.linalg.norm(a[3:]), b[3:] / np.linalg.norm(b[3:])
    dot = float(np.dot(qa, qb))
    if dot < 0.0:
        qb, dot = -qb, -dot
    if dot > 0.9995:  # nearly parallel: normalised lerp is exact to rounding
        q = qa + ratio * (qb - qa)
    else:
        theta = np.arccos(min(dot, 1.0))
        q = (np.sin((1.0 - ratio) * theta) * qa + np.sin(ratio * theta) * qb) / np.sin(theta)
    out[3:] = q / np.linalg.norm(q)
    return out
