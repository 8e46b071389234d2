"""SLAM front end: frame-to-keyframe tracking and the keyframe / edge stream for a back end."""

from mast3r_ros.core.tracking.result import TrackingState, TrackResult
from mast3r_ros.core.tracking.stream import EdgeType, GraphEdge, KeyframeEvent
from mast3r_ros.core.tracking.tracker import Tracker

__all__ = ["EdgeType", "GraphEdge", "KeyframeEvent", "TrackingState", "TrackResult", "Tracker"]
