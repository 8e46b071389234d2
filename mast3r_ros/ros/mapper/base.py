"""The state of the mapper node that its services mixin shares, declared once with its types.

:class:`~mast3r_ros.ros.mapper.node.MapperNode` assigns every attribute below; the services
mixin (:mod:`.services`) reads them.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any, Optional

import numpy as np

from mast3r_ros.core.config import MappingConfig, ModelConfig
from mast3r_ros.ros.common.frame_node import FrameNodeMixin
from mast3r_ros.ros.common.node_config import MapperNodeConfig
from mast3r_ros.ros.common.outputs import FrameCounters

__all__ = ["MapperBase", "MapperCounters", "StoredKeyframe"]


@dataclass
class StoredKeyframe:
    """One keyframe kept for the alignment (original resolution)."""

    rgb: np.ndarray                 # (H, W, 3) uint8
    K: Optional[np.ndarray]         # (3, 3) of this image, None when no camera_info
    T_world_cam: Optional[np.ndarray]  # (4, 4) odometry camera pose (odom frame) or None
    stamp: float                    # s


@dataclass
class MapperCounters(FrameCounters):
    """Frame and build counters of the mapper since configure."""

    keyframes_refused: int = 0
    builds: int = 0
    pairs_ready: int = 0
    last_build_s: float = float("nan")
    last_state: str = "unconfigured"
    last_reason: str = "not configured"


class MapperBase(FrameNodeMixin):
    """Typed attributes and hooks shared by the mapper node and its services mixin."""

    cfg: MapperNodeConfig
    model_cfg: ModelConfig
    map_cfg: MappingConfig
    counters: MapperCounters
    keyframes: list[StoredKeyframe]
    kmap: Any                       # the last built KeyframeMap
    odometry_note: str
    _backend: Any                   # the MASt3R backend (engine, model_id, prepare_map)
    _built_count: int
    _pair_todo: list[tuple[np.ndarray, np.ndarray]]
    _kf_lock: threading.Lock
    _build_lock: threading.Lock
    _engine_lock: threading.Lock
    _pairs_wakeup: Any
    _path_pub: Any
    _cloud_pub: Any

    def cache_dir(self) -> str:
        """Directory of the pairwise cache (the node implements it)."""
        raise NotImplementedError

    def _clear_keyframes(self) -> None:
        """Drop the keyframes and the selector state (the node implements it)."""
        raise NotImplementedError
