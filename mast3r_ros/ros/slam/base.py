"""The state of the mapper in SLAM mode that its mixins share, declared once with its types.

:class:`~mast3r_ros.ros.slam.node.SlamNode` assigns every attribute below (in ``__init__`` or
configure); :mod:`.processing` and :mod:`.services` read them.
"""

from __future__ import annotations

import collections
import tempfile
from dataclasses import dataclass
from typing import Any, Optional

import numpy as np

from mast3r_ros.core.config import LocalizerConfig, SlamConfig
from mast3r_ros.core.slam import PoseGraphMapper
from mast3r_ros.ros.common.frame_node import FrameNodeMixin
from mast3r_ros.ros.common.frames import ExtrinsicResolver, MapToOdom
from mast3r_ros.ros.common.node_config import SlamNodeConfig
from mast3r_ros.ros.common.outputs import FrameCounters
from mast3r_ros.ros.common.tf_io import TfIo

__all__ = ["SlamBase", "SlamCounters", "StreamItem"]


@dataclass
class SlamCounters(FrameCounters):
    """Stream counters of the back end since activation (``received``: messages taken,
    ``dropped``: refused on a full queue, ``rejected``: keyframes / edges refused)."""

    duplicates: int = 0
    last_state: str = "inactive"
    last_reason: str = "no keyframe yet"


@dataclass(frozen=True)
class StreamItem:
    """One message waiting in the work queue: ``kind`` is "keyframe" or "graph"."""

    kind: str
    msg: Any


class SlamBase(FrameNodeMixin):
    """Typed attributes shared by the SLAM node's mixins (no behaviour)."""

    cfg: SlamNodeConfig
    loc_cfg: LocalizerConfig
    slam_cfg: SlamConfig
    counters: SlamCounters
    _mapper: Optional[PoseGraphMapper]
    _queue: collections.deque        # StreamItem, guarded by _slot_lock
    _edge_keys: set                   # edges handled (added or refused), stream_msgs.edge_key
    _missed: set[int]                 # keyframe ids of ~/graph never received
    _T_base_cam: dict[int, np.ndarray]  # camera mounting per keyframe id
    _extrinsic_note: str
    _in_memory: int                   # keyframes added since the last move to the store
    _since_cloud: int                 # keyframes added since the last map_cloud
    _m2o: tuple[int, np.ndarray]      # keyframe id and T_map_odom of the latest map -> odom
    _store: Optional[tempfile.TemporaryDirectory]
    _tf: Optional[TfIo]
    _frames: Optional[ExtrinsicResolver]
    _map_to_odom: Optional[MapToOdom]
    _status_pub: Any
    _path_pub: Any
    _cloud_pub: Any
    _kf_markers_pub: Any
    _loop_markers_pub: Any

    def store_path(self) -> str:
        """Directory of the working map store ("" when not configured)."""
        if self.cfg.store_dir:
            return self.cfg.store_dir
        return self._store.name if self._store is not None else ""

    def _publish_outputs(self, state: str, reason: str, cloud: bool = False) -> None:
        """map -> odom, path, markers, status (and the cloud) after the graph changed (the
        processing mixin implements it; called with ``_work_lock`` held)."""
        raise NotImplementedError
