"""The odometry node's services: ``~/reset``, ``~/reset_to_pose``, ``~/pause``, ``~/resume``.

Each runs in the service callback group and takes ``_work_lock``, so it never lands in the middle
of a frame. ``reset`` and ``reset_to_pose`` also rebuild the tracker from the current ``tracking.*``
parameters (the backend is kept: changing it needs a reconfigure).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from nav_msgs.msg import Path
from std_srvs.srv import Trigger

from mast3r_ros.core.errors import Mast3rRosError
from mast3r_ros.core.tracking import Tracker
from mast3r_ros.ros.common.conversions import pose_to_matrix
from mast3r_ros.ros.common.transforms import xyzquat_to_matrix
from mast3r_ros.ros.odometry.base import OdometryBase
from mast3r_ros.srv import ResetToPose

__all__ = ["OdometryServicesMixin"]


class OdometryServicesMixin(OdometryBase):
    """Service callbacks of the odometry node (see module docstring)."""

    def _create_services(self) -> None:
        g = self._srv_group
        self.create_service(Trigger, "~/reset", self._srv_reset, callback_group=g)
        self.create_service(ResetToPose, "~/reset_to_pose", self._srv_reset_to_pose,
                            callback_group=g)
        self.create_service(Trigger, "~/pause", self._srv_pause, callback_group=g)
        self.create_service(Trigger, "~/resume", self._srv_resume, callback_group=g)

    def _fresh_tracker(self) -> Tracker:
        """A new tracker with the current tracking parameters and the node's backend."""
        assert self._tracker is not None
        return Tracker(self.trk_cfg, self.loc_cfg, self._tracker.backend)

    def _srv_reset(self, request: Any, response: Any) -> Any:
        with self._work_lock:
            if self._tracker is None:
                response.success, response.message = False, "not configured"
                return response
            self._tracker = self._fresh_tracker()
            self._path, self._last_posed_stamp, self._start = Path(), None, None
        response.success, response.message = True, "track reset: the next frame starts at the " \
                                                    "odom origin"
        return response

    def _srv_reset_to_pose(self, request: Any, response: Any) -> Any:
        c = self.cfg
        msg = request.pose
        try:
            if msg.header.frame_id not in ("", c.odom_frame):
                raise ValueError(f"the pose must be in {c.odom_frame!r}, got "
                                 f"{msg.header.frame_id!r}")
            T_odom_base = pose_to_matrix(msg.pose.pose)
            cov = np.asarray(msg.pose.covariance, dtype=np.float64).reshape(6, 6)
            ext = self.last_extrinsic
            T_base_cam = ext.T_base_cam if ext is not None else xyzquat_to_matrix(c.base_T_camera)
            with self._work_lock:
                if self._tracker is None:
                    raise ValueError("not configured")
                tracker = self._fresh_tracker()
                tracker.reset_to_pose(T_odom_base @ T_base_cam, cov)  # checks the pose
                self._tracker, self._path, self._last_posed_stamp = tracker, Path(), None
                self._start = (T_odom_base @ T_base_cam, cov)
        except (ValueError, Mast3rRosError) as exc:
            response.success, response.message = False, f"rejected: {exc}"
            return response
        response.success, response.message = True, "track restarts at the given pose"
        return response

    def _srv_pause(self, request: Any, response: Any) -> Any:
        self._paused = True
        response.success, response.message = True, "paused: frames are not tracked"
        return response

    def _srv_resume(self, request: Any, response: Any) -> Any:
        with self._work_lock:
            self._paused = False
        response.success, response.message = True, "resumed (tracking continues; call ~/reset " \
                                                    "if the camera moved a lot meanwhile)"
        return response
