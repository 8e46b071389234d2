"""In-memory keyframe map: keyframes (image, K, pose, optional depth / pointmap), metadata, global
descriptors and cached encoder features."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Optional

import numpy as np

from mast3r_ros.core.errors import InputError
from mast3r_ros.core.geometry.camera import depth_to_points, intrinsics_problem
from mast3r_ros.core.geometry.se3 import transform_points
from mast3r_ros.core.types import ImageSized

__all__ = ["SCHEMA_VERSION", "Keyframe", "MapMeta", "KeyframeMap"]

#: version of the on-disk layout written by :func:`mast3r_ros.core.map.save_map`
SCHEMA_VERSION = 1


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


@dataclass(frozen=True)
class MapMeta:
    """Identity of a map: how it was built and what it is compatible with.

    Attributes:
        schema_version: on-disk layout version (:data:`SCHEMA_VERSION`).
        model_id: checkpoint identity (sha256 of the checkpoint file) of the cached features and
            descriptors; "" when no network-derived data is stored (e.g. sift maps).
        backend: matcher backend that computed ``global_desc`` / features ("sift", "mast3r", "").
        image_size: network input long side of the cached features (0 when none).
        created: ISO-8601 UTC creation time.
        preprocessing: name of the image preprocessing of the cached features ("" when none).
        descriptor: name/version of the global descriptor in ``global_desc`` ("" when none).
        frame_id: name of the map frame.
        source: free text (data set, tool) for humans.
    """

    schema_version: int = SCHEMA_VERSION
    model_id: str = ""
    backend: str = ""
    image_size: int = 0
    created: str = ""
    preprocessing: str = ""
    descriptor: str = ""
    frame_id: str = "map"
    source: str = ""

    def replace(self, **changes: object) -> "MapMeta":
        """A copy with some fields changed."""
        return dataclasses.replace(self, **changes)


@dataclass
class KeyframeMap:
    """A keyframe map in memory.

    Attributes:
        meta: :class:`MapMeta`.
        keyframes: keyframes, in map order (ids unique).
        global_desc: optional (N, D) float32 L2-normalised global descriptors, row i for
            ``keyframes[i]``.
        features: cached per-keyframe network outputs: ``{keyframe id: {name: array}}``.
    """

    meta: MapMeta = field(default_factory=MapMeta)
    keyframes: list[Keyframe] = field(default_factory=list)
    global_desc: Optional[np.ndarray] = None
    features: dict[int, dict[str, np.ndarray]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        ids = [kf.id for kf in self.keyframes]
        if len(set(ids)) != len(ids):
            raise InputError("keyframe ids must be unique")
        if self.global_desc is not None:
            self.global_desc = np.asarray(self.global_desc, dtype=np.float32)
            if self.global_desc.ndim != 2 or self.global_desc.shape[0] != len(self.keyframes):
                raise InputError(f"global_desc must be (N={len(self.keyframes)}, D), got "
                                 f"{self.global_desc.shape}")
        unknown = set(self.features) - set(ids)
        if unknown:
            raise InputError(f"features given for unknown keyframe ids {sorted(unknown)[:5]}")

    def __len__(self) -> int:
        return len(self.keyframes)

    @property
    def ids(self) -> list[int]:
        return [kf.id for kf in self.keyframes]

    def keyframe(self, keyframe_id: int) -> Keyframe:
        """The keyframe with this id (KeyError when absent)."""
        for kf in self.keyframes:
            if kf.id == keyframe_id:
                return kf
        raise KeyError(keyframe_id)

    def poses(self) -> np.ndarray:
        """(N, 4, 4) float64 camera-to-map poses in map order."""
        if not self.keyframes:
            return np.zeros((0, 4, 4))
        return np.stack([kf.T_map_cam for kf in self.keyframes])

    def points_map(self, max_points: int = 100_000, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
        """A sparse coloured cloud of the map (for a latched PointCloud2).

        Args:
            max_points: upper bound on the number of points returned.
            seed: seed of the random subsampling (deterministic output).

        Returns:
            ``(points (M, 3) float64 in the map frame, colours (M, 3) uint8 RGB)``.
        """
        pts, cols = [], []
        per_kf = max(1, max_points // max(len(self.keyframes), 1))
        for kf in self.keyframes:
            step = max(1, int(np.sqrt(kf.width * kf.height / max(per_kf, 1))))
            if kf.depth is not None:
                X_cam, xy = depth_to_points(kf.depth, kf.K, step)
                X = transform_points(kf.T_map_cam, X_cam)
                ij = xy.astype(np.int64)
            elif kf.pointmap is not None:
                sub = kf.pointmap[::step, ::step].reshape(-1, 3).astype(np.float64)
                rows, cols_ = np.mgrid[0:kf.height:step, 0:kf.width:step]
                ij = np.stack([cols_.reshape(-1), rows.reshape(-1)], axis=1)
                ok = np.all(np.isfinite(sub), axis=1)
                X, ij = sub[ok], ij[ok]
            else:
                continue
            pts.append(X)
            cols.append(kf.rgb[ij[:, 1], ij[:, 0]])
        if not pts:
            return np.zeros((0, 3)), np.zeros((0, 3), dtype=np.uint8)
        P, C = np.concatenate(pts), np.concatenate(cols).astype(np.uint8)
        if P.shape[0] > max_points:
            keep = np.random.default_rng(seed).choice(P.shape[0], max_points, replace=False)
            keep.sort()
            P, C = P[keep], C[keep]
        return P, C
