"""Separate-process graph tests: the real localizer (SIFT baseline, real 7-Scenes map) and the
replay node as subprocesses, started exactly as the demo and the launch file start them."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Iterator

import numpy as np
import pytest
from lifecycle_msgs.msg import Transition
from lifecycle_msgs.srv import ChangeState, GetState
from ros_graph_helpers import DEMO, K_DEMO, REPO, Probe, RosGraph, query_gt, wait_for

from mast3r_ros.core.geometry.se3 import pose_errors
from mast3r_ros.core.map import read_rgb
from mast3r_ros.ros.common.conversions import pose_to_matrix, rgb_to_image
from mast3r_ros.ros.common.graph_procs import ros_env, start_node, stop_process


@pytest.fixture()
def localizer_proc(graph: RosGraph, small_map_dir: Path,
                   tmp_path: Path) -> Iterator[subprocess.Popen]:
    log = open(tmp_path / "localizer.log", "w")
    proc = start_node("localizer", {"map_path": str(small_map_dir), "backend": "sift",
                                    "autostart": False},
                      ros_env(graph.domain_id), log, namespace="/t",
                      params_file=REPO / "config" / "localizer.yaml")
    try:
        yield proc
    finally:
        code = stop_process(proc)
        log.close()
        proc.test_exit_code = code  # type: ignore[attr-defined]


def _change(probe: Probe, transition: int) -> bool:
    return probe.call(ChangeState, "/t/localizer/change_state",
                      ChangeState.Request(transition=Transition(id=transition)), 30.0).success


def test_localizer_process_lifecycle_and_pose(graph: RosGraph, localizer_proc: subprocess.Popen,
                                              tmp_path: Path) -> None:
    probe = Probe(graph, ns="/t")
    state = probe.call(GetState, "/t/localizer/get_state", GetState.Request(), 30.0)
    assert state.current_state.label == "unconfigured"
    assert _change(probe, Transition.TRANSITION_CONFIGURE)
    assert _change(probe, Transition.TRANSITION_ACTIVATE)
    assert probe.call(GetState, "/t/localizer/get_state", GetState.Request()).current_state.label \
        == "active"
    path, T_gt = query_gt(0)
    msg = rgb_to_image(read_rgb(path), probe.node.get_clock().now().to_msg(), "camera_optical")
    info = probe.camera_info(K_DEMO, 640, 480)
    for _ in range(10):  # sensor-data QoS: resend until processed
        probe.publish(msg, info)
        if wait_for(lambda: probe.got["pose"], 3.0):
            break
    assert probe.got["pose"], (tmp_path / "localizer.log").read_text()[-2000:]
    dt, dr = pose_errors(pose_to_matrix(probe.got["pose"][-1].pose.pose), T_gt)
    assert dt < 0.05 and dr < 5.0, (dt, dr)
    assert wait_for(lambda: probe.statuses(lambda s: s.success), 5.0)  # pose is sent first
    st = probe.statuses(lambda s: s.success)[-1]
    assert st.backend == "sift" and st.num_inliers >= 30 and len(st.keyframe_ids) > 0
    assert st.latency_matching > 0 and st.latency_pose > 0
    assert wait_for(lambda: probe.got["map_cloud"] and probe.got["map_cloud"][-1].width > 1000, 5.0)
    stop_process(localizer_proc)
    assert localizer_proc.returncode == 0  # SIGINT: clean shutdown


def test_replay_publishes_rosbag(graph: RosGraph, tmp_path: Path) -> None:
    from rclpy.qos import qos_profile_sensor_data
    from rclpy.serialization import serialize_message
    from rosbags.rosbag2 import Writer
    from rosbags.typesys import Stores, get_typestore
    from sensor_msgs.msg import CameraInfo, Image

    typestore = get_typestore(Stores.ROS2_HUMBLE)
    bag = tmp_path / "cam_bag"
    probe = Probe(graph, ns="/r")
    images: list = []
    probe.node.create_subscription(Image, "/r/image", images.append, qos_profile_sensor_data)
    infos: list = []
    probe.node.create_subscription(CameraInfo, "/r/camera_info", infos.append,
                                   qos_profile_sensor_data)
    with Writer(bag, version=8) as writer:
        ci = writer.add_connection("/cam/camera_info", "sensor_msgs/msg/CameraInfo",
                                   typestore=typestore)
        im = writer.add_connection("/cam/image_raw", "sensor_msgs/msg/Image", typestore=typestore)
        for i in range(3):
            rgb = np.full((48, 64, 3), 40 * i, np.uint8)
            m = rgb_to_image(rgb, probe.node.get_clock().now().to_msg(), "cam")
            writer.write(ci, i * 100_000_000, serialize_message(probe.camera_info(K_DEMO, 64, 48)))
            writer.write(im, i * 100_000_000 + 1, serialize_message(m))
    log = open(tmp_path / "replay.log", "w")
    proc = start_node("replay", {"source": str(bag), "rate": 5.0, "start_delay": 0.5,
                                 "wait_for_subscribers": 1, "stamp_mode": "original"},
                      ros_env(graph.domain_id), log, namespace="/r")
    try:
        proc.wait(30)
    finally:
        stop_process(proc)
        log.close()
    assert proc.returncode == 0, (tmp_path / "replay.log").read_text()[-2000:]
    assert wait_for(lambda: len(images) >= 3, 5.0), len(images)
    assert [int(m.data[0]) for m in images[-3:]] == [0, 40, 80]
    assert len(infos) >= 3 and list(infos[-1].k) == list(K_DEMO.reshape(-1))


def test_demo_data_licence_note_present() -> None:
    text = (DEMO.parent / "README.md").read_text()
    assert "Non-Commercial" in text or "non-commercial" in text
    assert len(list((DEMO / "query").glob("*.color.jpg"))) == 33
