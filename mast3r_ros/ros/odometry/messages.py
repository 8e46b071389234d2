"""Builders of the odometry node's messages: pure functions of core values (no node state).

Frames: the tracker estimates the camera optical frame; the node publishes the base, with the
extrinsic ``T_base_cam`` (TF or the fallback parameter): ``T_odom_base = T_odom_cam @
inv(T_base_cam)``. Pose covariances are moved to the base with
:func:`~mast3r_ros.ros.common.transforms.covariance_to_base`; the twist (the motion since the
previous frame over the stamp difference, in the base frame) carries the motion covariance moved
with the extrinsic's adjoint, divided by ``dt^2``. The keyframe stream's messages (``edge_msg``,
``keyframe_msg``) live in :mod:`mast3r_ros.ros.common.stream_msgs` with their inverses.
"""

from __future__ import annotations

import math
from typing import Optional

import numpy as np
from geometry_msgs.msg import PoseStamped
from nav_msgs.msg import Odometry
from std_msgs.msg import Header

from mast3r_ros.core.geometry.se3 import invert_pose, so3_log
from mast3r_ros.core.tracking import TrackResult
from mast3r_ros.core.tracking.uncertainty import adjoint
from mast3r_ros.core.types import Timings
from mast3r_ros.msg import GraphEdge as GraphEdgeMsg
from mast3r_ros.msg import Keyframe, KeyframeGraph, TrackingStatus
from mast3r_ros.ros.common.conversions import covariance_to_ros, matrix_to_pose
from mast3r_ros.ros.common.stream_msgs import NULL_COVARIANCE, edge_msg, keyframe_msg
from mast3r_ros.ros.common.transforms import covariance_to_base

__all__ = ["NULL_COVARIANCE", "odometry_msg", "null_odometry_msg", "edge_msg", "keyframe_msg",
           "graph_msg", "status_msg", "path_pose"]

_NAN = float("nan")


def _twist(msg: Odometry, result: TrackResult, T_base_cam: np.ndarray, dt: float) -> None:
    """Fill the twist from the result's motion (left zero with a huge covariance without one)."""
    if result.motion is None or result.motion_covariance is None or not dt > 0:
        msg.twist.covariance = [float(v) for v in np.diag([NULL_COVARIANCE] * 6).reshape(-1)]
        return
    M = T_base_cam @ result.motion @ invert_pose(T_base_cam)  # base motion, previous -> current
    v, w = M[:3, 3] / dt, so3_log(M[:3, :3]) / dt
    msg.twist.twist.linear.x, msg.twist.twist.linear.y, msg.twist.twist.linear.z = map(float, v)
    msg.twist.twist.angular.x, msg.twist.twist.angular.y, msg.twist.twist.angular.z = \
        map(float, w)
    A = adjoint(T_base_cam)
    msg.twist.covariance = covariance_to_ros(A @ result.motion_covariance @ A.T / dt**2,
                                             (NULL_COVARIANCE, NULL_COVARIANCE))


def odometry_msg(header: Header, base_frame: str, result: TrackResult, T_base_cam: np.ndarray,
                 dt: float) -> tuple[Odometry, np.ndarray]:
    """``nav_msgs/Odometry`` of the base in ``header.frame_id`` (odom) and ``T_odom_base``.

    Args:
        header: odom frame, image stamp.
        base_frame: child frame.
        result: a tracked frame (``has_pose``).
        T_base_cam: (4, 4) camera mounting.
        dt: seconds since the previous frame with a pose (twist).
    """
    assert result.T_odom_cam is not None
    T_odom_base = result.T_odom_cam @ invert_pose(T_base_cam)
    msg = Odometry(header=header, child_frame_id=base_frame)
    msg.pose.pose = matrix_to_pose(T_odom_base)
    cov = (None if result.odom_covariance is None
           else covariance_to_base(result.odom_covariance, result.T_odom_cam, T_base_cam))
    msg.pose.covariance = covariance_to_ros(cov, (NULL_COVARIANCE, NULL_COVARIANCE))
    _twist(msg, result, T_base_cam, dt)
    return msg, T_odom_base


def null_odometry_msg(header: Header, base_frame: str) -> Odometry:
    """rtabmap's null odometry: zero orientation quaternion, covariances 9999 (while lost)."""
    msg = Odometry(header=header, child_frame_id=base_frame)
    msg.pose.pose.orientation.w = 0.0
    big = [float(v) for v in np.diag([NULL_COVARIANCE] * 6).reshape(-1)]
    msg.pose.covariance, msg.twist.covariance = big, list(big)
    return msg


def graph_msg(header: Header, keyframes: list[Keyframe], edges: list[GraphEdgeMsg]
              ) -> KeyframeGraph:
    """The latched graph of the keyframes handed on so far and their edges."""
    return KeyframeGraph(header=header, ids=[int(k.id) for k in keyframes],
                         poses=[k.pose for k in keyframes],
                         stamps=[k.header.stamp for k in keyframes], edges=list(edges))


def _stage(t: Timings, *names: str) -> float:
    vals = [getattr(t, n) for n in names if not math.isnan(getattr(t, n))]
    return float(sum(vals)) if vals else _NAN


def status_msg(header: Header, state: str, reason: str, result: Optional[TrackResult],
               **fields: object) -> TrackingStatus:
    """``~/tracking_status`` of one frame (``result`` None: not processed); ``fields`` sets the
    node-side fields (counters, latencies, depth and extrinsic notes)."""
    msg = TrackingStatus(header=header, state=state, reason=reason, keyframe_id=-1,
                         match_fraction=_NAN)
    for name in ("encode", "decode", "matching", "retrieval", "pose", "core_total"):
        setattr(msg, f"latency_{name}", _NAN)
    if result is not None:
        t = result.timings
        msg.num_matches, msg.num_inliers = int(result.num_matches), int(result.num_inliers)
        msg.match_fraction = float(result.match_fraction)
        msg.keyframe_id = int(result.keyframe_id)
        msg.is_keyframe, msg.relocalized = bool(result.is_keyframe), bool(result.relocalized)
        msg.latency_encode = _stage(t, "preprocess", "encode")
        msg.latency_decode = _stage(t, "decode")
        msg.latency_matching = _stage(t, "matching", "coarse_to_fine")
        msg.latency_retrieval = _stage(t, "retrieval")
        msg.latency_pose = _stage(t, "lift", "pose")
        msg.latency_core_total = float(t.total)
    for name, value in fields.items():
        setattr(msg, name, value)
    return msg


def path_pose(header: Header, T_odom_base: np.ndarray) -> PoseStamped:
    """One ``~/path`` entry."""
    return PoseStamped(header=header, pose=matrix_to_pose(T_odom_base))
