"""Pose solvers of the localizer, as pure functions of typed values.

* :func:`solve_pnp`: absolute pose from pooled 2D-3D correspondences (PnP + robust estimator +
  LM refinement), covariance ``sigma^2 (J^T J)^-1`` of the refinement in the MAP frame, order
  (x, y, z, rx, ry, rz) as in ROS ``PoseWithCovariance``, times ``PoseConfig.covariance_scale``.
* :func:`solve_essential`: the map has no 3D: relative pose to the best-matched keyframe from the
  essential matrix, metric scale from the query's predicted (or measured) depth. No covariance.
"""

from __future__ import annotations

from typing import Callable, Optional

import numpy as np

from mast3r_ros.core.config import PoseConfig
from mast3r_ros.core.geometry.essential import estimate_relative_pose, triangulate_depths
from mast3r_ros.core.geometry.pnp import estimate_pose_pnp
from mast3r_ros.core.geometry.scale import estimate_scale
from mast3r_ros.core.map.keyframe import Keyframe
from mast3r_ros.core.pose.correspondences import Correspondences
from mast3r_ros.core.types import PairMatches, PoseEstimate

__all__ = ["PoseEstimate", "solve_pnp", "solve_essential"]


def solve_pnp(corr: Correspondences, K: np.ndarray, cfg: PoseConfig) -> PoseEstimate:
    """Camera-to-map pose from 2D-3D correspondences.

    Args:
        corr: pooled correspondences.
        K: (3, 3) intrinsics of the original query image.
        cfg: solver settings and success gates.
    """
    res = estimate_pose_pnp(corr.xy, corr.X_map, K, reproj_threshold=cfg.ransac_reproj_threshold,
                            confidence=cfg.ransac_confidence, max_iters=cfg.ransac_max_iters,
                            min_inliers=cfg.min_inliers,
                            max_median_reproj_error=cfg.max_median_reproj_error,
                            refine=cfg.refine, method=cfg.pnp_method)
    inl = res.inliers if res.inliers.size == len(corr) else np.zeros(len(corr), dtype=bool)
    cov = res.covariance * cfg.covariance_scale if res.covariance is not None else None
    return PoseEstimate(res.success, res.reason, res.T_map_cam, cov, len(corr), int(inl.sum()),
                        res.reprojection_error, corr.X_map[inl], corr.xy[inl], "pnp")


def solve_essential(kf: Keyframe, m: PairMatches, K: np.ndarray, cfg: PoseConfig,
                    metric_depth: Callable[[np.ndarray], Optional[np.ndarray]]) -> PoseEstimate:
    """Pose from the essential matrix with one keyframe, metric scale from query depths.

    Args:
        kf: the keyframe (pose and K; no 3D needed).
        m: matches of the query with ``kf``.
        K: (3, 3) intrinsics of the original query image.
        cfg: success gates (``min_inliers``).
        metric_depth: (N, 2) query pixels -> (N,) metric depths (NaN unknown), or None when the
            query has no metric depth at all.
    """
    rel = estimate_relative_pose(m.xy_query, m.xy_ref, K, kf.K, threshold_px=1.0)
    if not rel.success or rel.T_1_0 is None:
        return PoseEstimate(False, f"essential matrix: {rel.reason}", num_matches=len(m),
                            method="essential")
    xq, xr = m.xy_query[rel.inliers], m.xy_ref[rel.inliers]
    metric = metric_depth(xq)
    if metric is None:
        return PoseEstimate(False, "keyframes have no depth and the query no metric depth: scale "
                            "unknown", num_matches=len(m), method="essential")
    T_kf_q = rel.T_1_0
    s = estimate_scale(metric, triangulate_depths(xq, xr, K, kf.K, T_kf_q))
    if not np.isfinite(s):
        return PoseEstimate(False, "could not estimate the metric scale", num_matches=len(m),
                            method="essential")
    T_kf_q[:3, 3] *= s
    n_in = int(rel.inliers.sum())
    ok = n_in >= cfg.min_inliers
    return PoseEstimate(ok, "ok" if ok else f"too few inliers ({n_in} < {cfg.min_inliers})",
                        kf.T_map_cam @ T_kf_q, None, len(m), n_in, inlier_xy_query=xq,
                        method="essential")
