"""Rigid transforms: construction, inversion, SO(3) exp/log and pose errors.

Poses are (4, 4) float64 ``T_a_b`` mapping frame-b points to frame a (``X_a = R @ X_b + t``).
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "make_pose",
    "invert_pose",
    "transform_points",
    "so3_exp",
    "so3_log",
    "rotation_angle_deg",
    "orthonormalize_pose",
    "pose_errors",
    "random_rotation",
]


def make_pose(R: np.ndarray, t: np.ndarray) -> np.ndarray:
    """Build a (4, 4) pose from a (3, 3) rotation and a (3,) translation."""
    T = np.eye(4)
    T[:3, :3] = R
    T[:3, 3] = np.asarray(t, dtype=np.float64).reshape(3)
    return T


def invert_pose(T: np.ndarray) -> np.ndarray:
    """Inverse of a rigid (4, 4) transform (``T_b_a`` from ``T_a_b``)."""
    R = T[:3, :3]
    return make_pose(R.T, -R.T @ T[:3, 3])


def transform_points(T: np.ndarray, X: np.ndarray) -> np.ndarray:
    """Apply ``T_a_b`` to (N, 3) frame-b points, giving (N, 3) frame-a points."""
    X = np.asarray(X, dtype=np.float64).reshape(-1, 3)
    return X @ T[:3, :3].T + T[:3, 3]


def _hat(w: np.ndarray) -> np.ndarray:
    return np.array([[0.0, -w[2], w[1]], [w[2], 0.0, -w[0]], [-w[1], w[0], 0.0]])


def so3_exp(w: np.ndarray) -> np.ndarray:
    """Rotation matrix of the rotation vector ``w`` (3,) in radians (Rodrigues)."""
    w = np.asarray(w, dtype=np.float64).reshape(3)
    theta = float(np.linalg.norm(w))
    W = _hat(w)
    if theta < 1e-8:
        return np.eye(3) + W + 0.5 * W @ W
    return np.eye(3) + np.sin(theta) / theta * W + (1 - np.cos(theta)) / theta**2 * W @ W


def so3_log(R: np.ndarray) -> np.ndarray:
    """Rotation vector (3,) in radians of a rotation matrix (inverse of :func:`so3_exp`)."""
    cos = np.clip((np.trace(R) - 1.0) / 2.0, -1.0, 1.0)
    theta = float(np.arccos(cos))
    v = np.array([R[2, 1] - R[1, 2], R[0, 2] - R[2, 0], R[1, 0] - R[0, 1]])
    if theta < 1e-6:
        return 0.5 * v
    if np.pi - theta < 1e-4:
        # Near pi: axis from the symmetric part.
        M = (R + np.eye(3)) / 2.0
        axis = M[:, int(np.argmax(np.diag(M)))]
        axis = axis / np.linalg.norm(axis)
        if np.dot(axis, v) < 0:
            axis = -axis
        return axis * theta
    return theta / (2.0 * np.sin(theta)) * v


def rotation_angle_deg(R_a: np.ndarray, R_b: np.ndarray) -> float:
    """Angle in degrees of ``R_a^T R_b`` (the geodesic distance between two rotations)."""
    cos = (np.trace(R_a.T @ R_b) - 1.0) / 2.0
    return float(np.degrees(np.arccos(np.clip(cos, -1.0, 1.0))))


def orthonormalize_pose(T: np.ndarray) -> np.ndarray:
    """The nearest rigid transform to a 4x4 matrix (SVD projection of its rotation block).

    Ground-truth files are not always exact: the 7-Scenes rotations have singular values of
    ~0.99995 (det ~0.99985), and :func:`rotation_angle_deg` of such a matrix with itself is ~1
    degree, which would add about a degree to every rotation error measured against it.
    """
    U, _, Vt = np.linalg.svd(np.asarray(T, dtype=np.float64)[:3, :3])
    out = np.array(T, dtype=np.float64)
    out[:3, :3] = U @ np.diag([1.0, 1.0, np.linalg.det(U @ Vt)]) @ Vt
    return out


def pose_errors(T_est: np.ndarray, T_gt: np.ndarray) -> tuple[float, float]:
    """Position error (metres) and rotation error (degrees) of two camera-to-world poses.

    Position error is the distance of the camera centres ``T[:3, 3]``.
    """
    dt = float(np.linalg.norm(T_est[:3, 3] - T_gt[:3, 3]))
    return dt, rotation_angle_deg(T_est[:3, :3], T_gt[:3, :3])


def random_rotation(rng: np.random.Generator, max_angle_deg: float = 180.0) -> np.ndarray:
    """Random rotation with angle uniform in [0, max_angle_deg] about a random axis (for tests)."""
    axis = rng.normal(size=3)
    axis /= np.linalg.norm(axis)
    return so3_exp(axis * np.radians(rng.uniform(0.0, max_angle_deg)))
