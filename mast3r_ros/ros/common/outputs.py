"""Builders of the localizer's output messages (status, pose, markers, diagnostics).

Pure functions of numpy data and message types, no node state, so that they are unit-testable and
the node stays a thin orchestration layer.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Optional

import numpy as np
from builtin_interfaces.msg import Time
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from geometry_msgs.msg import PoseWithCovarianceStamped, TransformStamped
from std_msgs.msg import ColorRGBA, Header
from visualization_msgs.msg import Marker, MarkerArray

from mast3r_ros.core.types import LocalizationResult, Timings
from mast3r_ros.msg import LocalizationStatus
from mast3r_ros.ros.common.conversions import covariance_to_ros, matrix_to_pose, matrix_to_transform

__all__ = ["FrameCounters", "FrameTimes", "NodeCounters", "status_msg", "pose_msg",
           "transform_msg", "keyframe_markers", "diagnostics_msg"]

#: rotates a marker's x axis (arrow direction) onto the camera's optical z axis
_R_X_TO_Z = np.array([[0.0, 0.0, -1.0], [0.0, 1.0, 0.0], [1.0, 0.0, 0.0]])
_NAN = float("nan")


@dataclass
class FrameTimes:
    """Node-side latency of one frame, seconds (NaN when unknown)."""

    transport: float = _NAN   # image stamp -> image callback (needs synchronised clocks)
    queue: float = _NAN       # image callback -> start of processing
    conversion: float = _NAN  # message -> Frame
    core: float = _NAN        # Localizer.localize
    publish: float = _NAN     # building + publishing outputs
    total: float = _NAN       # image stamp -> outputs published


@dataclass
class FrameCounters:
    """Frame counters every camera-driven node keeps (subclasses add theirs; the mapper starts
    ``last_state`` / ``last_reason`` at "unconfigured")."""

    received: int = 0   # image messages taken while active
    dropped: int = 0    # overwritten in the slot before processing (newest frame wins)
    processed: int = 0
    rejected: int = 0
    errors: int = 0     # unexpected exceptions (not bad input)
    last_state: str = "inactive"
    last_reason: str = "no frame yet"


@dataclass
class NodeCounters(FrameCounters):
    """Frame counters of the localizer since activation."""

    localized: int = 0
    last_overhead: list[float] = field(default_factory=list)


def _stage(timings: Timings, *names: str) -> float:
    vals = [getattr(timings, n) for n in names if not math.isnan(getattr(timings, n))]
    return float(sum(vals)) if vals else _NAN


def status_msg(header: Header, state: str, reason: str, counters: NodeCounters,
               times: FrameTimes, result: Optional[LocalizationResult] = None,
               backend: str = "") -> LocalizationStatus:
    """The ``localization_status`` message of one frame (``result`` None: frame not processed)."""
    msg = LocalizationStatus(header=header, state=state, reason=reason)
    msg.frames_dropped, msg.frames_processed = counters.dropped, counters.processed
    msg.latency_queue = float(times.queue)
    msg.latency_conversion = float(times.conversion)
    msg.latency_total = float(times.total)
    msg.backend = backend
    for name in ("preprocess", "encode", "retrieval", "decode", "matching", "pose", "core_total"):
        setattr(msg, f"latency_{name}", _NAN)
    msg.reprojection_error = _NAN
    if result is None:
        return msg
    t = result.timings
    msg.success = bool(result.success)
    msg.num_matches, msg.num_inliers = int(result.num_matches), int(result.num_inliers)
    msg.reprojection_error = float(result.reprojection_error)
    msg.method, msg.backend = result.method, result.backend or backend
    msg.keyframe_ids = [int(i) for i in result.keyframe_ids]
    msg.retrieval_scores = [float(s) for s in result.retrieval_scores]
    msg.latency_preprocess = _stage(t, "preprocess")
    msg.latency_encode = _stage(t, "encode")
    msg.latency_retrieval = _stage(t, "retrieval")
    msg.latency_decode = _stage(t, "decode")
    msg.latency_matching = _stage(t, "matching", "coarse_to_fine")
    msg.latency_pose = _stage(t, "lift", "pose")
    msg.latency_core_total = float(times.core)
    return msg


def pose_msg(header: Header, T_map_base: np.ndarray, covariance: Optional[np.ndarray],
             fallback_std: tuple[float, float]) -> PoseWithCovarianceStamped:
    """``PoseWithCovarianceStamped`` of the base in ``header.frame_id`` (the map frame)."""
    msg = PoseWithCovarianceStamped(header=header)
    msg.pose.pose = matrix_to_pose(T_map_base)
    msg.pose.covariance = covariance_to_ros(covariance, fallback_std)
    return msg


def transform_msg(stamp: Time, parent: str, child: str,
                  T_parent_child: np.ndarray) -> TransformStamped:
    """``TransformStamped`` parent -> child (``T_parent_child`` maps child points to parent)."""
    msg = TransformStamped()
    msg.header.stamp, msg.header.frame_id, msg.child_frame_id = stamp, parent, child
    msg.transform = matrix_to_transform(T_parent_child)
    return msg


def keyframe_markers(header: Header, poses: np.ndarray, ids: list[int],
                     scale: float = 0.15) -> MarkerArray:
    """One arrow per keyframe (along the optical axis) plus a line strip of the trajectory.

    Args:
        header: map frame and stamp.
        poses: (N, 4, 4) camera-to-map keyframe poses.
        ids: N keyframe ids (marker ids).
        scale: arrow length in metres.
    """
    out = MarkerArray()
    out.markers.append(Marker(header=header, action=Marker.DELETEALL))
    colour = ColorRGBA(r=0.1, g=0.6, b=1.0, a=0.9)
    for T, kid in zip(poses, ids):
        T_marker = np.array(T, dtype=np.float64, copy=True)
        T_marker[:3, :3] = T[:3, :3] @ _R_X_TO_Z
        m = Marker(header=header, ns="keyframes", id=int(kid), type=Marker.ARROW,
                   action=Marker.ADD, pose=matrix_to_pose(T_marker), color=colour)
        m.scale.x, m.scale.y, m.scale.z = scale, scale * 0.15, scale * 0.15
        out.markers.append(m)
    if len(poses) > 1:
        line = Marker(header=header, ns="trajectory", id=0, type=Marker.LINE_STRIP,
                      action=Marker.ADD, color=ColorRGBA(r=0.9, g=0.9, b=0.2, a=0.8))
        line.pose.orientation.w = 1.0
        line.scale.x = scale * 0.1
        line.points = [matrix_to_pose(T).position for T in poses]
        out.markers.append(line)
    return out


def diagnostics_msg(stamp: Time, name: str, hardware_id: str, level: bytes, message: str,
                    values: dict[str, object]) -> DiagnosticArray:
    """A ``DiagnosticArray`` with one status (levels: DiagnosticStatus.OK/WARN/ERROR/STALE)."""
    status = DiagnosticStatus(level=level, name=name, message=message, hardware_id=hardware_id)
    status.values = [KeyValue(key=str(k), value=str(v)) for k, v in values.items()]
    return DiagnosticArray(header=Header(stamp=stamp), status=[status])
