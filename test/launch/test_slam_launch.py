"""launch_testing test of ``slam.launch.py``: the installed launch file started as the README
starts it (``backend:=sift image_topic:=... camera_info_topic:=... depth_topic:=...``), fed RGB-D
frames of the 7-Scenes sequence out and back with a non-identity camera mounting on TF: the
mapper in SLAM mode (node ``/mapper``) receives the odometry node's keyframes, ``map -> odom`` is
on /tf, ``/mapper/save_map`` writes a map that loads; SIGINT at the end exits every process
with 0.

Run: ``launch_test test/launch/test_slam_launch.py`` or ``pytest -m launch`` (needs
``launch_testing``; ``colcon test`` runs it through CMakeLists.txt).
"""

from __future__ import annotations

import sys
import tempfile
import unittest
from pathlib import Path

import launch_testing
import launch_testing.actions
import launch_testing.asserts
import pytest

from launch import LaunchDescription

sys.path[:0] = [str(Path(__file__).resolve().parent),  # launch_helpers
               str(Path(__file__).resolve().parents[1] / "ros")]  # ros_graph_helpers

from launch_helpers import SEVEN_SCENES, play_rgbd, rgbd_launch_description
from ros_graph_helpers import camera_mount, standalone_node, wait_for

FRAMES = [*range(0, 31, 3), *range(31, 0, -3)]



@pytest.mark.launch
@pytest.mark.launch_test
def generate_test_description() -> tuple[LaunchDescription, dict]:
    return rgbd_launch_description("slam.launch.py")


class TestSlamLaunch(unittest.TestCase):
    def test_keyframes_map_to_odom_and_save(self) -> None:
        from nav_msgs.msg import Odometry
        from rclpy.qos import (
            DurabilityPolicy,
            QoSProfile,
            ReliabilityPolicy,
        )
        from tf2_msgs.msg import TFMessage

        from mast3r_ros.core.map import load_map
        from mast3r_ros.core.map.rgbd import list_rgbd_frames, read_rgbd_frame, rgbd_intrinsics
        from mast3r_ros.msg import SlamStatus
        from mast3r_ros.ros.common.tf_io import TF_QOS
        from mast3r_ros.srv import LoadMap

        K, K_depth = rgbd_intrinsics(SEVEN_SCENES)
        files = list_rgbd_frames(SEVEN_SCENES / "sequence")
        frames = [read_rgbd_frame(files[i][1], K, K_depth) for i in FRAMES]
        latched = QoSProfile(depth=50, reliability=ReliabilityPolicy.RELIABLE,
                             durability=DurabilityPolicy.TRANSIENT_LOCAL)
        with standalone_node("launch_test_camera") as node:
            odom, tf, status = [], [], []
            node.create_subscription(Odometry, "/odom", odom.append, 10)
            node.create_subscription(TFMessage, "/tf", tf.append, TF_QOS)
            node.create_subscription(SlamStatus, "/mapper/status", status.append, latched)
            play_rgbd(node, frames, K, camera_mount(), odom)
            self.assertTrue(wait_for(lambda: status and status[-1].nodes >= 3, 60.0))
            self.assertTrue(wait_for(lambda: any(
                t.header.frame_id == "map" and t.child_frame_id == "odom"
                for m in list(tf) for t in m.transforms), 10.0))
            client = node.create_client(LoadMap, "/mapper/save_map")
            self.assertTrue(client.wait_for_service(timeout_sec=20.0))
            with tempfile.TemporaryDirectory() as tmp:
                fut = client.call_async(LoadMap.Request(path=f"{tmp}/map"))
                self.assertTrue(wait_for(fut.done, 60.0))
                self.assertTrue(fut.result().success, fut.result().message)
                self.assertEqual(len(load_map(f"{tmp}/map")), fut.result().num_keyframes)


@launch_testing.post_shutdown_test()
class TestShutdown(unittest.TestCase):
    def test_sigint_exits_cleanly(self, proc_info) -> None:
        launch_testing.asserts.assertExitCodes(proc_info)
