"""Graph tests of the localizer node in-process: real rclpy and DDS, the REAL core (SIFT backend on
a real 7-Scenes map), assertions on pose errors against ground truth and on message contents."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from geometry_msgs.msg import PoseWithCovarianceStamped
from lifecycle_msgs.msg import State
from rclpy.lifecycle import TransitionCallbackReturn
from ros_graph_helpers import (
    K_DEMO,
    Probe,
    RosGraph,
    active_node,
    camera_mount,
    make_node,
    noise_image,
    query_gt,
    query_image,
    send_and_wait,
    wait_for,
)
from std_srvs.srv import Trigger

from mast3r_ros.core.geometry.se3 import invert_pose, pose_errors
from mast3r_ros.ros.common.conversions import (
    cloud_to_points,
    matrix_to_pose,
    pose_to_matrix,
    sec_to_stamp,
)
from mast3r_ros.ros.common.transforms import covariance_to_base, matrix_to_xyzquat
from mast3r_ros.srv import LoadMap

SUCCESS = TransitionCallbackReturn.SUCCESS
FAILURE = TransitionCallbackReturn.FAILURE


def test_lifecycle_transitions(graph: RosGraph, small_map_dir: Path) -> None:
    node = make_node(graph, small_map_dir)
    assert node._state_machine.current_state[1] == "unconfigured"
    assert node.trigger_configure() == SUCCESS
    assert node._state_machine.current_state[0] == State.PRIMARY_STATE_INACTIVE
    assert len(node._localizer.map) == 4
    assert node.trigger_activate() == SUCCESS
    assert node._state_machine.current_state[0] == State.PRIMARY_STATE_ACTIVE
    assert node.trigger_deactivate() == SUCCESS
    assert node.trigger_cleanup() == SUCCESS
    assert node._localizer is None and node._tf is None
    assert node.trigger_configure() == SUCCESS  # configure again after cleanup
    assert node.trigger_shutdown() == SUCCESS
    assert node._state_machine.current_state[0] == State.PRIMARY_STATE_FINALIZED


@pytest.mark.parametrize("params, expect", [
    ({"map_path": ""}, "map_path is empty"),
    ({"map_path": "/definitely/not/a/map"}, "cannot load model/map"),
    ({"backend": "mast3r", "model.checkpoint": "/no/such/checkpoint.pth"}, "cannot load model/map"),
    ({"map_frame": ""}, "map_frame must not be empty"),
])
def test_configure_fails_cleanly(graph: RosGraph, small_map_dir: Path, params: dict,
                                 expect: str) -> None:
    node = make_node(graph, small_map_dir, **params)
    probe = Probe(graph)
    assert node.trigger_configure() == FAILURE
    assert node._state_machine.current_state[1] == "unconfigured"
    assert expect in node.counters.last_reason
    assert wait_for(lambda: any(d.status[0].level == b"\x02" and expect in d.status[0].message
                                for d in probe.got["diag"]), 5.0)


def test_localized_frame_outputs_with_extrinsic_from_tf(graph: RosGraph,
                                                         small_map_dir: Path) -> None:
    """The real pipeline, a static base_link -> camera_optical_frame on TF and no odometry: the
    base pose is right against ground truth, its covariance is the camera's moved to the base,
    and nothing goes out on TF (pose only)."""
    node, probe = active_node(graph, small_map_dir)
    mount = camera_mount()
    probe.send_tf("base_link", "camera_optical_frame", mount, 0.0, static=True)
    K_big = K_DEMO * 2 + np.diag([0, 0, -1.0])  # the same camera at 1280x960: K is rescaled
    K_big[:2, 2] += 0.5
    status = send_and_wait(node, probe, query_image(0, 100.25),
                           probe.camera_info(K_big, 1280, 960))
    assert status.success and status.state == "localized" and status.reason == "ok"
    assert status.extrinsic == "tf (static)", status.extrinsic
    assert "unavailable at the image stamp" in status.tf_status, status.tf_status
    assert status.backend == "sift" and status.num_inliers >= 30
    assert len(status.keyframe_ids) == len(status.retrieval_scores) > 0
    assert np.isfinite(status.latency_total) and status.latency_total >= status.latency_core_total
    assert wait_for(lambda: probe.got["pose"] and probe.got["inliers"], 5.0)
    pose = probe.got["pose"][-1]
    assert pose.header.frame_id == "map"
    assert (pose.header.stamp.sec, pose.header.stamp.nanosec) == (100, 250_000_000)
    T_map_base = pose_to_matrix(pose.pose.pose)
    T_gt = query_gt(0)[1]
    dt, dr = pose_errors(T_map_base @ mount, T_gt)
    assert dt < 0.02 and dr < 2.0, (dt, dr)
    result = node.last_result
    np.testing.assert_allclose(T_map_base, result.T_map_cam @ invert_pose(mount), atol=1e-6)
    cov = np.array(pose.pose.covariance).reshape(6, 6)
    np.testing.assert_allclose(cov, covariance_to_base(result.covariance, result.T_map_cam, mount),
                               rtol=1e-6, atol=1e-12)
    inliers = cloud_to_points(probe.got["inliers"][-1])
    assert len(inliers) == status.num_inliers and np.all(np.isfinite(inliers))
    assert wait_for(lambda: probe.got["map_cloud"] and probe.got["keyframes"], 5.0)
    assert probe.got["map_cloud"][-1].width > 1000
    assert len([m for m in probe.got["keyframes"][-1].markers if m.ns == "keyframes"]) == 4
    assert wait_for(lambda: any(kv.key == "camera_extrinsic" and kv.value == "tf (static)"
                                for d in probe.got["diag"] for kv in d.status[0].values), 5.0)
    assert not probe.tf_of("map", "odom")  # no odometry: no TF, pose only


def test_extrinsic_fallback_parameter_said_once(graph: RosGraph, small_map_dir: Path) -> None:
    mount = camera_mount()
    node, probe = active_node(graph, small_map_dir, transform_timeout=0.05,
                              base_T_camera=matrix_to_xyzquat(mount).tolist())
    info = probe.camera_info(K_DEMO, 640, 480)
    first = send_and_wait(node, probe, query_image(1, 10.0), info)
    second = send_and_wait(node, probe, query_image(2, 11.0), info)
    for status in (first, second):  # said in every status, the reason included
        assert status.success and status.extrinsic.startswith("FALLBACK parameter base_T_camera")
        assert "camera_optical_frame" in status.extrinsic
    dt, dr = pose_errors(pose_to_matrix(probe.got["pose"][-1].pose.pose) @ mount, query_gt(2)[1])
    assert dt < 0.02 and dr < 2.0
    assert wait_for(lambda: any(kv.key == "camera_extrinsic" and kv.value.startswith("FALLBACK")
                                for d in probe.got["diag"] for kv in d.status[0].values), 5.0)
    # TF appears: it wins over the parameter (re-read within a second)
    probe.send_tf("base_link", "camera_optical_frame", mount, 0.0, static=True)
    assert wait_for(lambda: send_and_wait(node, probe, query_image(0, 12.0 + len(probe.got[
        "status"])), info).extrinsic == "tf (static)", 10.0, 0.5)


def _initialpose(probe: Probe, frame: str, T: np.ndarray) -> PoseWithCovarianceStamped:
    msg = PoseWithCovarianceStamped()
    msg.header.frame_id = frame
    msg.pose.pose = matrix_to_pose(T)
    return msg


def test_d12_initialpose_frame_is_resolved_or_rejected(graph: RosGraph,
                                                       small_map_dir: Path) -> None:
    """D12: a prior in ``odom`` was applied as a map-frame prior. Now it goes through TF, or is
    rejected with a reason when TF cannot resolve it."""
    node, probe = active_node(graph, small_map_dir, camera_frame="camera_optical_frame")
    mount = camera_mount()
    probe.send_tf("base_link", "camera_optical_frame", mount, 0.0, static=True)
    pub = probe.node.create_publisher(PoseWithCovarianceStamped, "initialpose", 10)
    T = np.eye(4)
    T[:3, 3] = [30.0, 10.0, 0.0]  # far from every keyframe (the map spans ~3 m)
    pub.publish(_initialpose(probe, "odom", T))  # no map -> odom in TF yet
    assert wait_for(lambda: node.initialpose_note.startswith("rejected"), 15.0)
    assert "cannot transform initialpose from 'odom'" in node.initialpose_note
    assert node._prior is None
    pub.publish(_initialpose(probe, "", T))
    assert wait_for(lambda: "no header.frame_id" in node.initialpose_note, 15.0)
    T_map_odom = np.eye(4)
    T_map_odom[:3, 3] = [10.0, -2.0, 0.0]
    probe.send_tf("map", "odom", T_map_odom, 0.0, static=True)
    assert wait_for(lambda: (pub.publish(_initialpose(probe, "odom", T)),
                             node.initialpose_note.startswith("accepted"))[1], 15.0)
    np.testing.assert_allclose(node._prior, T_map_odom @ T @ mount, atol=1e-9)
    pub.publish(_initialpose(probe, "map", T))
    assert wait_for(lambda: np.allclose(node._prior, T @ mount, atol=1e-9), 15.0)
    # the prior reaches the core: no keyframe lies within 5 m (retrieval.prior_radius), so it
    # finds none; a lost frame then clears it and the next frame searches the whole map
    info = probe.camera_info(K_DEMO, 640, 480)
    status = send_and_wait(node, probe, query_image(0, 1.0), info)
    assert not status.success and "no keyframe near the pose prior" in status.reason
    assert node._prior is None
    assert send_and_wait(node, probe, query_image(0, 2.0), info).success


def test_lost_frame_and_services(graph: RosGraph, small_map_dir: Path, demo_map_dir: Path,
                                 tmp_path: Path) -> None:
    node = make_node(graph, small_map_dir)
    probe = Probe(graph)
    resp = probe.call(Trigger, "localize", Trigger.Request())
    assert not resp.success and "not active" in resp.message
    resp = probe.call(LoadMap, "load_map", LoadMap.Request(path=str(tmp_path)))
    assert not resp.success and "configure" in resp.message
    assert node.trigger_configure() == SUCCESS and node.trigger_activate() == SUCCESS
    info = probe.camera_info(K_DEMO, 640, 480)
    status = send_and_wait(node, probe, noise_image(1.0), info)
    assert not status.success and status.state == "lost" and status.reason
    assert status.tf_status == "not updated: frame not localized"
    assert probe.call(Trigger, "localize", Trigger.Request()).success
    assert probe.call(Trigger, "reset", Trigger.Request()).success
    resp = probe.call(LoadMap, "load_map", LoadMap.Request(path=str(tmp_path / "missing")))
    assert not resp.success and "previous map kept" in resp.message
    assert len(node._localizer.map) == 4
    resp = probe.call(LoadMap, "load_map", LoadMap.Request(path=str(demo_map_dir)), 60.0)
    assert resp.success and resp.num_keyframes == 33, resp.message
    assert wait_for(lambda: any(len([m for m in ma.markers if m.ns == "keyframes"]) == 33
                                for ma in probe.got["keyframes"]), 5.0)
    status = send_and_wait(node, probe, query_image(7, 2.0), info)  # needs the bigger map
    assert status.success, status.reason
    assert pose_errors(pose_to_matrix(probe.got["pose"][-1].pose.pose),
                       query_gt(7)[1])[0] < 0.05
    assert sec_to_stamp(2.0) == probe.got["pose"][-1].header.stamp
