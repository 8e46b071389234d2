"""Loop closures: candidates by retrieval, geometric verification with the localizer's stages.

1. :func:`loop_candidates`: the keyframes most similar to a new keyframe by global descriptor
   (:class:`~mast3r_ros.core.retrieval.GlobalIndex` of the keyframe map), the last few keyframes
   excluded (odometry links them already).
2. :func:`verify_loop`: the backend matches the new keyframe against the candidate, the matches
   are lifted to 3D with the candidate's depth / pointmap and the new keyframe's pose is solved by
   PnP (:mod:`mast3r_ros.core.pose`, the localizer's own stages), gated on the inlier count, the
   inlier ratio and the median reprojection error. The result is a ``LOOP`` edge
   ``candidate -> new`` with the solver's covariance turned into the stream's convention.
3. The consistency test against the graph (chi-square of the edge against the current estimate
   with the joint marginal of both nodes) is :meth:`~mast3r_ros.core.slam.graph.PoseGraph.chi2`,
   applied by :class:`~mast3r_ros.core.slam.backend.SlamBackend`.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Optional, Sequence

import numpy as np

from mast3r_ros.core.backends import MatcherBackend
from mast3r_ros.core.config import LocalizerConfig, LoopClosureConfig
from mast3r_ros.core.geometry.se3 import invert_pose
from mast3r_ros.core.map.keyframe import KeyframeMap
from mast3r_ros.core.pose import gather_correspondences, solve_pnp
from mast3r_ros.core.slam.factors import covariance_map_to_body
from mast3r_ros.core.tracking.stream import EdgeType, GraphEdge
from mast3r_ros.core.types import Encoding

__all__ = ["LoopCheck", "loop_candidates", "verify_loop", "loop_information"]


@dataclass(frozen=True)
class LoopCheck:
    """Outcome of checking one loop candidate (a value; rejections carry a reason).

    Attributes:
        query_id: the new keyframe.
        candidate_id: the older keyframe it may close a loop with.
        accepted: every gate passed (geometric, then consistency when it was tested).
        reason: "ok" or why it was rejected.
        edge: the ``LOOP`` edge ``candidate -> query`` when the geometry was solved, else None.
        score: global-descriptor similarity (NaN when the candidate did not come from retrieval).
        num_matches: 2D-3D correspondences given to PnP.
        num_inliers: PnP inliers.
        inlier_ratio: ``num_inliers / num_matches``.
        reprojection_error: median inlier reprojection error (px).
        chi2: Mahalanobis distance squared against the graph (NaN when not tested).
    """

    query_id: int
    candidate_id: int
    accepted: bool
    reason: str
    edge: Optional[GraphEdge] = None
    score: float = math.nan
    num_matches: int = 0
    num_inliers: int = 0
    inlier_ratio: float = 0.0
    reprojection_error: float = math.nan
    chi2: float = math.nan

    def replace(self, **changes: object) -> LoopCheck:
        """A copy with some fields changed."""
        return dataclasses.replace(self, **changes)  # type: ignore[arg-type]


def loop_candidates(kmap: KeyframeMap, global_desc: np.ndarray, exclude: Sequence[int],
                    cfg: LoopClosureConfig) -> list[tuple[int, float]]:
    """The keyframes most similar to a descriptor, best first.

    Args:
        kmap: encoded keyframe map (its ``index`` holds the global descriptors).
        global_desc: (D,) descriptor of the new keyframe.
        exclude: keyframe ids that are never candidates (the new one, the last few).
        cfg: ``top_k`` and ``min_score``.

    Returns:
        ``[(keyframe id, similarity)]``, at most ``cfg.top_k``; empty when nothing qualifies.
    """
    if kmap.index is None:
        return []
    banned = set(int(i) for i in exclude)
    allowed = [i for i in kmap.ids if i not in banned and i in kmap.index]
    if not allowed:
        return []
    ids, scores = kmap.index.search(np.asarray(global_desc, np.float32), cfg.top_k, allowed)
    return [(int(i), float(s)) for i, s in zip(ids, scores) if s >= cfg.min_score]


def loop_information(T_map_query: np.ndarray, cov_map: np.ndarray,
                     cfg: LoopClosureConfig) -> np.ndarray:
    """(6, 6) information of a loop edge, ROS order, from the PnP covariance of the new keyframe.

    The solver's map-frame covariance becomes a right perturbation of the new keyframe
    (:func:`~mast3r_ros.core.slam.factors.covariance_map_to_body`, which is also the perturbation
    of ``T_candidate_query``), is scaled by ``cfg.covariance_scale`` and floored per axis by
    ``cfg.min_position_std`` / ``cfg.min_rotation_std``.
    """
    cov = covariance_map_to_body(T_map_query, cov_map) * cfg.covariance_scale
    floor = np.array([cfg.min_position_std] * 3 + [cfg.min_rotation_std] * 3) ** 2
    cov = cov + np.diag(floor)
    return np.linalg.inv(cov)


def verify_loop(backend: MatcherBackend, kmap: KeyframeMap, query_id: int, candidate_id: int,
                query: Encoding, localizer: LocalizerConfig, cfg: LoopClosureConfig,
                score: float = math.nan) -> LoopCheck:
    """Geometric verification of a loop candidate (see the module docstring).

    Args:
        backend: the matcher (same encoder as the map's encodings).
        kmap: keyframe map holding both keyframes (the candidate needs depth or a pointmap).
        query_id: the new keyframe (its K and pixels are the PnP query).
        candidate_id: the older keyframe.
        query: the new keyframe's encoding.
        localizer: matching settings and the PnP solver (its gates are replaced by ``cfg``'s).
        cfg: loop gates and the loop covariance model.
        score: retrieval similarity, reported as is.

    Returns:
        A :class:`LoopCheck`; ``accepted`` means the geometry passed (not yet the consistency).
    """
    base = LoopCheck(query_id, candidate_id, False, "", score=score)
    cand = kmap.keyframe(candidate_id)
    if not cand.has_3d:
        return base.replace(reason="candidate keyframe has no depth or pointmap")
    q_kf = kmap.keyframe(query_id)
    matched = backend.match(query, [kmap.keyframe_encoding(candidate_id)], localizer.matching,
                            query_image=q_kf.rgb)
    corr = gather_correspondences([cand], matched.pairs)
    pose_cfg = dataclasses.replace(localizer.pose, min_inliers=cfg.min_inliers,
                                   max_median_reproj_error=cfg.max_median_reproj_error)
    est = solve_pnp(corr, q_kf.K, pose_cfg)
    ratio = est.num_inliers / max(len(corr), 1)
    checked = base.replace(num_matches=len(corr), num_inliers=est.num_inliers, inlier_ratio=ratio,
                           reprojection_error=est.reprojection_error)
    if not est.success or est.T_map_cam is None:
        return checked.replace(reason=f"geometry: {est.reason}")
    if ratio < cfg.min_inlier_ratio:
        return checked.replace(reason=f"geometry: inlier ratio {ratio:.2f} < "
                               f"{cfg.min_inlier_ratio}")
    if est.covariance is None:
        return checked.replace(reason="geometry: pose covariance not observable")
    T_cand_query = invert_pose(cand.T_map_cam) @ est.T_map_cam
    info = loop_information(est.T_map_cam, est.covariance, cfg)
    edge = GraphEdge(candidate_id, query_id, EdgeType.LOOP, T_cand_query, info,
                     float(q_kf.stamp))
    return checked.replace(accepted=True, reason="ok", edge=edge)
