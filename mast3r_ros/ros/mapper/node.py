"""The mapper lifecycle node: camera images (+ odometry) in, a keyframe map for the localizer out.

Lifecycle: ``configure`` reads the parameters and loads the MASt3R model (FAILURE with the reason
when no checkpoint is configured or it is invalid); ``activate`` starts keyframe selection;
``deactivate`` stops it; ``cleanup`` frees the model, the keyframes and the built map.

Threading: image callbacks only keep the newest message (queue of one, overwritten frames are
counted as dropped); keyframe selection runs in a work callback group; the alignment (core
``build_map``, seconds to minutes) runs in its own build group (``build_map`` service and the
optional ``build_period`` timer), so images keep flowing while it runs; ``save_map``,
``clear_keyframes`` and diagnostics have a third group. A fourth group runs the pairwise network
stage incrementally: each new keyframe is paired with the ``incremental_pairs`` previous ones and
the results go to the content-addressed pair cache, which ``build_map`` then reads (one network
user at a time; the alignment has priority). Run it on a ``MultiThreadedExecutor`` (``main`` does).

Frames: keyframe poses and the cloud are in the alignment's world frame, published as
``map_frame``: the odometry frame when odometry poses are used (similarity onto them), else the
camera at the root of the alignment's spanning tree.

Odometry: TF ``odom_frame -> base_frame`` at each image stamp (optionally fed from a
``nav_msgs/Odometry`` topic, parameter ``odom_topic``), composed with the camera extrinsic from TF
(``base_frame <- camera frame``, fallback parameter ``base_T_camera``), on the same TF helper node
and thread as the localizer's (:class:`~mast3r_ros.ros.common.tf_io.TfIo`).

Topics (relative names): in ``image``, ``image/compressed``, ``camera_info``, TF; out
``keyframe_path`` (``nav_msgs/Path``) and ``map_cloud`` (``PointCloud2``), both latched, and
``/diagnostics``. Services: ``build_map`` (``std_srvs/Trigger``), ``save_map``
(``mast3r_ros/srv/LoadMap``: ``path``, empty = parameter ``map_path``), ``clear_keyframes``
(Trigger; not ``reset``, which the localizer serves in the same namespace).
"""

from __future__ import annotations

import tempfile
import threading
import traceback
from typing import Any, Callable, Optional

import numpy as np
from nav_msgs.msg import Path
from rcl_interfaces.msg import SetParametersResult
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup
from rclpy.lifecycle import LifecycleNode, LifecycleState, TransitionCallbackReturn
from sensor_msgs.msg import PointCloud2
from std_srvs.srv import Trigger

from mast3r_ros.core.config import KeyframeSelectionConfig, MappingConfig, ModelConfig
from mast3r_ros.core.errors import ConfigError, InputError, Mast3rRosError
from mast3r_ros.core.mapping.keyframe_selection import KeyframeDecision, KeyframeSelector
from mast3r_ros.ros.common.conversions import compressed_to_rgb, image_to_rgb, stamp_to_sec
from mast3r_ros.ros.common.frame_node import LATCHED_QOS as _LATCHED
from mast3r_ros.ros.common.frame_node import THROTTLE_S as _THROTTLE_S
from mast3r_ros.ros.common.frame_node import FrameNodeMixin, run_lifecycle_main
from mast3r_ros.ros.common.frames import ExtrinsicResolver, lookup_at_stamp
from mast3r_ros.ros.common.node_config import MapperNodeConfig
from mast3r_ros.ros.common.params import config_from_values, declare_spec, iter_param_specs
from mast3r_ros.ros.common.tf_io import TfIo, TransformUnavailable
from mast3r_ros.ros.mapper.base import MapperCounters, StoredKeyframe
from mast3r_ros.ros.mapper.services import MapperServicesMixin
from mast3r_ros.srv import LoadMap

__all__ = ["MapperNode", "MapperCounters", "SECTIONS", "main"]

#: parameter name prefix -> config dataclass (the node's parameters, in declaration order)
SECTIONS: tuple[tuple[str, type], ...] = (("", MapperNodeConfig), ("model.", ModelConfig),
                                          ("mapping.", MappingConfig),
                                          ("keyframes.", KeyframeSelectionConfig))
BackendFactory = Callable[[ModelConfig], Any]


def _real_backend(model: ModelConfig) -> Any:
    from mast3r_ros.core.backends.mast3r import Mast3rBackend
    from mast3r_ros.core.model.factory import make_engine

    return Mast3rBackend(make_engine(model))


class MapperNode(MapperServicesMixin, FrameNodeMixin, LifecycleNode):
    """Lifecycle node selecting keyframes and building maps (see module docstring).

    Args:
        node_name: ROS node name.
        backend_factory: ``ModelConfig -> backend`` with ``engine``, ``model_id`` and
            ``prepare_map`` (default: the core's MASt3R backend); tests may inject one.
        **kwargs: passed to ``rclpy.node.Node`` (namespace, parameter_overrides, ...).
    """

    def __init__(self, node_name: str = "mapper", *,
                 backend_factory: Optional[BackendFactory] = None, **kwargs: Any) -> None:
        super().__init__(node_name, **kwargs)
        self._backend_factory = backend_factory or _real_backend
        self._values: dict[str, Any] = {}
        for prefix, cls in SECTIONS:
            for spec in iter_param_specs(cls, prefix):
                self._values[spec.name] = declare_spec(self, spec)
        self.config_error = ""
        self.cfg, self.model_cfg = MapperNodeConfig(), ModelConfig()
        self.map_cfg, self.kf_cfg = MappingConfig(), KeyframeSelectionConfig()
        try:
            self._apply(self._values)
        except ConfigError as exc:
            self.config_error = str(exc)
            self.get_logger().error(f"invalid parameters: {exc}")
        self.add_on_set_parameters_callback(self._on_set_parameters)
        self._init_frame_node()  # io/work/srv groups, slot and work locks, _pending, _active, ...
        self._build_group = MutuallyExclusiveCallbackGroup()
        self._pairs_group = MutuallyExclusiveCallbackGroup()
        self._kf_lock, self._build_lock = threading.Lock(), threading.Lock()
        self._engine_lock = threading.Lock()  # one network user at a time (pairs or alignment)
        self._pair_todo: list[tuple[np.ndarray, np.ndarray]] = []  # image pairs to pre-compute
        self._tmp_cache: Optional[tempfile.TemporaryDirectory] = None
        self._backend: Any = None
        self._tf: Optional[TfIo] = None
        self._frames: Optional[ExtrinsicResolver] = None
        self.keyframes: list[StoredKeyframe] = []
        self.odometry_note = "no frame yet"
        self.selector = KeyframeSelector(self.kf_cfg)
        self.last_decision: Optional[KeyframeDecision] = None
        self.kmap: Any = None            # the last built KeyframeMap
        self._built_count = 0            # keyframes used by the last build
        self.counters = MapperCounters()
        self._diag_period = self.cfg.diagnostics_period
        self._create_frame_timers(self._diag_period)
        self._pairs_wakeup = self.create_guard_condition(self._on_pairs,
                                                         callback_group=self._pairs_group)
        if self.cfg.build_period > 0:
            self.create_timer(self.cfg.build_period, self._on_build_timer,
                              callback_group=self._build_group)
        self.create_service(Trigger, "build_map", self._srv_build, callback_group=self._build_group)
        self.create_service(LoadMap, "save_map", self._srv_save, callback_group=self._srv_group)
        self.create_service(Trigger, "clear_keyframes", self._srv_reset,
                            callback_group=self._srv_group)

    # ------------------------------------------------------------------ parameters
    def _apply(self, values: dict[str, Any]) -> None:
        cfg = config_from_values(MapperNodeConfig, values)
        model = config_from_values(ModelConfig, values, "model.")
        mapping = config_from_values(MappingConfig, values, "mapping.")
        kf = config_from_values(KeyframeSelectionConfig, values, "keyframes.")
        self.cfg, self.model_cfg, self.map_cfg, self.kf_cfg = cfg, model, mapping, kf

    def _on_set_parameters(self, params: list[Any]) -> SetParametersResult:
        values = dict(self._values)
        values.update({p.name: p.value for p in params if p.name in values})
        try:
            self._apply(values)
        except ConfigError as exc:
            return SetParametersResult(successful=False, reason=str(exc))
        self._values, self.config_error = values, ""
        self.selector.config = self.kf_cfg  # thresholds are read per frame
        if self._tf is not None:
            self._tf.set_odometry(self.cfg.odom_topic, self.cfg.odom_frame, self.cfg.base_frame)
        if self.cfg.diagnostics_period != self._diag_period:
            self._diag_period = self.cfg.diagnostics_period
            self._retime_diagnostics(self._diag_period)
        return SetParametersResult(successful=True)

    # ------------------------------------------------------------------ lifecycle
    def on_configure(self, state: LifecycleState) -> TransitionCallbackReturn:
        with self._lifecycle_lock:
            return self._configure()

    def _configure(self) -> TransitionCallbackReturn:
        if self.config_error:
            return self._fail_transition(f"invalid parameters: {self.config_error}")
        try:
            self._backend = self._backend_factory(self.model_cfg)
        except Mast3rRosError as exc:
            return self._fail_transition(f"cannot load the MASt3R model (the mapper needs it): "
                                         f"{exc}")
        except Exception as exc:  # noqa: BLE001 - report, stay unconfigured
            self.get_logger().error(traceback.format_exc())
            return self._fail_transition(f"internal error while loading the model: "
                                         f"{type(exc).__name__}: {exc}")
        if self.cfg.incremental_pairs > 0 and not self.map_cfg.cache_dir:
            self._tmp_cache = tempfile.TemporaryDirectory(prefix="mast3r_mapper_pairs_")
        self._create_io()
        self.counters = MapperCounters(last_state="configured", last_reason="configured")
        ckpt = self.model_cfg.checkpoint or "$MAST3R_CHECKPOINT"
        self.get_logger().info(f"configured: model {ckpt}"
                               f" at {self.model_cfg.image_size} px; TF "
                               f"{self._tf.channel if self._tf else 'none'}")
        return TransitionCallbackReturn.SUCCESS

    def _create_io(self) -> None:
        g = self._io_group
        self._path_pub = self.create_lifecycle_publisher(Path, "keyframe_path", _LATCHED)
        self._cloud_pub = self.create_lifecycle_publisher(PointCloud2, "map_cloud", _LATCHED)
        self._entities = [self._path_pub, self._cloud_pub]
        self._subs = self._frame_subscriptions(g, "image", "image/compressed", "camera_info")
        c = self.cfg
        self._tf = TfIo(self)
        self._tf.set_odometry(c.odom_topic, c.odom_frame, c.base_frame)
        self._frames = ExtrinsicResolver(self._tf, self.get_logger().warning)

    def on_activate(self, state: LifecycleState) -> TransitionCallbackReturn:
        with self._lifecycle_lock:
            return self._activate(state)

    def _activate(self, state: LifecycleState) -> TransitionCallbackReturn:
        ret = super().on_activate(state)
        self._active = True
        self.counters.last_state = "mapping"
        self.counters.last_reason = "active, waiting for images"
        if self.kmap is not None:
            self._publish_map(self.kmap, [k.stamp for k in self.keyframes[:self._built_count]])
        return ret

    def _release_locks(self) -> tuple[Any, ...]:
        return (self._work_lock, self._build_lock, self._engine_lock)  # let running work finish

    def _release_resources(self) -> None:
        self._backend, self.kmap, self._frames = None, None, None
        if self._tf is not None:
            self._tf.close()
            self._tf = None
        self._clear_keyframes()
        if self._tmp_cache is not None:
            self._tmp_cache.cleanup()
            self._tmp_cache = None

    def _clear_keyframes(self) -> None:
        with self._kf_lock:
            self.keyframes, self._built_count, self._pair_todo = [], 0, []
            self.selector = KeyframeSelector(self.kf_cfg)

    def cache_dir(self) -> str:
        """Directory of the pairwise cache: ``mapping.cache_dir``, else the node's temporary one."""
        if self.map_cfg.cache_dir or self._tmp_cache is None:
            return self.map_cfg.cache_dir
        return self._tmp_cache.name

    # ------------------------------------------------------------------ inputs
    def _process(self, pending: tuple[Any, bool]) -> None:
        c = self.counters
        try:
            self._select(*pending)
            c.processed += 1
        except Mast3rRosError as exc:
            c.rejected += 1
            c.last_state, c.last_reason = "rejected", f"rejected frame: {exc}"
            self.get_logger().warning(c.last_reason, throttle_duration_sec=_THROTTLE_S)
        except Exception as exc:  # noqa: BLE001 - a callback must never kill the node
            c.errors += 1
            c.last_state, c.last_reason = "error", f"internal error: {type(exc).__name__}: {exc}"
            self.get_logger().error(c.last_reason, throttle_duration_sec=_THROTTLE_S)

    def _select(self, msg: Any, compressed: bool) -> None:
        cfg, c = self.cfg, self.counters
        rgb = (compressed_to_rgb(msg, cfg.max_image_pixels) if compressed
               else image_to_rgb(msg, cfg.max_image_pixels))
        K = self._camera_K(rgb)
        if K is None and cfg.require_camera_info:
            raise InputError("waiting for camera_info (set require_camera_info:=false to let the "
                             "alignment estimate the focal length)")
        T = self._odometry_camera_pose(msg.header)
        stamp = stamp_to_sec(msg.header.stamp)
        with self._kf_lock:
            full = len(self.keyframes) >= cfg.max_keyframes
            d = self.selector.consider(rgb, T, stamp, commit=not full)
            self.last_decision = d
            if d.is_keyframe and full:
                c.keyframes_refused += 1
                c.last_state = "full"
                c.last_reason = (f"keyframe buffer full (max_keyframes={cfg.max_keyframes}): "
                                 "build and save the map, then clear_keyframes, or raise "
                                 "max_keyframes")
                self.get_logger().warning(c.last_reason, throttle_duration_sec=30.0)
                return
            if d.is_keyframe:
                self.keyframes.append(StoredKeyframe(rgb, K, T, stamp))
                w = cfg.incremental_pairs if self.cache_dir() else 0
                self._pair_todo += [(k.rgb, rgb) for k in self.keyframes[-1 - w:-1]]
            n = len(self.keyframes)
        if d.is_keyframe and self._pair_todo:
            self._pairs_wakeup.trigger()
        c.last_state = "mapping"
        c.last_reason = f"{'keyframe' if d.is_keyframe else 'frame'}: {d.reason} ({n} keyframes)"


    def _odometry_camera_pose(self, header: Any) -> Optional[np.ndarray]:
        """(4, 4) ``T_odom_cam`` at the image stamp (odometry + extrinsic), else None."""
        cfg, tf, frames = self.cfg, self._tf, self._frames
        if tf is None or frames is None:
            return None
        try:
            T_odom_base = lookup_at_stamp(tf, cfg.odom_frame, cfg.base_frame, header.stamp,
                                          cfg.transform_timeout)
        except TransformUnavailable as exc:
            self.odometry_note = f"no odometry at the image stamp: {exc}"
            return None
        ext = frames.resolve(cfg.base_frame, cfg.camera_frame or header.frame_id, header.stamp,
                             cfg.transform_timeout, cfg.base_T_camera)
        self.odometry_note = f"odometry ok; camera extrinsic: {ext.note}"
        return T_odom_base @ ext.T_base_cam


def main(args: Optional[list[str]] = None) -> int:
    """Run the node (``ros2 run mast3r_ros mapper``); ``autostart:=true`` self-activates."""
    return run_lifecycle_main(MapperNode, args)


if __name__ == "__main__":
    raise SystemExit(main())
