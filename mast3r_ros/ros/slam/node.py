"""The mapper in SLAM mode: the SLAM back end (core ``PoseGraphMapper``) as a lifecycle node.

Design: a node class and executable of its own (``lib/mast3r_ros/slam``, default node name
``mapper``), not a ``mode`` parameter of :class:`~mast3r_ros.ros.mapper.node.MapperNode`. The two
share nothing but the map store: the offline mapper takes camera images and needs the MASt3R
network for its global alignment, this node takes the odometry node's keyframe stream and works
with either backend. ``slam.launch.py`` starts it under the name ``mapper`` next to the odometry
node, as slam_toolbox ships several executables launched under one node name.

Topics (relative names, remap as usual): in ``keyframes`` (``mast3r_ros/Keyframe``, the odometry
node's ``~/keyframes``) and ``graph`` (``KeyframeGraph``, latched: catch-up, see
:mod:`.processing`), TF (the camera mounting ``base_frame <- camera_frame``); out ``/tf``
(``map -> odom``, REP-105: ``T_map_base(optimised) @ inv(T_odom_base)`` of the newest keyframe,
republished at ``tf_publish_rate``, stamped now + ``transform_tolerance``, by the localizer's
:class:`~mast3r_ros.ros.common.frames.MapToOdom`), ``~/optimized_path`` (``nav_msgs/Path`` of the
optimised base poses in the map frame), ``~/map_cloud`` (latched ``PointCloud2`` from the keyframes'
depth, at most ``map_cloud_points``), ``~/keyframe_markers`` and ``~/loop_markers``
(``MarkerArray``, latched), ``~/status`` (``mast3r_ros/SlamStatus``), ``/diagnostics``. Services
``~/save_map`` (``LoadMap``: path, empty = parameter ``map_path``) and ``~/optimize`` (Trigger),
see :mod:`.services`. The map frame is the first keyframe's odom pose: ``map -> odom`` is the
identity until optimisation moves it.

Memory: the keyframes' images, depths and encodings go to a working map store (``store_dir``,
else a temporary directory) every ``store_every`` keyframes and are read back on demand (loop
verification, save, cloud); RAM keeps the index, poses and global descriptors.

Lifecycle: ``configure`` builds the backend (loads the model for ``mast3r``: FAILURE with the
reason when the checkpoint is missing), an empty mapper, publishers and TF; ``activate``
subscribes to the stream (so the odometry node's retained keyframes arrive while active) and
``deactivate`` unsubscribes; ``cleanup`` releases everything (graph included).
"""

from __future__ import annotations

import collections
import dataclasses
import tempfile
from typing import Any, Iterator, Optional

import numpy as np
from diagnostic_msgs.msg import DiagnosticStatus
from nav_msgs.msg import Path
from rcl_interfaces.msg import SetParametersResult
from rclpy.lifecycle import LifecycleNode, LifecycleState, TransitionCallbackReturn
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import PointCloud2
from visualization_msgs.msg import MarkerArray

from mast3r_ros.core.backends import create_backend
from mast3r_ros.core.config import LocalizerConfig, SlamConfig, tracking_pipeline
from mast3r_ros.core.errors import ConfigError
from mast3r_ros.core.slam import PoseGraphMapper
from mast3r_ros.msg import Keyframe, KeyframeGraph, SlamStatus
from mast3r_ros.ros.common.frame_node import (
    KEYFRAME_STREAM_QOS,
    LATCHED_QOS,
    FrameNodeMixin,
    run_lifecycle_main,
)
from mast3r_ros.ros.common.frames import ExtrinsicResolver, MapToOdom
from mast3r_ros.ros.common.node_config import SlamNodeConfig
from mast3r_ros.ros.common.outputs import diagnostics_msg
from mast3r_ros.ros.common.params import (
    ParamSpec,
    config_from_values,
    declare_spec,
    section_specs,
)
from mast3r_ros.ros.common.tf_io import TfIo
from mast3r_ros.ros.slam.base import SlamCounters
from mast3r_ros.ros.slam.processing import SlamProcessingMixin
from mast3r_ros.ros.slam.services import SlamServicesMixin

__all__ = ["SlamNode", "SECTIONS", "param_specs", "main"]

#: parameter name prefix -> config dataclass (the node's parameters, in declaration order)
SECTIONS: tuple[tuple[str, type], ...] = (("", SlamNodeConfig), ("", LocalizerConfig),
                                          ("slam.", SlamConfig))
#: ``~/status``: latched (the last ten), so a late subscriber sees where the back end stands
_STATUS_QOS = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE,
                         durability=DurabilityPolicy.TRANSIENT_LOCAL)


def param_specs() -> Iterator[tuple[type, ParamSpec]]:
    """(config class, parameter spec) of every parameter; the pipeline's defaults are those of
    the front end's :func:`~mast3r_ros.core.config.tracking_pipeline` preset (the keyframes are
    re-encoded here with the same features, as ``mast3r-ros eval slam`` runs it)."""
    return section_specs(SECTIONS, tracking_pipeline())


class SlamNode(SlamServicesMixin, SlamProcessingMixin, FrameNodeMixin, LifecycleNode):
    """Lifecycle node of the SLAM back end (see module docstring).

    Args:
        node_name: ROS node name.
        **kwargs: passed to ``rclpy.node.Node`` (namespace, parameter_overrides, ...).
    """

    def __init__(self, node_name: str = "mapper", **kwargs: Any) -> None:
        super().__init__(node_name, **kwargs)
        self._values: dict[str, Any] = {spec.name: declare_spec(self, spec)
                                        for _, spec in param_specs()}
        self.cfg, self.loc_cfg, self.slam_cfg = SlamNodeConfig(), tracking_pipeline(), SlamConfig()
        self.config_error = ""
        try:
            self.cfg, self.loc_cfg, self.slam_cfg = self._configs_from(self._values)
        except ConfigError as exc:
            self.config_error = str(exc)
            self.get_logger().error(f"invalid parameters: {exc}")
        self.add_on_set_parameters_callback(self._on_set_parameters)
        self._init_frame_node()
        self._mapper: Optional[PoseGraphMapper] = None
        self._tf: Optional[TfIo] = None
        self._frames: Optional[ExtrinsicResolver] = None
        self._map_to_odom: Optional[MapToOdom] = None
        self._store: Optional[tempfile.TemporaryDirectory] = None
        self._queue: collections.deque = collections.deque()
        self._reset_state()
        self.counters = SlamCounters()
        self._create_frame_timers(self.cfg.diagnostics_period)
        self._create_services()

    def _reset_state(self) -> None:
        self._edge_keys, self._missed, self._T_base_cam = set(), set(), {}
        self._extrinsic_note = "no keyframe yet"
        self._in_memory = self._since_cloud = 0
        self._m2o = (-1, np.eye(4))

    # ------------------------------------------------------------------ parameters
    @staticmethod
    def _configs_from(values: dict[str, Any]
                      ) -> tuple[SlamNodeConfig, LocalizerConfig, SlamConfig]:
        node, loc, slam = (config_from_values(cls, values, prefix) for prefix, cls in SECTIONS)
        return node, loc, slam

    def _on_set_parameters(self, params: list[Any]) -> SetParametersResult:
        values = dict(self._values)
        values.update({p.name: p.value for p in params if p.name in values})
        try:
            cfg, loc_cfg, slam_cfg = self._configs_from(values)
        except ConfigError as exc:
            return SetParametersResult(successful=False, reason=str(exc))
        if self._mapper is not None and (
                any(getattr(loc_cfg, n) != getattr(self.loc_cfg, n)
                    for n in ("backend", "model", "sift"))
                or slam_cfg.pose_graph != self.slam_cfg.pose_graph):
            return SetParametersResult(successful=False, reason="backend, model.*, sift.* and "
                                       "slam.pose_graph.* change on reconfigure only (cleanup, "
                                       "configure: the graph starts again)")
        if cfg.diagnostics_period != self.cfg.diagnostics_period:
            self._retime_diagnostics(cfg.diagnostics_period)
        old = self.cfg
        self._values, self.cfg, self.loc_cfg, self.slam_cfg = values, cfg, loc_cfg, slam_cfg
        self.config_error = ""
        with self._work_lock:  # loop gates, matching and PnP apply to the next keyframe
            if self._mapper is not None:
                self._mapper.config, self._mapper.localizer = slam_cfg, loc_cfg
        m2o = self._map_to_odom
        if m2o is not None:
            if not cfg.publish_tf:
                m2o.clear("publish_tf is false")
            if self._active and cfg.tf_publish_rate != old.tf_publish_rate:
                m2o.start(cfg.tf_publish_rate)
        return SetParametersResult(successful=True)

    # ------------------------------------------------------------------ lifecycle
    def on_configure(self, state: LifecycleState) -> TransitionCallbackReturn:
        with self._lifecycle_lock:
            if self.config_error:
                return self._fail_transition(f"invalid parameters: {self.config_error}")
            mapper = self._build_core(
                lambda: PoseGraphMapper(self.slam_cfg, self.loc_cfg,
                                        create_backend(self.loc_cfg)),
                "create the back end (model, backend)")
            if isinstance(mapper, TransitionCallbackReturn):
                return mapper
            if not self.cfg.store_dir:
                self._store = tempfile.TemporaryDirectory(prefix="mast3r_slam_store_")
            with self._work_lock:
                self._mapper = mapper
                self._reset_state()
            self._create_io()
            self.counters.last_state = self.counters.last_reason = "configured"
            channel = self._tf.channel if self._tf else ""
            self.get_logger().info(f"configured: backend={self.loc_cfg.backend}, working store "
                                   f"{self.store_path()}; TF {channel}")
            if self.loc_cfg.backend == "sift":
                self.get_logger().warning("backend=sift: classical SIFT baseline, not MASt3R")
            return TransitionCallbackReturn.SUCCESS

    def _create_io(self) -> None:
        pub = self.create_lifecycle_publisher
        self._status_pub = pub(SlamStatus, "~/status", _STATUS_QOS)
        self._path_pub = pub(Path, "~/optimized_path", LATCHED_QOS)
        self._cloud_pub = pub(PointCloud2, "~/map_cloud", LATCHED_QOS)
        self._kf_markers_pub = pub(MarkerArray, "~/keyframe_markers", LATCHED_QOS)
        self._loop_markers_pub = pub(MarkerArray, "~/loop_markers", LATCHED_QOS)
        self._entities = [self._status_pub, self._path_pub, self._cloud_pub,
                          self._kf_markers_pub, self._loop_markers_pub]
        self._tf = TfIo(self)
        self._frames = ExtrinsicResolver(self._tf, self.get_logger().warning)
        self._map_to_odom = MapToOdom(self._tf, self._tf_settings)

    def on_activate(self, state: LifecycleState) -> TransitionCallbackReturn:
        with self._lifecycle_lock:
            ret = super().on_activate(state)
            self.counters = SlamCounters(last_state="waiting_for_keyframes",
                                         last_reason="active, waiting for keyframes")
            self._active = True
            # subscribed while active: the front end's retained keyframes (transient local,
            # KEYFRAME_STREAM_QOS) and its latched graph arrive now and are not dropped as
            # "inactive"; duplicates after a re-activation are ignored by id
            g = self._io_group
            self._subs = [
                self.create_subscription(Keyframe, "keyframes", self._on_keyframe,
                                         KEYFRAME_STREAM_QOS, callback_group=g),
                self.create_subscription(KeyframeGraph, "graph", self._on_graph, LATCHED_QOS,
                                         callback_group=g)]
            if self._map_to_odom is not None:
                self._map_to_odom.start(self.cfg.tf_publish_rate)
            with self._work_lock:
                self._publish_outputs(self.counters.last_state, self.counters.last_reason,
                                      cloud=True)
            return ret

    def _on_deactivate_extra(self) -> None:
        for sub in self._subs:
            self.destroy_subscription(sub)
        self._subs = []
        with self._slot_lock:
            self._queue.clear()
        if self._map_to_odom is not None:
            self._map_to_odom.clear("node deactivated")
        if self._tf is not None:
            self._tf.set_periodic(0.0, None)

    def _release_resources(self) -> None:
        self._mapper, self._frames, self._map_to_odom = None, None, None
        if self._tf is not None:
            self._tf.close()
            self._tf = None
        if self._store is not None:
            self._store.cleanup()
            self._store = None
        self._reset_state()

    def _publish_diagnostics(self) -> None:
        c = self.counters
        bad = c.last_state in ("rejected", "error")
        level = DiagnosticStatus.WARN if bad else DiagnosticStatus.OK
        values: dict[str, object] = {"state": c.last_state, "reason": c.last_reason,
                                     "received": c.received, "dropped": c.dropped,
                                     "rejected": c.rejected, "duplicates": c.duplicates,
                                     "keyframes_missed": len(self._missed),
                                     "extrinsic": self._extrinsic_note,
                                     "map_to_odom": (self._map_to_odom.note if self._map_to_odom
                                                     else "not configured"),
                                     "backend": self.loc_cfg.backend}
        mapper = self._mapper
        if mapper is not None:
            values.update(dataclasses.asdict(mapper.status))
        self._diag_pub.publish(diagnostics_msg(self.get_clock().now().to_msg(),
                                               f"{self.get_name()}: SLAM back end", "mast3r_ros",
                                               level, c.last_reason, values))


def main(args: Optional[list[str]] = None) -> int:
    """Run the node (``ros2 run mast3r_ros slam``, node name ``mapper``); ``autostart:=true``
    self-activates."""
    return run_lifecycle_main(SlamNode, args)


if __name__ == "__main__":
    raise SystemExit(main())
