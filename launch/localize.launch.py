"""Localize a camera in a prior map: ``ros2 launch mast3r_ros localize.launch.py map:=<dir>``.

Thin on purpose: one lifecycle node (``lib/mast3r_ros/localizer``) with its parameters file, the
parameters whose argument was set on the command line (an unset argument never overrides the
params file), topic remappings, and rviz2 with ``rviz:=true``. The arguments are listed, with
their node parameters, in ``mast3r_ros.ros.common.launch_args.LOCALIZER_ARGS`` (see
``--show-args`` or the README). The node configures and activates itself unless
``autostart:=false`` (a lifecycle manager drives it). Without a checkpoint use ``backend:=sift``.

Frames (REP-105): the camera extrinsic ``base_frame <- camera_frame`` comes from TF (e.g.
robot_state_publisher); with odometry on TF (``odom -> base_link``) the node publishes
``map -> odom``, else only the pose. ``odometry:=true`` also starts the odometry node (SLAM front
end, ``config/odometry.yaml``) on the same camera, backend and frames, so that a robot without
wheel odometry gets ``map -> odom -> base_link`` from this package alone.
"""

from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, OpaqueFunction
from launch.conditions import IfCondition
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution
from launch_ros.actions import Node
from launch_ros.substitutions import FindPackageShare

from mast3r_ros.ros.common.launch_args import (
    LOCALIZE_ODOMETRY_ARGS,
    LOCALIZER_ARGS,
    ODOMETRY_ARGS,
    lifecycle_node,
)

#: the odometry node's arguments here: those it shares with the localizer, plus its own
_SHARED = {a.name for a in LOCALIZER_ARGS} - {"params_file", "publish_tf"}
_ODOMETRY = tuple(a for a in ODOMETRY_ARGS if a.name in _SHARED) + LOCALIZE_ODOMETRY_ARGS[1:]


def _odometry(context):  # the odometry node when odometry:=true
    from launch.substitutions import LaunchConfiguration

    if LaunchConfiguration("odometry").perform(context).lower() != "true":
        return []
    return lifecycle_node(context, executable="odometry", args=_ODOMETRY,
                          params_yaml="odometry.yaml", params_arg="odometry_params_file")


def generate_launch_description() -> LaunchDescription:
    declared = [DeclareLaunchArgument(a.name, default_value=a.default, description=a.description)
                for a in LOCALIZER_ARGS + LOCALIZE_ODOMETRY_ARGS]
    localizer = OpaqueFunction(function=lambda context: lifecycle_node(
        context, executable="localizer", args=LOCALIZER_ARGS, params_yaml="localizer.yaml"))
    odometry = OpaqueFunction(function=_odometry)
    rviz = Node(package="rviz2", executable="rviz2", name="rviz2", output="screen",
                arguments=["-d", PathJoinSubstitution([FindPackageShare("mast3r_ros"), "config",
                                                       "mast3r_ros.rviz"])],
                condition=IfCondition(LaunchConfiguration("rviz")))
    return LaunchDescription(declared + [localizer, odometry, rviz])
