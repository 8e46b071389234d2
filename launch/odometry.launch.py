"""Visual odometry from one camera (SLAM front end): ``ros2 launch mast3r_ros odometry.launch.py``.

Thin on purpose: one lifecycle node (``lib/mast3r_ros/odometry``) with its parameters file, the
parameters whose argument was set on the command line (an unset argument never overrides the
params file) and topic remappings (``image``, ``camera_info``, ``depth``). The arguments are
listed, with their node parameters, in ``mast3r_ros.ros.common.launch_args.ODOMETRY_ARGS``. The
node configures and activates itself unless ``autostart:=false``. Without a checkpoint use
``backend:=sift`` (then a registered depth topic is needed).

Frames (REP-105): the node publishes ``odom -> base_link`` (``publish_tf:=false`` when another
node owns it) and never ``map -> odom``; the camera extrinsic ``base_frame <- camera_frame``
comes from TF.
"""

from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, OpaqueFunction

from mast3r_ros.ros.common.launch_args import ODOMETRY_ARGS, lifecycle_node


def generate_launch_description() -> LaunchDescription:
    declared = [DeclareLaunchArgument(a.name, default_value=a.default, description=a.description)
                for a in ODOMETRY_ARGS]
    odometry = OpaqueFunction(function=lambda context: lifecycle_node(
        context, executable="odometry", args=ODOMETRY_ARGS, params_yaml="odometry.yaml"))
    return LaunchDescription(declared + [odometry])
