"""Conversions between the stream's conventions and GTSAM's, and the factors of the pose graph.

Conventions (see :mod:`mast3r_ros.core.tracking.stream`):

* a :class:`~mast3r_ros.core.tracking.stream.GraphEdge` carries ``T_from_to`` and a 6x6
  information in ROS order (x, y, z, rx, ry, rz) for a right perturbation in the ``to`` frame;
* GTSAM's ``Pose3`` tangent is (rx, ry, rz, x, y, z), also a right perturbation
  (``T.retract(xi) = T * Expmap(xi)``): the same matrix with its 3x3 blocks swapped.

Inside :mod:`mast3r_ros.core.slam` every tangent-space quantity is in GTSAM order; only the
public boundary (edges in, covariances out) uses ROS order.
"""

from __future__ import annotations

import gtsam
import numpy as np

from mast3r_ros.core.config import PoseGraphConfig
from mast3r_ros.core.errors import InputError
from mast3r_ros.core.tracking.stream import EdgeType, GraphEdge

__all__ = ["swap_blocks", "to_pose3", "from_pose3", "noise_model", "edge_factor", "node_key",
           "covariance_map_to_body", "relative_chi2"]

#: permutation between ROS order (x, y, z, rx, ry, rz) and GTSAM order (rx, ry, rz, x, y, z)
_SWAP = np.array([3, 4, 5, 0, 1, 2])


def swap_blocks(M: np.ndarray) -> np.ndarray:
    """Reorder a (6,) vector or (6, 6) matrix between ROS and GTSAM order (an involution)."""
    M = np.asarray(M, dtype=np.float64)
    if M.shape == (6,):
        return M[_SWAP]
    if M.shape == (6, 6):
        return M[np.ix_(_SWAP, _SWAP)]
    raise InputError(f"expected a (6,) vector or a (6, 6) matrix, got {M.shape}")


def node_key(node_id: int) -> int:
    """GTSAM key of a keyframe id (symbol 'x')."""
    return int(gtsam.symbol("x", int(node_id)))


def to_pose3(T: np.ndarray) -> gtsam.Pose3:
    """GTSAM pose of a (4, 4) rigid transform (the rotation is re-orthonormalised)."""
    T = np.asarray(T, dtype=np.float64)
    U, _, Vt = np.linalg.svd(T[:3, :3])
    R = U @ np.diag([1.0, 1.0, np.linalg.det(U @ Vt)]) @ Vt
    return gtsam.Pose3(gtsam.Rot3(R), T[:3, 3].copy())


def from_pose3(p: gtsam.Pose3) -> np.ndarray:
    """(4, 4) float64 matrix of a GTSAM pose."""
    return np.asarray(p.matrix(), dtype=np.float64)


def noise_model(information_gtsam: np.ndarray, cfg: PoseGraphConfig) -> gtsam.noiseModel.Base:
    """Gaussian noise of a (6, 6) GTSAM-order information, wrapped in the configured kernel."""
    gauss = gtsam.noiseModel.Gaussian.Information(np.asarray(information_gtsam, dtype=np.float64))
    if cfg.robust_kernel == "none":
        return gauss
    est = (gtsam.noiseModel.mEstimator.Cauchy.Create(cfg.kernel_width)
           if cfg.robust_kernel == "cauchy"
           else gtsam.noiseModel.mEstimator.Huber.Create(cfg.kernel_width))
    return gtsam.noiseModel.Robust.Create(est, gauss)


def edge_factor(edge: GraphEdge, cfg: PoseGraphConfig) -> gtsam.NonlinearFactor:
    """The GTSAM factor of an edge: a prior for ``PRIOR`` edges, else a between factor.

    A ``PRIOR`` edge (``from_id == to_id``) carries the absolute pose ``T_map_to`` in
    ``T_from_to``; its factor is not robust (a prior is trusted or not given).
    """
    info = swap_blocks(edge.information)
    if edge.type is EdgeType.PRIOR:
        return gtsam.PriorFactorPose3(node_key(edge.to_id), to_pose3(edge.T_from_to),
                                      gtsam.noiseModel.Gaussian.Information(info))
    return gtsam.BetweenFactorPose3(node_key(edge.from_id), node_key(edge.to_id),
                                    to_pose3(edge.T_from_to), noise_model(info, cfg))


def covariance_map_to_body(T_map_cam: np.ndarray, cov_map: np.ndarray) -> np.ndarray:
    """Covariance of a pose solver (map frame) as a right perturbation in the camera frame.

    The localizer's solvers report ``(dC, w)`` with ``C' = C + dC`` and ``R' = Exp(w) R`` in the
    map frame (:mod:`mast3r_ros.core.geometry.covariance`). To first order the same perturbation on
    the right is ``(R^T dC, R^T w)``, so the covariance is ``A cov A^T`` with
    ``A = blockdiag(R^T, R^T)``. Both are ROS order (x, y, z, rx, ry, rz).

    Args:
        T_map_cam: (4, 4) camera-to-map pose the covariance refers to.
        cov_map: (6, 6) map-frame covariance.

    Returns:
        (6, 6) covariance of ``T_map_cam @ Exp(delta)``, ROS order.
    """
    Rt = np.asarray(T_map_cam, dtype=np.float64)[:3, :3].T
    A = np.zeros((6, 6))
    A[:3, :3] = Rt
    A[3:, 3:] = Rt
    cov = A @ np.asarray(cov_map, dtype=np.float64) @ A.T
    return 0.5 * (cov + cov.T)


def relative_chi2(T_from: gtsam.Pose3, T_to: gtsam.Pose3, joint_cov: np.ndarray,
                  measured: gtsam.Pose3, measured_cov: np.ndarray) -> float:
    """Squared Mahalanobis distance of a relative-pose measurement from an estimate.

    The innovation is ``Log(measured^-1 * T_from^-1 * T_to)``; its covariance is the measurement's
    plus the estimate's relative-pose covariance ``J joint_cov J^T`` with
    ``J = [-Ad(rel^-1), I]`` (right perturbations of both poses). All GTSAM order.

    Args:
        T_from: estimate of the ``from`` pose.
        T_to: estimate of the ``to`` pose.
        joint_cov: (12, 12) joint marginal covariance of (from, to) (zeros: estimate exact).
        measured: the measured ``T_from_to``.
        measured_cov: (6, 6) covariance of the measurement.

    Returns:
        ``e^T S^-1 e`` (chi-square with 6 degrees of freedom under the hypothesis that the
        measurement agrees with the estimate).
    """
    rel = T_from.between(T_to)
    e = gtsam.Pose3.Logmap(measured.between(rel))
    J = np.hstack([-rel.inverse().AdjointMap(), np.eye(6)])
    S = np.asarray(measured_cov, dtype=np.float64) + J @ joint_cov @ J.T
    return float(e @ np.linalg.solve(0.5 * (S + S.T), e))
