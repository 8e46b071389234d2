"""Keyframe map: in-memory model, crash-safe on-disk store, builders."""

from mast3r_ros.core.map.keyframe import Keyframe, KeyframeMap, KeyframeRecord, MapMeta
from mast3r_ros.core.map.rgbd import build_map_from_rgbd, read_matrix, read_rgb, register_depth
from mast3r_ros.core.map.store import SCHEMA_VERSION, load_map, save_map

__all__ = [
    "SCHEMA_VERSION", "Keyframe", "KeyframeMap", "KeyframeRecord", "MapMeta",
    "build_map_from_rgbd", "read_matrix", "read_rgb", "register_depth", "load_map", "save_map",
]
