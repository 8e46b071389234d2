"""Alignment, services, background pairwise stage, latched map outputs and diagnostics of the
mapper node (a mixin of :class:`~mast3r_ros.ros.mapper.node.MapperNode`).

Kept apart so that the node module stays a readable lifecycle + data-path file. The mixin uses the
node's state: ``cfg``, ``model_cfg``, ``map_cfg``, ``_backend``, ``_active``, ``kmap``,
``keyframes``, ``_pair_todo``, ``_built_count``, locks, ``counters``, publishers, ``cache_dir`` and
``_clear_keyframes``.
"""

from __future__ import annotations

import dataclasses
import time
import traceback
from typing import Any

import numpy as np
from diagnostic_msgs.msg import DiagnosticStatus
from geometry_msgs.msg import PoseStamped
from nav_msgs.msg import Path
from std_msgs.msg import Header
from std_srvs.srv import Trigger

from mast3r_ros.core.errors import Mast3rRosError
from mast3r_ros.ros.common import outputs
from mast3r_ros.ros.common.conversions import matrix_to_pose, points_to_cloud, sec_to_stamp
from mast3r_ros.ros.mapper.base import MapperBase
from mast3r_ros.srv import LoadMap

__all__ = ["MapperServicesMixin"]


class MapperServicesMixin(MapperBase):
    """``build_map`` / ``save_map`` / ``clear_keyframes``, pairwise stage, outputs, diagnostics."""

    def _publish_map(self, kmap: Any, stamps: list[float]) -> None:
        now = self.get_clock().now().to_msg()
        header = Header(stamp=now, frame_id=self.cfg.map_frame)
        path = Path(header=header)
        for T, s in zip(kmap.poses(), stamps):
            path.poses.append(PoseStamped(header=Header(stamp=sec_to_stamp(max(s, 0.0)),
                                                        frame_id=self.cfg.map_frame),
                                          pose=matrix_to_pose(T)))
        self._path_pub.publish(path)
        pts, cols = kmap.points_map(self.cfg.map_cloud_points)
        self._cloud_pub.publish(points_to_cloud(pts, header, cols))

    def _srv_build(self, req: Trigger.Request, resp: Trigger.Response) -> Trigger.Response:
        resp.success, resp.message = self.build()
        return resp

    def _on_build_timer(self) -> None:
        if self._active and len(self.keyframes) >= 2 and len(self.keyframes) != self._built_count:
            ok, message = self.build()
            if not ok:
                self.get_logger().warning(f"periodic build failed: {message}",
                                          throttle_duration_sec=30.0)

    def build(self) -> tuple[bool, str]:
        """Align the current keyframes (core ``build_map``) and publish the result.

        Returns:
            (success, message); failures are values, the previous map stays.
        """
        if not self._build_lock.acquire(blocking=False):
            return False, "an alignment is already running"
        try:
            if self._backend is None:  # checked under the lock: cleanup takes it too
                return False, "node is not configured; configure it first"
            with self._kf_lock:
                kfs = list(self.keyframes)
            if len(kfs) < 2:
                return False, f"need at least 2 keyframes to build a map, have {len(kfs)}"
            t0 = time.monotonic()
            kmap = self._run_build(kfs)
            self.kmap, self._built_count = kmap, len(kfs)
            c = self.counters
            c.builds, c.last_build_s = c.builds + 1, time.monotonic() - t0
            if self._active:
                self._publish_map(kmap, [k.stamp for k in kfs])
            return True, f"built a map of {len(kmap)} keyframes in {c.last_build_s:.1f} s"
        except Mast3rRosError as exc:
            return self._build_failed(f"alignment failed: {exc}")
        except Exception as exc:  # noqa: BLE001 - a service must never kill the node
            self.get_logger().error(traceback.format_exc())
            return self._build_failed(f"internal error in the alignment: {type(exc).__name__}: "
                                      f"{exc}")
        finally:
            self._build_lock.release()

    def _build_failed(self, message: str) -> tuple[bool, str]:
        self.counters.last_state, self.counters.last_reason = "build_failed", message
        self.get_logger().error(message)
        return False, message

    def _run_build(self, kfs: list[Any]) -> Any:
        from mast3r_ros.core.mapping.build import build_map

        cfg = self.cfg
        Ks = [k.K for k in kfs]
        K = np.stack(Ks) if all(k is not None for k in Ks) else None
        if K is None and any(k is not None for k in Ks):
            self.get_logger().warning("camera_info missing for some keyframes: estimating K")
        poses = [k.T_world_cam for k in kfs]
        n_poses = sum(p is not None for p in poses)
        use_poses = cfg.use_odometry_poses and n_poses >= 2
        self.get_logger().info(f"aligning {len(kfs)} keyframes ({n_poses} with odometry poses"
                               f"{', used' if use_poses else ''})")
        with self._engine_lock:
            res = build_map([k.rgb for k in kfs], self._backend.engine,
                            dataclasses.replace(self.map_cfg, cache_dir=self.cache_dir()),
                            model_id=self._backend.engine.model_id,
                            image_size=self._backend.engine.image_size,
                            stamps=[k.stamp for k in kfs], K=K,
                            poses=poses if use_poses else None,
                            intrinsics_mode=cfg.intrinsics_mode, poses_mode=cfg.poses_mode)
        if self._pair_todo:
            self._pairs_wakeup.trigger()  # pairs queued during the build
        from mast3r_ros.core.backends import encode_map

        kmap: Any = res.kmap
        encode_map(kmap, self._backend)
        kmap.meta = kmap.meta.replace(frame_id=cfg.map_frame,
                                      source=f"{kmap.meta.source} (mapper node)")
        return kmap

    def pairs_idle(self) -> bool:
        """True when no keyframe pair is queued and the network is not in use."""
        return not self._pair_todo and not self._engine_lock.locked()

    def _on_pairs(self) -> None:
        """Background pairwise stage: network + matches of queued keyframe pairs into the cache.

        Yields to a running alignment (which computes what is left itself) and never raises.
        """
        from mast3r_ros.core.mapping.pairwise import PairCache, compute_pairs
        from mast3r_ros.core.model import preprocess_image

        while self._active and self._backend is not None and not self._build_lock.locked():
            with self._kf_lock:
                if not self._pair_todo:
                    return
                rgb_a, rgb_b = self._pair_todo.pop(0)
            size, sub = self.model_cfg.image_size, self.map_cfg.subsample
            try:
                with self._engine_lock:
                    if self._backend is None:
                        return
                    cache = PairCache(self.cache_dir(), self._backend.engine.model_id, sub)
                    tensors = [preprocess_image(im, size).tensor for im in (rgb_a, rgb_b)]
                    compute_pairs(self._backend.engine, tensors, [(0, 1)], sub, cache)
                self.counters.pairs_ready += 1
            except Exception as exc:  # noqa: BLE001 - the build recomputes what failed here
                self.counters.errors += 1
                self.get_logger().error(f"background pairwise stage failed: "
                                        f"{type(exc).__name__}: {exc}", throttle_duration_sec=10.0)

    def _srv_save(self, req: LoadMap.Request, resp: LoadMap.Response) -> LoadMap.Response:
        from mast3r_ros.core.map import save_map

        path = req.path or self.cfg.map_path
        kmap = self.kmap
        if not path:
            resp.success, resp.message = False, "no path: give one or set parameter map_path"
        elif kmap is None:
            resp.success, resp.message = False, "no map built yet: call build_map first"
        else:
            try:
                out = save_map(kmap, path)
            except (Mast3rRosError, OSError) as exc:
                resp.success, resp.message = False, f"cannot save the map to {path}: {exc}"
                self.get_logger().error(resp.message)
                return resp
            stale = len(self.keyframes) - self._built_count
            resp.success, resp.num_keyframes = True, len(kmap)
            resp.message = f"saved {len(kmap)} keyframes to {out}" + (
                f" ({stale} newer keyframes are not in it: call build_map again)" if stale else "")
        return resp

    def _srv_reset(self, req: Trigger.Request, resp: Trigger.Response) -> Trigger.Response:
        if not self._build_lock.acquire(blocking=False):
            resp.success, resp.message = False, "an alignment is running; reset after it ends"
            return resp
        try:
            self._clear_keyframes()
            self.kmap = None
        finally:
            self._build_lock.release()
        resp.success, resp.message = True, "keyframes and built map cleared"
        return resp

    def _publish_diagnostics(self) -> None:
        c = self.counters
        level = {"mapping": DiagnosticStatus.OK, "configured": DiagnosticStatus.OK,
                 "error": DiagnosticStatus.ERROR,
                 "build_failed": DiagnosticStatus.ERROR}.get(c.last_state, DiagnosticStatus.WARN)
        values = {"state": c.last_state, "keyframes": len(self.keyframes),
                  "keyframes_in_map": self._built_count, "frames_received": c.received,
                  "frames_processed": c.processed, "frames_dropped": c.dropped,
                  "frames_rejected": c.rejected, "keyframes_refused": c.keyframes_refused,
                  "internal_errors": c.errors, "builds": c.builds,
                  "pairs_ready": c.pairs_ready, "pairs_queued": len(self._pair_todo),
                  "last_build_s": f"{c.last_build_s:.2f}", "odometry": self.odometry_note}
        self._diag_pub.publish(outputs.diagnostics_msg(
            self.get_clock().now().to_msg(), f"{self.get_name()}: mapping",
            self.get_fully_qualified_name(), level, c.last_reason, values))
