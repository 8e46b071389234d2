"""Build a keyframe map from a camera: ``ros2 launch mast3r_ros mapping.launch.py checkpoint:=...``.

Thin on purpose: one lifecycle node (``lib/mast3r_ros/mapper``) with its parameters file, the
parameters whose argument was set on the command line (an unset argument never overrides the
params file) and topic remappings; arguments in
``mast3r_ros.ros.common.launch_args.MAPPER_ARGS``. Call ``build_map`` (std_srvs/Trigger) to align
the keyframes and ``save_map`` (mast3r_ros/srv/LoadMap, empty path = ``map_path``) to write the map
the localizer loads. The mapper needs a MASt3R checkpoint (``checkpoint`` or $MAST3R_CHECKPOINT).
Odometry poses come from TF (``odom -> base_link`` at each image stamp, composed with the camera
extrinsic ``base_link <- camera_frame``).
"""

from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, OpaqueFunction

from mast3r_ros.ros.common.launch_args import MAPPER_ARGS, lifecycle_node


def generate_launch_description() -> LaunchDescription:
    declared = [DeclareLaunchArgument(a.name, default_value=a.default, description=a.description)
                for a in MAPPER_ARGS]
    mapper = OpaqueFunction(function=lambda context: lifecycle_node(
        context, executable="mapper", args=MAPPER_ARGS, params_yaml="mapper.yaml"))
    return LaunchDescription(declared + [mapper])
