"""Localize a camera in a prior map: ``ros2 launch mast3r_ros localize.launch.py map:=<dir>``.

Thin on purpose: one lifecycle node (``lib/mast3r_ros/localizer``), its parameters file, a few
overrides and topic remappings. The graph tests start the same executable with the same
parameters and remappings (``mast3r_ros.ros.graph_procs``). ``autostart:=true`` (default) makes the
node configure and activate itself; set it false when a lifecycle manager drives the node.
Without ``checkpoint`` (and without $MAST3R_CHECKPOINT) use ``backend:=sift`` (classical baseline).
"""

from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution
from launch_ros.actions import LifecycleNode
from launch_ros.descriptions import ParameterValue
from launch_ros.substitutions import FindPackageShare

ARGUMENTS = [
    ("map", "", "keyframe map directory (mast3r-ros map-from-rgbd / the mapper)"),
    ("checkpoint", "", "MASt3R checkpoint (.pth or HF dir); empty = $MAST3R_CHECKPOINT"),
    ("backend", "mast3r", "mast3r (the product) or sift (classical baseline)"),
    ("device", "auto", "torch device: auto, cpu, cuda, cuda:N"),
    ("image_topic", "/camera/image_raw", "sensor_msgs/Image input (<topic>/compressed also read)"),
    ("camera_info_topic", "/camera/camera_info", "sensor_msgs/CameraInfo input"),
    ("map_frame", "map", "map frame"),
    ("odom_frame", "odom", "odometry frame (map->odom is published when odom->base is known)"),
    ("base_frame", "base_link", "robot base frame"),
    ("use_sim_time", "false", "use /clock"),
    ("autostart", "true", "configure + activate without a lifecycle manager"),
    ("namespace", "", "node namespace"),
]


def generate_launch_description() -> LaunchDescription:
    cfg = {name: LaunchConfiguration(name) for name, _, _ in ARGUMENTS}
    params_file = LaunchConfiguration("params_file")
    declared = [DeclareLaunchArgument(n, default_value=d, description=h) for n, d, h in ARGUMENTS]
    declared.append(DeclareLaunchArgument(
        "params_file", description="parameters YAML (every parameter documented)",
        default_value=PathJoinSubstitution([FindPackageShare("mast3r_ros"), "config",
                                            "localizer.yaml"])))
    text = lambda name: ParameterValue(cfg[name], value_type=str)  # noqa: E731
    flag = lambda name: ParameterValue(cfg[name], value_type=bool)  # noqa: E731
    node = LifecycleNode(
        package="mast3r_ros", executable="localizer", name="localizer",
        namespace=cfg["namespace"], output="screen",
        parameters=[params_file, {
            "map_path": text("map"),
            "model.checkpoint": text("checkpoint"),
            "backend": text("backend"),
            "model.device": text("device"),
            "map_frame": text("map_frame"),
            "odom_frame": text("odom_frame"),
            "base_frame": text("base_frame"),
            "autostart": flag("autostart"),
            "use_sim_time": flag("use_sim_time"),
        }],
        remappings=[
            ("image", cfg["image_topic"]),
            ("image/compressed", [cfg["image_topic"], "/compressed"]),
            ("camera_info", cfg["camera_info_topic"]),
        ],
    )
    return LaunchDescription(declared + [node])
