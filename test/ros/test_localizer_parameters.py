"""Every parameter group of the localizer with the real core: run-time changes take effect (the
pipeline's on the next frame, the node's at once: frames, topics, timers, outputs), read-only and
invalid ones are rejected with a reason (D13: frame and topic names)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from rclpy.parameter import Parameter
from ros_graph_helpers import K_DEMO, RosGraph, active_node, query_image, send_and_wait, wait_for

from mast3r_ros.ros.common.conversions import cloud_to_points


def _set(node, name: str, value) -> tuple[bool, str]:
    result = node.set_parameters([Parameter(name, value=value)])[0]
    return result.successful, result.reason


@pytest.mark.parametrize("name, value", [
    ("backend", "mast3r"), ("model.checkpoint", "/x.pth"), ("model.device", "cuda"),
    ("model.image_size", 256), ("map_path", "/elsewhere"), ("autostart", False)])
def test_read_only_parameters_are_rejected(graph: RosGraph, small_map_dir: Path, name: str,
                                           value: object) -> None:
    node, _ = active_node(graph, small_map_dir)
    ok, reason = _set(node, name, value)
    assert not ok and "read-only" in reason, reason


@pytest.mark.parametrize("name, value, expect", [
    ("map_frame", "", "map_frame must not be empty"),
    ("base_frame", "/base_link", "must not start with '/'"),
    ("odom_frame", "od om", "whitespace"),
    ("odom_topic", "wheel odom", "not a valid topic name"),
    ("tf_publish_rate", 0.0, "tf_publish_rate"),
    ("pose.min_inliers", 2, "min_inliers"),
    ("retrieval.top_k", "many", ""),
    ("base_T_camera", [0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0], "quaternion is zero"),
])
def test_d13_invalid_values_are_rejected_with_a_reason(graph: RosGraph, small_map_dir: Path,
                                                       name: str, value: object,
                                                       expect: str) -> None:
    """D13: ``map_frame:=''`` was accepted at run time and poses went out with an empty frame."""
    node, probe = active_node(graph, small_map_dir)
    before = node.get_parameter(name).value
    ok, reason = _set(node, name, value)
    assert not ok and expect in reason, reason
    assert node.get_parameter(name).value == before
    status = send_and_wait(node, probe, query_image(0, 1.0), probe.camera_info(K_DEMO, 640, 480))
    assert status.success and status.header.frame_id == "map"
    assert probe.got["pose"] and probe.got["pose"][-1].header.frame_id == "map"


def test_pipeline_parameters_reach_the_core_on_the_next_frame(graph: RosGraph,
                                                              small_map_dir: Path) -> None:
    node, probe = active_node(graph, small_map_dir)
    info = probe.camera_info(K_DEMO, 640, 480)
    first = send_and_wait(node, probe, query_image(0, 1.0), info)
    assert first.success and len(first.keyframe_ids) == 4  # retrieval.top_k = 4 of 4
    assert _set(node, "retrieval.top_k", 1)[0]
    assert _set(node, "pose.min_inliers", 100_000)[0]
    second = send_and_wait(node, probe, query_image(0, 2.0), info)
    assert not second.success and "inliers" in second.reason, second.reason
    assert len(second.keyframe_ids) == 1
    assert _set(node, "pose.min_inliers", 30)[0]
    assert send_and_wait(node, probe, query_image(0, 3.0), info).success


def test_node_parameters_take_effect_at_run_time(graph: RosGraph, small_map_dir: Path) -> None:
    node, probe = active_node(graph, small_map_dir, diagnostics_period=30.0)
    info = probe.camera_info(K_DEMO, 640, 480)
    assert send_and_wait(node, probe, query_image(0, 10.0), info).success
    # outputs: frames, cloud sizes
    assert _set(node, "max_inlier_points", 10)[0]
    assert _set(node, "map_frame", "world")[0]
    assert _set(node, "map_cloud_points", 100)[0]  # the latched map is republished at once
    assert wait_for(lambda: probe.got["map_cloud"][-1].header.frame_id == "world"
                    and len(cloud_to_points(probe.got["map_cloud"][-1])) <= 100, 5.0)
    status = send_and_wait(node, probe, query_image(1, 11.0), info)
    assert status.success and status.header.frame_id == "world"
    assert wait_for(lambda: probe.got["inliers"][-1].header.stamp == status.header.stamp, 5.0)
    assert len(cloud_to_points(probe.got["inliers"][-1])) == 10
    assert probe.got["pose"][-1].header.frame_id == "world"
    # inputs: image size limit, stamp regression
    assert _set(node, "max_image_pixels", 1000)[0]
    status = send_and_wait(node, probe, query_image(0, 12.0), info)
    assert not status.success and "exceeds the limit of 1000 pixels" in status.reason
    assert _set(node, "max_image_pixels", 640 * 480)[0]
    assert not send_and_wait(node, probe, query_image(0, 5.0), info).success  # went back 7 s
    assert _set(node, "max_stamp_regression", 100.0)[0]
    assert send_and_wait(node, probe, query_image(0, 4.0), info).success
    # timers: the diagnostics period is re-timed (30 s -> 0.1 s)
    n = len(probe.got["diag"])
    assert _set(node, "diagnostics_period", 0.1)[0]
    assert wait_for(lambda: len(probe.got["diag"]) >= n + 5, 5.0)
    assert _set(node, "diagnostics_period", 30.0)[0]
    time.sleep(0.3)
    n = len(probe.got["diag"])
    time.sleep(1.0)
    assert len(probe.got["diag"]) <= n + 1


@pytest.fixture(scope="module")
def tiny_map_node_params(tiny_checkpoint: Path) -> dict:
    return {"backend": "mast3r", "model.checkpoint": str(tiny_checkpoint),
            "model.image_size": 128, "model.device": "cpu", "require_camera_info": True}


def test_matching_parameters_reach_the_mast3r_path(graph: RosGraph, small_map_dir: Path,
                                                   tiny_map_node_params: dict) -> None:
    """The tiny MASt3R checkpoint (random weights) at 128 px: ``matching.*`` changed at run time
    must change the matches of the next frame."""
    node, probe = active_node(graph, small_map_dir, **tiny_map_node_params)
    info = probe.camera_info(K_DEMO, 640, 480)
    before = send_and_wait(node, probe, query_image(0, 1.0), info, timeout=60.0, period=5.0)
    assert before.num_matches > 0, before.reason
    assert _set(node, "matching.subsample", 4)[0]
    assert _set(node, "matching.desc_conf_threshold", 0.0)[0]
    after = send_and_wait(node, probe, query_image(0, 2.0), info, timeout=60.0, period=5.0)
    assert after.num_matches != before.num_matches, (before.num_matches, after.num_matches)
