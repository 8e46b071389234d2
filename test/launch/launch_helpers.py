"""What the launch_testing tests of this folder share: the camera topics of the README's launch
lines, the shared data set, the installed launch files, and an RGB-D camera that plays frames."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import numpy as np

#: the topics of the README's launch lines (``image_topic:=`` / ``camera_info_topic:=``) + depth
IMAGE, INFO, DEPTH = "/camera/color/image_raw", "/camera/color/camera_info", "/camera/depth"
#: the team's shared folder (``MAST3R_ROS_SHARED``, else next to the checkout), as in conftest.py
SHARED = Path(os.environ.get("MAST3R_ROS_SHARED", Path(__file__).resolve().parents[3] / "shared"))
#: the 7-Scenes RGB-D set with its ``sequence/``
SEVEN_SCENES = SHARED / "data" / "sevenscenes_redkitchen_rgbd"


def launch_file(name: str) -> str:
    """Path of an installed launch file of the package (what ``ros2 launch`` starts)."""
    from ament_index_python.packages import get_package_share_directory

    return str(Path(get_package_share_directory("mast3r_ros")) / "launch" / name)


def rgbd_launch_description(name: str) -> tuple[Any, dict]:
    """``generate_test_description`` of a launch file that takes an RGB-D camera: the installed
    file started as the README starts it with the SIFT backend, then ReadyToTest."""
    import launch_testing.actions
    from launch.actions import IncludeLaunchDescription
    from launch.launch_description_sources import PythonLaunchDescriptionSource

    from launch import LaunchDescription

    include = IncludeLaunchDescription(
        PythonLaunchDescriptionSource(launch_file(name)),
        launch_arguments={"backend": "sift", "image_topic": IMAGE, "camera_info_topic": INFO,
                          "depth_topic": DEPTH}.items())
    return LaunchDescription([include, launch_testing.actions.ReadyToTest()]), {}


def play_rgbd(node: Any, frames: list, K: np.ndarray, mount: np.ndarray, odom: list) -> None:
    """Be the robot's RGB-D camera: publish ``base_link -> camera_optical_frame`` (``mount``) on
    /tf_static, then each ``(rgb, depth m, _)`` frame (colour, 16UC1 depth, camera_info; stamps
    100 s + i / 3) until an odometry message of its stamp is in ``odom`` (sensor-data QoS loses
    messages: resent every second, at most 20 times)."""
    from rclpy.qos import qos_profile_sensor_data
    from sensor_msgs.msg import CameraInfo, Image
    from tf2_msgs.msg import TFMessage

    from mast3r_ros.ros.common.conversions import rgb_to_image, sec_to_stamp
    from mast3r_ros.ros.common.outputs import transform_msg
    from mast3r_ros.ros.common.tf_io import TF_STATIC_QOS

    pub = {t: node.create_publisher(m, t, qos_profile_sensor_data)
           for t, m in ((IMAGE, Image), (INFO, CameraInfo), (DEPTH, Image))}
    static = node.create_publisher(TFMessage, "/tf_static", TF_STATIC_QOS)
    static.publish(TFMessage(transforms=[transform_msg(
        sec_to_stamp(0.0), "base_link", "camera_optical_frame", mount)]))
    for i, (rgb, depth, _) in enumerate(frames):
        stamp = sec_to_stamp(100.0 + i / 3)
        mm = np.round(depth * 1000).astype(np.uint16)
        d = Image(height=mm.shape[0], width=mm.shape[1], encoding="16UC1",
                  step=2 * mm.shape[1], data=mm.tobytes())
        d.header.stamp, d.header.frame_id = stamp, "camera_optical_frame"
        info = CameraInfo(width=640, height=480, k=[float(v) for v in K.reshape(-1)])
        info.header = d.header
        for _ in range(20):
            pub[DEPTH].publish(d)
            pub[INFO].publish(info)
            pub[IMAGE].publish(rgb_to_image(rgb, stamp, "camera_optical_frame"))
            time.sleep(1.0)
            if any(m.header.stamp == stamp for m in odom):
                break
