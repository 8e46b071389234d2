"""The tracker's bounded keyframe window: a :class:`KeyframeMap` plus what the chain needs.

The map holds the keyframes (image, K, depth, pose in the track frame) and their encodings, and is
what relocalization retrieves from. Next to it, each keyframe keeps its right covariance in the
track frame, its odometry pose at creation and the reference count of the keyframe rule. Beyond
``max_keyframes`` the oldest keyframe is dropped (it was handed on in the keyframe stream when it
was created); the current keyframe is never dropped.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np

from mast3r_ros.core.map.keyframe import Keyframe, KeyframeMap, MapMeta
from mast3r_ros.core.types import Encoding

__all__ = ["WindowEntry", "KeyframeWindow"]


@dataclass
class WindowEntry:
    """Chain data of one keyframe of the window.

    Attributes:
        keyframe: the keyframe (``T_map_cam`` = its pose in the track frame).
        encoding: its encoding (cached: a frame costs one decoder pass against it).
        covariance: (6, 6) right covariance of its track-frame pose.
        T_odom_cam: (4, 4) its odometry pose at creation.
        reference_count: inliers of the first frame tracked against it (None until then).
    """

    keyframe: Keyframe
    encoding: Encoding
    covariance: np.ndarray
    T_odom_cam: np.ndarray
    reference_count: Optional[int] = None


class KeyframeWindow:
    """The last ``max_keyframes`` keyframes, the current one and their map (O(1) per update).

    Args:
        max_keyframes: window size (>= 2).
    """

    def __init__(self, max_keyframes: int) -> None:
        self.max_keyframes = int(max_keyframes)
        self.map = KeyframeMap(MapMeta(frame_id="track", source="tracker window"))
        self._entries: dict[int, WindowEntry] = {}
        self.current_id: Optional[int] = None

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def current(self) -> Optional[WindowEntry]:
        """The keyframe frames are tracked against, or None before the first one."""
        return None if self.current_id is None else self._entries[self.current_id]

    def entry(self, keyframe_id: int) -> WindowEntry:
        """The entry of a keyframe of the window (KeyError when it left the window)."""
        return self._entries[keyframe_id]

    def add(self, entry: WindowEntry) -> list[int]:
        """Add a keyframe, make it current and drop the oldest beyond the window size.

        Returns:
            The ids that left the window.
        """
        kid = entry.keyframe.id
        self.map.add(entry.keyframe, entry.encoding)
        self._entries[kid] = entry
        self.current_id = kid
        dropped = []
        while len(self._entries) > self.max_keyframes:
            oldest = next(iter(self._entries))
            del self._entries[oldest]
            self.map.remove(oldest)
            dropped.append(oldest)
        return dropped

    def clear(self) -> list[int]:
        """Drop every keyframe (reset); returns their ids."""
        ids = list(self._entries)
        for kid in ids:
            self.map.remove(kid)
        self._entries.clear()
        self.current_id = None
        return ids
