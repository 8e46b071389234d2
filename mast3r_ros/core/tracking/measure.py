"""One frame-to-keyframe measurement: match -> 2D-3D with the keyframe's 3D -> PnP + RANSAC + LM.

It reuses the localizer's stages (the backend's ``match``, :func:`gather_correspondences`,
:func:`solve_pnp`); what it adds is the pose relative to the keyframe and its right covariance
under the tracker's :class:`~mast3r_ros.core.tracking.uncertainty.NoiseModel`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np

from mast3r_ros.core.backends.base import MatcherBackend
from mast3r_ros.core.config import MatchingConfig, PoseConfig
from mast3r_ros.core.geometry.se3 import invert_pose
from mast3r_ros.core.map.keyframe import Keyframe
from mast3r_ros.core.pose import gather_correspondences, solve_pnp
from mast3r_ros.core.tracking.uncertainty import NoiseModel, world_to_right
from mast3r_ros.core.types import Encoding, KeyframeEncoding, QueryGeometry, StageTimer

__all__ = ["Measurement", "measure", "depth_image"]


@dataclass(frozen=True)
class Measurement:
    """Pose of a frame relative to one keyframe (a value; failures carry a reason).

    Attributes:
        success: PnP passed its gates (inliers, reprojection error) and the pose is observable.
        reason: "ok" or why not.
        keyframe_id: the reference keyframe.
        T_kf_cam: (4, 4) camera-to-keyframe pose, or None.
        T_track_cam: (4, 4) the same pose in the track frame (``keyframe.T_map_cam @ T_kf_cam``).
        covariance: (6, 6) right covariance of ``T_kf_cam`` (scaled PnP covariance + the
            noise floor of the motion from the keyframe), or None.
        pnp_covariance: (6, 6) its scaled PnP part alone (what two measurements from one
            keyframe do not share), or None.
        num_matches: 2D-3D correspondences.
        num_inliers: PnP inliers.
        geometry: the frame's predicted geometry (MASt3R, when requested), else None.
        K: (3, 3) intrinsics used (given or estimated), or None.
    """

    success: bool
    reason: str
    keyframe_id: int
    T_kf_cam: Optional[np.ndarray] = None
    T_track_cam: Optional[np.ndarray] = None
    covariance: Optional[np.ndarray] = None
    pnp_covariance: Optional[np.ndarray] = None
    num_matches: int = 0
    num_inliers: int = 0
    geometry: Optional[QueryGeometry] = None
    K: Optional[np.ndarray] = None


def measure(backend: MatcherBackend, keyframe: Keyframe, keyframe_encoding: Encoding,
            query: Encoding, rgb: np.ndarray, K: Optional[np.ndarray], *,
            matching: MatchingConfig, pose: PoseConfig, noise: NoiseModel, geometry: bool,
            timer: StageTimer) -> Measurement:
    """Match a frame against one keyframe and solve its pose from the keyframe's 3D points.

    Args:
        backend: the matcher (one decoder pass for MASt3R, the keyframe's encoding is cached).
        keyframe: the reference keyframe (with depth or pointmap), pose in the track frame.
        keyframe_encoding: its encoding.
        query: the frame's encoding.
        rgb: (H, W, 3) uint8 frame image (coarse-to-fine).
        K: (3, 3) frame intrinsics, or None to use the backend's estimate.
        matching: matching settings.
        pose: PnP settings and gates.
        noise: turns the PnP covariance into the measurement covariance.
        geometry: also predict the frame's geometry (its depth, when it may become a keyframe).
        timer: accumulates the stage timings.
    """
    ref = KeyframeEncoding(keyframe.id, keyframe_encoding, lambda: keyframe.rgb)
    matched = backend.match(query, [ref], matching, geometry=geometry, query_image=rgb)
    timer.add(matched.timings)
    geo = matched.geometry
    if K is None and geo is not None:
        K = geo.K
    base = Measurement(False, "", keyframe.id, geometry=geo, K=K)
    if K is None:
        return _fail(base, f"no intrinsics given and backend '{backend.name}' cannot estimate "
                           "them; provide CameraInfo")
    with timer.stage("lift"):
        corr = gather_correspondences([keyframe], matched.pairs)
    with timer.stage("pose"):
        est = solve_pnp(corr, np.asarray(K, dtype=np.float64), pose)
    if est.T_map_cam is None or not est.success:
        return _fail(base, est.reason, est.num_matches, est.num_inliers)
    if est.covariance is None:
        return _fail(base, "pose not observable from the inliers", est.num_matches,
                     est.num_inliers)
    T_kf_cam = invert_pose(keyframe.T_map_cam) @ est.T_map_cam
    pnp = noise.scale * world_to_right(est.T_map_cam, est.covariance)
    return Measurement(True, "ok", keyframe.id, T_kf_cam, est.T_map_cam,
                       pnp + noise.floor(T_kf_cam), pnp, est.num_matches, est.num_inliers, geo, K)


def _fail(base: Measurement, reason: str, matches: int = 0, inliers: int = 0) -> Measurement:
    return Measurement(False, reason, base.keyframe_id, num_matches=matches, num_inliers=inliers,
                       geometry=base.geometry, K=base.K)


def depth_image(geometry: QueryGeometry, height: int, width: int) -> np.ndarray:
    """(H, W) float32 metric depth of every pixel from a predicted geometry (0 = unknown)."""
    rows, cols = np.mgrid[0:height, 0:width]
    xy = np.stack([cols.reshape(-1), rows.reshape(-1)], axis=1).astype(np.float64)
    z = geometry.depth_at(xy).reshape(height, width)
    z = np.where(np.isfinite(z) & (z > 0), z, 0.0)
    return z.astype(np.float32)
