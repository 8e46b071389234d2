"""Value types passed between the stages of the pipeline.

Conventions (stated once, used everywhere):

* Poses are 4x4 float64 homogeneous matrices ``T_a_b`` that map points from frame ``b`` to frame ``a``
  (``X_a = T_a_b @ X_b``). ``T_map_cam`` is a camera-to-map pose. Camera frames are OpenCV optical
  frames (x right, y down, z forward), as in ROS ``*_optical_frame``.
* ``K`` is a 3x3 float64 pinhole matrix in pixels.
* Pixel coordinates ``xy`` are (N, 2) float arrays (x = column, y = row) with the **pixel-centre**
  convention: the centre of the top-left pixel is (0, 0) (OpenCV's convention). See
  :mod:`mast3r_ros.core.geometry.camera`.
* Points ``X_*`` are (N, 3) float arrays in metres in the frame named by the suffix.
* Times are seconds (float) from the image stamp.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

import numpy as np

__all__ = ["ImageSized", "Frame", "Matches", "LocalizationResult"]


class ImageSized:
    """Mixin for value types holding an ``rgb`` (H, W, 3) image: its size in pixels."""

    rgb: np.ndarray

    @property
    def height(self) -> int:
        """H, rows of ``rgb``."""
        return int(self.rgb.shape[0])

    @property
    def width(self) -> int:
        """W, columns of ``rgb``."""
        return int(self.rgb.shape[1])


@dataclass
class Frame(ImageSized):
    """One camera image as the core sees it.

    Attributes:
        rgb: (H, W, 3) uint8 RGB image.
        K: (3, 3) float64 intrinsics of ``rgb`` in pixels, or None when unknown.
        stamp: capture time in seconds (ROS stamp as float), 0 when unknown.
        frame_id: camera optical frame name.
        depth: optional (H, W) float32 depth in metres (0 or NaN = invalid), same size as ``rgb``.
        T_map_cam_prior: optional (4, 4) pose prior (e.g. from ``initialpose``) to narrow retrieval.
    """

    rgb: np.ndarray
    K: Optional[np.ndarray] = None
    stamp: float = 0.0
    frame_id: str = "camera"
    depth: Optional[np.ndarray] = None
    T_map_cam_prior: Optional[np.ndarray] = None


@dataclass
class Matches:
    """2D-2D correspondences between a query image and one reference (keyframe) image.

    Attributes:
        xy_query: (N, 2) float64 pixels in the query's original image.
        xy_ref: (N, 2) float64 pixels in the reference's original image.
        score: (N,) float64 match confidence (higher is better).
        ref_id: keyframe id of the reference image.
    """

    xy_query: np.ndarray
    xy_ref: np.ndarray
    score: np.ndarray
    ref_id: int = -1

    def __len__(self) -> int:
        return int(self.xy_query.shape[0])


@dataclass
class LocalizationResult:
    """Outcome of localizing one frame. Never raised: ``success=False`` carries a ``reason``.

    Attributes:
        success: True when the pose passed every gate.
        reason: short human-readable reason ("ok" on success).
        T_map_cam: (4, 4) camera-to-map pose, or None.
        covariance: (6, 6) covariance of the pose in the map frame, order (x, y, z, rx, ry, rz)
            (m^2 and rad^2, rotation as a small-angle perturbation), as in ROS
            ``PoseWithCovariance``; None when unavailable.
        num_matches: number of 2D-3D (or 2D-2D) correspondences fed to the solver.
        num_inliers: RANSAC / refinement inliers.
        reprojection_error: median reprojection error of the inliers in pixels.
        inlier_points_map: (M, 3) float64 map-frame points of the inliers.
        inlier_xy_query: (M, 2) float64 query pixels of the inliers.
        keyframe_ids: ids of the retrieved keyframes, best first.
        retrieval_scores: similarity of each retrieved keyframe.
        timings: seconds per stage (``preprocess``, ``encode``, ``retrieval``, ``decode``, ``matching``,
            ``pose``, ``total``).
        method: solver used ("pnp", "essential", ...).
        backend: matcher backend ("mast3r", "sift").
    """

    success: bool
    reason: str
    T_map_cam: Optional[np.ndarray] = None
    covariance: Optional[np.ndarray] = None
    num_matches: int = 0
    num_inliers: int = 0
    reprojection_error: float = float("nan")
    inlier_points_map: np.ndarray = field(default_factory=lambda: np.zeros((0, 3)))
    inlier_xy_query: np.ndarray = field(default_factory=lambda: np.zeros((0, 2)))
    keyframe_ids: list[int] = field(default_factory=list)
    retrieval_scores: list[float] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)
    method: str = ""
    backend: str = ""
