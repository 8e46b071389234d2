"""The keyframe stream on the wire: core -> message -> core is exact, and a bad message is a typed
error that names the keyframe or edge."""

from __future__ import annotations

import numpy as np
import pytest
from std_msgs.msg import Header

from mast3r_ros.core.errors import InputError
from mast3r_ros.core.map.keyframe import Keyframe
from mast3r_ros.core.tracking.stream import EdgeType, GraphEdge, KeyframeEvent
from mast3r_ros.ros.common.stream_msgs import (
    edge_from_msg,
    edge_key,
    edge_msg,
    keyframe_event_from_msg,
    keyframe_msg,
)
from mast3r_ros.ros.common.transforms import xyzquat_to_matrix

K = np.array([[500.0, 0, 32], [0, 500.0, 24], [0, 0, 1]])


def _event(rng: np.random.Generator) -> tuple[KeyframeEvent, GraphEdge]:
    T = xyzquat_to_matrix([0.1, -0.2, 0.3, 0.1, 0.2, -0.1, 0.97])
    kf = Keyframe(id=4, rgb=rng.integers(0, 255, (48, 64, 3), dtype=np.uint8), K=K, T_map_cam=T,
                  stamp=12.5, depth=rng.uniform(0.5, 3.0, (48, 64)).astype(np.float32))
    A = rng.normal(size=(6, 6))
    edge = GraphEdge(3, 4, EdgeType.ODOMETRY, T, A @ A.T + 6 * np.eye(6), 12.5)
    return KeyframeEvent(kf, T @ T, None, np.ones(8, np.float32) / np.sqrt(8)), edge


def test_round_trip_is_exact(rng: np.random.Generator) -> None:
    ev, edge = _event(rng)
    msg = keyframe_msg(Header(frame_id="odom"), ev, [edge], None, "cam", True)
    back = keyframe_event_from_msg(msg)
    assert back.id == 4 and back.stamp == 12.5
    np.testing.assert_array_equal(back.keyframe.rgb, ev.keyframe.rgb)
    np.testing.assert_array_equal(back.keyframe.depth, ev.keyframe.depth)
    np.testing.assert_allclose(back.keyframe.T_map_cam, ev.keyframe.T_map_cam, atol=1e-12)
    np.testing.assert_allclose(back.T_odom_cam, ev.T_odom_cam, atol=1e-12)
    e = edge_from_msg(msg.edges[0])
    assert (e.from_id, e.to_id, e.type, e.stamp) == (3, 4, EdgeType.ODOMETRY, 12.5)
    np.testing.assert_array_equal(e.information, edge.information)
    assert edge_key(msg.edges[0]) == edge_key(edge_msg(edge))


def test_bad_messages_are_typed_errors(rng: np.random.Generator) -> None:
    ev, edge = _event(rng)
    m = edge_msg(edge)
    m.type = "teleport"
    with pytest.raises(InputError, match="edge 3->4: unknown type"):
        edge_from_msg(m)
    m = edge_msg(edge)
    m.information[0] = float("nan")
    with pytest.raises(InputError, match="information must be a finite"):
        edge_from_msg(m)
    m = edge_msg(edge)
    m.transform.orientation.w = m.transform.orientation.x = 0.0
    m.transform.orientation.y = m.transform.orientation.z = 0.0
    with pytest.raises(InputError, match="edge 3->4: pose quaternion"):
        edge_from_msg(m)
    bare = keyframe_msg(Header(frame_id="odom"), ev, [], None, "cam", False)
    with pytest.raises(InputError, match="keyframe 4 carries no image"):
        keyframe_event_from_msg(bare)
    msg = keyframe_msg(Header(frame_id="odom"), ev, [], None, "cam", True)
    msg.depth.data = msg.depth.data[:100]
    with pytest.raises(InputError, match="keyframe 4"):
        keyframe_event_from_msg(msg)
