"""Graph tests of the localizer node in-process (real rclpy, real DDS, fake core where noted)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from lifecycle_msgs.msg import State
from rclpy.lifecycle import TransitionCallbackReturn
from rclpy.parameter import Parameter
from std_srvs.srv import Trigger

from ros_graph_helpers import K, Probe, RosGraph, synthetic_map, wait_for
from ros_graph_helpers import T_fake as _T_fake
from ros_graph_helpers import active_node as _active
from ros_graph_helpers import image as _image
from ros_graph_helpers import make_node
from ros_graph_helpers import send_and_wait as _send_and_wait
from mast3r_ros.core.map import save_map
from mast3r_ros.ros.conversions import cloud_to_points, pose_to_matrix
from mast3r_ros.srv import LoadMap

SUCCESS = TransitionCallbackReturn.SUCCESS
FAILURE = TransitionCallbackReturn.FAILURE


def test_lifecycle_transitions(graph: RosGraph) -> None:
    node = make_node(graph)
    assert node._state_machine.current_state[1] == "unconfigured"
    assert node.trigger_configure() == SUCCESS
    assert node._state_machine.current_state[0] == State.PRIMARY_STATE_INACTIVE
    assert node.trigger_activate() == SUCCESS
    assert node._state_machine.current_state[0] == State.PRIMARY_STATE_ACTIVE
    assert node.trigger_deactivate() == SUCCESS
    assert node.trigger_cleanup() == SUCCESS
    assert node._localizer is None
    assert node.trigger_configure() == SUCCESS  # configure again after cleanup
    assert node.trigger_shutdown() == SUCCESS
    assert node._state_machine.current_state[0] == State.PRIMARY_STATE_FINALIZED


@pytest.mark.parametrize("params, expect", [
    ({"map_path": ""}, "map_path is empty"),
    ({"map_path": "/definitely/not/a/map"}, "cannot load model/map"),
    ({"backend": "mast3r", "model.checkpoint": "/no/such/checkpoint.pth"}, "cannot load model/map"),
])
def test_configure_fails_cleanly(graph: RosGraph, small_map_dir: Path, params: dict,
                                 expect: str) -> None:
    from mast3r_ros.ros.localizer_node import _real_factory

    if "model.checkpoint" in params:
        params = {**params, "map_path": str(small_map_dir)}
    node = make_node(graph, factory=_real_factory, **params)
    probe = Probe(graph)
    assert node.trigger_configure() == FAILURE
    assert node._state_machine.current_state[1] == "unconfigured"
    assert expect in node.counters.last_reason
    assert wait_for(lambda: any(d.status[0].level == b"\x02" and expect in d.status[0].message
                                for d in probe.got["diag"]), 5.0)


def test_pose_status_cloud_diagnostics(graph: RosGraph) -> None:
    node, probe = _active(graph)
    msg = _image(100.25)
    K_big = np.array([[1000.0, 0, 639.5], [0, 1000.0, 479.5], [0, 0, 1]])  # same camera, 2x size
    status = _send_and_wait(node, probe, msg, probe.camera_info(K_big, 1280, 960))
    assert status.success and status.state == "localized" and status.reason == "ok"
    assert list(status.keyframe_ids) == [0, 1] and status.num_inliers == 150
    assert status.latency_conversion >= 0 and status.latency_core_total >= 0
    assert wait_for(lambda: np.isfinite(node.last_times.publish), 5.0)
    t = node.last_times  # node overhead at 640x480 (target < 5 ms; generous bound for busy CI)
    assert 0 <= t.conversion + t.publish < 0.05, t
    assert wait_for(lambda: probe.got["pose"] and probe.got["inliers"], 5.0)
    pose = probe.got["pose"][-1]
    assert pose.header.frame_id == "map"
    assert (pose.header.stamp.sec, pose.header.stamp.nanosec) == (100, 250_000_000)
    np.testing.assert_allclose(pose_to_matrix(pose.pose.pose), _T_fake(), atol=1e-9)
    assert pose.pose.covariance[0] == pytest.approx(1e-4)
    assert cloud_to_points(probe.got["inliers"][-1]).shape == (50, 3)
    # K of a 1280x960 camera_info, rescaled to the 640x480 image (pixel-centre convention)
    frame = node.holder["loc"].frames[-1]
    np.testing.assert_allclose(frame.K, [[500, 0, 319.5], [0, 500, 239.5], [0, 0, 1]], atol=1e-9)
    assert wait_for(lambda: probe.got["map_cloud"] and probe.got["keyframes"], 5.0)
    assert probe.got["map_cloud"][-1].width > 0
    assert len([m for m in probe.got["keyframes"][-1].markers if m.ns == "keyframes"]) == 3
    assert wait_for(lambda: any(kv.key == "frames_localized" and kv.value == "1"
                                for d in probe.got["diag"] for kv in d.status[0].values), 5.0)


def test_initialpose_becomes_retrieval_prior(graph: RosGraph) -> None:
    from geometry_msgs.msg import PoseWithCovarianceStamped

    from mast3r_ros.ros.conversions import matrix_to_pose

    node, probe = _active(graph)
    pub = probe.node.create_publisher(PoseWithCovarianceStamped, "initialpose", 10)
    T = np.eye(4)
    T[:3, 3] = [3.0, 1.0, 0.0]
    msg = PoseWithCovarianceStamped()
    msg.header.frame_id = "map"
    msg.pose.pose = matrix_to_pose(T)
    assert wait_for(lambda: (pub.publish(msg), node._prior is not None)[1], 5.0)
    node.holder["loc"].fail_next = True  # a lost frame clears the prior
    _send_and_wait(node, probe, _image(1.0), probe.camera_info(K, 640, 480))
    np.testing.assert_allclose(node.holder["loc"].frames[-1].T_map_cam_prior, T, atol=1e-12)
    assert node._prior is None
    s = _send_and_wait(node, probe, _image(2.0), probe.camera_info(K, 640, 480))
    assert s.success and node.holder["loc"].frames[-1].T_map_cam_prior is None
    np.testing.assert_allclose(node._prior, _T_fake())  # tracking: last pose narrows retrieval


def test_parameters_validated(graph: RosGraph) -> None:
    node, _ = _active(graph)
    bad = node.set_parameters([Parameter("pose.min_inliers", value=2)])[0]
    assert not bad.successful
    ro = node.set_parameters([Parameter("backend", value="mast3r")])[0]
    assert not ro.successful
    wrong_type = node.set_parameters([Parameter("retrieval.top_k", value="many")])[0]
    assert not wrong_type.successful
    ok = node.set_parameters([Parameter("retrieval.top_k", value=7)])[0]
    assert ok.successful
    assert node.holder["loc"].config.retrieval.top_k == 7
    assert node.get_parameter("pose.min_inliers").value == 30
    desc = node.describe_parameter("pose.min_inliers")
    assert desc.integer_range[0].from_value == 4 and "inliers" in desc.description


def test_services(graph: RosGraph, tmp_path: Path) -> None:
    node = make_node(graph)
    probe = Probe(graph)
    resp = probe.call(Trigger, "localize", Trigger.Request())
    assert not resp.success and "not active" in resp.message
    resp = probe.call(LoadMap, "load_map", LoadMap.Request(path=str(tmp_path)))
    assert not resp.success and "configure" in resp.message
    assert node.trigger_configure() == SUCCESS and node.trigger_activate() == SUCCESS
    assert probe.call(Trigger, "localize", Trigger.Request()).success
    assert probe.call(Trigger, "reset", Trigger.Request()).success
    resp = probe.call(LoadMap, "load_map", LoadMap.Request(path=str(tmp_path / "missing")))
    assert not resp.success and "previous map kept" in resp.message
    assert len(node.holder["loc"].map) == 3
    save_map(synthetic_map(5), tmp_path / "five")
    resp = probe.call(LoadMap, "load_map", LoadMap.Request(path=str(tmp_path / "five")))
    assert resp.success and resp.num_keyframes == 5, resp.message
    assert len(node.holder["loc"].map) == 5
    assert wait_for(lambda: any(len([m for m in ma.markers if m.ns == "keyframes"]) == 5
                                for ma in probe.got["keyframes"]), 5.0)


def test_odometry_source_for_map_to_odom(graph: RosGraph) -> None:
    from nav_msgs.msg import Odometry

    from mast3r_ros.ros.conversions import matrix_to_pose, sec_to_stamp
    from mast3r_ros.ros.transforms import compute_map_to_odom, xyzquat_to_matrix

    node, probe = _active(graph, odom_topic="odom")
    assert node._odom.channel == "odometry topic odom"  # no tf2_ros here
    pub = probe.node.create_publisher(Odometry, "odom", 50)
    T_odom_base = xyzquat_to_matrix([0.5, 0.2, 0.0, 0.0, 0.0, 0.2, 0.98])
    odom = Odometry()
    odom.header.stamp = sec_to_stamp(5.0)
    odom.pose.pose = matrix_to_pose(T_odom_base)
    assert wait_for(lambda: (pub.publish(odom), node._odom.lookup(sec_to_stamp(5.1)))[1]
                    is not None, 5.0)
    np.testing.assert_allclose(node._odom.lookup(sec_to_stamp(5.1)), T_odom_base, atol=1e-9)
    assert node._odom.lookup(sec_to_stamp(9.0)) is None  # too far in time: unknown, not stale
    T_map_odom = compute_map_to_odom(_T_fake(), T_odom_base)
    np.testing.assert_allclose(T_map_odom @ T_odom_base, _T_fake(), atol=1e-12)
