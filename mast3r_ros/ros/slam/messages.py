"""Builders of the SLAM back end's messages: pure functions of the pose graph's values.

Frames: the graph estimates camera optical frames ``T_map_cam``; the path and the REP-105 output
are for the base, with the extrinsic ``T_base_cam`` of each keyframe (TF or the fallback
parameter): ``T_map_base = T_map_cam @ inv(T_base_cam)``. ``map -> odom`` needs no extrinsic:
``T_map_base @ inv(T_odom_base) = T_map_cam @ inv(T_odom_cam)`` of the same keyframe.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Optional

import numpy as np
from geometry_msgs.msg import Point, PoseStamped
from nav_msgs.msg import Path
from sensor_msgs.msg import PointCloud2
from std_msgs.msg import ColorRGBA, Header
from visualization_msgs.msg import Marker, MarkerArray

from mast3r_ros.core.geometry.se3 import invert_pose
from mast3r_ros.core.map.cloud import sparse_cloud
from mast3r_ros.core.slam import PoseGraphMapper
from mast3r_ros.core.tracking.stream import EdgeType
from mast3r_ros.msg import SlamStatus
from mast3r_ros.ros.common.conversions import (
    matrix_to_pose,
    matrix_to_transform,
    points_to_cloud,
    sec_to_stamp,
)

__all__ = ["optimized_camera_poses", "path_msg", "loop_markers", "cloud_msg", "status_msg"]


def optimized_camera_poses(mapper: PoseGraphMapper) -> tuple[list[int], np.ndarray]:
    """Ids (graph order) and (N, 4, 4) optimised ``T_map_cam`` of the estimated keyframes."""
    ids = [i for i in mapper.graph.ids if mapper.graph.is_estimated(i)]
    poses = np.stack([mapper.graph.pose(i) for i in ids]) if ids else np.zeros((0, 4, 4))
    return ids, poses


def path_msg(header: Header, mapper: PoseGraphMapper, ids: list[int], poses: np.ndarray,
             T_base_cam: dict[int, np.ndarray]) -> Path:
    """``nav_msgs/Path`` of the optimised base poses (``header``: map frame, newest stamp); each
    entry is stamped with its keyframe's stamp."""
    out = Path(header=header)
    for i, T in zip(ids, poses):
        B = T_base_cam.get(i, np.eye(4))
        h = Header(stamp=sec_to_stamp(mapper.map.record(i).stamp), frame_id=header.frame_id)
        out.poses.append(PoseStamped(header=h, pose=matrix_to_pose(T @ invert_pose(B))))
    return out


def loop_markers(header: Header, mapper: PoseGraphMapper, ids: list[int],
                 poses: np.ndarray) -> MarkerArray:
    """One line list joining the camera positions of every accepted loop's two keyframes."""
    out = MarkerArray()
    out.markers.append(Marker(header=header, action=Marker.DELETEALL))
    where = {i: T[:3, 3] for i, T in zip(ids, poses)}
    lines = Marker(header=header, ns="loops", id=0, type=Marker.LINE_LIST, action=Marker.ADD,
                   color=ColorRGBA(r=1.0, g=0.2, b=0.8, a=0.9))
    lines.pose.orientation.w = 1.0
    lines.scale.x = 0.02
    for e in mapper.graph.edges:
        if e.type is EdgeType.LOOP and e.from_id in where and e.to_id in where:
            lines.points += [Point(x=float(p[0]), y=float(p[1]), z=float(p[2]))
                             for p in (where[e.from_id], where[e.to_id])]
    if lines.points:
        out.markers.append(lines)
    return out


def cloud_msg(header: Header, mapper: PoseGraphMapper, max_points: int) -> PointCloud2:
    """Latched ``map_cloud``: at most ``max_points`` coloured points of the keyframes' depth,
    placed with the optimised poses (at most one keyframe per 64 points is read, so a map kept
    in the store on disk is not read whole)."""
    ids = [i for i in mapper.map.ids if mapper.graph.is_estimated(i)]
    step = max(1, -(-len(ids) // max(1, max_points // 64)))
    chosen = ids[::step]
    kfs = (dataclasses.replace(mapper.map.keyframe(i), T_map_cam=mapper.graph.pose(i))
           for i in chosen)
    pts, cols = sparse_cloud(kfs, len(chosen), max_points, 0)
    return points_to_cloud(pts, header, cols)


def status_msg(header: Header, state: str, reason: str, mapper: Optional[PoseGraphMapper],
               m2o: tuple[int, np.ndarray], **fields: object) -> SlamStatus:
    """``~/status`` of the back end; ``fields`` sets the counters."""
    msg = SlamStatus(header=header, state=state, reason=reason, last_optimization_ms=math.nan,
                     map_to_odom_keyframe=int(m2o[0]),
                     map_to_odom=matrix_to_transform(m2o[1]))
    if mapper is not None:
        s = mapper.status
        msg.nodes, msg.edges = int(s.nodes), int(s.edges)
        msg.loops_accepted, msg.loops_rejected = int(s.loops_accepted), int(s.loops_rejected)
        if s.last_optimization is not None:
            msg.last_optimization = s.last_optimization.kind
            msg.last_optimization_ms = float(s.last_optimization.seconds * 1e3)
    for name, value in fields.items():
        setattr(msg, name, value)
    return msg
