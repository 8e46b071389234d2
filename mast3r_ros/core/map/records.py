"""Value types of a keyframe map: the keyframe itself, its index row, the map's metadata, and
the protocol of a source that reads keyframe payloads on demand."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Optional, Protocol

import numpy as np

from mast3r_ros.core.errors import InputError
from mast3r_ros.core.features import Features
from mast3r_ros.core.geometry.camera import intrinsics_problem
from mast3r_ros.core.types import ImageSized

__all__ = ["Keyframe", "KeyframeRecord", "MapMeta", "PayloadSource"]


@dataclass
class Keyframe(ImageSized):
    """One posed map image.

    Attributes:
        id: unique keyframe id (>= 0).
        rgb: (H, W, 3) uint8 RGB image.
        K: (3, 3) float64 intrinsics of ``rgb`` (pixel-centre convention).
        T_map_cam: (4, 4) float64 camera-to-map pose (OpenCV optical camera frame).
        stamp: capture time in seconds.
        depth: optional (H, W) float32 depth in metres registered to ``rgb`` (0/NaN = invalid).
        pointmap: optional (H, W, 3) float32 points in the MAP frame per pixel of ``rgb``
            (NaN = invalid); used when ``depth`` is None.
    """

    id: int
    rgb: np.ndarray
    K: np.ndarray
    T_map_cam: np.ndarray
    stamp: float = 0.0
    depth: Optional[np.ndarray] = None
    pointmap: Optional[np.ndarray] = None

    def __post_init__(self) -> None:
        self.id = int(self.id)
        if self.id < 0:
            raise InputError(f"keyframe id must be >= 0, got {self.id}")
        rgb = np.asarray(self.rgb)
        if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8 or rgb.size == 0:
            raise InputError(f"keyframe {self.id}: rgb must be (H, W, 3) uint8, got "
                             f"{rgb.shape} {rgb.dtype}")
        self.rgb = rgb
        problem = intrinsics_problem(self.K)
        if problem is not None:
            raise InputError(f"keyframe {self.id}: {problem}")
        self.K = np.asarray(self.K, dtype=np.float64)
        T = np.asarray(self.T_map_cam, dtype=np.float64)
        if T.shape != (4, 4) or not np.all(np.isfinite(T)):
            raise InputError(f"keyframe {self.id}: T_map_cam must be a finite 4x4 matrix")
        self.T_map_cam = T
        if not np.isfinite(float(self.stamp)):
            raise InputError(f"keyframe {self.id}: stamp must be finite")
        h, w = rgb.shape[:2]
        if self.depth is not None:
            self.depth = np.asarray(self.depth, dtype=np.float32)
            if self.depth.shape != (h, w):
                raise InputError(f"keyframe {self.id}: depth shape {self.depth.shape} != image "
                                 f"{(h, w)}; register the depth to the colour image first")
        if self.pointmap is not None:
            self.pointmap = np.asarray(self.pointmap, dtype=np.float32)
            if self.pointmap.shape != (h, w, 3):
                raise InputError(f"keyframe {self.id}: pointmap shape {self.pointmap.shape} != "
                                 f"{(h, w, 3)}")

    @property
    def has_3d(self) -> bool:
        """True when map-frame 3D points can be read for pixels (depth or pointmap)."""
        return self.depth is not None or self.pointmap is not None

    def record(self) -> KeyframeRecord:
        """The index row of this keyframe."""
        return KeyframeRecord(self.id, self.width, self.height, self.K, self.T_map_cam,
                              float(self.stamp), self.depth is not None, self.pointmap is not None)


@dataclass(frozen=True)
class KeyframeRecord:
    """What a map knows about a keyframe without reading its pixels.

    Attributes:
        id: keyframe id.
        width: W of the image in pixels.
        height: H of the image in pixels.
        K: (3, 3) float64 intrinsics.
        T_map_cam: (4, 4) float64 camera-to-map pose.
        stamp: capture time in seconds.
        has_depth: a depth image is stored.
        has_pointmap: a map-frame pointmap is stored.
    """

    id: int
    width: int
    height: int
    K: np.ndarray
    T_map_cam: np.ndarray
    stamp: float
    has_depth: bool
    has_pointmap: bool

    @property
    def has_3d(self) -> bool:
        """True when map-frame 3D points can be read for pixels (depth or pointmap)."""
        return self.has_depth or self.has_pointmap


@dataclass(frozen=True)
class MapMeta:
    """Identity of a map for humans and tools.

    Attributes:
        created: ISO-8601 UTC creation time.
        frame_id: name of the map frame.
        source: free text (data set, tool) for humans.
    """

    created: str = ""
    frame_id: str = "map"
    source: str = ""

    def replace(self, **changes: object) -> MapMeta:
        """A copy with some fields changed."""
        return dataclasses.replace(self, **changes)  # type: ignore[arg-type]


class PayloadSource(Protocol):
    """Where a map reads the payload of keyframes it does not hold in memory (e.g. a store)."""

    def keyframe(self, record: KeyframeRecord) -> Keyframe:
        """The full keyframe of ``record`` (raises MapFormatError on corrupt data)."""
        ...

    def features(self, record: KeyframeRecord) -> Optional[Features]:
        """The stored features of ``record``, or None when it has none."""
        ...
