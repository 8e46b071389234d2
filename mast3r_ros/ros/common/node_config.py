"""Settings of the ROS 2 nodes around the pipeline: frames, topics, TF, inputs and outputs.

ROS-only, so they live in the shell and not in :mod:`mast3r_ros.core.config` (which holds the
pipeline's stage configs). Same conventions as the core configs: frozen dataclasses whose fields
carry help text, ranges and a read-only flag (:func:`mast3r_ros.core.config.opt`), from which the
node parameters and ``config/*.yaml`` are derived. Frame and topic names are validated here, so a
bad name is rejected when the node starts (configure fails with the reason) and when it is set at
run time (``ros2 param set`` answers with the reason).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from mast3r_ros.core.config import InputConfig, opt, validate_fields
from mast3r_ros.core.errors import ConfigError
from mast3r_ros.ros.common.transforms import xyzquat_to_matrix

__all__ = ["LocalizerNodeConfig", "MapperNodeConfig", "OdometryNodeConfig", "SlamNodeConfig",
           "check_frame_id", "check_topic_name"]

_IDENTITY = (0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 1.0)


def check_frame_id(value: str, what: str, allow_empty: bool = False) -> None:
    """Reject a TF frame id that tf2 cannot use.

    Args:
        value: the frame id.
        what: ``Config.field`` for the message.
        allow_empty: accept ``""`` (meaning "not set").

    Raises:
        ConfigError: empty (unless allowed), starting with ``/`` or holding whitespace.
    """
    if value == "" and allow_empty:
        return
    if not value:
        raise ConfigError(f"{what} must not be empty: give a TF frame id (e.g. 'map')")
    if value.startswith("/"):
        raise ConfigError(f"{what}={value!r}: tf2 frame ids must not start with '/'")
    if any(c.isspace() for c in value) or not value.isprintable():
        raise ConfigError(f"{what}={value!r}: frame ids must not contain whitespace")


def check_topic_name(value: str, what: str, allow_empty: bool = False) -> None:
    """Reject a topic name that rclpy would refuse (relative, absolute and ``~`` names are fine).

    Raises:
        ConfigError: with rclpy's explanation.
    """
    if value == "" and allow_empty:
        return
    from rclpy.exceptions import InvalidTopicNameException
    from rclpy.validate_topic_name import validate_topic_name

    try:
        validate_topic_name(value)
    except InvalidTopicNameException as exc:
        raise ConfigError(f"{what}={value!r} is not a valid topic name: "
                          f"{str(exc).splitlines()[0]}") from exc


def _check_common(cfg: Any, frames: tuple[str, ...] = ("map_frame", "odom_frame", "base_frame")
                  ) -> None:
    """Checks shared by the node configs (frames, odometry topic, fallback extrinsic)."""
    name = type(cfg).__name__
    validate_fields(cfg)
    for field in frames:
        check_frame_id(getattr(cfg, field), f"{name}.{field}")
    check_frame_id(cfg.camera_frame, f"{name}.camera_frame", allow_empty=True)
    if hasattr(cfg, "odom_topic"):
        check_topic_name(cfg.odom_topic, f"{name}.odom_topic", allow_empty=True)
    if len(cfg.base_T_camera) != 7:
        raise ConfigError(f"{name}.base_T_camera needs 7 numbers: x y z qx qy qz qw")
    try:
        xyzquat_to_matrix(cfg.base_T_camera)
    except Exception as exc:
        raise ConfigError(f"{name}.base_T_camera: {exc}") from exc


_CAMERA_FRAME_HELP = ("camera optical frame looked up in TF (base_frame <- camera_frame); empty = "
                      "the image header frame_id")
_BASE_T_CAMERA_HELP = ("FALLBACK camera optical frame in the base frame, x y z (m) qx qy qz qw, "
                       "used only while TF has no base_frame <- camera transform (said once in "
                       "the status and diagnostics)")
_ODOM_TOPIC_HELP = ("optional nav_msgs/Odometry topic whose poses are fed to the TF buffer as "
                    "odom_frame -> base_frame (for robots that do not publish odometry on /tf); "
                    "empty = TF only")
_TIMEOUT_HELP = ("how long (s) a TF lookup at an image stamp may wait for odom -> base and the "
                 "camera extrinsic to arrive")


@dataclass(frozen=True)
class LocalizerNodeConfig:
    """The ROS 2 localizer node around the pipeline: map, frames, TF, inputs and outputs.

    ROS parameters use these names at the top level; the pipeline's ``LocalizerConfig`` fields
    follow as ``backend``, ``model.*``, ``matching.*``, ``retrieval.*``, ``pose.*``.
    """

    map_path: str = opt("", "keyframe map directory loaded on configure (the load_map service "
                            "swaps it)", read_only=True)
    autostart: bool = opt(True, "configure and activate at start-up; false when a lifecycle "
                                "manager drives the node", read_only=True)
    map_frame: str = opt("map", "fixed frame of the map; frame_id of pose, clouds and markers")
    odom_frame: str = opt("odom", "odometry frame; map -> odom is published when odom -> base is "
                                  "known")
    base_frame: str = opt("base_link", "robot base frame whose pose is published")
    camera_frame: str = opt("", _CAMERA_FRAME_HELP)
    base_T_camera: tuple = opt(_IDENTITY, _BASE_T_CAMERA_HELP)
    odom_topic: str = opt("", _ODOM_TOPIC_HELP)
    publish_tf: bool = opt(True, "publish map -> odom (REP-105) when odom -> base is known")
    tf_publish_rate: float = opt(20.0, "rate (Hz) at which the latest map -> odom is republished",
                                 range=(0.1, 1000.0))
    transform_tolerance: float = opt(0.1, "map -> odom is stamped now + this (s), as amcl and "
                                          "slam_toolbox do, so that map -> base_link stays fresh",
                                     range=(0.0, 10.0))
    transform_timeout: float = opt(0.1, _TIMEOUT_HELP, range=(0.0, 5.0))
    require_camera_info: bool = opt(True, "wait for camera_info; False lets the backend estimate K")
    max_image_pixels: int = opt(InputConfig.max_image_pixels,
                                "larger images are rejected (width*height)",
                                range=(256, 100_000_000))
    max_stamp_regression: float = opt(0.0, "frames whose stamp goes back by more than this (s) "
                                            "are rejected once and the tracking state is reset",
                                      range=(0.0, None))
    max_inlier_points: int = opt(5000, "points in the inliers cloud (subsampled)", range=(0, None))
    map_cloud_points: int = opt(50_000, "points in the latched map cloud", range=(0, None))
    diagnostics_period: float = opt(1.0, "seconds between /diagnostics messages",
                                    range=(0.05, 60.0))
    load_map_timeout: float = opt(60.0, "the load_map service answers 'timed out' (previous map "
                                        "kept) when reading a map takes longer than this (s)",
                                  range=(0.1, 3600.0))
    fallback_position_std: float = opt(0.1, "position std (m) reported when the solver gives no "
                                            "covariance", range=(0.0, None))
    fallback_rotation_std: float = opt(0.05, "rotation std (rad) reported when the solver gives no "
                                             "covariance", range=(0.0, None))

    def __post_init__(self) -> None:
        _check_common(self)


@dataclass(frozen=True)
class MapperNodeConfig:
    """The ROS 2 mapper node: keyframe buffer, odometry, alignment triggers and outputs.

    ROS parameters use these names at the top level, followed by ``model.*`` (``ModelConfig``),
    ``mapping.*`` (``MappingConfig``) and ``keyframes.*`` (``KeyframeSelectionConfig``).
    """

    map_path: str = opt("", "map directory written by save_map when its request path is empty")
    autostart: bool = opt(True, "configure and activate at start-up; false when a lifecycle "
                                "manager drives the node", read_only=True)
    map_frame: str = opt("map", "frame_id of keyframe_path and map_cloud (the alignment's world "
                                "frame: the odom frame when odometry poses are used, else the "
                                "camera at the root of the alignment's spanning tree)")
    odom_frame: str = opt("odom", "odometry frame (odom -> base looked up in TF at image stamps)")
    base_frame: str = opt("base_link", "robot base frame of the odometry")
    camera_frame: str = opt("", _CAMERA_FRAME_HELP)
    base_T_camera: tuple = opt(_IDENTITY, _BASE_T_CAMERA_HELP)
    odom_topic: str = opt("", _ODOM_TOPIC_HELP)
    transform_timeout: float = opt(0.1, _TIMEOUT_HELP, range=(0.0, 5.0))
    use_odometry_poses: bool = opt(True, "give the odometry camera poses to the alignment")
    poses_mode: str = opt("prior", "odometry poses in the alignment: prior (soft) or fixed (every "
                                   "keyframe needs one)", choices=("prior", "fixed"))
    intrinsics_mode: str = opt("fixed", "camera_info K in the alignment: fixed, prior or init",
                               choices=("fixed", "prior", "init"))
    require_camera_info: bool = opt(True, "wait for camera_info; False lets the alignment "
                                          "estimate the focal length")
    max_keyframes: int = opt(200, "keyframes kept in memory; further keyframes are refused until "
                                  "reset", range=(2, 100_000))
    incremental_pairs: int = opt(5, "after each new keyframe, run the pairwise network stage "
                                    "against this many previous keyframes in the background "
                                    "(cached in mapping.cache_dir, or a temporary directory when "
                                    "empty) so that build_map mostly reads the cache; 0 = off",
                                 range=(0, 1000), read_only=True)
    build_period: float = opt(0.0, "seconds between automatic alignments when keyframes were "
                                   "added (0 = only on the build_map service)", range=(0.0, None),
                              read_only=True)
    max_image_pixels: int = opt(InputConfig.max_image_pixels,
                                "larger images are rejected (width*height)",
                                range=(256, 100_000_000))
    map_cloud_points: int = opt(50_000, "points in the latched map cloud", range=(0, None))
    diagnostics_period: float = opt(1.0, "seconds between /diagnostics messages",
                                    range=(0.05, 60.0))

    def __post_init__(self) -> None:
        _check_common(self)


@dataclass(frozen=True)
class OdometryNodeConfig:
    """The ROS 2 odometry node (SLAM front end): frames, inputs, outputs.

    ROS parameters use these names at the top level, followed by the pipeline's ``LocalizerConfig``
    fields (``backend``, ``model.*``, ``sift.*``, ``matching.*``, ``pose.*``, ``retrieval.*``, with
    the defaults of ``tracking_pipeline()``) and ``tracking.*`` (``TrackingConfig``).
    """

    autostart: bool = opt(True, "configure and activate at start-up; false when a lifecycle "
                                "manager drives the node", read_only=True)
    odom_frame: str = opt("odom", "frame of the odometry (the base starts at its origin)")
    base_frame: str = opt("base_link", "robot base frame (child frame of odom and of the TF)")
    camera_frame: str = opt("", _CAMERA_FRAME_HELP)
    base_T_camera: tuple = opt(_IDENTITY, _BASE_T_CAMERA_HELP)
    transform_timeout: float = opt(0.1, "how long (s) the camera extrinsic lookup at an image "
                                        "stamp may wait", range=(0.0, 5.0))
    publish_tf: bool = opt(True, "publish odom -> base_frame on /tf (false when another node, e.g. "
                                 "robot_localization, owns it); never map -> odom")
    publish_null_when_lost: bool = opt(False, "while lost, publish odom messages with a zero "
                                              "orientation and covariance 9999 (rtabmap's null "
                                              "odometry) instead of nothing")
    require_camera_info: bool = opt(True, "wait for camera_info; False lets the backend estimate K "
                                          "(MASt3R only)")
    depth_tolerance: float = opt(0.02, "a depth image is used when its stamp is within this of "
                                       "the colour image's (s)", range=(0.0, 1.0))
    max_image_pixels: int = opt(InputConfig.max_image_pixels,
                                "larger images are rejected (width*height)",
                                range=(256, 100_000_000))
    max_stamp_regression: float = opt(0.0, "frames whose stamp goes back by more than this (s) "
                                            "are rejected", range=(0.0, None))
    path_length: int = opt(2000, "poses kept in ~/path (oldest dropped)", range=(1, 1_000_000))
    graph_keyframes: int = opt(5000, "keyframes kept in the latched ~/graph (oldest dropped)",
                               range=(1, 1_000_000))
    keyframe_images: bool = opt(True, "~/keyframes messages carry the keyframe's image and depth")
    diagnostics_period: float = opt(1.0, "seconds between /diagnostics messages",
                                    range=(0.05, 60.0))

    def __post_init__(self) -> None:
        _check_common(self, ("odom_frame", "base_frame"))


@dataclass(frozen=True)
class SlamNodeConfig:
    """The ROS 2 mapper in SLAM mode (SLAM back end): frames, REP-105 output, queue and memory.

    ROS parameters use these names at the top level, followed by the pipeline's
    ``LocalizerConfig`` fields (``backend``, ``model.*``, ``sift.*``, ``matching.*``, ``pose.*``,
    ``retrieval.*``: how keyframes are encoded and loops verified, the localizer's own defaults so
    that the saved map suits it) and ``slam.*`` (``SlamConfig``).
    """

    map_path: str = opt("", "map directory written by save_map when its request path is empty")
    autostart: bool = opt(True, "configure and activate at start-up; false when a lifecycle "
                                "manager drives the node", read_only=True)
    map_frame: str = opt("map", "frame of the optimised map (the first keyframe's odom pose)")
    odom_frame: str = opt("odom", "odometry frame of the front end (map -> odom is published)")
    base_frame: str = opt("base_link", "robot base frame (optimised_path, markers)")
    camera_frame: str = opt("", "camera optical frame looked up in TF (base_frame <- "
                                "camera_frame); empty = the keyframe message's camera_frame")
    base_T_camera: tuple = opt(_IDENTITY, _BASE_T_CAMERA_HELP)
    transform_timeout: float = opt(0.1, "how long (s) the camera extrinsic lookup may wait",
                                   range=(0.0, 5.0))
    publish_tf: bool = opt(True, "publish map -> odom (REP-105) from the optimised graph")
    tf_publish_rate: float = opt(20.0, "rate (Hz) at which the latest map -> odom is republished",
                                 range=(0.1, 1000.0))
    transform_tolerance: float = opt(0.1, "map -> odom is stamped now + this (s), as amcl and "
                                          "slam_toolbox do", range=(0.0, 10.0))
    queue_size: int = opt(100, "stream messages waiting for the back end; a message arriving on a "
                               "full queue is dropped and counted", range=(1, 100_000),
                          read_only=True)
    max_image_pixels: int = opt(InputConfig.max_image_pixels,
                                "larger keyframe images are rejected (width*height)",
                                range=(256, 100_000_000))
    store_dir: str = opt("", "working map store: keyframe images, depths and encodings are "
                             "written here and read back on demand, so RAM stays bounded; "
                             "empty = a temporary directory removed on cleanup", read_only=True)
    store_every: int = opt(10, "move the keyframes in RAM to the working store once this many "
                               "accumulated (0 = keep every keyframe in RAM)",
                           range=(0, 100_000))
    map_cloud_points: int = opt(50_000, "points in the latched map_cloud", range=(0, None))
    cloud_every: int = opt(5, "republish map_cloud after this many new keyframes (and after "
                              "optimize / save_map)", range=(1, 100_000))
    diagnostics_period: float = opt(1.0, "seconds between /diagnostics messages",
                                    range=(0.05, 60.0))

    def __post_init__(self) -> None:
        _check_common(self)
