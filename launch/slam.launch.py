"""SLAM from one camera, map once: ``ros2 launch mast3r_ros slam.launch.py map:=<dir> ...``.

Thin on purpose: two lifecycle nodes with their parameters files, the parameters whose argument
was set on the command line (an unset argument never overrides a params file) and topic
remappings, as ``localize.launch.py``:

* ``odometry`` (``lib/mast3r_ros/odometry``, ``config/odometry.yaml``, argument
  ``odometry_params_file``): the SLAM front end on the camera (``image_topic``,
  ``camera_info_topic``, ``depth_topic``), ``odom -> base_link`` and the keyframe stream;
* ``mapper`` (``lib/mast3r_ros/slam``, ``config/slam.yaml``, argument ``params_file``): the mapper
  in SLAM mode, reading ``odometry/keyframes`` and ``odometry/graph``, publishing ``map -> odom``
  and serving ``/mapper/save_map`` (then ``localize.launch.py map:=<dir>``).

The arguments are listed, with their node parameters, in
``mast3r_ros.ros.common.launch_args.SLAM_ARGS`` (the mapper) and ``SLAM_ODOMETRY_ARGS``; the
odometry node also takes the ones it shares with the mapper (backend, checkpoint, device,
topics, odom/base/camera frames, autostart, use_sim_time, namespace). Without a checkpoint use
``backend:=sift`` (then the odometry node needs a registered depth topic).
"""

from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, OpaqueFunction

from mast3r_ros.ros.common.launch_args import (
    ODOMETRY_ARGS,
    SLAM_ARGS,
    SLAM_ODOMETRY_ARGS,
    lifecycle_node,
)

#: the odometry node's arguments here: those it shares with the mapper, plus its own
_SHARED = {a.name for a in SLAM_ARGS} - {"params_file", "publish_tf", "map_frame"}
_ODOMETRY = tuple(a for a in ODOMETRY_ARGS if a.name in _SHARED) + SLAM_ODOMETRY_ARGS
#: the mapper reads the odometry node's stream (relative names: the same namespace)
_STREAM = [("keyframes", "odometry/keyframes"), ("graph", "odometry/graph")]


def generate_launch_description() -> LaunchDescription:
    declared = [DeclareLaunchArgument(a.name, default_value=a.default, description=a.description)
                for a in SLAM_ARGS + SLAM_ODOMETRY_ARGS]
    odometry = OpaqueFunction(function=lambda context: lifecycle_node(
        context, executable="odometry", args=_ODOMETRY, params_yaml="odometry.yaml",
        params_arg="odometry_params_file"))
    mapper = OpaqueFunction(function=lambda context: lifecycle_node(
        context, executable="slam", name="mapper", args=SLAM_ARGS, params_yaml="slam.yaml",
        remappings=_STREAM))
    return LaunchDescription(declared + [odometry, mapper])
