"""Map-frame points of a keyframe for display clouds."""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Optional

import numpy as np

from mast3r_ros.core.geometry.camera import depth_to_points
from mast3r_ros.core.geometry.se3 import transform_points

if TYPE_CHECKING:
    from mast3r_ros.core.map.keyframe import Keyframe

__all__ = ["keyframe_points", "sparse_cloud"]


def keyframe_points(kf: Keyframe, budget: int) -> tuple[Optional[np.ndarray], np.ndarray]:
    """About ``budget`` map-frame points of one keyframe and their (x, y) pixels."""
    step = max(1, int(np.sqrt(kf.width * kf.height / max(budget, 1))))
    if kf.depth is not None:
        X_cam, xy = depth_to_points(kf.depth, kf.K, step)
        return transform_points(kf.T_map_cam, X_cam), xy.astype(np.int64)
    if kf.pointmap is not None:
        sub = kf.pointmap[::step, ::step].reshape(-1, 3).astype(np.float64)
        rows, cols = np.mgrid[0:kf.height:step, 0:kf.width:step]
        ij = np.stack([cols.reshape(-1), rows.reshape(-1)], axis=1)
        ok = np.all(np.isfinite(sub), axis=1)
        return sub[ok], ij[ok]
    return None, np.zeros((0, 2), np.int64)


def sparse_cloud(keyframes: Iterable[Keyframe], count: int, max_points: int, seed: int
                 ) -> tuple[np.ndarray, np.ndarray]:
    """At most ``max_points`` coloured map-frame points from ``count`` keyframes.

    Returns:
        ``(points (M, 3) float64 in the map frame, colours (M, 3) uint8 RGB)``; points are
        subsampled at random with ``seed`` (deterministic output).
    """
    pts, cols = [], []
    per_kf = max(1, max_points // max(count, 1))
    for kf in keyframes:
        X, ij = keyframe_points(kf, per_kf)
        if X is not None:
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
