"""Crossing frames with TF: the camera extrinsic and the REP-105 ``map -> odom`` output.

* :class:`ExtrinsicResolver` gives ``T_base_cam`` at an image stamp from TF (``base_frame <-
  camera frame``), cached while the chain is static, and falls back to the ``base_T_camera``
  parameter only when TF has no such transform, saying so once in the log (and on every status,
  through :attr:`Extrinsic.note`).
* :class:`MapToOdom` keeps the latest ``T_map_odom`` correction and republishes it on the TF
  thread at ``tf_publish_rate``, stamped ``now + transform_tolerance`` as amcl and slam_toolbox do,
  so that ``map -> base_link`` is always fresh for nav2; it goes on after the last image and stops
  only when cleared (reset, deactivate, new map, changed frames).
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Any, Callable, Optional

import numpy as np
from rclpy.duration import Duration

from mast3r_ros.ros.common.conversions import stamp_to_ns
from mast3r_ros.ros.common.outputs import transform_msg
from mast3r_ros.ros.common.tf_io import TfIo, TransformUnavailable
from mast3r_ros.ros.common.transforms import xyzquat_to_matrix

__all__ = ["Extrinsic", "ExtrinsicResolver", "MapToOdom", "lookup_at_stamp"]

#: a static extrinsic is re-read from TF at most this often (s), so a recalibration shows up
_STATIC_RECHECK_S = 1.0
#: a lookup waits for newer data only when the newest sample is at most this old (s) at the stamp
_LIVE_S = 1.0


def lookup_at_stamp(tf: TfIo, target: str, source: str, stamp: Any,
                    timeout: float) -> np.ndarray:
    """``T_target_source`` interpolated at ``stamp``, waiting up to ``timeout`` only for live data.

    A robot without that transform (or whose publisher stopped more than a second before the
    stamp) gets the answer at once instead of a ``timeout`` delay on every frame.

    Raises:
        TransformUnavailable: with the reason.
    """
    _, newest_ns = tf.lookup(target, source)  # no data at all: raises at once
    stamp_ns = stamp_to_ns(stamp)
    if newest_ns and stamp_ns - newest_ns > _LIVE_S * 1e9:
        raise TransformUnavailable(f"the newest {target} -> {source} is "
                                   f"{(stamp_ns - newest_ns) * 1e-9:.1f} s older than the stamp "
                                   "(its publisher stopped?)")
    return tf.lookup(target, source, stamp, timeout)[0]


@dataclass(frozen=True)
class Extrinsic:
    """The camera mounting used for one frame.

    Attributes:
        T_base_cam: (4, 4) camera optical frame in the base frame.
        from_tf: False when the ``base_T_camera`` parameter was used (no TF).
        note: where it came from, in words (status ``extrinsic`` field, diagnostics).
    """

    T_base_cam: np.ndarray
    from_tf: bool
    note: str


class ExtrinsicResolver:
    """``T_base_cam`` from TF at image stamps (see module docstring).

    Args:
        tf: the node's TF input.
        warn: called once per frame pair with the fallback message (e.g. a logger's warning).
    """

    def __init__(self, tf: TfIo, warn: Callable[[str], Any]) -> None:
        self._tf, self._warn = tf, warn
        self._key: tuple[str, str] = ("", "")
        self._static: Optional[Extrinsic] = None
        self._checked = 0.0
        self._waited = self._warned = False

    def resolve(self, base_frame: str, camera_frame: str, stamp: Any, timeout: float,
                fallback: tuple) -> Extrinsic:
        """The extrinsic of a frame stamped ``stamp`` (builtin_interfaces/Time).

        Args:
            base_frame: robot base frame.
            camera_frame: camera optical frame (parameter ``camera_frame`` or image frame_id).
            stamp: image stamp.
            timeout: seconds a lookup may wait (only until TF answered once, or for dynamic
                chains; a missing TF never delays every frame).
            fallback: ``base_T_camera`` parameter, x y z qx qy qz qw.
        """
        if (base_frame, camera_frame) != self._key:
            self._key, self._static, self._waited, self._warned = (base_frame, camera_frame), \
                None, False, False
        if not camera_frame or camera_frame == base_frame:
            return Extrinsic(np.eye(4), True, "identity: the camera frame is the base frame"
                             if camera_frame else "identity: the image has no frame_id")
        now = time.monotonic()
        if self._static is not None and now - self._checked < _STATIC_RECHECK_S:
            return self._static
        try:
            T, ns = self._tf.lookup(base_frame, camera_frame)
            if ns == 0:  # every link static: valid at any time
                self._static, self._checked = Extrinsic(T, True, "tf (static)"), now
                return self._static
            T, _ = self._tf.lookup(base_frame, camera_frame, stamp, timeout)
            return Extrinsic(T, True, "tf at the image stamp")
        except TransformUnavailable as exc:
            reason = str(exc)
        self._static = None
        if not self._waited and timeout > 0:  # TF may not have arrived yet: wait once
            self._waited = True
            try:
                T, _ = self._tf.lookup(base_frame, camera_frame, stamp, timeout)
                return Extrinsic(T, True, "tf at the image stamp")
            except TransformUnavailable as exc:
                reason = str(exc)
        note = (f"FALLBACK parameter base_T_camera: no TF {base_frame} <- {camera_frame} "
                f"({reason})")
        if not self._warned:
            self._warned = True
            self._warn(note + "; publish the camera mounting on TF (robot_state_publisher / "
                              "static_transform_publisher) or set camera_frame")
        return Extrinsic(xyzquat_to_matrix(fallback), False, note)


class MapToOdom:
    """Latest ``T_map_odom`` correction, republished periodically (see module docstring).

    Args:
        tf: the node's TF output; :meth:`start` registers :meth:`tick` as its periodic callback.
        settings: returns ``(enabled, map_frame, odom_frame, transform_tolerance s)`` now (read at
            every tick, so parameter changes apply at once).
    """

    def __init__(self, tf: TfIo, settings: Callable[[], tuple[bool, str, str, float]]) -> None:
        self._tf, self._settings = tf, settings
        self._lock = threading.Lock()
        self._T: Optional[np.ndarray] = None
        self._frames: tuple[str, str] = ("", "")
        self.sent = 0
        self.note = "no correction yet"

    @property
    def active(self) -> bool:
        """True while a correction is being republished."""
        return self._T is not None

    def start(self, rate_hz: float) -> None:
        """(Re)start the periodic republication at ``rate_hz``."""
        self._tf.set_periodic(rate_hz, self.tick)

    def update(self, T_map_odom: np.ndarray, map_frame: str, odom_frame: str) -> None:
        """New correction (from a localized frame); published at once and then periodically."""
        with self._lock:
            self._T, self._frames = np.array(T_map_odom, dtype=np.float64), (map_frame, odom_frame)
            self.note = "published"
        self.tick()

    def clear(self, reason: str) -> None:
        """Stop publishing until the next :meth:`update`."""
        with self._lock:
            self._T, self.note = None, f"not published: {reason}"

    def tick(self) -> None:
        """Publish the correction stamped now + transform_tolerance (no-op when cleared)."""
        enabled, map_frame, odom_frame, tolerance = self._settings()
        with self._lock:
            T, frames = self._T, self._frames
        if T is None or not enabled:
            return
        if frames != (map_frame, odom_frame):  # frames renamed: the correction is stale
            self.clear(f"frames changed to {map_frame} -> {odom_frame}; waiting for a new "
                       "localized frame")
            return
        stamp = (self._tf.clock.now() + Duration(nanoseconds=int(tolerance * 1e9))).to_msg()
        if self._tf.send([transform_msg(stamp, map_frame, odom_frame, T)]):
            self.sent += 1
