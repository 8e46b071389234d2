"""The state of the odometry node that its mixins share, declared once with its types.

:class:`~mast3r_ros.ros.odometry.node.OdometryNode` assigns every attribute below (in ``__init__``
or configure); :mod:`.processing` and :mod:`.services` read them.
"""

from __future__ import annotations

import collections
from dataclasses import dataclass
from typing import Any, Optional

import numpy as np
from nav_msgs.msg import Path

from mast3r_ros.core.config import LocalizerConfig, TrackingConfig
from mast3r_ros.core.tracking import Tracker
from mast3r_ros.msg import GraphEdge, Keyframe
from mast3r_ros.ros.common.frame_node import FrameNodeMixin
from mast3r_ros.ros.common.frames import Extrinsic, ExtrinsicResolver
from mast3r_ros.ros.common.node_config import OdometryNodeConfig
from mast3r_ros.ros.common.outputs import FrameCounters
from mast3r_ros.ros.common.tf_io import TfIo

__all__ = ["OdometryBase", "OdometryCounters"]


@dataclass
class OdometryCounters(FrameCounters):
    """Frame counters of the odometry node since activation."""

    lost: int = 0
    keyframes: int = 0


class OdometryBase(FrameNodeMixin):
    """Typed attributes shared by the odometry node's mixins (no behaviour)."""

    cfg: OdometryNodeConfig
    loc_cfg: LocalizerConfig
    trk_cfg: TrackingConfig
    counters: OdometryCounters
    _tracker: Optional[Tracker]
    _tf: Optional[TfIo]
    _frames: Optional[ExtrinsicResolver]
    last_extrinsic: Optional[Extrinsic]
    _start: Optional[tuple[np.ndarray, np.ndarray]]  # camera pose (+ cov) of the next track
    _paused: bool
    _last_stamp: Optional[float]
    _last_posed_stamp: Optional[float]
    _depths: collections.deque
    _path: Path
    _graph_kfs: list[Keyframe]
    _graph_edges: list[GraphEdge]
    _odom_pub: Any
    _status_pub: Any
    _kf_pub: Any
    _graph_pub: Any
    _path_pub: Any
