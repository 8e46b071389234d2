"""What the camera-driven lifecycle nodes (localizer, mapper) share: the latest-frame slot, image /
compressed image / camera_info ingestion, the common lifecycle release pattern and ``main``.

Mix :class:`FrameNodeMixin` in before ``rclpy.lifecycle.LifecycleNode``, call
:meth:`FrameNodeMixin._init_frame_node` in ``__init__`` and implement the hooks:

* ``_make_pending(msg, compressed)``: what the slot keeps for one image message;
* ``_process(pending)``: handle one slot entry (called with ``_work_lock`` held, node active);
* ``_release_locks()``: the locks ``_release`` takes (in order) so that running work finishes
  before the node's publishers and resources go;
* ``_release_resources()``: drop the node's own resources (called with those locks held);
* ``_on_deactivate_extra()``: stop what only runs while active (optional).

Lifecycle transitions hold ``_lifecycle_lock`` (re-entrant); a service that swaps resources takes
it too, so that a ``cleanup`` can never land in the middle of it.

The image callback only keeps the newest message (queue of one; an overwritten message counts as
dropped in ``counters.dropped``) and triggers ``_wakeup``, a guard condition running ``_on_work``.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import traceback
from typing import TYPE_CHECKING, Any, Callable, Optional

import numpy as np
import rclpy
from diagnostic_msgs.msg import DiagnosticArray
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup
from rclpy.executors import ExternalShutdownException, MultiThreadedExecutor
from rclpy.lifecycle import LifecycleState, TransitionCallbackReturn
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
from sensor_msgs.msg import CameraInfo, CompressedImage, Image

from mast3r_ros.core.errors import Mast3rRosError
from mast3r_ros.ros.common.conversions import K_for_image, camera_info_to_K
from mast3r_ros.ros.common.outputs import FrameCounters

if TYPE_CHECKING:  # the mixins are mixed into a LifecycleNode; tell the type checker so
    from rclpy.lifecycle import LifecycleNode as _NodeBase
else:
    _NodeBase = object

__all__ = ["FrameNodeMixin", "KEYFRAME_STREAM_QOS", "LATCHED_QOS", "THROTTLE_S",
           "run_lifecycle_main"]

#: QoS of the latched (transient-local, depth one) map outputs.
LATCHED_QOS = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE,
                         durability=DurabilityPolicy.TRANSIENT_LOCAL)
#: QoS of the odometry node's ``~/keyframes`` stream and of its consumers: reliable and
#: transient-local with the last ten keyframes, so that a back end started with (or after) the
#: front end still receives the first keyframes (it ignores the ones it already has).
KEYFRAME_STREAM_QOS = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE,
                                 durability=DurabilityPolicy.TRANSIENT_LOCAL)
#: Throttle period of repeated per-frame log messages, seconds.
THROTTLE_S = 2.0


class FrameNodeMixin(_NodeBase):
    """Latest-frame slot, image ingestion and the release on cleanup/shutdown/error of a node.

    State it owns: ``_slot_lock``, ``_work_lock``, ``_pending``, ``_active``, ``_entities``
    (lifecycle publishers), ``_subs`` (subscriptions) and ``_camera_info``. It uses the node's
    ``counters`` (an :class:`~mast3r_ros.ros.common.outputs.FrameCounters` with ``last_state`` and
    ``last_reason``), its settings ``cfg`` and ``_wakeup``.
    """

    counters: FrameCounters
    cfg: Any  # the node's settings dataclass (e.g. LocalizerNodeConfig)

    def _init_frame_node(self) -> None:
        """Create the callback groups and the slot state; call early in the node's ``__init__``.

        Groups (mutually exclusive each): ``_io_group`` (subscriptions), ``_work_group`` (frame
        processing), ``_srv_group`` (services, diagnostics).
        """
        self._io_group = MutuallyExclusiveCallbackGroup()
        self._work_group = MutuallyExclusiveCallbackGroup()
        self._srv_group = MutuallyExclusiveCallbackGroup()
        self._slot_lock = threading.Lock()
        self._lifecycle_lock = threading.RLock()  # transitions vs. resource-swapping services
        self._work_lock = threading.Lock()  # held while a frame is processed; release waits on it
        self._pending: Any = None
        self._active = False
        self._entities: list[Any] = []
        self._subs: list[Any] = []
        self._camera_info: Optional[CameraInfo] = None

    def _create_frame_timers(self, diagnostics_period: float) -> None:
        """Create ``/diagnostics`` (published every ``diagnostics_period`` s by the node's
        ``_publish_diagnostics``), the ``_wakeup`` guard condition and a 0.1 s safety timer, both
        running ``_on_work`` in the work group."""
        self._diag_pub = self.create_publisher(DiagnosticArray, "/diagnostics", 10)
        self._diag_timer = self.create_timer(diagnostics_period, self._publish_diagnostics,
                                             callback_group=self._srv_group)
        self._wakeup = self.create_guard_condition(self._on_work, callback_group=self._work_group)
        self._safety_timer = self.create_timer(0.1, self._on_work, callback_group=self._work_group)

    def _retime_diagnostics(self, period: float) -> None:
        """Re-create the diagnostics timer with a new period (parameter change)."""
        self.destroy_timer(self._diag_timer)
        self._diag_timer = self.create_timer(period, self._publish_diagnostics,
                                             callback_group=self._srv_group)

    def _tf_settings(self) -> tuple[bool, str, str, float]:
        """``(publish, map frame, odom frame, transform tolerance s)`` for
        :class:`~mast3r_ros.ros.common.frames.MapToOdom`, in nodes that publish ``map -> odom``
        (their ``cfg`` has ``publish_tf``, ``map_frame``, ``odom_frame``,
        ``transform_tolerance``)."""
        c = self.cfg
        return c.publish_tf and self._active, c.map_frame, c.odom_frame, c.transform_tolerance

    # ------------------------------------------------------------------ hooks
    def _publish_diagnostics(self) -> None:
        """Publish one ``/diagnostics`` message (timer callback)."""
        raise NotImplementedError

    def _on_deactivate_extra(self) -> None:
        """Stop what runs only while active (called by ``on_deactivate``)."""

    def _make_pending(self, msg: Any, compressed: bool) -> Any:
        """What the slot keeps for one image message (called in the image callback)."""
        return (msg, compressed)

    def _process(self, pending: Any) -> None:
        """Handle one slot entry; runs with ``_work_lock`` held while the node is active."""
        raise NotImplementedError

    def _release_locks(self) -> tuple[Any, ...]:
        """Locks ``_release`` takes, in this order, before it destroys anything."""
        return (self._work_lock,)

    def _release_resources(self) -> None:
        """Drop the node's own resources (model, map, ...); runs with ``_release_locks`` held."""

    # ------------------------------------------------------------------ inputs
    def _frame_subscriptions(self, group: Any, image: str, compressed: str,
                             camera_info: str) -> list[Any]:
        """Subscribe (sensor-data QoS, callback group ``group``) to the three camera topics.

        Args:
            group: callback group of the input callbacks.
            image: ``sensor_msgs/Image`` topic.
            compressed: ``sensor_msgs/CompressedImage`` topic.
            camera_info: ``sensor_msgs/CameraInfo`` topic.

        Returns:
            The subscriptions, in that order.
        """
        qos = qos_profile_sensor_data
        return [
            self.create_subscription(Image, image, lambda m: self._on_image(m, False), qos,
                                     callback_group=group),
            self.create_subscription(CompressedImage, compressed,
                                     lambda m: self._on_image(m, True), qos, callback_group=group),
            self.create_subscription(CameraInfo, camera_info, self._on_camera_info, qos,
                                     callback_group=group),
        ]

    def _on_image(self, msg: Any, compressed: bool) -> None:
        if not self._active:
            return
        pending = self._make_pending(msg, compressed)
        with self._slot_lock:
            self.counters.received += 1
            if self._pending is not None:
                self.counters.dropped += 1  # newest frame wins
            self._pending = pending
        self._wakeup.trigger()

    def _on_camera_info(self, msg: CameraInfo) -> None:
        self._camera_info = msg

    def _camera_K(self, rgb: np.ndarray) -> Optional[np.ndarray]:
        """(3, 3) intrinsics of ``rgb`` ((H, W, 3)) from the last camera_info, rescaled to its size.

        Returns:
            None when no camera_info was received yet.
        """
        info = self._camera_info
        if info is None:
            return None
        return K_for_image(camera_info_to_K(info), (int(info.width), int(info.height)),
                           (rgb.shape[1], rgb.shape[0]))

    def _on_work(self) -> None:
        while True:
            with self._slot_lock:
                pending, self._pending = self._pending, None
            if pending is None or not self._active:
                return
            with self._work_lock:
                if self._active:
                    self._process(pending)

    # ------------------------------------------------------------------ lifecycle
    def _build_core(self, build: Callable[[], Any], what: str) -> Any:
        """Run ``build`` (loads a model, a map ...) for ``configure``.

        Returns:
            Its result, or a FAILURE ``TransitionCallbackReturn`` (reason logged and recorded)
            when it raised: a typed error says what to fix, anything else is an internal error.
        """
        try:
            return build()
        except Mast3rRosError as exc:
            return self._fail_transition(f"cannot {what}: {exc}")
        except Exception as exc:  # noqa: BLE001 - report, stay unconfigured, keep serving
            self.get_logger().error(traceback.format_exc())
            return self._fail_transition(f"internal error while trying to {what}: "
                                         f"{type(exc).__name__}: {exc}")

    def _fail_transition(self, reason: str) -> TransitionCallbackReturn:
        """Log ``reason``, record it in the counters and fail the transition."""
        self.get_logger().error(reason)
        self.counters.last_state, self.counters.last_reason = "error", reason
        return TransitionCallbackReturn.FAILURE

    def on_deactivate(self, state: LifecycleState) -> TransitionCallbackReturn:
        with self._lifecycle_lock:
            self._active = False
            with self._slot_lock:
                self._pending = None
            self._on_deactivate_extra()
            self.counters.last_state = "inactive"
            return super().on_deactivate(state)

    def on_cleanup(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._release()
        self.counters.last_state = self.counters.last_reason = "unconfigured"
        return TransitionCallbackReturn.SUCCESS

    def on_shutdown(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._release()
        return TransitionCallbackReturn.SUCCESS

    def on_error(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._release()
        return TransitionCallbackReturn.SUCCESS

    def _release(self) -> None:
        self._active = False
        with contextlib.ExitStack() as stack:  # let running work finish before its outputs go
            stack.enter_context(self._lifecycle_lock)
            self._on_deactivate_extra()
            for lock in self._release_locks():
                stack.enter_context(lock)
            for pub in self._entities:
                self.destroy_lifecycle_publisher(pub)
            for sub in self._subs:
                self.destroy_subscription(sub)
            self._entities, self._subs = [], []
            self._camera_info, self._pending = None, None
            self._release_resources()


def run_lifecycle_main(make_node: Callable[[], Any], args: Optional[list[str]] = None) -> int:
    """Spin a lifecycle node on a 4-thread ``MultiThreadedExecutor`` until shutdown (SIGINT).

    On the way out everything configure created is released (as in ``cleanup``) before the node
    and the context go, so that no helper thread runs into a destroyed context.

    Args:
        make_node: builds the node (called after ``rclpy.init``); the node has ``cfg.autostart``.
        args: command-line arguments for ``rclpy.init``.

    Returns:
        The process exit code (0).
    """
    logging.basicConfig(level=logging.INFO, format="[%(levelname)s] [%(name)s]: %(message)s")
    rclpy.init(args=args)
    node = make_node()
    executor = MultiThreadedExecutor(num_threads=4)
    executor.add_node(node)
    try:
        if node.cfg.autostart and node.trigger_configure() == TransitionCallbackReturn.SUCCESS:
            node.trigger_activate()
        executor.spin()
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        executor.shutdown()
        node._release()  # stop the node's own threads (TF helper, workers) before teardown
        node.destroy_node()
        rclpy.try_shutdown()
    return 0
