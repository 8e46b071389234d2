"""launch_testing test of ``odometry.launch.py``: the installed launch file started as the README
starts it (``backend:=sift image_topic:=... camera_info_topic:=... depth_topic:=...``), fed six
RGB-D frames of the 7-Scenes sequence with a non-identity camera mounting on TF: odometry arrives
in ``odom`` for ``base_link``, ``odom -> base_link`` is on /tf, the first pose is the origin;
SIGINT at the end exits every process with 0.

Run: ``launch_test test/launch/test_odometry_launch.py`` or ``pytest -m launch`` (needs
``launch_testing``; ``colcon test`` runs it through CMakeLists.txt).
"""

from __future__ import annotations

import sys
import unittest
from pathlib import Path

import launch_testing
import launch_testing.actions
import launch_testing.asserts
import numpy as np
import pytest

from launch import LaunchDescription

sys.path[:0] = [str(Path(__file__).resolve().parent),  # launch_helpers
               str(Path(__file__).resolve().parents[1] / "ros")]  # ros_graph_helpers

from launch_helpers import SEVEN_SCENES, play_rgbd, rgbd_launch_description
from ros_graph_helpers import camera_mount, standalone_node


@pytest.mark.launch
@pytest.mark.launch_test
def generate_test_description() -> tuple[LaunchDescription, dict]:
    return rgbd_launch_description("odometry.launch.py")


class TestOdometryLaunch(unittest.TestCase):
    def test_odometry_and_tf(self) -> None:
        from nav_msgs.msg import Odometry
        from tf2_msgs.msg import TFMessage

        from mast3r_ros.core.map.rgbd import list_rgbd_frames, read_rgbd_frame, rgbd_intrinsics
        from mast3r_ros.ros.common.conversions import pose_to_matrix
        from mast3r_ros.ros.common.tf_io import TF_QOS

        K, K_depth = rgbd_intrinsics(SEVEN_SCENES)
        frames = [read_rgbd_frame(p, K, K_depth) for _, p in
                  list_rgbd_frames(SEVEN_SCENES / "sequence")[:6]]
        with standalone_node("launch_test_camera") as node:
            odom, tf = [], []
            node.create_subscription(Odometry, "/odom", odom.append, 10)
            node.create_subscription(TFMessage, "/tf", tf.append, TF_QOS)
            play_rgbd(node, frames, K, camera_mount(), odom)
            self.assertGreaterEqual(len({(m.header.stamp.sec, m.header.stamp.nanosec)
                                         for m in odom}), 6)
            self.assertEqual((odom[0].header.frame_id, odom[0].child_frame_id),
                             ("odom", "base_link"))
            np.testing.assert_allclose(pose_to_matrix(odom[0].pose.pose), np.eye(4), atol=1e-6)
            self.assertTrue(any(t.header.frame_id == "odom" and t.child_frame_id == "base_link"
                                for m in tf for t in m.transforms))


@launch_testing.post_shutdown_test()
class TestShutdown(unittest.TestCase):
    def test_sigint_exits_cleanly(self, proc_info) -> None:
        launch_testing.asserts.assertExitCodes(proc_info)
