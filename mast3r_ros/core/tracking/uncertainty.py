"""Pose uncertainty of the tracker: conventions, conversions and propagation along the chain.

Two parametrisations of a 6x6 pose covariance, both in ROS order (x, y, z, rx, ry, rz), metres
and radians:

* **right** (the tracker's internal one, and :class:`~mast3r_ros.core.tracking.stream.GraphEdge`'s):
  ``T_true = T @ exp(delta)``, ``delta = (rho, phi)`` in the camera's own frame.
* **world** (ROS ``PoseWithCovariance`` and :class:`~mast3r_ros.core.types.LocalizationResult`,
  see :mod:`mast3r_ros.core.geometry.covariance`): the camera centre moves by ``dp`` along the
  parent frame's axes and the rotation is ``Exp(dtheta) @ R`` about the parent's fixed axes.
  To first order ``dp = R rho`` and ``dtheta = R phi``.

A right covariance does not change when the pose is left-multiplied by a fixed transform, so the
covariance of ``T_track_cam`` and of ``T_odom_cam = T_odom_track @ T_track_cam`` is the same right
covariance, shown in each parent frame with its own rotation.

Composition ``T_a_c = T_a_b @ T_b_c`` with independent errors:
``cov_c = Ad(inv(T_b_c)) cov_b Ad(inv(T_b_c))^T + cov_bc`` (first order).

Noise model of one measurement of a motion ``T`` (:class:`NoiseModel`): the PnP covariance
``sigma^2 (J^T J)^-1`` times ``scale`` (pixel errors are spatially correlated, so it is
over-confident), plus an error the residuals cannot show, per axis
``position + fraction * |t|`` (m) and ``rotation + fraction * angle`` (rad), like a wheel-odometry
motion model: depth-to-colour registration, unsynchronised capture and calibration errors grow
with the motion measured. For the motion between two frames measured from the same keyframe, the
part common to both measurements cancels and the floor of the step itself applies.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mast3r_ros.core.config import TrackingConfig
from mast3r_ros.core.geometry.se3 import invert_pose, so3_log

__all__ = ["adjoint", "world_to_right", "right_to_world", "compose_covariance",
           "information_of", "NoiseModel"]


def _hat(v: np.ndarray) -> np.ndarray:
    return np.array([[0.0, -v[2], v[1]], [v[2], 0.0, -v[0]], [-v[1], v[0], 0.0]])


def adjoint(T: np.ndarray) -> np.ndarray:
    """(6, 6) adjoint of a (4, 4) pose, ``(rho, phi)`` order: ``T exp(x) T^-1 = exp(Ad x)``."""
    R, t = T[:3, :3], T[:3, 3]
    A = np.zeros((6, 6))
    A[:3, :3] = R
    A[:3, 3:] = _hat(t) @ R
    A[3:, 3:] = R
    return A


def _rotate(cov: np.ndarray, R: np.ndarray) -> np.ndarray:
    B = np.zeros((6, 6))
    B[:3, :3] = R
    B[3:, 3:] = R
    out = B @ cov @ B.T
    return 0.5 * (out + out.T)


def world_to_right(T_parent_cam: np.ndarray, cov_world: np.ndarray) -> np.ndarray:
    """Right covariance of ``T_parent_cam`` from its world-axes covariance (both (6, 6))."""
    return _rotate(cov_world, T_parent_cam[:3, :3].T)


def right_to_world(T_parent_cam: np.ndarray, cov_right: np.ndarray) -> np.ndarray:
    """World-axes covariance (ROS ``PoseWithCovariance``) of ``T_parent_cam`` from its right one."""
    return _rotate(cov_right, T_parent_cam[:3, :3])


def compose_covariance(T_b_c: np.ndarray, cov_b: np.ndarray, cov_bc: np.ndarray) -> np.ndarray:
    """Right covariance of ``T_a_c = T_a_b @ T_b_c`` (independent errors, first order).

    Also the covariance of the motion ``T_b_c = inv(T_a_b) @ T_a_c`` between two frames measured
    from the same reference ``a`` (the reference's own error cancels; ``cov_b`` is then the right
    covariance of ``T_a_b``'s measurement and ``cov_bc`` that of ``T_a_c``).

    Args:
        T_b_c: (4, 4) the relative pose.
        cov_b: (6, 6) right covariance of ``T_a_b``.
        cov_bc: (6, 6) right covariance of ``T_b_c``.
    """
    A = adjoint(invert_pose(T_b_c))
    out = A @ cov_b @ A.T + cov_bc
    return 0.5 * (out + out.T)


def information_of(cov: np.ndarray, min_eig: float = 1e-12) -> np.ndarray:
    """(6, 6) symmetric positive-definite inverse of a covariance (eigenvalues floored).

    Args:
        cov: (6, 6) covariance (m^2, rad^2).
        min_eig: smallest eigenvalue kept, so a degenerate direction gets a large but finite
            information instead of an infinite one.
    """
    w, V = np.linalg.eigh(0.5 * (cov + cov.T))
    info = (V / np.maximum(w, min_eig)) @ V.T
    return 0.5 * (info + info.T)


@dataclass(frozen=True)
class NoiseModel:
    """How a PnP covariance becomes a measurement covariance (see the module docstring).

    Attributes:
        scale: variance factor on the PnP covariance.
        fraction: std per axis as a fraction of the measured motion.
        position: constant position std per axis (m).
        rotation: constant rotation std per axis (rad).
    """

    scale: float = 1.0
    fraction: float = 0.0
    position: float = 0.0
    rotation: float = 0.0

    @classmethod
    def from_config(cls, cfg: TrackingConfig) -> NoiseModel:
        """The model of a tracking configuration."""
        return cls(cfg.covariance_scale, cfg.motion_noise, cfg.position_noise,
                   float(np.radians(cfg.rotation_noise_deg)))

    def floor(self, T_motion: np.ndarray) -> np.ndarray:
        """(6, 6) diagonal covariance of the unmodelled error of a measured motion (4, 4)."""
        t = float(np.linalg.norm(T_motion[:3, 3]))
        angle = float(np.linalg.norm(so3_log(T_motion[:3, :3])))
        return np.diag([(self.position + self.fraction * t) ** 2] * 3
                       + [(self.rotation + self.fraction * angle) ** 2] * 3)
