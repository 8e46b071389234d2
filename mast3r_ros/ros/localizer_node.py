"""The localizer lifecycle node: camera images in, map-frame poses out (thin shell over the core).

Lifecycle: ``configure`` reads the parameters and loads model + map (FAILURE with the reason when
the checkpoint or map is missing/invalid); ``activate`` starts processing and publishes the latched
map cloud and keyframe markers; ``deactivate`` stops; ``cleanup`` frees the model and map.

Threading: image callbacks only keep the newest message (queue of one; overwritten frames are
counted as dropped) and trigger a guard condition; inference runs in its own mutually exclusive
callback group, services in another, so a slow network never builds a backlog. Run it on a
``MultiThreadedExecutor`` (``main`` does).

Topics (relative names, remap as usual): in ``image``, ``image/compressed``, ``camera_info``,
``initialpose``; out ``pose``, ``localization_status``, ``inliers``, ``map_cloud`` and
``keyframes`` (latched), ``/diagnostics``, ``/tf`` (map -> odom). Services ``localize``,
``load_map``, ``reset``.
"""

from __future__ import annotations

import threading
import time
import traceback
from dataclasses import dataclass
from typing import Any, Callable, Optional

import numpy as np
from geometry_msgs.msg import PoseWithCovarianceStamped
from rcl_interfaces.msg import SetParametersResult
from rclpy.lifecycle import LifecycleNode, LifecycleState, TransitionCallbackReturn
from sensor_msgs.msg import PointCloud2
from std_msgs.msg import Header
from std_srvs.srv import Trigger
from visualization_msgs.msg import MarkerArray

from mast3r_ros.core.config import LocalizerConfig, LocalizerNodeConfig
from mast3r_ros.core.errors import ConfigError, InputError, Mast3rRosError
from mast3r_ros.core.types import Frame, LocalizationResult
from mast3r_ros.msg import LocalizationStatus
from mast3r_ros.ros import outputs
from mast3r_ros.ros.conversions import (compressed_to_rgb, image_to_rgb, points_to_cloud,
                                        pose_to_matrix, stamp_to_sec)
from mast3r_ros.ros.frame_node import (LATCHED_QOS as _LATCHED, THROTTLE_S as _THROTTLE_S,
                                       FrameNodeMixin, run_lifecycle_main)
from mast3r_ros.ros.localizer_services import LocalizerServicesMixin
from mast3r_ros.ros.params import config_from_values, declare_spec, iter_param_specs
from mast3r_ros.ros.tf_bridge import OdomSource, TfBroadcaster
from mast3r_ros.ros.transforms import (base_pose_from_camera, camera_prior_from_base,
                                       compute_map_to_odom, xyzquat_to_matrix)
from mast3r_ros.srv import LoadMap

__all__ = ["LocalizerNode", "main"]

LocalizerFactory = Callable[[LocalizerConfig, str], Any]
MapLoader = Callable[[str, Any], Any]


def _real_factory(config: LocalizerConfig, map_path: str) -> Any:
    from mast3r_ros.core.localizer import Localizer

    return Localizer.from_paths(config, map_path)


def _real_map_loader(path: str, localizer: Any) -> Any:
    from mast3r_ros.core.map import load_map

    return load_map(path)


class NotReadyError(InputError):
    """A frame cannot be processed yet (e.g. no camera_info received)."""


@dataclass
class _Pending:
    msg: Any
    compressed: bool
    t_recv: float       # time.monotonic() at the callback
    recv_sec: float     # ROS clock at the callback (seconds)


class LocalizerNode(LocalizerServicesMixin, FrameNodeMixin, LifecycleNode):
    """Lifecycle node localizing camera frames in a keyframe map (see module docstring).

    Args:
        node_name: ROS node name.
        localizer_factory: ``(LocalizerConfig, map_path) -> localizer`` (default: the core's
            ``Localizer.from_paths``); tests inject fakes here.
        map_loader: ``(path, localizer) -> KeyframeMap`` used by ``load_map``.
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
        self._init_frame_node()  # io/work/srv groups, slot and work locks, _pending, _active, ...
        self._loc_lock = threading.Lock()
        self._localizer: Any = None
        self._prior: Optional[np.ndarray] = None
        self._last_stamp: Optional[float] = None
        self.counters = outputs.NodeCounters()
        self.last_times = outputs.FrameTimes()
        self.times_history: list[outputs.FrameTimes] = []
        self.last_result: Optional[LocalizationResult] = None
        self._create_frame_timers(self.cfg.diagnostics_period)
        self.create_service(Trigger, "localize", self._srv_localize, callback_group=self._srv_group)
        self.create_service(Trigger, "reset", self._srv_reset, callback_group=self._srv_group)
        self.create_service(LoadMap, "load_map", self._srv_load_map,
                            callback_group=self._srv_group)

    # ------------------------------------------------------------------ parameters
    @staticmethod
    def _configs_from(values: dict[str, Any]) -> tuple[LocalizerNodeConfig, LocalizerConfig]:
        node_cfg = config_from_values(LocalizerNodeConfig, values)
        xyzquat_to_matrix(node_cfg.base_T_camera)  # raises InputError on a zero quaternion
        return node_cfg, config_from_values(LocalizerConfig, values)

    def _on_set_parameters(self, params: list[Any]) -> SetParametersResult:
        values = dict(self._values)
        values.update({p.name: p.value for p in params if p.name in values})
        try:
            cfg, loc_cfg = self._configs_from(values)
        except (ConfigError, InputError) as exc:
            return SetParametersResult(successful=False, reason=str(exc))
        self._values, self.cfg, self.loc_cfg, self.config_error = values, cfg, loc_cfg, ""
        if self._localizer is not None:
            with self._loc_lock:
                self._localizer.update_config(loc_cfg)  # stage parameters are read per frame
        return SetParametersResult(successful=True)

    # ------------------------------------------------------------------ lifecycle
    def on_configure(self, state: LifecycleState) -> TransitionCallbackReturn:
        if self.config_error:
            return self._fail_transition(f"invalid parameters: {self.config_error}")
        if not self.cfg.map_path:
            return self._fail_transition("parameter map_path is empty; give a map directory "
                                         "(build one with `mast3r-ros map-from-rgbd`)")
        try:
            self._localizer = self._factory(self.loc_cfg, self.cfg.map_path)
        except Mast3rRosError as exc:
            return self._fail_transition(f"cannot load model/map: {exc}")
        except Exception as exc:  # noqa: BLE001 - report, stay unconfigured, keep serving
            self.get_logger().error(traceback.format_exc())
            return self._fail_transition(f"internal error while loading model/map: "
                                         f"{type(exc).__name__}: {exc}")
        self._create_io()
        self.counters.last_state = self.counters.last_reason = "configured"
        self.get_logger().info(f"configured: backend={self.loc_cfg.backend} map={self.cfg.map_path}"
                               f" ({len(self._localizer.map)} keyframes)")
        if self.loc_cfg.backend == "sift":
            self.get_logger().warning("backend=sift: classical SIFT baseline, not MASt3R")
        return TransitionCallbackReturn.SUCCESS

    def _create_io(self) -> None:
        c, g = self.cfg, self._io_group
        self._pose_pub = self.create_lifecycle_publisher(PoseWithCovarianceStamped, "pose", 10)
        self._status_pub = self.create_lifecycle_publisher(LocalizationStatus,
                                                           "localization_status", 10)
        self._inliers_pub = self.create_lifecycle_publisher(PointCloud2, "inliers", 2)
        self._map_pub = self.create_lifecycle_publisher(PointCloud2, "map_cloud", _LATCHED)
        self._kf_pub = self.create_lifecycle_publisher(MarkerArray, "keyframes", _LATCHED)
        self._entities = [self._pose_pub, self._status_pub, self._inliers_pub, self._map_pub,
                          self._kf_pub]
        self._subs = self._frame_subscriptions(g, "image", "image/compressed", "camera_info") + [
            self.create_subscription(PoseWithCovarianceStamped, "initialpose",
                                     self._on_initialpose, 10, callback_group=g)]
        self._tf_out = TfBroadcaster(self)
        self._odom = OdomSource(self, c.odom_frame, c.base_frame, c.odom_topic, g)

    def on_activate(self, state: LifecycleState) -> TransitionCallbackReturn:
        ret = super().on_activate(state)
        self.counters = outputs.NodeCounters(last_state="waiting_for_image",
                                             last_reason="active, waiting for images")
        self._active = True
        try:
            self._publish_map()
        except Mast3rRosError as exc:
            self.get_logger().warning(f"cannot publish the map visualisation: {exc}")
        return ret

    def _release_resources(self) -> None:
        with self._loc_lock:
            self._localizer = None
        self._prior, self._last_stamp = None, None

    # ------------------------------------------------------------------ inputs
    def _make_pending(self, msg: Any, compressed: bool) -> _Pending:
        return _Pending(msg, compressed, time.monotonic(),
                        self.get_clock().now().nanoseconds * 1e-9)

    def _on_initialpose(self, msg: PoseWithCovarianceStamped) -> None:
        try:
            T_map_base = pose_to_matrix(msg.pose.pose)
            T_base_cam = xyzquat_to_matrix(self.cfg.base_T_camera)
            self._prior = camera_prior_from_base(T_map_base, T_base_cam)
            self.get_logger().info("initial pose received: retrieval narrowed around it")
        except Mast3rRosError as exc:
            self.get_logger().warning(f"ignoring initialpose: {exc}")

    # ------------------------------------------------------------------ processing
    def _to_frame(self, p: _Pending) -> Frame:
        c = self.cfg
        rgb = (compressed_to_rgb(p.msg, c.max_image_pixels) if p.compressed
               else image_to_rgb(p.msg, c.max_image_pixels))
        stamp = stamp_to_sec(p.msg.header.stamp)
        last, self._last_stamp = self._last_stamp, stamp
        if last is not None and stamp < last - c.max_stamp_regression:
            self._prior = None
            raise InputError(f"image stamp went back by {last - stamp:.3f} s (bag loop or clock "
                             "jump?): frame skipped, tracking state reset")
        K = self._camera_K(rgb)
        if K is None and c.require_camera_info:
            raise NotReadyError("waiting for camera_info (set require_camera_info:=false to let "
                                "the backend estimate K)")
        return Frame(rgb=rgb, K=K, stamp=stamp, frame_id=c.camera_frame or p.msg.header.frame_id,
                     T_map_cam_prior=self._prior)

    def _process(self, p: _Pending) -> None:
        t0 = time.monotonic()
        stamp = p.msg.header.stamp
        times = outputs.FrameTimes(transport=p.recv_sec - stamp_to_sec(stamp), queue=t0 - p.t_recv)
        header = Header(stamp=stamp, frame_id=self.cfg.map_frame)
        result, state = None, "error"
        try:
            frame = self._to_frame(p)
            times.conversion = time.monotonic() - t0
            with self._loc_lock:
                if self._localizer is None:
                    return
                t1 = time.monotonic()
                result = self._localizer.localize(frame)
                times.core = time.monotonic() - t1
            reason = result.reason
            state = "localized" if result.success else "lost"
        except NotReadyError as exc:
            reason, state = str(exc), "waiting_for_camera_info"
            self.get_logger().warning(reason, throttle_duration_sec=_THROTTLE_S)
        except Mast3rRosError as exc:
            reason = f"rejected frame: {exc}"
            self.get_logger().warning(reason, throttle_duration_sec=_THROTTLE_S)
        except Exception as exc:  # noqa: BLE001 - a callback must never kill the node
            reason = f"internal error: {type(exc).__name__}: {exc}"
            self.counters.errors += 1
            self.get_logger().error(reason, throttle_duration_sec=_THROTTLE_S)
        t2 = time.monotonic()
        try:
            self._publish_outputs(header, state, reason, times, result)
        except Exception as exc:  # noqa: BLE001 - never let a callback end the executor
            self.counters.errors += 1
            self.get_logger().error(f"publishing outputs failed: {type(exc).__name__}: {exc}",
                                    throttle_duration_sec=_THROTTLE_S)
        times.publish = time.monotonic() - t2
        times.total = self.get_clock().now().nanoseconds * 1e-9 - stamp_to_sec(stamp)
        self.last_times = times
        self.times_history = (self.times_history + [times])[-500:]

    def _publish_outputs(self, header: Header, state: str, reason: str,
                         times: outputs.FrameTimes, result: Optional[LocalizationResult]) -> None:
        c = self.counters
        c.last_state, c.last_reason = state, reason
        if result is None:
            c.rejected += 1
        else:
            c.processed += 1
            self.last_result = result
        if result is not None and result.success and result.T_map_cam is not None:
            c.localized += 1
            self._publish_pose(header, result)
        elif result is not None:
            self._prior = None  # lost: next frame searches the whole map
        status = outputs.status_msg(header, state, reason, c, times, result, self.loc_cfg.backend)
        self._status_pub.publish(status)

    def _publish_pose(self, header: Header, result: LocalizationResult) -> None:
        cfg = self.cfg
        T_base_cam = xyzquat_to_matrix(cfg.base_T_camera)
        T_map_base = base_pose_from_camera(result.T_map_cam, T_base_cam)
        self._pose_pub.publish(outputs.pose_msg(header, T_map_base, result.covariance,
                                                (cfg.fallback_position_std,
                                                 cfg.fallback_rotation_std)))
        pts = np.asarray(result.inlier_points_map).reshape(-1, 3)
        if len(pts) > cfg.max_inlier_points:
            pts = pts[np.linspace(0, len(pts) - 1, cfg.max_inlier_points).astype(int)]
        self._inliers_pub.publish(points_to_cloud(pts, header))
        self._prior = np.asarray(result.T_map_cam)
        if cfg.publish_tf and self._tf_out.available:
            T_odom_base = self._odom.lookup(header.stamp)
            if T_odom_base is None:
                self.get_logger().warning(f"map->odom not published: {cfg.odom_frame}->"
                                       f"{cfg.base_frame} unknown ({self._odom.channel})",
                                       throttle_duration_sec=30.0)
            else:
                T_map_odom = compute_map_to_odom(T_map_base, T_odom_base)
                self._tf_out.send(outputs.transform_msg(header.stamp, cfg.map_frame,
                                                        cfg.odom_frame, T_map_odom))

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
