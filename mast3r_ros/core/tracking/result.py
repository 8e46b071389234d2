"""What the tracker returns for every frame: :class:`TrackingState` and :class:`TrackResult`."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from typing import Optional

import numpy as np

from mast3r_ros.core.tracking.stream import GraphEdge, KeyframeEvent
from mast3r_ros.core.types import Timings

__all__ = ["TrackingState", "TrackResult"]

_NAN = float("nan")


class TrackingState(str, Enum):
    """``INIT -> TRACKING -> LOST -> TRACKING``; ``reset()`` goes back to ``INIT``."""

    INIT = "init"          # no keyframe yet (the next usable frame becomes the first one)
    TRACKING = "tracking"  # the frame has a pose
    LOST = "lost"          # no pose for this frame; relocalization is tried on every frame


@dataclass(frozen=True)
class TrackResult:
    """The tracker's answer for one frame (a value; "lost" is a state, never an exception).

    Poses are (4, 4) camera-to-parent (OpenCV optical camera frame, metres); covariances are
    (6, 6), ROS order (x, y, z, rx, ry, rz), m^2 / rad^2 (conventions in
    :mod:`mast3r_ros.core.tracking.uncertainty`).

    Attributes:
        state: state after this frame.
        reason: "ok", or why the frame has no pose (or was not processed).
        stamp: the frame's stamp (s).
        T_track_cam: pose in the tracker's keyframe frame (the first keyframe, or the pose given
            to ``reset_to_pose``); relocalization restores it. None without a pose.
        T_odom_cam: the continuous odometry pose: equal to ``T_track_cam`` until the first
            relocalization, it never jumps (a relocalization only adds a ``relocalization``
            edge). None without a pose.
        covariance: world-axes covariance of ``T_track_cam`` in the track frame, propagated along
            the keyframe chain (grows with distance travelled).
        odom_covariance: the same uncertainty shown in the odom frame's axes.
        is_keyframe: this frame became a keyframe.
        keyframe_id: the keyframe this frame's pose was measured from (-1 without a pose); the
            frame's own id when it became a keyframe by relocalization or initialization.
        num_matches: 2D-3D correspondences of the frame-to-keyframe match.
        num_inliers: PnP inliers.
        match_fraction: inliers / the keyframe's reference count (what the keyframe and LOST
            rules test).
        T_kf_cam: (4, 4) pose relative to ``keyframe_id``.
        kf_information: (6, 6) information of ``T_kf_cam``, right perturbation in this camera's
            frame (:class:`GraphEdge` conventions).
        motion: (4, 4) ``T_prev_cam``, the motion since the previous frame with a pose in the
            same chain (None after a relocalization or a lost frame).
        motion_covariance: (6, 6) right covariance of ``motion`` (for twist covariance and the
            relative-pose NEES).
        relocalized: the pose came from relocalization against the window (a jump of
            ``T_track_cam`` that ``T_odom_cam`` does not show).
        keyframes: keyframes created while processing this frame (this frame, or the previous
            frame promoted because this one tripped the keyframe rule).
        edges: edges created while processing this frame.
        dropped_keyframes: ids that left the tracking window (already handed on in the stream).
        timings: seconds per stage.
    """

    state: TrackingState
    reason: str = "ok"
    stamp: float = 0.0
    T_track_cam: Optional[np.ndarray] = None
    T_odom_cam: Optional[np.ndarray] = None
    covariance: Optional[np.ndarray] = None
    odom_covariance: Optional[np.ndarray] = None
    is_keyframe: bool = False
    keyframe_id: int = -1
    num_matches: int = 0
    num_inliers: int = 0
    match_fraction: float = _NAN
    T_kf_cam: Optional[np.ndarray] = None
    kf_information: Optional[np.ndarray] = None
    motion: Optional[np.ndarray] = None
    motion_covariance: Optional[np.ndarray] = None
    relocalized: bool = False
    keyframes: tuple[KeyframeEvent, ...] = ()
    edges: tuple[GraphEdge, ...] = ()
    dropped_keyframes: tuple[int, ...] = ()
    timings: Timings = field(default_factory=Timings)

    @property
    def has_pose(self) -> bool:
        """True when the frame has a pose (state TRACKING)."""
        return self.state is TrackingState.TRACKING and self.T_track_cam is not None
