"""What a SLAM front end hands to a back end: keyframes and typed edges between them.

Shaped after rtabmap's ``Link`` (``from_id``, ``to_id``, ``type``, ``transform``,
``information``) so that rtabmap or a GTSAM back end can consume the same stream.

Conventions (stated once):

* ``T_from_to`` is the pose of keyframe ``to``'s camera in keyframe ``from``'s camera frame:
  ``T_from_to = inv(T_w_from) @ T_w_to`` for any common world frame ``w`` (OpenCV optical frames,
  metres).
* ``information`` is the 6x6 inverse covariance of that relative pose, ROS order
  (x, y, z, rx, ry, rz), for a perturbation on the right, in the ``to`` camera's frame:
  ``T_from_to_true = T_from_to @ exp(delta)``, ``delta`` ~ N(0, inv(information)). (GTSAM's
  ``BetweenFactorPose3`` uses the same right perturbation with the order (rx, ry, rz, x, y, z):
  reorder the blocks.)
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import Optional

import numpy as np

from mast3r_ros.core.errors import InputError
from mast3r_ros.core.map.keyframe import Keyframe
from mast3r_ros.core.types import Encoding

__all__ = ["EdgeType", "GraphEdge", "KeyframeEvent"]


class EdgeType(str, Enum):
    """Why an edge exists."""

    ODOMETRY = "odometry"              # consecutive keyframes of the tracker
    RELOCALIZATION = "relocalization"  # the tracker re-found an older keyframe after being lost
    LOOP_CANDIDATE = "loop_candidate"  # proposed by the front end, to be verified by a back end
    LOOP = "loop"                      # verified loop closure (back end)
    PRIOR = "prior"                    # absolute pose prior on ``to_id`` (``from_id == to_id``)


def _check_pose(T: np.ndarray, name: str) -> np.ndarray:
    T = np.asarray(T, dtype=np.float64)
    if T.shape != (4, 4) or not np.all(np.isfinite(T)):
        raise InputError(f"{name} must be a finite 4x4 matrix")
    return T


@dataclass(frozen=True)
class GraphEdge:
    """A relative-pose measurement between two keyframes (see the module conventions).

    Attributes:
        from_id: keyframe id of the reference frame.
        to_id: keyframe id of the measured frame.
        type: :class:`EdgeType`.
        T_from_to: (4, 4) float64 relative pose.
        information: (6, 6) float64 symmetric positive-definite information, ROS order.
        stamp: time of the measurement in seconds (the ``to`` frame's stamp).

    Raises:
        InputError: non-finite pose, information not symmetric positive definite.
    """

    from_id: int
    to_id: int
    type: EdgeType
    T_from_to: np.ndarray
    information: np.ndarray
    stamp: float = 0.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "type", EdgeType(self.type))
        object.__setattr__(self, "T_from_to", _check_pose(self.T_from_to, "T_from_to"))
        info = np.asarray(self.information, dtype=np.float64)
        if info.shape != (6, 6) or not np.all(np.isfinite(info)):
            raise InputError(f"edge {self.from_id}->{self.to_id}: information must be a finite "
                             "6x6 matrix")
        if not np.allclose(info, info.T, rtol=1e-6, atol=1e-9 * max(1.0, np.abs(info).max())):
            raise InputError(f"edge {self.from_id}->{self.to_id}: information is not symmetric")
        if np.linalg.eigvalsh(info).min() <= 0:
            raise InputError(f"edge {self.from_id}->{self.to_id}: information is not positive "
                             "definite")
        object.__setattr__(self, "information", info)

    @property
    def covariance(self) -> np.ndarray:
        """(6, 6) covariance, ROS order (inverse of :attr:`information`)."""
        return np.linalg.inv(self.information)


@dataclass(frozen=True)
class KeyframeEvent:
    """A new keyframe of the front end.

    Attributes:
        keyframe: id, image, K, depth, stamp and ``T_map_cam`` = the tracker's pose of the
            keyframe (``T_track_cam``, in the tracker's keyframe frame).
        T_odom_cam: (4, 4) the continuous odometry pose of the keyframe at creation.
        encoding: the backend's encoding (global descriptor and features), when computed.
        global_desc: (D,) float32 global descriptor (``encoding.global_desc`` when present).
    """

    keyframe: Keyframe
    T_odom_cam: np.ndarray
    encoding: Optional[Encoding] = None
    global_desc: Optional[np.ndarray] = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "T_odom_cam", _check_pose(self.T_odom_cam, "T_odom_cam"))
        if self.global_desc is None and self.encoding is not None:
            object.__setattr__(self, "global_desc", self.encoding.global_desc)

    @property
    def id(self) -> int:
        """Keyframe id."""
        return self.keyframe.id

    @property
    def stamp(self) -> float:
        """Keyframe stamp in seconds."""
        return float(self.keyframe.stamp)
