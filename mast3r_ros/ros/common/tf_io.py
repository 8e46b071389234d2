"""TF input and output of a node, on a dedicated node and thread so that TF never touches inference.

A camera node's executor should wake up for images and services, not for the 50-200 Hz of a
robot's ``/tf``. :class:`TfIo` therefore creates a small helper node (``<node>_tf``, same
namespace and context) spun by its own ``SingleThreadedExecutor`` in its own thread. It holds:

* the buffer: ``tf2_ros.Buffer`` + ``TransformListener`` when ``tf2_ros`` imports; otherwise our
  :class:`~mast3r_ros.ros.common.tf_buffer.TransformBuffer` fed by subscriptions to ``/tf`` and
  ``/tf_static`` (``tf2_msgs/TFMessage``, same QoS as tf2_ros); without ``tf2_msgs`` the buffer
  only holds what :meth:`TfIo.set_odometry` feeds it, and the node says so;
* an optional ``nav_msgs/Odometry`` subscription whose poses enter the buffer as
  ``odom_frame -> base_frame`` (robots that publish odometry on a topic only);
* the broadcaster (``tf2_ros.TransformBroadcaster``, else a ``TFMessage`` publisher on ``/tf``);
* an optional periodic callback (e.g. republishing ``map -> odom``) on a steady clock.

Lookups are thread-safe and may wait (``timeout``) from any thread; the owner's executor never
runs a TF callback. :meth:`TfIo.close` stops the thread and destroys everything (lifecycle
cleanup).
"""

from __future__ import annotations

import threading
from typing import Any, Callable, Optional

import numpy as np
import rclpy
from geometry_msgs.msg import TransformStamped
from nav_msgs.msg import Odometry
from rclpy.clock import Clock, ClockType
from rclpy.duration import Duration
from rclpy.executors import SingleThreadedExecutor
from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile
from rclpy.time import Time as RclTime

from mast3r_ros.ros.common.conversions import stamp_to_ns
from mast3r_ros.ros.common.tf_buffer import TransformBuffer, TransformUnavailable, xyzq_to_matrix

__all__ = ["TfIo", "TransformUnavailable", "TF_QOS", "TF_STATIC_QOS", "transform_to_xyzq"]

#: QoS of tf2_ros's listener and broadcaster on ``/tf`` and ``/tf_static``.
TF_QOS = QoSProfile(depth=100, durability=DurabilityPolicy.VOLATILE,
                    history=HistoryPolicy.KEEP_LAST)
TF_STATIC_QOS = QoSProfile(depth=100, durability=DurabilityPolicy.TRANSIENT_LOCAL,
                           history=HistoryPolicy.KEEP_LAST)


def transform_to_xyzq(msg: TransformStamped) -> np.ndarray:
    """(7,) ``[x, y, z, qx, qy, qz, qw]`` of a ``TransformStamped``."""
    t, q = msg.transform.translation, msg.transform.rotation
    return np.array([t.x, t.y, t.z, q.x, q.y, q.z, q.w], dtype=np.float64)


class _InternalBuffer:
    """Our :class:`TransformBuffer` filled from ``/tf`` + ``/tf_static`` (when tf2_msgs imports)."""

    def __init__(self, node: Node, cache_time: float) -> None:
        self.buffer = TransformBuffer(cache_time)
        self.subs: list[Any] = []
        try:
            from tf2_msgs.msg import TFMessage
        except ImportError:
            self.channel = ("internal buffer WITHOUT /tf (tf2_msgs is not importable: run "
                            "tools/setup.sh); only odom_topic feeds it")
            return
        self.subs = [node.create_subscription(TFMessage, "/tf", lambda m: self._on(m, False),
                                              TF_QOS),
                     node.create_subscription(TFMessage, "/tf_static", lambda m: self._on(m, True),
                                              TF_STATIC_QOS)]
        self.channel = "internal buffer on /tf and /tf_static"

    def _on(self, msg: Any, static: bool) -> None:
        for t in msg.transforms:
            self.insert(t, static)

    def insert(self, t: TransformStamped, static: bool) -> None:
        self.buffer.set_transform(t.header.frame_id, t.child_frame_id,
                                  stamp_to_ns(t.header.stamp), transform_to_xyzq(t), static)

    def lookup(self, target: str, source: str, stamp_ns: int,
               timeout: float) -> tuple[np.ndarray, int]:
        return self.buffer.lookup(target, source, stamp_ns, timeout)


class _Tf2RosBuffer:
    """``tf2_ros.Buffer`` + ``TransformListener`` on the helper node (apt ROS 2)."""

    channel = "tf2_ros"

    def __init__(self, node: Node, cache_time: float) -> None:
        from tf2_ros import Buffer, TransformListener

        self.buffer = Buffer(cache_time=Duration(seconds=cache_time), node=node)
        self.listener = TransformListener(self.buffer, node)

    def insert(self, t: TransformStamped, static: bool) -> None:
        if static:
            self.buffer.set_transform_static(t, "mast3r_ros")
        else:
            self.buffer.set_transform(t, "mast3r_ros")

    def lookup(self, target: str, source: str, stamp_ns: int,
               timeout: float) -> tuple[np.ndarray, int]:
        try:
            t = self.buffer.lookup_transform(target, source, RclTime(nanoseconds=stamp_ns),
                                             timeout=Duration(seconds=timeout))
        except Exception as exc:
            raise TransformUnavailable(f"{type(exc).__name__}: {exc}") from exc
        return xyzq_to_matrix(transform_to_xyzq(t)), stamp_to_ns(t.header.stamp)


class TfIo:
    """TF buffer, broadcaster, odometry feed and periodic output of one node (module docstring).

    Args:
        owner: the node whose TF this is (name, namespace, context, clock for stamps).
        cache_time: seconds of history of the buffer.
    """

    def __init__(self, owner: Node, cache_time: float = 10.0) -> None:
        self.clock = owner.get_clock()
        name = f"{owner.get_name()}_tf"
        # a node-local remap of its own name: local rules win over the process-wide
        # `-r __node:=<owner>` that launch_ros passes, which would otherwise rename it too
        self.node = rclpy.create_node(name, namespace=owner.get_namespace(),
                                      context=owner.context, start_parameter_services=False,
                                      cli_args=["--ros-args", "-r", f"__node:={name}"])
        self._buf: Any
        try:
            self._buf = _Tf2RosBuffer(self.node, cache_time)
        except ImportError:
            self._buf = _InternalBuffer(self.node, cache_time)
        self._send: Optional[Callable[[list[TransformStamped]], None]] = None
        self._pub: Any = None
        try:
            from tf2_ros import TransformBroadcaster

            self._send = TransformBroadcaster(self.node).sendTransform
        except ImportError:
            try:
                from tf2_msgs.msg import TFMessage

                self._pub = self.node.create_publisher(TFMessage, "/tf", TF_QOS)
                self._send = lambda ts: self._pub.publish(TFMessage(transforms=ts))
            except ImportError:
                pass
        self._odom_sub: Any = None
        self._odom_key: tuple[str, str, str] = ("", "", "")
        self._timer: Any = None
        self._timer_key: tuple[float, Any] = (0.0, None)
        self._lock = threading.Lock()
        self._executor = SingleThreadedExecutor(context=owner.context)
        self._executor.add_node(self.node)
        self._thread = threading.Thread(target=self._spin, name=self.node.get_name(), daemon=True)
        self._thread.start()

    @property
    def channel(self) -> str:
        """How transforms come in and go out, in words (for logs and diagnostics)."""
        out = "tf2_ros broadcaster" if self._pub is None and self._send else (
            "TFMessage on /tf" if self._send else "nothing (tf2_msgs is not importable)")
        return f"in: {self._buf.channel}; out: {out}"

    @property
    def can_send(self) -> bool:
        """True when transforms can be published."""
        return self._send is not None

    def _spin(self) -> None:
        try:
            self._executor.spin()
        except Exception:  # noqa: BLE001 - context shut down under us: the thread just ends
            pass

    # ------------------------------------------------------------------ input
    def lookup(self, target: str, source: str, stamp: Any = None,
               timeout: float = 0.0) -> tuple[np.ndarray, int]:
        """``T_target_source`` at ``stamp`` (builtin_interfaces/Time; None or 0 = latest).

        Returns:
            ((4, 4) transform, the stamp in ns it is valid at).

        Raises:
            TransformUnavailable: with the reason, after waiting up to ``timeout`` seconds.
        """
        ns = 0 if stamp is None else stamp_to_ns(stamp)
        return self._buf.lookup(target, source, ns, timeout)

    def set_odometry(self, topic: str, odom_frame: str, base_frame: str) -> None:
        """Feed ``nav_msgs/Odometry`` poses on ``topic`` to the buffer as odom -> base (rebinds
        when any argument changes; empty ``topic`` = none)."""
        with self._lock:
            if (topic, odom_frame, base_frame) == self._odom_key:
                return
            if self._odom_sub is not None:
                self.node.destroy_subscription(self._odom_sub)
                self._odom_sub = None
            self._odom_key = (topic, odom_frame, base_frame)
            if topic:
                self._odom_sub = self.node.create_subscription(
                    Odometry, topic, lambda m: self._on_odom(m, odom_frame, base_frame), 50)

    def _on_odom(self, msg: Odometry, odom_frame: str, base_frame: str) -> None:
        t = TransformStamped()
        t.header.stamp, t.header.frame_id = msg.header.stamp, odom_frame
        t.child_frame_id = base_frame
        p = msg.pose.pose
        t.transform.translation.x, t.transform.translation.y = p.position.x, p.position.y
        t.transform.translation.z, t.transform.rotation = p.position.z, p.orientation
        self._buf.insert(t, False)

    # ------------------------------------------------------------------ output
    def send(self, transforms: list[TransformStamped]) -> bool:
        """Publish transforms on ``/tf``; False when no channel exists."""
        if self._send is None:
            return False
        self._send(transforms)
        return True

    def set_periodic(self, rate_hz: float, callback: Optional[Callable[[], None]]) -> None:
        """Run ``callback`` at ``rate_hz`` (steady clock) on the TF thread; re-times on a new
        rate, stops with ``callback=None``."""
        with self._lock:
            if (rate_hz, callback) == self._timer_key:
                return
            if self._timer is not None:
                self.node.destroy_timer(self._timer)
                self._timer = None
            self._timer_key = (rate_hz, callback)
            if callback is not None and rate_hz > 0:
                self._timer = self.node.create_timer(1.0 / rate_hz, callback,
                                                     clock=Clock(clock_type=ClockType.STEADY_TIME))

    def close(self) -> None:
        """Stop the TF thread and destroy the helper node with everything on it."""
        self._executor.shutdown(timeout_sec=2.0)
        self._thread.join(timeout=5.0)
        self.node.destroy_node()
