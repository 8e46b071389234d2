"""Services and diagnostics of the localizer node (a mixin of :class:`LocalizerNode`).

Kept apart so that the node module stays a readable lifecycle + data-path file. The mixin uses the
node's state: ``_active``, ``_localizer``, ``_prior``, ``_last_stamp``, ``_pending`` (under
``_slot_lock``), ``_loc_lock``, ``_map_loader``, ``counters``, ``last_times``, ``loc_cfg``.
"""

from __future__ import annotations

from diagnostic_msgs.msg import DiagnosticStatus
from std_srvs.srv import Trigger

from mast3r_ros.core.errors import Mast3rRosError
from mast3r_ros.ros import outputs
from mast3r_ros.srv import LoadMap

__all__ = ["LocalizerServicesMixin"]


class LocalizerServicesMixin:
    """``localize`` / ``reset`` / ``load_map`` services and the periodic ``/diagnostics``."""

    def _srv_localize(self, req: Trigger.Request, resp: Trigger.Response) -> Trigger.Response:
        resp.success = self._active
        if self._active:
            self._prior = None
            resp.message = "global relocalization on the next frame"
        else:
            resp.message = "node is not active; configure and activate it first"
        return resp

    def _srv_reset(self, req: Trigger.Request, resp: Trigger.Response) -> Trigger.Response:
        self._prior, self._last_stamp = None, None
        with self._slot_lock:
            self._pending = None
        resp.success, resp.message = True, "tracking state cleared (prior, last stamp, queue)"
        return resp

    def _srv_load_map(self, req: LoadMap.Request, resp: LoadMap.Response) -> LoadMap.Response:
        if self._localizer is None:
            resp.success, resp.message = False, "node is not configured; configure it first"
            return resp
        try:
            kmap = self._map_loader(req.path, self._localizer)
            with self._loc_lock:
                self._localizer.set_map(kmap)
                self._prior = None
        except Mast3rRosError as exc:
            resp.success, resp.message = False, f"map not loaded, previous map kept: {exc}"
            self.get_logger().error(resp.message)
            return resp
        resp.success, resp.num_keyframes = True, len(kmap)
        resp.message = f"loaded {len(kmap)} keyframes from {req.path}"
        if self._active:
            self._publish_map()
        return resp

    def _publish_diagnostics(self) -> None:
        c = self.counters
        level = {"localized": DiagnosticStatus.OK, "configured": DiagnosticStatus.OK,
                 "error": DiagnosticStatus.ERROR}.get(c.last_state, DiagnosticStatus.WARN)
        t = self.last_times
        values = {"state": c.last_state, "backend": self.loc_cfg.backend,
                  "frames_received": c.received, "frames_processed": c.processed,
                  "frames_dropped": c.dropped, "frames_localized": c.localized,
                  "frames_rejected": c.rejected, "internal_errors": c.errors,
                  "latency_core_s": f"{t.core:.4f}", "latency_total_s": f"{t.total:.4f}"}
        msg = outputs.diagnostics_msg(self.get_clock().now().to_msg(),
                                      f"{self.get_name()}: localization",
                                      self.get_fully_qualified_name(),
                                      level, c.last_reason, values)
        self._diag_pub.publish(msg)
