"""The SLAM node's services: ``~/save_map`` (``mast3r_ros/LoadMap``) and ``~/optimize``
(``std_srvs/Trigger``).

Both run in the service callback group and take ``_work_lock``, so they never land in the middle
of a stream item (items wait in the queue meanwhile). ``save_map`` batch-optimises and writes the
map through the store the localizer loads (:meth:`PoseGraphMapper.save`: the map with the
optimised poses, plus the pose-graph sidecar); the store writes a new version and swaps it in
atomically, so a failed save leaves the previous map in that directory as it was, and the node
keeps its graph. ``optimize`` runs the batch pose graph (Levenberg-Marquardt); MASt3R sparse
global alignment on the keyframes is not run (the core back end does not offer it yet).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from std_srvs.srv import Trigger

from mast3r_ros.core.errors import Mast3rRosError
from mast3r_ros.ros.slam.base import SlamBase
from mast3r_ros.srv import LoadMap

__all__ = ["SlamServicesMixin"]


def _same_dir(a: str, b: str) -> bool:
    try:
        return os.path.realpath(a) == os.path.realpath(b)
    except OSError:
        return False


class SlamServicesMixin(SlamBase):
    """Service callbacks of the SLAM node (see module docstring)."""

    def _create_services(self) -> None:
        g = self._srv_group
        self.create_service(LoadMap, "~/save_map", self._srv_save_map, callback_group=g)
        self.create_service(Trigger, "~/optimize", self._srv_optimize, callback_group=g)

    def _srv_save_map(self, request: Any, response: Any) -> Any:
        path = request.path or self.cfg.map_path
        response.success = False
        if not path:
            response.message = "no path: give one in the request or set the parameter map_path"
            return response
        if self.store_path() and _same_dir(path, self.store_path()):
            response.message = (f"{path} is the node's working store (store_dir); save the map "
                                "somewhere else")
            return response
        with self._work_lock:
            mapper = self._mapper
            if mapper is None or not self._active:
                response.message = "not active"
                return response
            if not len(mapper.map):
                response.message = "no keyframe yet: nothing to save"
                return response
            try:
                out = mapper.save(path)
            except Mast3rRosError as exc:
                response.message = f"not saved: {exc}"
                self.get_logger().error(response.message)
                self._publish_outputs("mapping", f"save_map failed: {exc}")
                return response
            n = len(mapper.map)
            response.success, response.num_keyframes = True, n
            response.message = f"saved {Path(out)} ({n} keyframes, batch-optimised)"
            self.get_logger().info(response.message)
            self._publish_outputs("mapping", response.message, cloud=True)
        return response

    def _srv_optimize(self, request: Any, response: Any) -> Any:
        with self._work_lock:
            mapper = self._mapper
            if mapper is None or not self._active:
                response.success, response.message = False, "not active"
                return response
            if not len(mapper.graph):
                response.success, response.message = False, "no keyframe yet"
                return response
            try:
                r = mapper.optimize()
            except Exception as exc:  # noqa: BLE001 - a service must answer, the node keep going
                response.success = False
                response.message = f"not optimised: {type(exc).__name__}: {exc}"
                self.get_logger().error(response.message)
                return response
            response.success = True
            response.message = (f"batch optimisation of {len(mapper.graph)} keyframes: error "
                                f"{r.error_before:.3g} -> {r.error_after:.3g} in "
                                f"{r.iterations} iterations, {r.seconds * 1e3:.1f} ms")
            self._publish_outputs("mapping", response.message, cloud=True)
        return response
