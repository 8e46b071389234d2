"""2D (query) - 3D (map) correspondences from 2D-2D matches and the keyframes' depth / pointmaps."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from mast3r_ros.core.geometry.camera import backproject, sample_depth
from mast3r_ros.core.geometry.se3 import transform_points
from mast3r_ros.core.map.keyframe import Keyframe
from mast3r_ros.core.types import PairMatches

__all__ = ["DEPTH_EDGE_REL", "Correspondences", "lift_matches", "gather_correspondences"]

#: reject keyframe depth at pixels whose 3x3 neighbourhood spans more than this relative range
DEPTH_EDGE_REL = 0.05


@dataclass(frozen=True)
class Correspondences:
    """Pooled 2D-3D correspondences of a query.

    Attributes:
        xy: (N, 2) float64 query pixels (original image, pixel-centre convention).
        X_map: (N, 3) float64 map-frame points in metres.
        keyframe_ids: (N,) int64 keyframe each correspondence came from.
    """

    xy: np.ndarray
    X_map: np.ndarray
    keyframe_ids: np.ndarray

    def __len__(self) -> int:
        return int(self.xy.shape[0])


def lift_matches(kf: Keyframe, m: PairMatches) -> tuple[np.ndarray, np.ndarray]:
    """Map-frame 3D points of the keyframe side of matches (depth, else pointmap).

    Args:
        kf: the keyframe the matches refer to (``m.xy_ref`` are its pixels).
        m: matches of the query with ``kf``.

    Returns:
        ``(X_map (N, 3) float64 with NaN rows where no valid 3D exists, valid (N,) bool)``.
    """
    n = len(m)
    X = np.full((n, 3), np.nan)
    if n == 0:
        return X, np.zeros(0, dtype=bool)
    if kf.depth is not None:
        z = sample_depth(kf.depth, m.xy_ref, max_rel_jump=DEPTH_EDGE_REL)
        ok = np.isfinite(z)
        X[ok] = transform_points(kf.T_map_cam, backproject(m.xy_ref[ok], z[ok], kf.K))
    elif kf.pointmap is not None:
        col = np.rint(m.xy_ref[:, 0]).astype(np.int64)
        row = np.rint(m.xy_ref[:, 1]).astype(np.int64)
        inside = (col >= 0) & (col < kf.width) & (row >= 0) & (row < kf.height)
        X[inside] = kf.pointmap[row[inside], col[inside]]
    valid = np.all(np.isfinite(X), axis=1)
    return X, valid


def gather_correspondences(keyframes: Sequence[Keyframe],
                           pairs: Sequence[PairMatches]) -> Correspondences:
    """Lift the matches of each keyframe and pool the valid ones (keyframe order kept)."""
    xs, Xs, ids = [np.zeros((0, 2))], [np.zeros((0, 3))], [np.zeros(0, np.int64)]
    for kf, m in zip(keyframes, pairs):
        X, ok = lift_matches(kf, m)
        xs.append(m.xy_query[ok])
        Xs.append(X[ok])
        ids.append(np.full(int(ok.sum()), kf.id, dtype=np.int64))
    return Correspondences(np.concatenate(xs), np.concatenate(Xs), np.concatenate(ids))
