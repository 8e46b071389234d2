"""The odometry node's data path: image (+ depth matched by stamp) -> Frame -> tracker -> outputs.

A mixin of :class:`~mast3r_ros.ros.odometry.node.OdometryNode`. It uses the node's ``cfg``,
``_tracker`` (with ``_work_lock`` held by the frame-node base), ``_frames`` (extrinsic resolver),
``_tf``, ``counters``, the publishers created in configure and the output state
(``_path``, ``_graph_kfs``, ``_graph_edges``, ``_last_posed_stamp``).

Bad input never stops the node: an image it cannot decode, a stamp going back, a missing
camera_info are reported in ``~/tracking_status`` (state unchanged); a depth image of the wrong
size or encoding is dropped with its reason in the status field ``depth`` and the frame is
tracked without it (its keyframe 3D then comes from the backend, or it does not become one).
"""

from __future__ import annotations

import collections
import time
from dataclasses import dataclass
from typing import Any, Optional

import numpy as np
from std_msgs.msg import Header

from mast3r_ros.core.errors import InputError, Mast3rRosError
from mast3r_ros.core.io import decode_raw_depth
from mast3r_ros.core.tracking import TrackingState, TrackResult
from mast3r_ros.core.tracking.uncertainty import right_to_world
from mast3r_ros.core.types import Frame
from mast3r_ros.ros.common.conversions import compressed_to_rgb, image_to_rgb, stamp_to_sec
from mast3r_ros.ros.common.frame_node import THROTTLE_S
from mast3r_ros.ros.common.frames import Extrinsic
from mast3r_ros.ros.common.outputs import transform_msg
from mast3r_ros.ros.odometry import messages
from mast3r_ros.ros.odometry.base import OdometryBase

__all__ = ["OdometryProcessingMixin", "Pending"]

#: depth messages kept for matching by stamp
DEPTH_BUFFER = 10


@dataclass
class Pending:
    """One image message waiting in the latest-frame slot."""

    msg: Any
    compressed: bool
    t_recv: float  # time.monotonic() at the callback


class OdometryProcessingMixin(OdometryBase):
    """Frame conversion, tracking and outputs of one image (see module docstring)."""

    def _make_pending(self, msg: Any, compressed: bool) -> Pending:
        return Pending(msg, compressed, time.monotonic())

    def _init_depth_buffer(self) -> None:
        self._depths: collections.deque = collections.deque(maxlen=DEPTH_BUFFER)

    def _on_depth(self, msg: Any) -> None:
        self._depths.append(msg)

    def _depth_for(self, stamp: float, shape: tuple[int, int]) -> tuple[Optional[np.ndarray], str]:
        """The depth image (metres) matched to an image stamp, and a note for the status."""
        msgs = list(self._depths)
        if not msgs:
            return None, "none"
        best = min(msgs, key=lambda m: abs(stamp_to_sec(m.header.stamp) - stamp))
        gap = abs(stamp_to_sec(best.header.stamp) - stamp)
        if gap > self.cfg.depth_tolerance:
            return None, (f"none within {self.cfg.depth_tolerance} s of the image (closest "
                          f"{gap:.3f} s)")
        try:
            depth = decode_raw_depth(best.encoding, best.height, best.width, best.step,
                                     best.is_bigendian, best.data, self.cfg.max_image_pixels)
        except Mast3rRosError as exc:
            return None, f"rejected: {exc}"
        if depth.shape != shape:
            return None, (f"rejected: depth {depth.shape[1]}x{depth.shape[0]} does not match the "
                          f"{shape[1]}x{shape[0]} image (register it to the colour camera)")
        if not np.any(depth > 0):
            return None, "rejected: no valid depth pixel (all zero / NaN)"
        return depth, "used"

    def _to_frame(self, p: Pending) -> tuple[Frame, Optional[np.ndarray], str]:
        c = self.cfg
        rgb = (compressed_to_rgb(p.msg, c.max_image_pixels) if p.compressed
               else image_to_rgb(p.msg, c.max_image_pixels))
        stamp = stamp_to_sec(p.msg.header.stamp)
        last = self._last_stamp
        if last is not None and stamp < last - c.max_stamp_regression:
            raise InputError(f"image stamp went back by {last - stamp:.3f} s: frame skipped")
        self._last_stamp = stamp
        K = self._camera_K(rgb)
        if K is None and c.require_camera_info:
            raise NotReadyError("waiting for camera_info (set require_camera_info:=false to let "
                                "the backend estimate K)")
        depth, note = self._depth_for(stamp, rgb.shape[:2])
        frame_id = c.camera_frame or p.msg.header.frame_id
        return Frame(rgb=rgb, K=K, stamp=stamp, frame_id=frame_id), depth, note

    def _extrinsic(self, header: Any, frame_id: str) -> Extrinsic:
        c = self.cfg
        assert self._frames is not None
        return self._frames.resolve(c.base_frame, frame_id, header.stamp, c.transform_timeout,
                                    c.base_T_camera)

    def _process(self, p: Pending) -> None:
        tracker = self._tracker
        if tracker is None:  # released by cleanup while the frame waited
            return
        t0 = time.monotonic()
        header = Header(stamp=p.msg.header.stamp, frame_id=self.cfg.odom_frame)
        result: Optional[TrackResult] = None
        fields: dict[str, Any] = {"latency_queue": float(t0 - p.t_recv)}
        try:
            if self._paused:
                raise PausedError("paused (call ~/resume)")
            frame, depth, fields["depth"] = self._to_frame(p)
            fields["latency_conversion"] = float(time.monotonic() - t0)
            ext = self._extrinsic(p.msg.header, frame.frame_id)
            self.last_extrinsic, fields["extrinsic"] = ext, ext.note
            if tracker.state is TrackingState.INIT:  # the base starts at the odom origin,
                start = self._start  # or where ~/reset_to_pose put it
                tracker.reset_to_pose(*(start if start else (ext.T_base_cam,)))
            result = tracker.process(frame, depth)
            state, reason = result.state.value, result.reason
            self._publish_result(header, result, ext, frame.frame_id)
        except PausedError as exc:
            state, reason = "paused", str(exc)
        except NotReadyError as exc:
            state, reason = "waiting_for_camera_info", str(exc)
            self.get_logger().warning(reason, throttle_duration_sec=THROTTLE_S)
        except Mast3rRosError as exc:
            state, reason = tracker.state.value, f"rejected frame: {exc}"
            self.counters.rejected += 1
            self.get_logger().warning(reason, throttle_duration_sec=THROTTLE_S)
        except Exception as exc:  # noqa: BLE001 - a callback must never kill the node
            state, reason = "error", f"internal error: {type(exc).__name__}: {exc}"
            self.counters.errors += 1
            self.get_logger().error(reason, throttle_duration_sec=THROTTLE_S)
        self._publish_status(header, state, reason, result, fields)

    def _publish_status(self, header: Header, state: str, reason: str,
                        result: Optional[TrackResult], fields: dict[str, Any]) -> None:
        c = self.counters
        c.last_state, c.last_reason = state, reason
        if result is not None:
            c.processed += 1
            c.lost += int(result.state is TrackingState.LOST)
            c.keyframes += len(result.keyframes)
        fields.update(frames_processed=c.processed, frames_dropped=c.dropped,
                      frames_lost=c.lost, keyframes_total=c.keyframes,
                      keyframes_in_window=len(self._tracker.window) if self._tracker else 0,
                      backend=self.loc_cfg.backend,
                      latency_total=float(self.get_clock().now().nanoseconds * 1e-9
                                          - stamp_to_sec(header.stamp)))
        try:
            self._status_pub.publish(messages.status_msg(header, state, reason, result, **fields))
        except Exception as exc:  # noqa: BLE001 - never let a callback end the executor
            self.counters.errors += 1
            self.get_logger().error(f"status: {type(exc).__name__}: {exc}",
                                    throttle_duration_sec=THROTTLE_S)

    def _publish_result(self, header: Header, result: TrackResult, ext: Extrinsic,
                        camera_frame: str) -> None:
        """Odometry, TF, path, keyframes and graph of a processed frame."""
        c = self.cfg
        self._publish_keyframes(header, result, camera_frame)
        if not result.has_pose:
            if result.state is TrackingState.LOST and c.publish_null_when_lost:
                self._odom_pub.publish(messages.null_odometry_msg(header, c.base_frame))
            return
        stamp = stamp_to_sec(header.stamp)
        dt = stamp - self._last_posed_stamp if self._last_posed_stamp is not None else 0.0
        self._last_posed_stamp = stamp
        odom, T_odom_base = messages.odometry_msg(header, c.base_frame, result, ext.T_base_cam, dt)
        self._odom_pub.publish(odom)
        if c.publish_tf and self._tf is not None and self._tf.can_send:
            self._tf.send([transform_msg(header.stamp, c.odom_frame, c.base_frame, T_odom_base)])
        self._path.poses = (list(self._path.poses) + [messages.path_pose(header, T_odom_base)]
                            )[-c.path_length:]
        self._path.header = header
        self._path_pub.publish(self._path)

    def _publish_keyframes(self, header: Header, result: TrackResult, camera_frame: str) -> None:
        """``~/keyframes`` for each new keyframe and the latched ``~/graph``."""
        if not result.keyframes and not result.edges:
            return
        edges = list(result.edges)
        if self._tracker is None:
            return
        window = self._tracker.window
        for ev in result.keyframes:
            cov = (right_to_world(ev.keyframe.T_map_cam, window.entry(ev.id).covariance)
                   if ev.id in window.map else None)
            msg = messages.keyframe_msg(header, ev, edges, cov, camera_frame,
                                        self.cfg.keyframe_images)
            self._kf_pub.publish(msg)
            msg.image, msg.depth = type(msg.image)(), type(msg.depth)()  # the graph keeps poses
            self._graph_kfs = (self._graph_kfs + [msg])[-self.cfg.graph_keyframes:]
        self._graph_edges = (self._graph_edges + [messages.edge_msg(e) for e in edges]
                             )[-4 * self.cfg.graph_keyframes:]
        graph_header = Header(stamp=self._graph_kfs[-1].header.stamp if self._graph_kfs
                              else header.stamp, frame_id=self.cfg.odom_frame)
        self._graph_pub.publish(messages.graph_msg(graph_header, self._graph_kfs,
                                                   self._graph_edges))


class NotReadyError(InputError):
    """A frame cannot be processed yet (no camera_info)."""


class PausedError(InputError):
    """The node is paused (``~/pause``); frames are counted but not tracked."""
