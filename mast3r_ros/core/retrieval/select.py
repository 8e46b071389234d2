"""The retrieval stage of localization: which keyframes a query is matched against.

1. The top-k keyframes by global-descriptor similarity (only those near a pose prior, if any).
2. They are grouped into *places*: single-linkage clusters of camera positions within
   ``cluster_radius`` (hloc's ``pose_from_cluster`` idea). In a map with look-alike places (similar
   rooms, repeated corridors) the top-k may come from several of them; pooling their matches in
   one RANSAC lets the places dilute each other, so each place is solved on its own.
3. Each place (best place first, at most ``max_clusters``) is filled up with the best-scoring
   keyframes within ``cluster_radius`` of its members, up to k, so that a place found through one
   keyframe is still matched against k keyframes.

With a single place this is exactly the global top-k.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np

from mast3r_ros.core.config import RetrievalConfig
from mast3r_ros.core.map.keyframe import KeyframeMap

__all__ = ["Place", "cluster_positions", "retrieve_places"]


@dataclass(frozen=True)
class Place:
    """Keyframes of one retrieval cluster, best first.

    Attributes:
        ids: keyframe ids.
        scores: their descriptor similarities.
    """

    ids: list[int]
    scores: list[float]


def cluster_positions(positions: np.ndarray, radius: float) -> list[list[int]]:
    """Single-linkage clusters of points (indices), in order of their first member.

    Args:
        positions: (N, 3) points in metres.
        radius: two points closer than this are in one cluster (radius 0: each point alone,
            unless coincident).
    """
    n = positions.shape[0]
    label = -np.ones(n, dtype=np.int64)
    clusters: list[list[int]] = []
    for i in range(n):
        if label[i] >= 0:
            continue
        label[i] = len(clusters)
        members, stack = [i], [i]
        while stack:
            j = stack.pop()
            d = np.linalg.norm(positions - positions[j], axis=1)
            for k in np.nonzero((d <= radius) & (label < 0))[0]:
                label[k] = label[i]
                members.append(int(k))
                stack.append(int(k))
        clusters.append(sorted(members))
    return clusters


def retrieve_places(kmap: KeyframeMap, query_desc: np.ndarray, cfg: RetrievalConfig,
                    prior_position: Optional[np.ndarray] = None) -> list[Place]:
    """The places a query is matched against (see the module docstring).

    Args:
        kmap: an encoded map (``kmap.index`` set).
        query_desc: (D,) global descriptor of the query.
        cfg: top-k, prior radius and clustering settings.
        prior_position: (3,) map-frame camera position prior, or None.

    Returns:
        Places, best first; empty when no keyframe qualifies.
    """
    if kmap.index is None or len(kmap.index) == 0:
        return []
    ids_all, pos_all = kmap.ids, kmap.positions()
    allowed: Optional[list[int]] = None
    if prior_position is not None:
        near = np.linalg.norm(pos_all - np.asarray(prior_position)[:3], axis=1) <= cfg.prior_radius
        allowed = [ids_all[i] for i in np.nonzero(near)[0]]
    ids, scores = kmap.index.search(query_desc, cfg.top_k, allowed)
    if ids.size == 0:
        return []
    seed_pos = np.array([kmap.record(int(i)).T_map_cam[:3, 3] for i in ids], dtype=np.float64)
    places = []
    for members in cluster_positions(seed_pos, cfg.cluster_radius)[:cfg.max_clusters]:
        if len(members) == len(ids):
            places.append(Place([int(i) for i in ids], [float(s) for s in scores]))
            break
        d = np.min(np.linalg.norm(pos_all[:, None, :] - seed_pos[members][None], axis=2), axis=1)
        region = d <= cfg.cluster_radius
        if allowed is not None:
            region &= np.isin(np.asarray(ids_all), allowed)
        region_ids = [ids_all[i] for i in np.nonzero(region)[0]]
        pid, psc = kmap.index.search(query_desc, cfg.top_k, region_ids)
        places.append(Place([int(i) for i in pid], [float(s) for s in psc]))
    return places
