"""The launch arguments of ``launch/*.launch.py`` and how they become node parameters.

The launch files stay thin: they declare the arguments listed here and hand the node only the
parameters whose argument was given on the command line (:func:`parameter_overrides`), after the
params file, so an unset argument never overrides a value edited in ``config/*.yaml``. The tables
are plain data so that tests check them (and the README's ``ros2 launch`` lines) without
``launch`` installed; :func:`lifecycle_node` is the only piece that needs ``launch_ros``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Optional, Sequence

from mast3r_ros.core.errors import ConfigError

__all__ = ["LaunchArg", "LOCALIZER_ARGS", "MAPPER_ARGS", "ODOMETRY_ARGS", "LOCALIZE_ODOMETRY_ARGS",
           "SLAM_ARGS", "SLAM_ODOMETRY_ARGS", "parameter_overrides", "lifecycle_node"]


@dataclass(frozen=True)
class LaunchArg:
    """One launch argument.

    Attributes:
        name: the argument (``name:=value``).
        default: its default; ``""`` for a parameter argument means "not set: the params file
            (or the node's default) decides".
        description: help text (``ros2 launch ... --show-args``).
        parameter: the node parameter it sets, or None (topics, namespace, params_file, rviz).
        kind: ``str``, ``bool`` or ``float``: how the command-line text is converted.
    """

    name: str
    default: str
    description: str
    parameter: Optional[str] = None
    kind: str = "str"


def _frames_and_tf(node: str) -> list[LaunchArg]:
    out = [
        LaunchArg("map_frame", "", "fixed frame of the map (param map_frame)", "map_frame"),
        LaunchArg("odom_frame", "", "odometry frame (param odom_frame)", "odom_frame"),
        LaunchArg("base_frame", "", "robot base frame (param base_frame)", "base_frame"),
        LaunchArg("camera_frame", "", "camera optical frame looked up in TF; unset = the image "
                                      "header frame_id (param camera_frame)", "camera_frame"),
        LaunchArg("odom_topic", "", "optional nav_msgs/Odometry topic fed to TF as odom -> base "
                                    "(param odom_topic)", "odom_topic"),
    ]
    if node == "odometry":  # the odometry node makes odom -> base: no map, no odometry input
        return out[1:4] + [
            LaunchArg("publish_tf", "", "publish odom -> base_frame (param publish_tf)",
                      "publish_tf", "bool"),
            LaunchArg("publish_null_when_lost", "", "rtabmap's null odometry while lost (param "
                                                    "publish_null_when_lost)",
                      "publish_null_when_lost", "bool"),
        ]
    if node == "slam":  # the back end reads the keyframe stream: no odometry input
        out = out[:4]
    if node in ("localizer", "slam"):
        out += [
            LaunchArg("publish_tf", "", "publish map -> odom (param publish_tf)", "publish_tf",
                      "bool"),
            LaunchArg("transform_tolerance", "", "map -> odom is stamped now + this, in s (param "
                                                 "transform_tolerance)",
                      "transform_tolerance", "float"),
        ]
    return out


def _common(node: str, params_yaml: str) -> list[LaunchArg]:
    return [
        LaunchArg("params_file", "", "parameters YAML (every parameter documented); unset = the "
                                     "package's config/" + params_yaml),
        LaunchArg("checkpoint", "", "MASt3R checkpoint (.pth or HF dir); unset = "
                                    "$MAST3R_CHECKPOINT (param model.checkpoint)",
                  "model.checkpoint"),
        LaunchArg("device", "", "torch device: auto, cpu, cuda, cuda:N (param model.device)",
                  "model.device"),
        LaunchArg("image_topic", "/camera/image_raw", "sensor_msgs/Image input (<topic>/compressed "
                                                      "is read too)"),
        LaunchArg("camera_info_topic", "/camera/camera_info", "sensor_msgs/CameraInfo input"),
        *_frames_and_tf(node),
        LaunchArg("autostart", "", "configure + activate without a lifecycle manager (param "
                                   "autostart, default true)", "autostart", "bool"),
        LaunchArg("use_sim_time", "", "use /clock (param use_sim_time)", "use_sim_time", "bool"),
        LaunchArg("namespace", "", "node namespace"),
    ]


#: ``localize.launch.py``: the localizer (and rviz2 with ``rviz:=true``).
LOCALIZER_ARGS: tuple[LaunchArg, ...] = (
    LaunchArg("map", "", "keyframe map directory (param map_path)", "map_path"),
    LaunchArg("backend", "", "mast3r (the product) or sift (classical baseline) (param "
                             "backend)", "backend"),
    *_common("localizer", "localizer.yaml"),
    LaunchArg("rviz", "false", "also start rviz2 with config/mast3r_ros.rviz", kind="bool"),
)

#: ``odometry.launch.py``: the odometry node (SLAM front end).
ODOMETRY_ARGS: tuple[LaunchArg, ...] = (
    LaunchArg("backend", "", "mast3r (the product) or sift (classical baseline) (param "
                             "backend)", "backend"),
    *_common("odometry", "odometry.yaml"),
    LaunchArg("depth_topic", "/camera/depth/image_raw", "optional registered depth input "
                                                        "(16UC1 mm or 32FC1 m)"),
)

#: what ``localize.launch.py`` adds for ``odometry:=true`` (the odometry node then also takes its
#: shared arguments: backend, checkpoint, device, topics, frames, autostart, namespace)
LOCALIZE_ODOMETRY_ARGS: tuple[LaunchArg, ...] = (
    LaunchArg("odometry", "false", "also run the odometry node (SLAM front end): map -> odom -> "
                                   "base_link from the camera alone", kind="bool"),
    LaunchArg("odometry_params_file", "", "parameters YAML of the odometry node; unset = the "
                                          "package's config/odometry.yaml"),
    ODOMETRY_ARGS[-1],
)

#: ``mapping.launch.py``: the mapper.
MAPPER_ARGS: tuple[LaunchArg, ...] = (
    LaunchArg("map", "", "output map directory used by save_map when its request path is empty "
                         "(param map_path)", "map_path"),
    *_common("mapper", "mapper.yaml"),
)


#: ``slam.launch.py``: the mapper in SLAM mode (executable ``slam``, node name ``mapper``); the
#: odometry node beside it takes the arguments it shares with it plus SLAM_ODOMETRY_ARGS.
SLAM_ARGS: tuple[LaunchArg, ...] = (
    LaunchArg("map", "", "map directory written by save_map when its request path is empty "
                         "(param map_path)", "map_path"),
    LaunchArg("backend", "", "mast3r (the product) or sift (classical baseline) (param "
                             "backend)", "backend"),
    *_common("slam", "slam.yaml"),
)

#: what ``slam.launch.py`` adds for its odometry node
SLAM_ODOMETRY_ARGS: tuple[LaunchArg, ...] = LOCALIZE_ODOMETRY_ARGS[1:]


def _convert(arg: LaunchArg, text: str) -> Any:
    if arg.kind == "bool":
        low = text.strip().lower()
        if low not in ("true", "false"):
            raise ConfigError(f"launch argument {arg.name}:={text!r} must be true or false")
        return low == "true"
    if arg.kind == "float":
        try:
            return float(text)
        except ValueError as exc:
            raise ConfigError(f"launch argument {arg.name}:={text!r} must be a number") from exc
    return text


def parameter_overrides(args: Sequence[LaunchArg], given: Mapping[str, str]) -> dict[str, Any]:
    """Node parameters of the parameter arguments that were set (non-empty), typed.

    Args:
        args: the launch file's arguments.
        given: argument name -> the text it resolved to (``""`` = not set).

    Raises:
        ConfigError: a bool or number argument that does not parse.
    """
    return {a.parameter: _convert(a, given[a.name]) for a in args
            if a.parameter is not None and given.get(a.name, "") != ""}


def lifecycle_node(context: Any, *, executable: str, args: Sequence[LaunchArg],
                   params_yaml: str, params_arg: str = "params_file", name: str = "",
                   remappings: Sequence[tuple[str, str]] = ()) -> list[Any]:
    """The ``launch_ros`` LifecycleNode of a launch file (an ``OpaqueFunction`` body).

    Args:
        context: the launch context (resolves the arguments).
        executable: ``lib/mast3r_ros/<executable>``.
        args: the node's arguments (declared by the launch file).
        params_yaml: file name in the package's ``config/`` (the default params file).
        params_arg: the argument naming the node's params file.
        name: node name (default: the executable's name).
        remappings: further topic remappings (after the camera topics').
    """
    from launch.substitutions import LaunchConfiguration
    from launch_ros.actions import LifecycleNode

    given = {a.name: LaunchConfiguration(a.name).perform(context) for a in args}
    params_file = given[params_arg]
    if not params_file:  # the installed one
        from ament_index_python.packages import get_package_share_directory

        params_file = f"{get_package_share_directory('mast3r_ros')}/config/{params_yaml}"
    overrides = parameter_overrides(args, given)
    image = given["image_topic"]
    remaps = [("image", image), ("image/compressed", f"{image}/compressed"),
              ("camera_info", given["camera_info_topic"])]
    if given.get("depth_topic"):
        remaps.append(("depth", given["depth_topic"]))
    remaps += list(remappings)
    return [LifecycleNode(
        package="mast3r_ros", executable=executable, name=name or executable,
        namespace=given["namespace"], output="screen",
        parameters=[params_file] + ([overrides] if overrides else []), remappings=remaps)]
