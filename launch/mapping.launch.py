"""Build a keyframe map from a camera: ``ros2 launch mast3r_ros mapping.launch.py checkpoint:=...``.

Thin on purpose: one lifecycle node (``lib/mast3r_ros/mapper``), its parameters file, a few
overrides and topic remappings. Call ``build_map`` (std_srvs/Trigger) to align the keyframes and
``save_map`` (mast3r_ros/srv/LoadMap, empty path = ``map_path``) to write the map the localizer
loads. The mapper needs a MASt3R checkpoint (``checkpoint`` or $MAST3R_CHECKPOINT).
"""

from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution
from launch_ros.actions import LifecycleNode
from launch_ros.descriptions import ParameterValue
from launch_ros.substitutions import FindPackageShare

ARGUMENTS = [
    ("map", "", "output map directory used by save_map when its request path is empty"),
    ("checkpoint", "", "MASt3R checkpoint (.pth or HF dir); empty = $MAST3R_CHECKPOINT"),
    ("device", "auto", "torch device: auto, cpu, cuda, cuda:N"),
    ("image_topic", "/camera/image_raw", "sensor_msgs/Image input (<topic>/compressed also read)"),
    ("camera_info_topic", "/camera/camera_info", "sensor_msgs/CameraInfo input"),
    ("odom_topic", "/odom", "nav_msgs/Odometry input when tf2 is unavailable"),
    ("map_frame", "map", "frame of the built map"),
    ("odom_frame", "odom", "odometry frame"),
    ("base_frame", "base_link", "robot base frame"),
    ("use_sim_time", "false", "use /clock"),
    ("autostart", "true", "configure + activate without a lifecycle manager"),
    ("namespace", "", "node namespace"),
]


def generate_launch_description() -> LaunchDescription:
    cfg = {name: LaunchConfiguration(name) for name, _, _ in ARGUMENTS}
    declared = [DeclareLaunchArgument(n, default_value=d, description=h) for n, d, h in ARGUMENTS]
    declared.append(DeclareLaunchArgument(
        "params_file", description="parameters YAML (every parameter documented)",
        default_value=PathJoinSubstitution([FindPackageShare("mast3r_ros"), "config",
                                            "mapper.yaml"])))
    text = lambda name: ParameterValue(cfg[name], value_type=str)  # noqa: E731
    flag = lambda name: ParameterValue(cfg[name], value_type=bool)  # noqa: E731
    node = LifecycleNode(
        package="mast3r_ros", executable="mapper", name="mapper",
        namespace=cfg["namespace"], output="screen",
        parameters=[LaunchConfiguration("params_file"), {
            "map_path": text("map"),
            "model.checkpoint": text("checkpoint"),
            "model.device": text("device"),
            "map_frame": text("map_frame"),
            "odom_frame": text("odom_frame"),
            "base_frame": text("base_frame"),
            "odom_topic": text("odom_topic"),
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
