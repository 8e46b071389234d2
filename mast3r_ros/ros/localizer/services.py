"""Services and diagnostics of the localizer node (a mixin of :class:`LocalizerNode`).

``load_map`` never blocks on file I/O without a bound: the map is read by a worker thread
(:class:`MapLoad`) and the service answers "timed out" after ``load_map_timeout`` seconds (the
read goes on in the background and its result is discarded), "busy" while an earlier read has not
timed out yet, and never swaps the map into a node that was cleaned up meanwhile: the swap holds
``_lifecycle_lock``, as every lifecycle transition does. It runs in its own callback group, so a
slow read never delays ``reset``, ``localize`` or ``/diagnostics``.

The mixin uses the node's state: ``_active``, ``_localizer``, ``_prior``, ``_last_stamp``,
``_pending`` (under ``_slot_lock``), ``_loc_lock``, ``_lifecycle_lock``, ``_map_loader``,
``_loading``, ``_map_to_odom``, ``_tf``, ``counters``, ``last_times``, ``cfg``, ``loc_cfg``.
"""

from __future__ import annotations

import threading
import time
from typing import Any, Callable, Optional

from diagnostic_msgs.msg import DiagnosticStatus
from std_srvs.srv import Trigger

from mast3r_ros.core.errors import Mast3rRosError
from mast3r_ros.ros.common import outputs
from mast3r_ros.ros.localizer.base import LocalizerBase
from mast3r_ros.srv import LoadMap

__all__ = ["LocalizerServicesMixin", "MapLoad"]


class MapLoad:
    """One map read in a daemon worker thread (so that a stuck read cannot hang a service).

    Args:
        path: map directory.
        load: ``path -> KeyframeMap``; raises ``Mast3rRosError`` for a bad map.
    """

    def __init__(self, path: str, load: Callable[[str], Any]) -> None:
        self.path, self.started = path, time.monotonic()
        self.result: Any = None
        self.error: Optional[str] = None
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(load,), daemon=True,
                                        name="load_map")
        self._thread.start()

    def _run(self, load: Callable[[str], Any]) -> None:
        try:
            self.result = load(self.path)
        except Mast3rRosError as exc:
            self.error = str(exc)
        except Exception as exc:  # noqa: BLE001 - a worker must report, never die silently
            self.error = f"internal error: {type(exc).__name__}: {exc}"
        finally:
            self._done.set()

    def wait(self, timeout: float) -> bool:
        """True when the read finished within ``timeout`` seconds."""
        return self._done.wait(timeout)

    @property
    def running(self) -> bool:
        return not self._done.is_set()


class LocalizerServicesMixin(LocalizerBase):
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
        if self._map_to_odom is not None:
            self._map_to_odom.clear("reset; waiting for a new localized frame")
        resp.success = True
        resp.message = "tracking state cleared (prior, last stamp, queue, map -> odom)"
        return resp

    def _srv_load_map(self, req: LoadMap.Request, resp: LoadMap.Response) -> LoadMap.Response:
        resp.success, resp.message, resp.num_keyframes = self._load_map(req.path)
        if not resp.success:
            self.get_logger().error(resp.message)
        return resp

    def _load_map(self, path: str) -> tuple[bool, str, int]:
        """Read ``path`` in a worker with a timeout and swap it in; (success, message, size)."""
        with self._lifecycle_lock:
            localizer = self._localizer
            if localizer is None:
                return False, "node is not configured; configure it first", 0
            job = self._loading
            if job is not None and job.running and \
                    time.monotonic() - job.started < self.cfg.load_map_timeout:
                return False, (f"busy: still reading {job.path} (started "
                               f"{time.monotonic() - job.started:.1f} s ago); try again later"), 0
            job = self._loading = MapLoad(path, lambda p: self._map_loader(p, localizer))
        timeout = self.cfg.load_map_timeout
        if not job.wait(timeout):
            return False, (f"timed out after {timeout:.1f} s reading {path} (load_map_timeout); "
                           "previous map kept, the read's result will be discarded"), 0
        if job.error is not None:
            return False, f"map not loaded, previous map kept: {job.error}", 0
        with self._lifecycle_lock:
            if self._localizer is not localizer:
                return False, ("map discarded: the node was cleaned up or reconfigured while it "
                               "was loading"), 0
            try:
                with self._loc_lock:
                    localizer.set_map(job.result)
                    self._prior = None
            except Mast3rRosError as exc:
                return False, f"map not loaded, previous map kept: {exc}", 0
            if self._map_to_odom is not None:
                self._map_to_odom.clear("new map loaded; waiting for a localized frame")
            if self._active:
                self._publish_map()
        return True, f"loaded {len(job.result)} keyframes from {path}", len(job.result)

    def _publish_diagnostics(self) -> None:
        c = self.counters
        level = {"localized": DiagnosticStatus.OK, "configured": DiagnosticStatus.OK,
                 "error": DiagnosticStatus.ERROR}.get(c.last_state, DiagnosticStatus.WARN)
        t = self.last_times
        ext, m2o = self.last_extrinsic, self._map_to_odom
        values = {"state": c.last_state, "backend": self.loc_cfg.backend,
                  "frames_received": c.received, "frames_processed": c.processed,
                  "frames_dropped": c.dropped, "frames_localized": c.localized,
                  "frames_rejected": c.rejected, "internal_errors": c.errors,
                  "latency_core_s": f"{t.core:.4f}", "latency_total_s": f"{t.total:.4f}",
                  "camera_extrinsic": ext.note if ext is not None else "no localized frame yet",
                  "map_to_odom": m2o.note if m2o is not None else "not configured",
                  "tf_channel": self._tf.channel if self._tf is not None else "not configured",
                  "initialpose": self.initialpose_note}
        if ext is not None and not ext.from_tf and level == DiagnosticStatus.OK:
            level = DiagnosticStatus.WARN  # the fallback extrinsic is worth a look
        msg = outputs.diagnostics_msg(self.get_clock().now().to_msg(),
                                      f"{self.get_name()}: localization",
                                      self.get_fully_qualified_name(),
                                      level, c.last_reason, values)
        self._diag_pub.publish(msg)
