"""The localizer lifecycle node: camera images in, map-frame base poses out (thin shell).

Lifecycle: ``configure`` reads the parameters, loads model + map (FAILURE with the reason when the
checkpoint or map is missing/invalid) and creates the publishers, subscriptions and the TF helper
(:class:`~mast3r_ros.ros.common.tf_io.TfIo`); ``activate`` starts processing, the periodic
``map -> odom`` output and publishes the latched map cloud and keyframe markers; ``deactivate``
stops both; ``cleanup`` releases everything configure created. Transitions and the ``load_map``
service are serialised (``_lifecycle_lock``), so no interleaving can crash the node.

Threading: image callbacks only keep the newest message (queue of one; overwritten frames are
counted as dropped) and trigger a guard condition; inference runs in its own mutually exclusive
callback group, services in another, ``load_map`` in a third (its file I/O runs in a worker thread
with a timeout), TF on its own node and thread. Run it on a ``MultiThreadedExecutor`` (``main``
does).

Topics (relative names, remap as usual): in ``image``, ``image/compressed``, ``camera_info``,
``initialpose``, TF (``/tf``, ``/tf_static``), optionally ``odom_topic``; out ``pose``,
``localization_status``, ``inliers``, ``map_cloud`` and ``keyframes`` (latched), ``/diagnostics``,
``/tf`` (``map -> odom``). Services ``localize``, ``load_map``, ``reset``. Parameters: every field
of :class:`~mast3r_ros.ros.common.node_config.LocalizerNodeConfig` and of the core's
``LocalizerConfig``; each takes effect at run time or is read-only.
"""

from __future__ import annotations

import threading
from typing import Any, Callable, Optional

from geometry_msgs.msg import PoseWithCovarianceStamped
from rcl_interfaces.msg import SetParametersResult
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup
from rclpy.lifecycle import LifecycleNode, LifecycleState, TransitionCallbackReturn
from sensor_msgs.msg import PointCloud2
from std_msgs.msg import Header
from std_srvs.srv import Trigger
from visualization_msgs.msg import MarkerArray

from mast3r_ros.core.config import LocalizerConfig
from mast3r_ros.core.errors import ConfigError, Mast3rRosError
from mast3r_ros.core.types import LocalizationResult
from mast3r_ros.msg import LocalizationStatus
from mast3r_ros.ros.common import outputs
from mast3r_ros.ros.common.conversions import points_to_cloud
from mast3r_ros.ros.common.frame_node import LATCHED_QOS, FrameNodeMixin, run_lifecycle_main
from mast3r_ros.ros.common.frames import Extrinsic, ExtrinsicResolver, MapToOdom
from mast3r_ros.ros.common.node_config import LocalizerNodeConfig
from mast3r_ros.ros.common.params import config_from_values, declare_spec, iter_param_specs
from mast3r_ros.ros.common.tf_io import TfIo
from mast3r_ros.ros.localizer.processing import LocalizerProcessingMixin
from mast3r_ros.ros.localizer.services import LocalizerServicesMixin
from mast3r_ros.srv import LoadMap

__all__ = ["LocalizerNode", "main"]

LocalizerFactory = Callable[[LocalizerConfig, str], Any]
MapLoader = Callable[[str, Any], Any]


def _real_factory(config: LocalizerConfig, map_path: str) -> Any:
    from mast3r_ros.core.localizer import Localizer

    return Localizer.from_paths(config, map_path)


def _real_map_loader(path: str, localizer: Any) -> Any:
    from mast3r_ros.core.map import load_map

    # the localizer checks the encodings against its backend (encode_map)
    return load_map(path, config=localizer.config.map_store)


class LocalizerNode(LocalizerServicesMixin, LocalizerProcessingMixin, FrameNodeMixin,
                    LifecycleNode):
    """Lifecycle node localizing camera frames in a keyframe map (see module docstring).

    Args:
        node_name: ROS node name.
        localizer_factory: ``(LocalizerConfig, map_path) -> localizer`` (default: the core's
            ``Localizer.from_paths``); threading tests inject a slow core here.
        map_loader: ``(path, localizer) -> KeyframeMap`` used by ``load_map`` (default: the
            core's ``load_map`` with the backend's compatibility check).
        **kwargs: passed to ``rclpy.node.Node`` (namespace, parameter_overrides, ...).
    """

    def __init__(self, node_name: str = "localizer", *,
                 localizer_factory: Optional[LocalizerFactory] = None,
                 map_loader: Optional[MapLoader] = None, **kwargs: Any) -> None:
        super().__init__(node_name, **kwargs)
        self._factory = localizer_factory or _real_factory
        self._map_loader = map_loader or _real_map_loader
        self._values: dict[str, Any] = {}
        for cls in (LocalizerNodeConfig, LocalizerConfig):
            for spec in iter_param_specs(cls):
                self._values[spec.name] = declare_spec(self, spec)
        self.cfg, self.loc_cfg, self.config_error = LocalizerNodeConfig(), LocalizerConfig(), ""
        try:
            self.cfg, self.loc_cfg = self._configs_from(self._values)
        except ConfigError as exc:
            self.config_error = str(exc)
            self.get_logger().error(f"invalid parameters: {exc}")
        self.add_on_set_parameters_callback(self._on_set_parameters)
        self._init_frame_node()  # groups, slot/work/lifecycle locks, _pending, _active, ...
        self._load_group = MutuallyExclusiveCallbackGroup()
        self._loc_lock = threading.Lock()
        self._localizer: Any = None
        self._tf: Optional[TfIo] = None
        self._frames: Any = None
        self._map_to_odom: Optional[MapToOdom] = None
        self._loading: Any = None  # the running map load (services.MapLoad)
        self._prior: Any = None
        self._last_stamp: Optional[float] = None
        self._last_camera_frame = ""
        self.initialpose_note = "none received"
        self.last_extrinsic: Optional[Extrinsic] = None
        self.counters = outputs.NodeCounters()
        self.last_times = outputs.FrameTimes()
        self.times_history: list[outputs.FrameTimes] = []
        self.last_result: Optional[LocalizationResult] = None
        self._create_frame_timers(self.cfg.diagnostics_period)
        self.create_service(Trigger, "localize", self._srv_localize, callback_group=self._srv_group)
        self.create_service(Trigger, "reset", self._srv_reset, callback_group=self._srv_group)
        self.create_service(LoadMap, "load_map", self._srv_load_map,
                            callback_group=self._load_group)

    # ------------------------------------------------------------------ parameters
    @staticmethod
    def _configs_from(values: dict[str, Any]) -> tuple[LocalizerNodeConfig, LocalizerConfig]:
        return (config_from_values(LocalizerNodeConfig, values),
                config_from_values(LocalizerConfig, values))

    def _on_set_parameters(self, params: list[Any]) -> SetParametersResult:
        values = dict(self._values)
        values.update({p.name: p.value for p in params if p.name in values})
        try:
            cfg, loc_cfg = self._configs_from(values)
        except ConfigError as exc:
            return SetParametersResult(successful=False, reason=str(exc))
        old = self.cfg
        self._values, self.cfg, self.loc_cfg, self.config_error = values, cfg, loc_cfg, ""
        self._apply_runtime(old, cfg)
        return SetParametersResult(successful=True)

    def _apply_runtime(self, old: LocalizerNodeConfig, new: LocalizerNodeConfig) -> None:
        """Make changed node parameters take effect now (core parameters: next frame)."""
        if new.diagnostics_period != old.diagnostics_period:
            self._retime_diagnostics(new.diagnostics_period)
        tf, m2o = self._tf, self._map_to_odom
        if tf is not None:
            tf.set_odometry(new.odom_topic, new.odom_frame, new.base_frame)
        if m2o is not None:
            if new.base_frame != old.base_frame:
                m2o.clear(f"base_frame changed to {new.base_frame}; waiting for a new localized "
                          "frame")
            if self._active:
                m2o.start(new.tf_publish_rate)
        if self._active and (new.map_frame, new.map_cloud_points) != (old.map_frame,
                                                                      old.map_cloud_points):
            self._publish_map()

    def _apply_core_config(self) -> None:
        """Hand the current pipeline parameters to the core (per frame, ``_loc_lock`` held)."""
        if self._localizer.config is not self.loc_cfg:
            self._localizer.update_config(self.loc_cfg)

    # ------------------------------------------------------------------ lifecycle
    def on_configure(self, state: LifecycleState) -> TransitionCallbackReturn:
        with self._lifecycle_lock:
            if self.config_error:
                return self._fail_transition(f"invalid parameters: {self.config_error}")
            if not self.cfg.map_path:
                return self._fail_transition("parameter map_path is empty; give a map directory "
                                             "(build one with `mast3r-ros map-from-rgbd`)")
            localizer = self._build_core(lambda: self._factory(self.loc_cfg, self.cfg.map_path),
                                         "load model/map")
            if isinstance(localizer, TransitionCallbackReturn):
                return localizer
            with self._loc_lock:
                self._localizer = localizer
            self._create_io()
            self.counters.last_state = self.counters.last_reason = "configured"
            self.get_logger().info(f"configured: backend={self.loc_cfg.backend} "
                                   f"map={self.cfg.map_path} ({len(localizer.map)} keyframes); "
                                   f"TF {self._tf.channel if self._tf else 'none'}")
            if self.loc_cfg.backend == "sift":
                self.get_logger().warning("backend=sift: classical SIFT baseline, not MASt3R")
            return TransitionCallbackReturn.SUCCESS

    def _create_io(self) -> None:
        c, g = self.cfg, self._io_group
        self._pose_pub = self.create_lifecycle_publisher(PoseWithCovarianceStamped, "pose", 10)
        self._status_pub = self.create_lifecycle_publisher(LocalizationStatus,
                                                           "localization_status", 10)
        self._inliers_pub = self.create_lifecycle_publisher(PointCloud2, "inliers", 2)
        self._map_pub = self.create_lifecycle_publisher(PointCloud2, "map_cloud", LATCHED_QOS)
        self._kf_pub = self.create_lifecycle_publisher(MarkerArray, "keyframes", LATCHED_QOS)
        self._entities = [self._pose_pub, self._status_pub, self._inliers_pub, self._map_pub,
                          self._kf_pub]
        self._subs = self._frame_subscriptions(g, "image", "image/compressed", "camera_info") + [
            self.create_subscription(PoseWithCovarianceStamped, "initialpose",
                                     self._on_initialpose, 10, callback_group=self._srv_group)]
        self._tf = TfIo(self)
        self._tf.set_odometry(c.odom_topic, c.odom_frame, c.base_frame)
        self._frames = ExtrinsicResolver(self._tf, self.get_logger().warning)
        self._map_to_odom = MapToOdom(self._tf, self._tf_settings)

    def on_activate(self, state: LifecycleState) -> TransitionCallbackReturn:
        with self._lifecycle_lock:
            ret = super().on_activate(state)
            self.counters = outputs.NodeCounters(last_state="waiting_for_image",
                                                 last_reason="active, waiting for images")
            self._active = True
            if self._map_to_odom is not None:
                self._map_to_odom.start(self.cfg.tf_publish_rate)
            try:
                self._publish_map()
            except Mast3rRosError as exc:
                self.get_logger().warning(f"cannot publish the map visualisation: {exc}")
            return ret

    def _on_deactivate_extra(self) -> None:
        if self._map_to_odom is not None:
            self._map_to_odom.clear("node deactivated")
        if self._tf is not None:
            self._tf.set_periodic(0.0, None)

    def _release_locks(self) -> tuple[Any, ...]:
        return (self._work_lock, self._loc_lock)

    def _release_resources(self) -> None:
        self._localizer, self._map_to_odom, self._frames = None, None, None
        if self._tf is not None:
            self._tf.close()
            self._tf = None
        self._prior, self._last_stamp, self.last_extrinsic = None, None, None

    def _publish_map(self) -> None:
        kmap = self._localizer.map
        header = Header(stamp=self.get_clock().now().to_msg(), frame_id=self.cfg.map_frame)
        pts, cols = kmap.points_map(self.cfg.map_cloud_points)
        self._map_pub.publish(points_to_cloud(pts, header, cols))
        self._kf_pub.publish(outputs.keyframe_markers(header, kmap.poses(), list(kmap.ids)))


def main(args: Optional[list[str]] = None) -> int:
    """Run the node (``ros2 run mast3r_ros localizer``); ``autostart:=true`` self-activates."""
    return run_lifecycle_main(LocalizerNode, args)


if __name__ == "__main__":
    raise SystemExit(main())
