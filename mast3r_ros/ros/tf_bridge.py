"""TF input/output of the localizer with graceful degradation.

* Output (``map -> odom``): ``tf2_ros.TransformBroadcaster`` when it imports; else
  ``tf2_msgs/TFMessage`` published on ``/tf`` (what the broadcaster sends); else nothing, said once.
* Input (``odom -> base``): a ``tf2_ros`` buffer when it imports; else ``nav_msgs/Odometry`` from a
  topic (parameter ``odom_topic``), matched to the image stamp; else unknown, said once.
"""

from __future__ import annotations

import collections
import logging
from typing import Any, Callable, Optional

import numpy as np
from geometry_msgs.msg import TransformStamped
from nav_msgs.msg import Odometry
from rclpy.duration import Duration
from rclpy.node import Node
from rclpy.time import Time as RclTime

from mast3r_ros.ros.conversions import pose_to_matrix, stamp_to_sec
from mast3r_ros.ros.transforms import nearest_in_time

__all__ = ["TfBroadcaster", "OdomSource"]

logger = logging.getLogger(__name__)


class TfBroadcaster:
    """Sends TransformStamped through the best available channel (see module docstring)."""

    def __init__(self, node: Node) -> None:
        self._send: Optional[Callable[[TransformStamped], None]] = None
        self.channel = "none"
        try:
            from tf2_ros import TransformBroadcaster  # type: ignore[import-not-found]

            broadcaster = TransformBroadcaster(node)
            self._send, self.channel = broadcaster.sendTransform, "tf2_ros"
            return
        except ImportError:
            pass
        try:
            from tf2_msgs.msg import TFMessage  # type: ignore[import-not-found]

            pub = node.create_publisher(TFMessage, "/tf", 100)
            self._send = lambda t: pub.publish(TFMessage(transforms=[t]))
            self.channel = "tf2_msgs"
        except ImportError:
            node.get_logger().warning("neither tf2_ros nor tf2_msgs is importable: map->odom is "
                                      "not published (the pose topic still is)")

    @property
    def available(self) -> bool:
        return self._send is not None

    def send(self, transform: TransformStamped) -> bool:
        """Publish one transform; False when no channel exists."""
        if self._send is None:
            return False
        self._send(transform)
        return True


class OdomSource:
    """``T_odom_base`` at an image stamp, from tf2 or from an Odometry topic."""

    def __init__(self, node: Node, odom_frame: str, base_frame: str, odom_topic: str,
                 callback_group: Any = None, max_dt: float = 0.2) -> None:
        self._odom_frame, self._base_frame, self._max_dt = odom_frame, base_frame, max_dt
        self._buffer: Any = None
        self._listener: Any = None
        self._history: collections.deque = collections.deque(maxlen=400)
        self._sub = None
        self.channel = "none"
        try:
            from tf2_ros import Buffer, TransformListener  # type: ignore[import-not-found]

            self._buffer = Buffer()
            self._listener = TransformListener(self._buffer, node)
            self.channel = "tf2_ros"
        except ImportError:
            if odom_topic:
                self._sub = node.create_subscription(Odometry, odom_topic, self._on_odom, 50,
                                                     callback_group=callback_group)
                self.channel = f"odometry topic {odom_topic}"

    def _on_odom(self, msg: Odometry) -> None:
        self._history.append((stamp_to_sec(msg.header.stamp), pose_to_matrix(msg.pose.pose)))

    def lookup(self, stamp: Any) -> Optional[np.ndarray]:
        """(4, 4) ``T_odom_base`` at ``stamp`` (builtin_interfaces/Time), or None when unknown."""
        if self._buffer is not None:
            try:
                tf = self._buffer.lookup_transform(self._odom_frame, self._base_frame,
                                                   RclTime.from_msg(stamp), Duration(seconds=0.0))
            except Exception:  # noqa: BLE001 - tf2 raises several lookup exception types
                return None
            from geometry_msgs.msg import Pose

            p = Pose()
            p.position.x = tf.transform.translation.x
            p.position.y = tf.transform.translation.y
            p.position.z = tf.transform.translation.z
            p.orientation = tf.transform.rotation
            return pose_to_matrix(p)
        if not self._history:
            return None
        hist = list(self._history)
        i = nearest_in_time([h[0] for h in hist], stamp_to_sec(stamp), self._max_dt)
        return None if i < 0 else hist[i][1]
