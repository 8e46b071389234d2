"""Relative pose from 2D-2D correspondences (essential matrix + recoverPose) and triangulation.

Direction convention (the one of the data READMEs): the result maps camera-0 points to camera 1,
``X_1 = R @ X_0 + t`` (``T_0to1`` = ``T_cam1_cam0``), with ``t`` a unit vector (scale unknown).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Optional

import cv2
import numpy as np

from mast3r_ros.core.geometry.camera import intrinsics_problem

__all__ = ["RelativePoseResult", "estimate_relative_pose", "triangulate_depths"]

logger = logging.getLogger(__name__)


@dataclass
class RelativePoseResult:
    """Outcome of :func:`estimate_relative_pose`.

    Attributes:
        success: a pose was found.
        reason: "ok" or why not.
        R: (3, 3) rotation cam0 -> cam1.
        t: (3,) unit translation cam0 -> cam1 (sign fixed by the cheirality test).
        inliers: (N,) bool mask of the correspondences kept by RANSAC and cheirality.
    """

    success: bool
    reason: str
    R: Optional[np.ndarray] = None
    t: Optional[np.ndarray] = None
    inliers: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=bool))

    @property
    def T_1_0(self) -> Optional[np.ndarray]:
        """(4, 4) ``T_cam1_cam0`` with the unit translation, or None."""
        if self.R is None:
            return None
        T = np.eye(4)
        T[:3, :3], T[:3, 3] = self.R, self.t
        return T


def _normalize(xy: np.ndarray, K: np.ndarray) -> np.ndarray:
    ones = np.ones((xy.shape[0], 1))
    return (np.concatenate([xy, ones], axis=1) @ np.linalg.inv(K).T)[:, :2]


def estimate_relative_pose(xy0: np.ndarray, xy1: np.ndarray, K0: np.ndarray, K1: np.ndarray, *,
                           threshold_px: float = 1.0, confidence: float = 0.99999,
                           min_inliers: int = 5) -> RelativePoseResult:
    """Essential matrix on K-normalised points (SuperGlue protocol), then recoverPose.

    Args:
        xy0: (N, 2) pixels in image 0.
        xy1: (N, 2) pixels in image 1.
        K0: (3, 3) intrinsics of image 0.
        K1: (3, 3) intrinsics of image 1.
        threshold_px: RANSAC threshold in pixels (divided by the mean focal length).
        confidence: RANSAC confidence.
        min_inliers: fewer cheirality inliers than this -> failure.

    Returns:
        :class:`RelativePoseResult` (the candidate E with the most cheirality inliers).
    """
    xy0 = np.asarray(xy0, dtype=np.float64).reshape(-1, 2)
    xy1 = np.asarray(xy1, dtype=np.float64).reshape(-1, 2)
    n = xy0.shape[0]
    for K in (K0, K1):
        problem = intrinsics_problem(K)
        if problem is not None:
            return RelativePoseResult(False, f"invalid intrinsics: {problem}",
                                      inliers=np.zeros(n, dtype=bool))
    if n < 5:
        return RelativePoseResult(False, f"fewer than 5 correspondences ({n})",
                                  inliers=np.zeros(n, dtype=bool))
    n0, n1 = _normalize(xy0, K0), _normalize(xy1, K1)
    f_mean = np.mean([K0[0, 0], K0[1, 1], K1[0, 0], K1[1, 1]])
    try:
        E, mask = cv2.findEssentialMat(n0, n1, np.eye(3), method=cv2.RANSAC, prob=confidence,
                                       threshold=threshold_px / f_mean)
    except cv2.error as exc:
        logger.debug("findEssentialMat failed: %s", exc)
        E, mask = None, None
    if E is None or mask is None:
        return RelativePoseResult(False, "essential matrix RANSAC failed",
                                  inliers=np.zeros(n, dtype=bool))
    best: Optional[tuple[int, np.ndarray, np.ndarray, np.ndarray]] = None
    for Ei in np.split(E, len(E) // 3):
        # with distanceThresh OpenCV returns (count, R, t, mask); its stubs claim 5 values
        count, R, t, m = cv2.recoverPose(Ei, n0, n1, np.eye(3), 1e9,  # type: ignore[misc]
                                         mask=mask.copy())
        if best is None or count > best[0]:
            best = (int(count), R, t.reshape(3), m.reshape(-1) > 0)
    assert best is not None
    count, R, t, inl = best
    if count < min_inliers:
        return RelativePoseResult(False, f"too few essential-matrix inliers ({count})",
                                  inliers=np.zeros(n, dtype=bool))
    return RelativePoseResult(True, "ok", R, t / np.linalg.norm(t), inl)


def triangulate_depths(xy0: np.ndarray, xy1: np.ndarray, K0: np.ndarray, K1: np.ndarray,
                       T_1_0: np.ndarray) -> np.ndarray:
    """Depths (z in camera 0) of correspondences triangulated with a given relative pose.

    Args:
        xy0: (N, 2) pixels in image 0.
        xy1: (N, 2) pixels in image 1.
        K0: (3, 3) intrinsics of image 0.
        K1: (3, 3) intrinsics of image 1.
        T_1_0: (4, 4) pose cam0 -> cam1 (its translation sets the unit of the depths).

    Returns:
        (N,) float64 depths in the unit of ``T_1_0``'s translation (NaN where not finite).
    """
    P0 = K0 @ np.eye(4)[:3]
    P1 = K1 @ T_1_0[:3]
    Xh = cv2.triangulatePoints(P0, P1, np.asarray(xy0, dtype=np.float64).T,
                               np.asarray(xy1, dtype=np.float64).T)
    with np.errstate(divide="ignore", invalid="ignore"):
        z = Xh[2] / Xh[3]
    z[~np.isfinite(z)] = np.nan
    return z
