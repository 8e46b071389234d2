"""Per-frame bookkeeping of the tracker: the work on the frame being processed
(:class:`FrameWork`, which builds the :class:`TrackResult`) and the last frame with a pose
(:class:`Tracked`, which can still become a keyframe)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Optional

import numpy as np

from mast3r_ros.core.config import LocalizerConfig, TrackingConfig
from mast3r_ros.core.map.keyframe import Keyframe
from mast3r_ros.core.tracking.measure import Measurement, depth_image
from mast3r_ros.core.tracking.result import TrackingState, TrackResult
from mast3r_ros.core.tracking.stream import EdgeType, GraphEdge, KeyframeEvent
from mast3r_ros.core.tracking.uncertainty import information_of, right_to_world
from mast3r_ros.core.tracking.window import WindowEntry
from mast3r_ros.core.types import Encoding, Frame, QueryGeometry, StageTimer

__all__ = ["Tracked", "FrameWork", "relocalizer_config"]


def relocalizer_config(config: TrackingConfig, pipeline: LocalizerConfig) -> LocalizerConfig:
    """The localizer settings of relocalization: top-k and inlier gate of ``config.lost``."""
    return dataclasses.replace(
        pipeline,
        retrieval=dataclasses.replace(pipeline.retrieval, top_k=config.lost.relocalization_top_k),
        pose=dataclasses.replace(pipeline.pose, min_inliers=config.lost.min_inliers))


@dataclass(frozen=True)
class Tracked:
    """A frame with a pose, kept until the next one (it may still be promoted to keyframe).

    Attributes:
        rgb: (H, W, 3) uint8 image.
        K: (3, 3) intrinsics (given or estimated), or None.
        stamp: seconds.
        encoding: the backend's encoding.
        T_track_cam: (4, 4) pose in the track frame.
        covariance: (6, 6) right covariance of ``T_track_cam`` (along the chain).
        T_odom_cam: (4, 4) odometry pose.
        depth: (H, W) float32 depth in metres (sensor), or None.
        geometry: MASt3R's predicted geometry of the frame (its depth when it has no sensor
            depth), or None.
        measurement: how the pose was measured (None for the first keyframe).
        own_keyframe: the frame's keyframe id once it is a keyframe, else -1.
    """

    rgb: np.ndarray
    K: Optional[np.ndarray]
    stamp: float
    encoding: Encoding
    T_track_cam: np.ndarray
    covariance: np.ndarray
    T_odom_cam: np.ndarray
    depth: Optional[np.ndarray] = None
    geometry: Optional[QueryGeometry] = None
    measurement: Optional[Measurement] = None
    own_keyframe: int = -1

    @property
    def is_keyframe(self) -> bool:
        """True once the frame is a keyframe."""
        return self.own_keyframe >= 0

    @property
    def keyframe_id(self) -> int:
        """The keyframe the pose was measured from (-1 for the first keyframe)."""
        return self.measurement.keyframe_id if self.measurement is not None else -1

    @property
    def has_3d(self) -> bool:
        """True when the frame can become a keyframe (depth, or a predicted depth)."""
        return self.K is not None and (self.depth is not None or self.geometry is not None)

    def keyframe(self, keyframe_id: int) -> Keyframe:
        """The frame as a :class:`Keyframe` (predicted depth rendered to an image if needed)."""
        depth = self.depth
        if depth is None and self.geometry is not None:
            depth = depth_image(self.geometry, *self.rgb.shape[:2])
        assert self.K is not None and depth is not None
        return Keyframe(keyframe_id, self.rgb, self.K, self.T_track_cam, self.stamp, depth)

    def window_entry(self, keyframe_id: int) -> WindowEntry:
        """The frame as a new window entry."""
        return WindowEntry(self.keyframe(keyframe_id), self.encoding, self.covariance,
                           self.T_odom_cam)

    def edge(self, keyframe_id: int, edge_type: EdgeType) -> Optional[GraphEdge]:
        """The edge from the measuring keyframe to this frame as keyframe ``keyframe_id``."""
        m = self.measurement
        if m is None or m.T_kf_cam is None or m.covariance is None:
            return None
        return GraphEdge(m.keyframe_id, keyframe_id, edge_type, m.T_kf_cam,
                         information_of(m.covariance), self.stamp)


@dataclass
class FrameWork:
    """What processing one frame produced so far, and its :class:`TrackResult`.

    Attributes:
        frame: the frame (with its depth).
        timer: stage timings of the frame.
        query: its encoding, once computed.
        track_reason: why tracking against the keyframe failed ("" when it did not).
        keyframes: keyframes created for this frame.
        edges: edges created for this frame.
        dropped: keyframe ids that left the window.
    """

    frame: Frame
    timer: StageTimer = field(default_factory=StageTimer)
    query: Optional[Encoding] = None
    track_reason: str = ""
    keyframes: list[KeyframeEvent] = field(default_factory=list)
    edges: list[GraphEdge] = field(default_factory=list)
    dropped: list[int] = field(default_factory=list)

    def tracked(self, K: Optional[np.ndarray], T: np.ndarray, covariance: np.ndarray,
                T_odom_track: np.ndarray, measurement: Optional[Measurement] = None,
                depth: Optional[np.ndarray] = None) -> Tracked:
        """This frame with a pose (sensor depth from the frame unless ``depth`` is given)."""
        assert self.query is not None
        return Tracked(self.frame.rgb, K, float(self.frame.stamp), self.query, T, covariance,
                       T_odom_track @ T, depth if depth is not None else self.frame.depth,
                       measurement.geometry if measurement is not None else None, measurement)

    def add_keyframe(self, event: KeyframeEvent, edge: Optional[GraphEdge],
                     dropped: list[int]) -> None:
        """Record a new keyframe, its edge and the ids it pushed out of the window."""
        self.keyframes.append(event)
        if edge is not None:
            self.edges.append(edge)
        self.dropped.extend(dropped)

    def result(self, state: TrackingState, reason: str) -> TrackResult:
        """A result without a pose."""
        return TrackResult(state, reason, float(self.frame.stamp), keyframes=tuple(self.keyframes),
                           edges=tuple(self.edges), dropped_keyframes=tuple(self.dropped),
                           timings=self.timer.timings())

    def pose_result(self, tracked: Tracked, keyframe_id: int, *, fraction: float = 1.0,
                    motion: Optional[tuple[np.ndarray, np.ndarray]] = None,
                    relocalized: bool = False) -> TrackResult:
        """The result of a frame with a pose."""
        m = tracked.measurement
        return TrackResult(
            TrackingState.TRACKING, "ok", tracked.stamp, tracked.T_track_cam, tracked.T_odom_cam,
            right_to_world(tracked.T_track_cam, tracked.covariance),
            right_to_world(tracked.T_odom_cam, tracked.covariance),
            is_keyframe=tracked.is_keyframe, keyframe_id=keyframe_id,
            num_matches=m.num_matches if m else 0, num_inliers=m.num_inliers if m else 0,
            match_fraction=fraction,
            T_kf_cam=m.T_kf_cam if m and m.T_kf_cam is not None else np.eye(4),
            kf_information=(information_of(m.covariance) if m and m.covariance is not None
                            else None),
            motion=motion[0] if motion else None, motion_covariance=motion[1] if motion else None,
            relocalized=relocalized, keyframes=tuple(self.keyframes), edges=tuple(self.edges),
            dropped_keyframes=tuple(self.dropped), timings=self.timer.timings())
