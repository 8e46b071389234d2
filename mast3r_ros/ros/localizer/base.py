"""The state of the localizer node that its mixins share, declared once with its types.

:class:`~mast3r_ros.ros.localizer.node.LocalizerNode` assigns every attribute below (in
``__init__`` or configure); :mod:`.processing` and :mod:`.services` read them. Declaring them here
gives the type checker (and the reader) one list of what the pieces of the node share.
"""

from __future__ import annotations

import threading
from typing import Any, Callable, Optional

import numpy as np

from mast3r_ros.core.config import LocalizerConfig
from mast3r_ros.core.errors import InputError
from mast3r_ros.core.types import LocalizationResult
from mast3r_ros.ros.common import outputs
from mast3r_ros.ros.common.frame_node import FrameNodeMixin
from mast3r_ros.ros.common.frames import Extrinsic, ExtrinsicResolver, MapToOdom
from mast3r_ros.ros.common.node_config import LocalizerNodeConfig
from mast3r_ros.ros.common.tf_io import TfIo

__all__ = ["LocalizerBase"]


class LocalizerBase(FrameNodeMixin):
    """Typed attributes and hooks shared by the localizer's mixins (no behaviour)."""

    cfg: LocalizerNodeConfig
    loc_cfg: LocalizerConfig
    counters: outputs.NodeCounters
    last_times: outputs.FrameTimes
    times_history: list[outputs.FrameTimes]
    last_result: Optional[LocalizationResult]
    last_extrinsic: Optional[Extrinsic]
    initialpose_note: str
    _localizer: Any                     # the core Localizer (None while unconfigured)
    _map_loader: Callable[[str, Any], Any]
    _loading: Any                       # services.MapLoad of the last load_map
    _loc_lock: threading.Lock
    _tf: Optional[TfIo]
    _frames: Optional[ExtrinsicResolver]
    _map_to_odom: Optional[MapToOdom]
    _prior: Optional[np.ndarray]        # (4, 4) T_map_cam retrieval prior
    _last_stamp: Optional[float]
    _last_camera_frame: str
    _pose_pub: Any
    _status_pub: Any
    _inliers_pub: Any

    def _tf_parts(self) -> tuple[TfIo, ExtrinsicResolver, MapToOdom]:
        """The TF helper, extrinsic resolver and ``map -> odom`` output (created in configure).

        Raises:
            InputError: the node is not configured.
        """
        tf, frames, m2o = self._tf, self._frames, self._map_to_odom
        if tf is None or frames is None or m2o is None:
            raise InputError("the node is not configured (no TF)")
        return tf, frames, m2o

    def _publish_map(self) -> None:
        """Publish the latched map cloud and keyframe markers (the node implements it)."""
        raise NotImplementedError

    def _apply_core_config(self) -> None:
        """Hand the pipeline parameters to the core (the node implements it)."""
        raise NotImplementedError
