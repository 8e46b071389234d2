"""The SLAM back end: a front end's keyframe / edge stream in, an optimised map out.

``PoseGraphMapper`` takes, in stream order:

* :class:`~mast3r_ros.core.tracking.stream.KeyframeEvent`: the keyframe (with its encoding) joins
  the :class:`~mast3r_ros.core.map.keyframe.KeyframeMap` (poses as the front end gave them) and
  the :class:`~mast3r_ros.core.slam.graph.PoseGraph` (initial pose = the front end's pose
  corrected by the latest optimised keyframe);
* :class:`~mast3r_ros.core.tracking.stream.GraphEdge`: odometry / relocalization / prior edges
  enter the graph as they are (under the robust kernel); ``LOOP_CANDIDATE`` edges are verified
  geometrically with the images here; ``LOOP`` edges claimed by someone else, and every loop
  found here, must also pass the chi-square test against the current estimate.

When an edge first connects a keyframe to the graph, the mapper searches loops for it
(:mod:`mast3r_ros.core.slam.loops`). Every call validates its input before changing anything:
a bad item raises a typed error and the mapper keeps everything it had.
"""

from __future__ import annotations

import dataclasses
import logging
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Union

import numpy as np
from scipy.stats import chi2 as chi2_dist

from mast3r_ros.core.backends import MatcherBackend
from mast3r_ros.core.config import LocalizerConfig, SlamConfig
from mast3r_ros.core.errors import InputError
from mast3r_ros.core.geometry.se3 import invert_pose
from mast3r_ros.core.map.keyframe import KeyframeMap
from mast3r_ros.core.slam.graph import GraphError, OptimizationResult, PoseGraph
from mast3r_ros.core.slam.loops import LoopCheck, loop_candidates, verify_loop
from mast3r_ros.core.slam.persistence import load_slam_map, save_slam_map
from mast3r_ros.core.tracking.stream import EdgeType, GraphEdge, KeyframeEvent

__all__ = ["StreamError", "SlamStatus", "EdgeOutcome", "PoseGraphMapper"]

logger = logging.getLogger(__name__)


class StreamError(InputError):
    """A keyframe or edge out of order, or a keyframe id seen before."""


@dataclass(frozen=True)
class SlamStatus:
    """Counters of the back end (for a status message).

    Attributes:
        nodes: keyframes in the graph.
        edges: factors from edges (the anchor excluded).
        loops_accepted: loop edges in the graph.
        loops_rejected: loop candidates / claimed loops refused (geometry or consistency).
        last_optimization: the latest optimisation, or None.
    """

    nodes: int
    edges: int
    loops_accepted: int
    loops_rejected: int
    last_optimization: Optional[OptimizationResult]


@dataclass(frozen=True)
class EdgeOutcome:
    """What one incoming edge did.

    Attributes:
        added: the edge (or its verified replacement) is in the graph.
        reason: "ok" or why not.
        loops: loop checks run because of this edge (its own verification, and the loop search
            for a keyframe it connected).
        optimization: the iSAM2 update that followed, or None when nothing changed.
    """

    added: bool
    reason: str
    loops: list[LoopCheck] = field(default_factory=list)
    optimization: Optional[OptimizationResult] = None


class PoseGraphMapper:
    """Keyframe map + pose graph + loop closing (see the module docstring).

    Args:
        config: back-end settings.
        localizer: matching and PnP settings used to verify loops (the localizer's own).
        backend: matcher backend; keyframes without an encoding are encoded with it.
        kmap: keyframes already mapped (e.g. loaded), else a new map.
        graph: their pose graph, else a new one.
        odom_poses: ``T_odom_cam`` of the keyframes in ``graph``.
    """

    def __init__(self, config: SlamConfig, localizer: LocalizerConfig, backend: MatcherBackend,
                 kmap: Optional[KeyframeMap] = None, graph: Optional[PoseGraph] = None,
                 odom_poses: Optional[dict[int, np.ndarray]] = None) -> None:
        self.config = config
        self.localizer = localizer
        self.backend = backend
        self.map = kmap if kmap is not None else KeyframeMap()
        self.graph = graph if graph is not None else PoseGraph(config.pose_graph)
        self._odom: dict[int, np.ndarray] = dict(odom_poses or {})
        self._searched: set[int] = set(self.graph.ids)
        self._order: list[int] = list(self.graph.ids)
        self._last_kf_stamp = -math.inf
        self._last_edge_stamp = -math.inf
        self.loop_checks: list[LoopCheck] = []
        self._last_opt: Optional[OptimizationResult] = None
        self._chi2_max = float(chi2_dist.ppf(config.loops.consistency_probability, 6))

    # ------------------------------------------------------------------ status
    @property
    def status(self) -> SlamStatus:
        """Counters of the graph and the loop checks."""
        loops = sum(e.type is EdgeType.LOOP for e in self.graph.edges)
        rejected = sum(not c.accepted for c in self.loop_checks)
        return SlamStatus(len(self.graph), len(self.graph.edges), loops, rejected, self._last_opt)

    @property
    def latest_id(self) -> Optional[int]:
        """Id of the newest keyframe, or None."""
        return self._order[-1] if self._order else None

    def T_map_odom(self, node_id: Optional[int] = None) -> Optional[np.ndarray]:
        """REP-105 ``map -> odom`` at a keyframe (default the newest estimated one).

        ``T_map_odom = T_map_cam(optimised) @ inv(T_odom_cam)`` of the same keyframe: the camera
        to base extrinsic cancels. None when no estimated keyframe has an odometry pose.
        """
        ids = [node_id] if node_id is not None else list(reversed(self._order))
        for i in ids:
            if i in self._odom and self.graph.is_estimated(i):
                return self.graph.pose(i) @ invert_pose(self._odom[i])
        return None

    # ------------------------------------------------------------------ the stream
    def add_keyframe(self, event: KeyframeEvent) -> None:
        """Add a keyframe of the front end (encoded here when the event has no encoding).

        Raises:
            StreamError: duplicate id or a stamp older than the previous keyframe's.
            InputError: an encoding of another encoder or image size.
        """
        kf = event.keyframe
        if kf.id in self.map or kf.id in self.graph:
            raise StreamError(f"keyframe {kf.id} was already received")
        tol = self.config.max_stamp_regression
        if event.stamp < self._last_kf_stamp - tol:
            raise StreamError(f"keyframe {kf.id} at t={event.stamp:.3f} s arrives after one at "
                              f"t={self._last_kf_stamp:.3f} s; the stream is out of order")
        enc = event.encoding if event.encoding is not None else self.backend.encode(kf.rgb)
        self.map.add(kf, enc)
        self.graph.add_node(kf.id, self._predict(kf.T_map_cam))
        self._odom[kf.id] = np.array(event.T_odom_cam, dtype=np.float64)
        self._order.append(kf.id)
        self._last_kf_stamp = max(self._last_kf_stamp, event.stamp)

    def _predict(self, T_front: np.ndarray) -> np.ndarray:
        """The front end's pose moved by the latest optimised keyframe's correction."""
        for i in reversed(self._order):
            if self.graph.is_estimated(i):
                correction = self.graph.pose(i) @ invert_pose(self.map.record(i).T_map_cam)
                return correction @ T_front
        return np.asarray(T_front, dtype=np.float64)

    def add_edge(self, edge: GraphEdge) -> EdgeOutcome:
        """Add an edge of the stream (see the module docstring for what each type does).

        Raises:
            InputError: non-finite pose, information not symmetric positive definite.
            StreamError: a stamp older than the previous edge's.
            GraphError: an end that is not a keyframe received before.
        """
        edge = dataclasses.replace(edge)  # re-validates arrays changed after construction
        tol = self.config.max_stamp_regression
        if edge.stamp < self._last_edge_stamp - tol:
            raise StreamError(f"edge {edge.from_id}->{edge.to_id} at t={edge.stamp:.3f} s arrives "
                              f"after one at t={self._last_edge_stamp:.3f} s; out of order")
        if edge.type in (EdgeType.LOOP, EdgeType.LOOP_CANDIDATE):
            self._require_nodes(edge)
            check = self._check_claimed_loop(edge)
            self._last_edge_stamp = max(self._last_edge_stamp, edge.stamp)
            opt = self._accept(check)
            return EdgeOutcome(check.accepted, check.reason, [check], opt)
        self.graph.add_edge(edge)
        self._last_edge_stamp = max(self._last_edge_stamp, edge.stamp)
        opt = self._update()
        loops: list[LoopCheck] = []
        for node in (edge.from_id, edge.to_id):
            if node not in self._searched and self.graph.is_estimated(node):
                self._searched.add(node)
                loops += self.close_loops(node)
        return EdgeOutcome(True, "ok", loops, self._last_opt if loops else opt)

    def _require_nodes(self, edge: GraphEdge) -> None:
        missing = [i for i in (edge.from_id, edge.to_id) if i not in self.graph]
        if missing:
            raise GraphError(f"edge {edge.from_id}->{edge.to_id} ({edge.type.value}): unknown "
                             f"node id(s) {missing}")

    def _check_claimed_loop(self, edge: GraphEdge) -> LoopCheck:
        """A loop from the stream: verify a candidate with the images, test both for consistency."""
        if edge.type is EdgeType.LOOP_CANDIDATE:
            q = edge.to_id
            enc = self.map.encoding(q)
            if enc is None:
                return LoopCheck(q, edge.from_id, False, "no encoding of the keyframe")
            check = verify_loop(self.backend, self.map, q, edge.from_id, enc, self.localizer,
                                self.config.loops)
        else:
            check = LoopCheck(edge.to_id, edge.from_id, True, "ok", edge=edge)
        return self._consistent(check) if check.accepted else check

    # ------------------------------------------------------------------ loops
    def close_loops(self, node_id: int) -> list[LoopCheck]:
        """Search, verify and test loops of one estimated keyframe; accepted ones are added.

        Returns:
            Every check made (accepted and rejected), also appended to :attr:`loop_checks`.
        """
        cfg = self.config.loops
        enc = self.map.encoding(node_id)
        if not cfg.enabled or enc is None:
            return []
        pos = self._order.index(node_id)
        recent = self._order[max(0, pos - cfg.exclude_recent):pos + cfg.exclude_recent + 1]
        checks = []
        for cand, score in loop_candidates(self.map, enc.global_desc, recent, cfg):
            if not self.graph.is_estimated(cand):
                continue
            check = verify_loop(self.backend, self.map, node_id, cand, enc, self.localizer, cfg,
                                score)
            if check.accepted:
                check = self._consistent(check)
            self._accept(check)
            checks.append(check)
        return checks

    def _consistent(self, check: LoopCheck) -> LoopCheck:
        """Chi-square test of a geometrically verified loop against the current estimate."""
        assert check.edge is not None
        e = check.edge
        if not (self.graph.is_estimated(e.from_id) and self.graph.is_estimated(e.to_id)):
            return check.replace(accepted=False, reason="consistency: a node has no estimate")
        value = self.graph.chi2(e)
        if value > self._chi2_max:
            return check.replace(accepted=False, chi2=value, reason=f"consistency: chi2 "
                                 f"{value:.1f} > {self._chi2_max:.1f}")
        return check.replace(chi2=value)

    def _accept(self, check: LoopCheck) -> Optional[OptimizationResult]:
        self.loop_checks.append(check)
        if not check.accepted or check.edge is None:
            logger.debug("loop %d->%d rejected: %s", check.candidate_id, check.query_id,
                         check.reason)
            return None
        self.graph.add_edge(check.edge)
        logger.info("loop %d->%d accepted (%d inliers, chi2 %.1f)", check.candidate_id,
                    check.query_id, check.num_inliers, check.chi2)
        # a loop after a long drift has a large residual that the robust kernel down-weights;
        # iSAM2's single reweighted step per update then converges slowly, so batch here
        return self.optimize()

    # ------------------------------------------------------------------ optimisation and output
    def _update(self, extra_iterations: int = 0) -> OptimizationResult:
        self._last_opt = self.graph.update(extra_iterations)
        return self._last_opt

    def optimize(self) -> OptimizationResult:
        """Batch Levenberg-Marquardt over the whole graph."""
        self._last_opt = self.graph.optimize()
        return self._last_opt

    def optimized_map(self) -> KeyframeMap:
        """A copy of the keyframe map whose poses are the graph's estimates (encodings kept).

        Keyframes the graph never estimated (no edge) keep their front-end pose.
        """
        out = KeyframeMap(self.map.meta)
        for kf in self.map.keyframes():
            T = self.graph.pose(kf.id) if self.graph.is_estimated(kf.id) else kf.T_map_cam
            out.add(dataclasses.replace(kf, T_map_cam=T), self.map.encoding(kf.id))
        return out

    def save(self, path: Union[str, Path]) -> Path:
        """Batch-optimise, then write the map (the store the localizer loads) and the graph.

        Raises:
            MapError: the path is not writable or not a map directory (the mapper is unchanged
                and can save elsewhere).
        """
        self.optimize()
        return save_slam_map(path, self.optimized_map(), self.graph, self._odom)

    @classmethod
    def load(cls, path: Union[str, Path], config: SlamConfig, localizer: LocalizerConfig,
             backend: MatcherBackend) -> PoseGraphMapper:
        """Resume from a map saved by :meth:`save` (map + pose graph sidecar).

        Raises:
            MapFormatError: unreadable map or a sidecar that belongs to another map.
        """
        kmap, graph, odom = load_slam_map(path, config.pose_graph)
        mapper = cls(config, localizer, backend, kmap, graph, odom)
        mapper._order = [i for i in kmap.ids if i in graph]
        return mapper
