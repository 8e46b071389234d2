"""Stream ingestion of the mapper in SLAM mode: queue -> messages -> ``PoseGraphMapper`` -> outputs.

A mixin of :class:`~mast3r_ros.ros.slam.node.SlamNode`. The subscription callbacks only append
the message to a bounded queue (``queue_size``; a message arriving on a full queue is dropped and
counted) and wake the work callback group, which feeds the mapper with ``_work_lock`` held (the
services take it too), so the network and the optimiser never run in a subscriber callback.

Every item is validated before it changes anything, one at a time: a keyframe that does not
convert, a keyframe id seen before with another stamp or a stamp going back
(:class:`~mast3r_ros.core.slam.StreamError`), an edge with a bad pose or information or an
unknown node id (:class:`~mast3r_ros.core.slam.GraphError`) is refused with its reason (log,
``~/status``, diagnostics) and the graph keeps everything it had. A keyframe received again with
its stamp, and an edge seen before (ends, type, stamp), are ignored (idempotent).

``graph`` (the front end's latched ``KeyframeGraph``) is used to catch up: edges it holds between
known keyframes that never came with a keyframe message are added (in stamp order; one older
than the newest edge is refused as out of order by the core), and keyframe ids it lists below the
newest received one that never arrived are reported as missed (it carries no images, so they
cannot join the map: the graph has a gap there).
"""

from __future__ import annotations

from typing import Any, Optional

import numpy as np
from std_msgs.msg import Header

from mast3r_ros.core.errors import Mast3rRosError
from mast3r_ros.core.map.store import save_map
from mast3r_ros.core.slam import StreamError
from mast3r_ros.ros.common.conversions import sec_to_stamp, stamp_to_sec
from mast3r_ros.ros.common.frame_node import THROTTLE_S
from mast3r_ros.ros.common.outputs import keyframe_markers
from mast3r_ros.ros.common.stream_msgs import edge_from_msg, edge_key, keyframe_event_from_msg
from mast3r_ros.ros.slam import messages
from mast3r_ros.ros.slam.base import SlamBase, StreamItem

__all__ = ["SlamProcessingMixin"]


class SlamProcessingMixin(SlamBase):
    """Queue, stream handling and outputs (see module docstring)."""

    # ------------------------------------------------------------------ inputs
    def _on_keyframe(self, msg: Any) -> None:
        self._enqueue(StreamItem("keyframe", msg))

    def _on_graph(self, msg: Any) -> None:
        self._enqueue(StreamItem("graph", msg))

    def _enqueue(self, item: StreamItem) -> None:
        if not self._active:
            return
        with self._slot_lock:
            self.counters.received += 1
            full = len(self._queue) >= self.cfg.queue_size
            if full:
                self.counters.dropped += 1
            else:
                self._queue.append(item)
        if full:
            self.get_logger().warning(f"work queue full ({self.cfg.queue_size}): {item.kind} "
                                      "message dropped (raise queue_size or slow the front end)",
                                      throttle_duration_sec=THROTTLE_S)
            return
        self._wakeup.trigger()

    def _on_work(self) -> None:  # FrameNodeMixin's slot of one replaced by the queue
        while True:
            with self._slot_lock:
                item = self._queue.popleft() if self._queue else None
            if item is None or not self._active:
                return
            with self._work_lock:
                if self._active and self._mapper is not None:
                    self._process(item)

    def _process(self, item: StreamItem) -> None:
        problems: list[str] = []
        try:
            if item.kind == "keyframe":
                added = self._keyframe(item.msg, problems)
            else:
                added = False
                self._catch_up(item.msg, problems)
            if added:
                self._after_keyframe()
        except Exception as exc:  # noqa: BLE001 - a callback must never kill the node
            self.counters.errors += 1
            self.get_logger().error(f"internal error: {type(exc).__name__}: {exc}",
                                    throttle_duration_sec=THROTTLE_S)
            problems.append(f"internal error: {type(exc).__name__}: {exc}")
            self._publish_outputs("error", "; ".join(problems))
            return
        for p in problems:
            self.get_logger().warning(p, throttle_duration_sec=THROTTLE_S)
        self._publish_outputs("rejected" if problems else "mapping",
                              "; ".join(problems) if problems else "ok",
                              cloud=self._since_cloud >= self.cfg.cloud_every)

    # ------------------------------------------------------------------ stream items
    def _keyframe(self, msg: Any, problems: list[str]) -> bool:
        """Add one keyframe message and its edges; True when the keyframe is new."""
        mapper = self._mapper
        assert mapper is not None
        kid, stamp = int(msg.id), stamp_to_sec(msg.header.stamp)
        new = True
        try:
            if kid in mapper.map and abs(mapper.map.record(kid).stamp - stamp) < 1e-9:
                self.counters.duplicates += 1  # the same keyframe again: only its edges count
                new = False
            else:
                event = keyframe_event_from_msg(msg, self.cfg.max_image_pixels)
                mapper.add_keyframe(event)
                self._T_base_cam[kid] = self._extrinsic(msg)
        except StreamError as exc:
            self.counters.rejected += 1
            problems.append(f"keyframe {kid} refused (out of order): {exc}")
            return False
        except Mast3rRosError as exc:
            self.counters.rejected += 1
            problems.append(f"keyframe {kid} refused: {exc}")
            return False
        for e in sorted(msg.edges, key=lambda e: stamp_to_sec(e.stamp)):
            self._edge(e, problems)
        return new

    def _edge(self, msg: Any, problems: list[str]) -> None:
        """Add one edge message (ignored when seen before)."""
        mapper = self._mapper
        assert mapper is not None
        key = edge_key(msg)
        if key in self._edge_keys:
            self.counters.duplicates += 1
            return
        self._edge_keys.add(key)  # refused edges are not retried from ~/graph either
        try:
            outcome = mapper.add_edge(edge_from_msg(msg))
        except Mast3rRosError as exc:
            self.counters.rejected += 1
            problems.append(f"edge {msg.from_id}->{msg.to_id} ({msg.type}) refused: {exc}")
            return
        for check in outcome.loops:
            if check.accepted:
                self.get_logger().info(f"loop {check.candidate_id}->{check.query_id} accepted "
                                       f"({check.num_inliers} inliers)")

    def _catch_up(self, msg: Any, problems: list[str]) -> None:
        """Edges and missed keyframes from the latched ``graph`` (see module docstring)."""
        mapper = self._mapper
        assert mapper is not None
        known = set(mapper.map.ids)
        newest = mapper.latest_id
        if newest is not None:
            missed = {int(i) for i in msg.ids if int(i) not in known and int(i) < newest}
            fresh = sorted(missed - self._missed)
            if fresh:
                self._missed |= missed
                self.get_logger().warning(
                    f"keyframes {fresh[:10]}{' ...' if len(fresh) > 10 else ''} were never "
                    "received (published before this node subscribed, or dropped): they are not "
                    "in the map and the graph has a gap there")
        todo = [e for e in msg.edges if edge_key(e) not in self._edge_keys
                and int(e.from_id) in known and int(e.to_id) in known]
        for e in sorted(todo, key=lambda e: stamp_to_sec(e.stamp)):
            self._edge(e, problems)

    def _extrinsic(self, msg: Any) -> np.ndarray:
        """``T_base_cam`` of a keyframe (TF at its stamp, else the fallback parameter)."""
        c = self.cfg
        if self._frames is None:
            return np.eye(4)
        ext = self._frames.resolve(c.base_frame, c.camera_frame or msg.camera_frame,
                                   msg.header.stamp, c.transform_timeout, c.base_T_camera)
        self._extrinsic_note = ext.note
        return ext.T_base_cam

    def _after_keyframe(self) -> None:
        """Move the keyframes in RAM to the working store once ``store_every`` accumulated."""
        mapper = self._mapper
        assert mapper is not None
        self._in_memory += 1
        self._since_cloud += 1
        if self.cfg.store_every and self._in_memory >= self.cfg.store_every:
            try:
                save_map(mapper.map, self.store_path())
                self._in_memory = 0
            except Mast3rRosError as exc:  # keep them in RAM and say so
                self.get_logger().error(f"cannot move keyframes to the working store "
                                        f"{self.store_path()}: {exc}",
                                        throttle_duration_sec=30.0)

    # ------------------------------------------------------------------ outputs
    def _update_map_to_odom(self) -> None:
        """The newest keyframe's ``T_map_odom`` to the republisher (when it has one)."""
        mapper = self._mapper
        if mapper is None:
            return
        for i in reversed(mapper.map.ids):
            T = mapper.T_map_odom(i)
            if T is not None:
                self._m2o = (i, T)
                if self._map_to_odom is not None and self.cfg.publish_tf:
                    self._map_to_odom.update(T, self.cfg.map_frame, self.cfg.odom_frame)
                return

    def _publish_outputs(self, state: str, reason: str, cloud: bool = False) -> None:
        mapper, c = self._mapper, self.cfg
        cnt = self.counters
        cnt.last_state, cnt.last_reason = state, reason
        if state != "error":
            cnt.processed += 1
        newest: Optional[float] = None
        if mapper is not None and mapper.latest_id is not None:
            newest = mapper.map.record(mapper.latest_id).stamp
        header = Header(stamp=sec_to_stamp(newest) if newest is not None else sec_to_stamp(0.0),
                        frame_id=c.map_frame)
        try:
            if mapper is not None and len(mapper.graph):
                self._update_map_to_odom()
                ids, poses = messages.optimized_camera_poses(mapper)
                self._path_pub.publish(messages.path_msg(header, mapper, ids, poses,
                                                         self._T_base_cam))
                self._kf_markers_pub.publish(keyframe_markers(header, poses, ids))
                self._loop_markers_pub.publish(messages.loop_markers(header, mapper, ids, poses))
                if cloud:
                    self._cloud_pub.publish(messages.cloud_msg(header, mapper,
                                                               c.map_cloud_points))
                    self._since_cloud = 0
            in_ram = (sum(mapper.map.payload_in_memory(i) for i in mapper.map.ids)
                      if mapper is not None else 0)
            self._status_pub.publish(messages.status_msg(
                header, state, reason, mapper, self._m2o, items_received=cnt.received,
                items_dropped=cnt.dropped, items_rejected=cnt.rejected,
                duplicates=cnt.duplicates, keyframes_missed=len(self._missed),
                keyframes_in_memory=in_ram))
        except Exception as exc:  # noqa: BLE001 - never let a callback end the executor
            cnt.errors += 1
            self.get_logger().error(f"outputs: {type(exc).__name__}: {exc}",
                                    throttle_duration_sec=THROTTLE_S)
