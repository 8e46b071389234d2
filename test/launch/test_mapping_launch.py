"""launch_testing test of ``mapping.launch.py``: the installed launch file with a params file of its
own (the tiny MASt3R checkpoint at 64 px, a short alignment), fed five demo keyframes by a robot
whose odometry (``odom -> base_link``) and non-identity camera mounting are on TF. The built map's
keyframe poses are the odometry camera poses composed through TF (first keyframe exact, same
spread); SIGINT at the end exits every process with 0.

Needs a checkpoint: ``$MAST3R_CHECKPOINT``, else the tiny golden one under ``$MAST3R_ROS_SHARED``
(or ``../shared`` next to the repository); the test fails, it does not skip, when there is none.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
import unittest
from pathlib import Path

import cv2
import launch_testing
import launch_testing.actions
import launch_testing.asserts
import numpy as np
import pytest
import yaml
from launch.actions import IncludeLaunchDescription
from launch.launch_description_sources import PythonLaunchDescriptionSource

from launch import LaunchDescription

sys.path[:0] = [str(Path(__file__).resolve().parent),  # launch_helpers
               str(Path(__file__).resolve().parents[1] / "ros")]  # ros_graph_helpers

from launch_helpers import IMAGE, INFO
from ros_graph_helpers import DEMO, K_DEMO, REPO, camera_mount, standalone_node, wait_for

FRAMES = [0, 160, 320, 480, 640]  # frame numbers of demo_data/.../map
TEST_PARAMS = {"model.image_size": 64, "model.device": "cpu", "mapping.device": "cpu",
               "mapping.scene_graph": "swin-1", "mapping.niter1": 30, "mapping.niter2": 10,
               "keyframes.min_features": 20, "diagnostics_period": 0.2, "incremental_pairs": 0}


def _checkpoint() -> str:
    if os.environ.get("MAST3R_CHECKPOINT"):
        return os.environ["MAST3R_CHECKPOINT"]
    shared = Path(os.environ.get("MAST3R_ROS_SHARED", REPO.parent / "shared"))
    tiny = shared / "golden" / "tiny" / "tiny_mast3r.pth"
    if not tiny.is_file():
        raise FileNotFoundError(f"no checkpoint: set MAST3R_CHECKPOINT or MAST3R_ROS_SHARED "
                                f"(looked for {tiny})")
    return str(tiny)


@pytest.mark.launch
@pytest.mark.launch_test
def generate_test_description() -> tuple[LaunchDescription, dict]:
    from ament_index_python.packages import get_package_share_directory

    share = Path(get_package_share_directory("mast3r_ros"))
    params = yaml.safe_load((share / "config" / "mapper.yaml").read_text())
    params["/**"]["ros__parameters"].update(TEST_PARAMS)
    params_file = Path(tempfile.mkdtemp(prefix="mast3r_mapping_launch_")) / "mapper.yaml"
    params_file.write_text(yaml.safe_dump(params))
    include = IncludeLaunchDescription(
        PythonLaunchDescriptionSource(str(share / "launch" / "mapping.launch.py")),
        launch_arguments={"checkpoint": _checkpoint(), "params_file": str(params_file),
                          "image_topic": IMAGE, "camera_info_topic": INFO}.items())
    return LaunchDescription([include, launch_testing.actions.ReadyToTest()]), {}


class TestMappingLaunch(unittest.TestCase):
    def test_keyframe_poses_come_from_tf_odometry(self) -> None:
        with standalone_node("launch_test_mapping_robot") as node:
            path, gt = _drive_and_build(node)
        poses = np.stack([_pose(p.pose) for p in path.poses])
        self.assertEqual(len(poses), len(FRAMES))
        np.testing.assert_allclose(poses[0], gt[0], atol=2e-4)  # odometry camera pose, via TF
        spread = lambda c: np.sqrt(np.mean(np.sum((c - c[0]) ** 2, axis=1)))  # noqa: E731
        self.assertAlmostEqual(spread(poses[:, :3, 3]) / spread(gt[:, :3, 3]), 1.0, places=3)


def _pose(p) -> np.ndarray:
    from mast3r_ros.ros.common.conversions import pose_to_matrix

    return pose_to_matrix(p)


def _drive_and_build(node) -> tuple:
    from diagnostic_msgs.msg import DiagnosticArray
    from nav_msgs.msg import Path as PathMsg
    from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
    from sensor_msgs.msg import CameraInfo, Image
    from std_srvs.srv import Trigger
    from tf2_msgs.msg import TFMessage

    from mast3r_ros.ros.common.conversions import rgb_to_image, sec_to_stamp
    from mast3r_ros.ros.common.outputs import transform_msg
    from mast3r_ros.ros.common.tf_io import TF_QOS, TF_STATIC_QOS

    mount = camera_mount()
    latched = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE,
                         durability=DurabilityPolicy.TRANSIENT_LOCAL)
    got: dict = {"path": [], "keyframes": 0}
    node.create_subscription(PathMsg, "/keyframe_path", got["path"].append, latched)

    def on_diag(msg: DiagnosticArray) -> None:
        for status in msg.status:
            for kv in status.values:
                if status.name.endswith("mapping") and kv.key == "keyframes":
                    got["keyframes"] = int(kv.value)

    node.create_subscription(DiagnosticArray, "/diagnostics", on_diag, 10)
    tf_pub = node.create_publisher(TFMessage, "/tf", TF_QOS)
    static_pub = node.create_publisher(TFMessage, "/tf_static", TF_STATIC_QOS)
    image_pub = node.create_publisher(Image, IMAGE, qos_profile_sensor_data)
    info_pub = node.create_publisher(CameraInfo, INFO, qos_profile_sensor_data)
    static_pub.publish(TFMessage(transforms=[transform_msg(sec_to_stamp(0.0), "base_link",
                                                           "camera_optical_frame", mount)]))
    gt = []
    for k, frame in enumerate(FRAMES):
        stem = DEMO / "map" / f"frame-{frame:06d}"
        T_odom_cam = np.loadtxt(f"{stem}.pose.txt").reshape(4, 4)
        gt.append(T_odom_cam)
        rgb = cv2.cvtColor(cv2.resize(cv2.imread(f"{stem}.color.jpg"), (160, 120),
                                      interpolation=cv2.INTER_AREA), cv2.COLOR_BGR2RGB)
        stamp = sec_to_stamp(100.0 + k)
        info = CameraInfo(width=160, height=120, distortion_model="plumb_bob")
        info.k = [float(v) for v in (K_DEMO / 4 + np.diag([0, 0, 0.75])).reshape(-1)]
        info.header.stamp = stamp
        for _ in range(40):  # until the mapper holds the keyframe (sensor-data QoS may drop)
            tf_pub.publish(TFMessage(transforms=[transform_msg(
                stamp, "odom", "base_link", T_odom_cam @ np.linalg.inv(mount))]))
            info_pub.publish(info)
            image_pub.publish(rgb_to_image(rgb, stamp, "camera_optical_frame"))
            if wait_for(lambda k=k: got["keyframes"] >= k + 1, 1.5):
                break
        assert got["keyframes"] == k + 1, f"keyframe {k} not taken ({got['keyframes']})"
    client = node.create_client(Trigger, "/build_map")
    assert client.wait_for_service(timeout_sec=30.0)
    future = client.call_async(Trigger.Request())
    assert wait_for(future.done, 300.0), "build_map did not answer"
    assert future.result().success, future.result().message
    assert wait_for(lambda: got["path"] and len(got["path"][-1].poses) == len(FRAMES), 30.0)
    time.sleep(0.5)
    return got["path"][-1], np.stack(gt)


@launch_testing.post_shutdown_test()
class TestShutdown(unittest.TestCase):
    def test_sigint_exits_cleanly(self, proc_info) -> None:
        launch_testing.asserts.assertExitCodes(proc_info)
