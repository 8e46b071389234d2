"""The odometry lifecycle node: the SLAM front end (core ``Tracker``) as ``nav_msgs/Odometry``.

Conventions of isaac_ros_visual_slam and rtabmap: ``odom`` (``odom_frame -> base_frame``, stamp =
image stamp, pose and twist covariance), TF ``odom -> base_frame`` (``publish_tf``), never
``map -> odom``; nothing on ``odom`` while lost (or rtabmap's null odometry with
``publish_null_when_lost``).

Topics (relative names, remap as usual): in ``image``, ``image/compressed``, ``camera_info``,
``depth`` (16UC1 mm or 32FC1 m, registered to the colour image, matched by stamp), TF
(``/tf_static``, ``/tf``: the camera extrinsic); out ``odom``, ``/tf``, ``~/tracking_status``
(``TrackingStatus``), ``~/keyframes`` (``Keyframe``), ``~/graph`` (``KeyframeGraph``, latched),
``~/path`` (``nav_msgs/Path``, capped), ``/diagnostics`` (WARN while lost). Services
``~/reset``, ``~/reset_to_pose`` (``ResetToPose``), ``~/pause``, ``~/resume``. Parameters: every
field of :class:`~mast3r_ros.ros.common.node_config.OdometryNodeConfig`, of the pipeline's
``LocalizerConfig`` (defaults of ``tracking_pipeline()``) and ``tracking.*`` (``TrackingConfig``;
they take effect at the next ``~/reset``).

Lifecycle: ``configure`` builds the tracker (loads the model for ``mast3r``: FAILURE with the
reason when the checkpoint is missing), publishers, subscriptions and TF; ``activate`` starts
processing; ``cleanup`` releases everything.
"""

from __future__ import annotations

from typing import Any, Iterator, Optional

from diagnostic_msgs.msg import DiagnosticStatus
from nav_msgs.msg import Odometry, Path
from rcl_interfaces.msg import SetParametersResult
from rclpy.lifecycle import LifecycleNode, LifecycleState, TransitionCallbackReturn
from rclpy.qos import qos_profile_sensor_data
from sensor_msgs.msg import Image

from mast3r_ros.core.config import LocalizerConfig, TrackingConfig, tracking_pipeline
from mast3r_ros.core.errors import ConfigError
from mast3r_ros.core.tracking import Tracker, TrackingState
from mast3r_ros.msg import Keyframe, KeyframeGraph, TrackingStatus
from mast3r_ros.ros.common.frame_node import (
    KEYFRAME_STREAM_QOS,
    LATCHED_QOS,
    FrameNodeMixin,
    run_lifecycle_main,
)
from mast3r_ros.ros.common.frames import ExtrinsicResolver
from mast3r_ros.ros.common.node_config import OdometryNodeConfig
from mast3r_ros.ros.common.outputs import diagnostics_msg
from mast3r_ros.ros.common.params import (
    ParamSpec,
    config_from_values,
    declare_spec,
    section_specs,
)
from mast3r_ros.ros.common.tf_io import TfIo
from mast3r_ros.ros.odometry.base import OdometryCounters
from mast3r_ros.ros.odometry.processing import OdometryProcessingMixin
from mast3r_ros.ros.odometry.services import OdometryServicesMixin

__all__ = ["OdometryNode", "SECTIONS", "param_specs", "main"]

#: parameter name prefix -> config dataclass (the node's parameters, in declaration order)
SECTIONS: tuple[tuple[str, type], ...] = (("", OdometryNodeConfig), ("", LocalizerConfig),
                                          ("tracking.", TrackingConfig))


def param_specs() -> Iterator[tuple[type, ParamSpec]]:
    """(config class, parameter spec) of every parameter; the pipeline's defaults are those of
    the :func:`~mast3r_ros.core.config.tracking_pipeline` preset."""
    return section_specs(SECTIONS, tracking_pipeline())


class OdometryNode(OdometryServicesMixin, OdometryProcessingMixin, FrameNodeMixin, LifecycleNode):
    """Lifecycle node tracking camera frames (see module docstring).

    Args:
        node_name: ROS node name.
        **kwargs: passed to ``rclpy.node.Node`` (namespace, parameter_overrides, ...).
    """

    def __init__(self, node_name: str = "odometry", **kwargs: Any) -> None:
        super().__init__(node_name, **kwargs)
        self._values: dict[str, Any] = {spec.name: declare_spec(self, spec)
                                        for _, spec in param_specs()}
        self.cfg, self.loc_cfg, self.trk_cfg = (OdometryNodeConfig(), tracking_pipeline(),
                                                TrackingConfig())
        self.config_error = ""
        try:
            self.cfg, self.loc_cfg, self.trk_cfg = self._configs_from(self._values)
        except ConfigError as exc:
            self.config_error = str(exc)
            self.get_logger().error(f"invalid parameters: {exc}")
        self.add_on_set_parameters_callback(self._on_set_parameters)
        self._init_frame_node()
        self._init_depth_buffer()
        self._tracker: Optional[Tracker] = None
        self._tf: Optional[TfIo] = None
        self._frames: Optional[ExtrinsicResolver] = None
        self._paused, self._start, self.last_extrinsic = False, None, None
        self._reset_outputs()
        self.counters = OdometryCounters()
        self._create_frame_timers(self.cfg.diagnostics_period)
        self._create_services()

    def _reset_outputs(self) -> None:
        self._last_stamp = self._last_posed_stamp = None
        self._path, self._graph_kfs, self._graph_edges = Path(), [], []

    # ------------------------------------------------------------------ parameters
    @staticmethod
    def _configs_from(values: dict[str, Any]
                      ) -> tuple[OdometryNodeConfig, LocalizerConfig, TrackingConfig]:
        node, loc, track = (config_from_values(cls, values, prefix) for prefix, cls in SECTIONS)
        return node, loc, track

    def _on_set_parameters(self, params: list[Any]) -> SetParametersResult:
        values = dict(self._values)
        values.update({p.name: p.value for p in params if p.name in values})
        try:
            cfg, loc_cfg, trk_cfg = self._configs_from(values)
        except ConfigError as exc:
            return SetParametersResult(successful=False, reason=str(exc))
        if self._tracker is not None and any(getattr(loc_cfg, n) != getattr(self.loc_cfg, n)
                                             for n in ("backend", "model", "sift")):
            return SetParametersResult(successful=False, reason="backend, model and sift.* "
                                       "change on reconfigure only (cleanup, configure)")
        if cfg.diagnostics_period != self.cfg.diagnostics_period:
            self._retime_diagnostics(cfg.diagnostics_period)
        self._values, self.cfg, self.loc_cfg, self.trk_cfg = values, cfg, loc_cfg, trk_cfg
        self.config_error = ""
        return SetParametersResult(successful=True)

    # ------------------------------------------------------------------ lifecycle
    def on_configure(self, state: LifecycleState) -> TransitionCallbackReturn:
        with self._lifecycle_lock:
            if self.config_error:
                return self._fail_transition(f"invalid parameters: {self.config_error}")
            tracker = self._build_core(lambda: Tracker(self.trk_cfg, self.loc_cfg),
                                       "create the tracker (model, backend)")
            if isinstance(tracker, TransitionCallbackReturn):
                return tracker
            with self._work_lock:
                self._tracker = tracker
            self._create_io()
            self.counters.last_state = self.counters.last_reason = "configured"
            if self.loc_cfg.backend == "sift":
                self.get_logger().warning("backend=sift: classical SIFT baseline, not MASt3R")
            return TransitionCallbackReturn.SUCCESS

    def _create_io(self) -> None:
        self._odom_pub = self.create_lifecycle_publisher(Odometry, "odom", 10)
        self._status_pub = self.create_lifecycle_publisher(TrackingStatus, "~/tracking_status", 10)
        self._kf_pub = self.create_lifecycle_publisher(Keyframe, "~/keyframes", KEYFRAME_STREAM_QOS)
        self._graph_pub = self.create_lifecycle_publisher(KeyframeGraph, "~/graph", LATCHED_QOS)
        self._path_pub = self.create_lifecycle_publisher(Path, "~/path", 2)
        self._entities = [self._odom_pub, self._status_pub, self._kf_pub, self._graph_pub,
                          self._path_pub]
        self._subs = self._frame_subscriptions(self._io_group, "image", "image/compressed",
                                               "camera_info") + [
            self.create_subscription(Image, "depth", self._on_depth, qos_profile_sensor_data,
                                     callback_group=self._io_group)]
        self._tf = TfIo(self)
        self._frames = ExtrinsicResolver(self._tf, self.get_logger().warning)

    def on_activate(self, state: LifecycleState) -> TransitionCallbackReturn:
        with self._lifecycle_lock:
            ret = super().on_activate(state)
            self.counters = OdometryCounters(last_state="waiting_for_image",
                                             last_reason="active, waiting for images")
            self._active = True
            return ret

    def _release_resources(self) -> None:
        self._tracker, self._frames, self._paused, self._start = None, None, False, None
        if self._tf is not None:
            self._tf.close()
            self._tf = None
        self._depths.clear()
        self._reset_outputs()

    def _publish_diagnostics(self) -> None:
        c = self.counters
        lost = c.last_state in (TrackingState.LOST.value, "error")
        level = DiagnosticStatus.WARN if lost else DiagnosticStatus.OK
        values = {"state": c.last_state, "reason": c.last_reason, "processed": c.processed,
                  "dropped": c.dropped, "lost": c.lost, "keyframes": c.keyframes,
                  "backend": self.loc_cfg.backend}
        self._diag_pub.publish(diagnostics_msg(self.get_clock().now().to_msg(),
                                               f"{self.get_name()}: SLAM front end", "mast3r_ros",
                                               level, c.last_reason, values))


def main(args: Optional[list[str]] = None) -> int:
    """Run the node (``ros2 run mast3r_ros odometry``); ``autostart:=true`` self-activates."""
    return run_lifecycle_main(OdometryNode, args)


if __name__ == "__main__":
    raise SystemExit(main())
