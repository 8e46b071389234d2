"""The localizer's data path: image -> Frame -> core -> base pose, ``map -> odom``, status.

A mixin of :class:`~mast3r_ros.ros.localizer.node.LocalizerNode`, kept apart so that the node
module stays a readable lifecycle + parameter file. It uses the node's ``cfg``, ``loc_cfg``,
``_localizer`` (under ``_loc_lock``), ``_prior``, ``_last_stamp``, ``counters``, ``_frames``
(:class:`~mast3r_ros.ros.common.frames.ExtrinsicResolver`), ``_map_to_odom``, ``_tf`` and the
publishers created in configure.

Frames: the core estimates ``T_map_cam`` of the camera optical frame (``camera_frame``, else the
image ``header.frame_id``). The published pose is the base's, ``T_map_base = T_map_cam @
inv(T_base_cam)`` with the extrinsic from TF at the image stamp, and its covariance is the
camera's moved to the base (:func:`~mast3r_ros.ros.common.transforms.covariance_to_base`).
With odometry (``odom -> base`` in TF at the image stamp), the REP-105 correction ``map -> odom``
is updated and republished periodically; without it only the pose is published.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Optional

import numpy as np
from geometry_msgs.msg import PoseWithCovarianceStamped
from std_msgs.msg import Header

from mast3r_ros.core.errors import InputError, Mast3rRosError
from mast3r_ros.core.types import Frame, LocalizationResult
from mast3r_ros.ros.common import outputs
from mast3r_ros.ros.common.conversions import (
    compressed_to_rgb,
    image_to_rgb,
    points_to_cloud,
    pose_to_matrix,
    stamp_to_sec,
)
from mast3r_ros.ros.common.frame_node import THROTTLE_S
from mast3r_ros.ros.common.frames import Extrinsic, lookup_at_stamp
from mast3r_ros.ros.common.tf_io import TransformUnavailable
from mast3r_ros.ros.common.transforms import (
    base_pose_from_camera,
    camera_prior_from_base,
    compute_map_to_odom,
    covariance_to_base,
    xyzquat_to_matrix,
)
from mast3r_ros.ros.localizer.base import LocalizerBase

__all__ = ["LocalizerProcessingMixin", "NotReadyError", "Pending"]


class NotReadyError(InputError):
    """A frame cannot be processed yet (e.g. no camera_info received)."""


@dataclass
class Pending:
    """One image message waiting in the latest-frame slot."""

    msg: Any
    compressed: bool
    t_recv: float       # time.monotonic() at the callback
    recv_sec: float     # ROS clock at the callback (seconds)


class LocalizerProcessingMixin(LocalizerBase):
    """Frame conversion, localization and outputs of one image (see module docstring)."""

    def _make_pending(self, msg: Any, compressed: bool) -> Pending:
        return Pending(msg, compressed, time.monotonic(),
                       self.get_clock().now().nanoseconds * 1e-9)

    def _camera_frame(self, header_frame: str) -> str:
        return self.cfg.camera_frame or header_frame

    def _extrinsic(self, header: Any) -> Extrinsic:
        """Camera mounting for an image header (TF at its stamp, else the fallback parameter)."""
        c = self.cfg
        return self._tf_parts()[1].resolve(c.base_frame, self._camera_frame(header.frame_id),
                                           header.stamp, c.transform_timeout, c.base_T_camera)

    # ------------------------------------------------------------------ initial pose (D12)
    def _on_initialpose(self, msg: PoseWithCovarianceStamped) -> None:
        """A base pose prior in any frame TF can resolve, moved to the map frame; else rejected."""
        c = self.cfg
        try:
            tf, frames, _ = self._tf_parts()
            if not msg.header.frame_id:
                raise InputError("initialpose has no header.frame_id; give the frame of the pose")
            T_src_base = pose_to_matrix(msg.pose.pose)
            T_map_src = np.eye(4)
            if msg.header.frame_id != c.map_frame:
                stamp = msg.header.stamp if (msg.header.stamp.sec or msg.header.stamp.nanosec) \
                    else None
                try:
                    T_map_src, _ = tf.lookup(c.map_frame, msg.header.frame_id, stamp,
                                             c.transform_timeout)
                except TransformUnavailable as exc:
                    raise InputError(f"cannot transform initialpose from "
                                     f"{msg.header.frame_id!r} to {c.map_frame!r}: {exc}") from exc
            camera = c.camera_frame or self._last_camera_frame  # known once an image came in
            T_base_cam = (frames.resolve(c.base_frame, camera, msg.header.stamp, 0.0,
                                               c.base_T_camera).T_base_cam if camera
                          else xyzquat_to_matrix(c.base_T_camera))
            self._prior = camera_prior_from_base(T_map_src @ T_src_base, T_base_cam)
            self.initialpose_note = f"accepted (from {msg.header.frame_id})"
            self.get_logger().info(f"initial pose received in {msg.header.frame_id}: retrieval "
                                   "narrowed around it")
        except Mast3rRosError as exc:
            self.initialpose_note = f"rejected: {exc}"
            self.get_logger().warning(f"initialpose rejected: {exc}")

    # ------------------------------------------------------------------ processing
    def _to_frame(self, p: Pending) -> Frame:
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
        frame_id = self._camera_frame(p.msg.header.frame_id)
        self._last_camera_frame = frame_id
        return Frame(rgb=rgb, K=K, stamp=stamp, frame_id=frame_id, T_map_cam_prior=self._prior)

    def _process(self, p: Pending) -> None:
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
                self._apply_core_config()
                t1 = time.monotonic()
                result = self._localizer.localize(frame)
                times.core = time.monotonic() - t1
            reason = result.reason
            state = "localized" if result.success else "lost"
        except NotReadyError as exc:
            reason, state = str(exc), "waiting_for_camera_info"
            self.get_logger().warning(reason, throttle_duration_sec=THROTTLE_S)
        except Mast3rRosError as exc:
            reason = f"rejected frame: {exc}"
            self.get_logger().warning(reason, throttle_duration_sec=THROTTLE_S)
        except Exception as exc:  # noqa: BLE001 - a callback must never kill the node
            reason = f"internal error: {type(exc).__name__}: {exc}"
            self.counters.errors += 1
            self.get_logger().error(reason, throttle_duration_sec=THROTTLE_S)
        t2 = time.monotonic()
        try:
            self._publish_outputs(header, p.msg.header, state, reason, times, result)
        except Exception as exc:  # noqa: BLE001 - never let a callback end the executor
            self.counters.errors += 1
            self.get_logger().error(f"publishing outputs failed: {type(exc).__name__}: {exc}",
                                    throttle_duration_sec=THROTTLE_S)
        times.publish = time.monotonic() - t2
        self.last_times = times
        self.times_history = (self.times_history + [times])[-500:]

    def _publish_outputs(self, header: Header, image_header: Any, state: str, reason: str,
                         times: outputs.FrameTimes, result: Optional[LocalizationResult]) -> None:
        c = self.counters
        c.last_state, c.last_reason = state, reason
        extrinsic, tf_status = "", ""
        if result is None:
            c.rejected += 1
        else:
            c.processed += 1
            self.last_result = result
        if result is not None and result.success and result.T_map_cam is not None:
            c.localized += 1
            extrinsic, tf_status = self._publish_pose(header, image_header, result.T_map_cam,
                                                      result)
        elif result is not None:
            self._prior = None  # lost: next frame searches the whole map
            tf_status = "not updated: frame not localized"
        times.total = self.get_clock().now().nanoseconds * 1e-9 - stamp_to_sec(header.stamp)
        status = outputs.status_msg(header, state, reason, c, times, result, self.loc_cfg.backend)
        status.extrinsic, status.tf_status = extrinsic, tf_status
        self._status_pub.publish(status)

    def _publish_pose(self, header: Header, image_header: Any, T_map_cam: np.ndarray,
                      result: LocalizationResult) -> tuple[str, str]:
        """Publish the base pose, inliers and the ``map -> odom`` update of a localized frame.

        Returns:
            (extrinsic note, TF status) for the status message.
        """
        cfg = self.cfg
        ext = self._extrinsic(image_header)
        self.last_extrinsic = ext
        T_map_base = base_pose_from_camera(T_map_cam, ext.T_base_cam)
        cov = (None if result.covariance is None
               else covariance_to_base(result.covariance, T_map_cam, ext.T_base_cam))
        self._pose_pub.publish(outputs.pose_msg(header, T_map_base, cov,
                                                (cfg.fallback_position_std,
                                                 cfg.fallback_rotation_std)))
        pts = np.asarray(result.inlier_points_map).reshape(-1, 3)
        if len(pts) > cfg.max_inlier_points:
            pts = pts[np.linspace(0, len(pts) - 1, cfg.max_inlier_points).astype(int)]
        self._inliers_pub.publish(points_to_cloud(pts, header))
        self._prior = np.asarray(T_map_cam)
        return ext.note, self._update_map_to_odom(header.stamp, T_map_base)

    def _update_map_to_odom(self, stamp: Any, T_map_base: np.ndarray) -> str:
        """New REP-105 correction from ``odom -> base`` at the image stamp; the TF status."""
        cfg = self.cfg
        tf, _, m2o = self._tf_parts()
        if not cfg.publish_tf:
            return "not published: publish_tf is false"
        if not tf.can_send:
            return "not published: no TF output (tf2_ros and tf2_msgs are not importable)"
        try:
            T_odom_base = lookup_at_stamp(tf, cfg.odom_frame, cfg.base_frame, stamp,
                                          cfg.transform_timeout)
        except TransformUnavailable as exc:
            note = (f"map -> {cfg.odom_frame} not updated: {cfg.odom_frame} -> {cfg.base_frame} "
                    f"unavailable at the image stamp ({exc})")
            self.get_logger().warning(note, throttle_duration_sec=30.0)
            return note + (" (the previous correction is still published)"
                           if m2o.active else "")
        m2o.update(compute_map_to_odom(T_map_base, T_odom_base), cfg.map_frame,
                                 cfg.odom_frame)
        return "published"
