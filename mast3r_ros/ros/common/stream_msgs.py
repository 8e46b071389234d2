"""The SLAM keyframe / edge stream on the wire: core values <-> ``mast3r_ros/Keyframe`` and
``mast3r_ros/GraphEdge`` messages, both directions in one place (the odometry node writes them,
the mapper in SLAM mode reads them).

Conventions are those of :mod:`mast3r_ros.core.tracking.stream` (``T_from_to``, 6x6 information
in ROS order for a right perturbation) and of ``msg/Keyframe.msg``: ``pose`` is ``T_track_cam``
(what the back end optimises), ``odom_pose`` is ``T_odom_cam`` at creation, both camera optical
frames; ``image`` is rgb8, ``depth`` 32FC1 metres registered to it (empty when none), ``k`` the
3x3 intrinsics row-major.

Reading validates everything before a value exists: a non-finite pose, an information that is not
symmetric positive definite, an image that does not decode, a depth of another size raise
:class:`~mast3r_ros.core.errors.InputError` (or its :class:`~mast3r_ros.core.errors.ImageError`)
with the keyframe / edge named, so that a receiver can refuse one item and keep the rest.
"""

from __future__ import annotations

from typing import Optional

import numpy as np
from std_msgs.msg import Header

from mast3r_ros.core.errors import InputError
from mast3r_ros.core.io import decode_raw_depth
from mast3r_ros.core.map.keyframe import Keyframe
from mast3r_ros.core.tracking.stream import EdgeType, GraphEdge, KeyframeEvent
from mast3r_ros.msg import GraphEdge as GraphEdgeMsg
from mast3r_ros.msg import Keyframe as KeyframeMsg
from mast3r_ros.ros.common.conversions import (
    DEFAULT_MAX_PIXELS,
    covariance_to_ros,
    image_to_rgb,
    matrix_to_pose,
    pose_to_matrix,
    rgb_to_image,
    sec_to_stamp,
    stamp_to_sec,
)

__all__ = ["NULL_COVARIANCE", "edge_msg", "keyframe_msg", "edge_from_msg",
           "keyframe_event_from_msg", "edge_key"]

#: covariance of rtabmap's "null" odometry / an unknown keyframe covariance
NULL_COVARIANCE = 9999.0


# ---------------------------------------------------------------------- core -> message
def edge_msg(edge: GraphEdge) -> GraphEdgeMsg:
    """One :class:`GraphEdge` as a message (same conventions)."""
    return GraphEdgeMsg(from_id=int(edge.from_id), to_id=int(edge.to_id), type=edge.type.value,
                        transform=matrix_to_pose(edge.T_from_to),
                        information=[float(v) for v in edge.information.reshape(-1)],
                        stamp=sec_to_stamp(edge.stamp))


def keyframe_msg(header: Header, event: KeyframeEvent, edges: list[GraphEdge],
                 covariance: Optional[np.ndarray], camera_frame: str,
                 with_images: bool) -> KeyframeMsg:
    """One new keyframe (``header``: odom frame; its stamp is set to the keyframe's).

    Args:
        header: frame id = odom frame.
        event: the front end's keyframe.
        edges: edges of the same tracker step; those with ``to_id == event.id`` are attached.
        covariance: (6, 6) covariance of ``T_track_cam`` (ROS order, parent axes) or None.
        camera_frame: the camera optical frame id.
        with_images: attach the image (rgb8) and depth (32FC1 m).
    """
    kf = event.keyframe
    stamp = sec_to_stamp(kf.stamp)
    msg = KeyframeMsg(header=Header(stamp=stamp, frame_id=header.frame_id), id=int(kf.id),
                      pose=matrix_to_pose(kf.T_map_cam),
                      odom_pose=matrix_to_pose(event.T_odom_cam), camera_frame=camera_frame,
                      k=[float(v) for v in kf.K.reshape(-1)],
                      edges=[edge_msg(e) for e in edges if e.to_id == kf.id])
    msg.covariance = covariance_to_ros(covariance, (NULL_COVARIANCE, NULL_COVARIANCE))
    if event.global_desc is not None:
        msg.global_descriptor = [float(v) for v in np.asarray(event.global_desc).reshape(-1)]
    if with_images:
        msg.image = rgb_to_image(kf.rgb, stamp, camera_frame)
        if kf.depth is not None:
            d = np.ascontiguousarray(kf.depth, dtype=np.float32)
            msg.depth.header, msg.depth.encoding = msg.image.header, "32FC1"
            msg.depth.height, msg.depth.width = d.shape
            msg.depth.step, msg.depth.data = 4 * d.shape[1], d.tobytes()
    return msg


# ---------------------------------------------------------------------- message -> core
def edge_key(msg: GraphEdgeMsg) -> tuple[int, int, str, int, int]:
    """Identity of an edge message (ends, type, stamp): the same edge seen twice has one key."""
    return (int(msg.from_id), int(msg.to_id), str(msg.type), int(msg.stamp.sec),
            int(msg.stamp.nanosec))


def edge_from_msg(msg: GraphEdgeMsg) -> GraphEdge:
    """A ``GraphEdge`` message as the core value.

    Raises:
        InputError: unknown type, a pose that is not a unit quaternion / finite, information not
            finite, symmetric and positive definite (the message says which edge).
    """
    name = f"edge {msg.from_id}->{msg.to_id}"
    try:
        kind = EdgeType(msg.type)
    except ValueError:
        raise InputError(f"{name}: unknown type {msg.type!r}; one of "
                         f"{[t.value for t in EdgeType]}") from None
    try:
        T = pose_to_matrix(msg.transform)
    except InputError as exc:
        raise InputError(f"{name}: {exc}") from None
    info = np.asarray(msg.information, dtype=np.float64).reshape(6, 6)
    return GraphEdge(int(msg.from_id), int(msg.to_id), kind, T, info, stamp_to_sec(msg.stamp))


def keyframe_event_from_msg(msg: KeyframeMsg, max_pixels: int = DEFAULT_MAX_PIXELS
                            ) -> KeyframeEvent:
    """A ``Keyframe`` message as the core's :class:`KeyframeEvent` (its edges: see
    :func:`edge_from_msg`). The event has no encoding: the receiver's backend encodes the image.

    Args:
        msg: the message; it must carry the image (odometry parameter ``keyframe_images``).
        max_pixels: largest accepted image (width * height).

    Raises:
        InputError: no image, an image or depth that does not decode or does not match, invalid K,
            non-finite poses or descriptor.
    """
    kid = int(msg.id)
    if msg.image.width == 0 or msg.image.height == 0:
        raise InputError(f"keyframe {kid} carries no image; the back end needs it (set the "
                         "odometry node's keyframe_images:=true)")
    try:
        rgb = image_to_rgb(msg.image, max_pixels)
        depth = None
        if msg.depth.width and msg.depth.height:
            d = msg.depth
            depth = decode_raw_depth(d.encoding, d.height, d.width, d.step, d.is_bigendian,
                                     d.data, max_pixels)
        T_track_cam, T_odom_cam = pose_to_matrix(msg.pose), pose_to_matrix(msg.odom_pose)
    except InputError as exc:
        raise type(exc)(f"keyframe {kid}: {exc}") from None
    K = np.asarray(msg.k, dtype=np.float64).reshape(3, 3)
    kf = Keyframe(id=kid, rgb=rgb, K=K, T_map_cam=T_track_cam, stamp=stamp_to_sec(msg.header.stamp),
                  depth=depth)
    desc = None
    if len(msg.global_descriptor):
        desc = np.asarray(msg.global_descriptor, dtype=np.float32)
        if not np.all(np.isfinite(desc)):
            raise InputError(f"keyframe {kid}: the global descriptor is not finite")
    return KeyframeEvent(kf, T_odom_cam, None, desc)
