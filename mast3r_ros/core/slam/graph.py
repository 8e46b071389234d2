"""The keyframe pose graph of the SLAM back end, on GTSAM: iSAM2 incrementally, LM in batch.

Nodes are keyframe poses ``T_map_cam`` (camera-to-map, OpenCV optical camera frames, metres).
Factors are the stream's edges (:class:`~mast3r_ros.core.tracking.stream.GraphEdge`: odometry,
relocalization, verified loops, priors) with their information under a robust kernel, plus one
prior that anchors the first node (gauge freedom). A node enters the optimisation with the first
edge that touches it, so a keyframe can be announced before its odometry edge arrives.

Every mutating call validates first and changes nothing when it raises.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Optional

import gtsam
import numpy as np

from mast3r_ros.core.config import PoseGraphConfig
from mast3r_ros.core.errors import InputError
from mast3r_ros.core.slam.factors import (
    edge_factor,
    from_pose3,
    node_key,
    relative_chi2,
    swap_blocks,
    to_pose3,
)
from mast3r_ros.core.tracking.stream import EdgeType, GraphEdge

__all__ = ["GraphError", "OptimizationResult", "PoseGraph"]


class GraphError(InputError):
    """An edge or node the pose graph cannot take (unknown or duplicate id, bad prior)."""


@dataclass(frozen=True)
class OptimizationResult:
    """What one optimisation did.

    Attributes:
        kind: "isam2" (incremental update) or "batch" (Levenberg-Marquardt over the whole graph).
        seconds: wall-clock time of the call.
        error_before: total factor error (0.5 * sum of squared whitened, robustified residuals)
            at the initial estimate.
        error_after: the same at the result.
        iterations: LM iterations (batch) or iSAM2 update calls.
    """

    kind: str
    seconds: float
    error_before: float
    error_after: float
    iterations: int


class PoseGraph:
    """Keyframe poses and relative-pose factors (see the module docstring).

    Args:
        config: robust kernel, anchor and optimiser settings.
    """

    def __init__(self, config: Optional[PoseGraphConfig] = None) -> None:
        self.config = config if config is not None else PoseGraphConfig()
        self._initial: dict[int, np.ndarray] = {}     # every node's initial pose
        self._edges: list[GraphEdge] = []
        self._factors = gtsam.NonlinearFactorGraph()  # everything iSAM2 has seen
        self._new_factors = gtsam.NonlinearFactorGraph()
        self._new_values = gtsam.Values()
        self._in_isam: set[int] = set()
        self._pending_nodes: set[int] = set()
        self._isam = self._make_isam()
        self._estimate = gtsam.Values()

    # ------------------------------------------------------------------ content
    def __len__(self) -> int:
        return len(self._initial)

    def __contains__(self, node_id: object) -> bool:
        return node_id in self._initial

    @property
    def ids(self) -> list[int]:
        """Node ids in insertion order."""
        return list(self._initial)

    @property
    def edges(self) -> list[GraphEdge]:
        """Every edge in the graph, in insertion order (a copy of the list)."""
        return list(self._edges)

    def is_estimated(self, node_id: int) -> bool:
        """True when the node is constrained by at least one factor and has an estimate."""
        return node_id in self._in_isam

    def initial(self, node_id: int) -> np.ndarray:
        """(4, 4) initial pose a node was added with (KeyError when unknown)."""
        return self._initial[node_id].copy()

    # ------------------------------------------------------------------ building
    def add_node(self, node_id: int, T_init: np.ndarray) -> None:
        """Announce a keyframe with its initial pose (optimised once an edge touches it).

        Raises:
            GraphError: duplicate id, negative id or a pose that is not a finite 4x4 matrix.
        """
        node_id = int(node_id)
        T = np.asarray(T_init, dtype=np.float64)
        if node_id < 0 or node_id in self._initial:
            raise GraphError(f"node {node_id} is already in the pose graph (or negative)")
        if T.shape != (4, 4) or not np.all(np.isfinite(T)):
            raise GraphError(f"node {node_id}: the initial pose must be a finite 4x4 matrix")
        self._initial[node_id] = T.copy()
        self._pending_nodes.add(node_id)
        if len(self._initial) == 1:  # the gauge: anchor the first keyframe where it is
            sig = np.array([self.config.anchor_rotation_std] * 3
                           + [self.config.anchor_position_std] * 3)
            self._push(gtsam.PriorFactorPose3(node_key(node_id), to_pose3(T),
                                              gtsam.noiseModel.Diagonal.Sigmas(sig)), [node_id])

    def add_edge(self, edge: GraphEdge) -> None:
        """Add an edge's factor (optimised at the next :meth:`update` / :meth:`optimize`).

        Raises:
            GraphError: an end that is not a node, a prior between two nodes, a relative edge
                from a node to itself, or a ``LOOP_CANDIDATE`` (verify it first).
        """
        missing = [i for i in (edge.from_id, edge.to_id) if i not in self._initial]
        if missing:
            raise GraphError(f"edge {edge.from_id}->{edge.to_id} ({edge.type.value}): unknown "
                             f"node id(s) {missing}; add the keyframe before its edges")
        if edge.type is EdgeType.LOOP_CANDIDATE:
            raise GraphError(f"edge {edge.from_id}->{edge.to_id}: loop candidates must be "
                             "verified before they enter the graph")
        if (edge.type is EdgeType.PRIOR) != (edge.from_id == edge.to_id):
            raise GraphError(f"edge {edge.from_id}->{edge.to_id} ({edge.type.value}): a prior "
                             "has from_id == to_id and only a prior may")
        self._push(edge_factor(edge, self.config), [edge.from_id, edge.to_id])
        self._edges.append(edge)

    def _push(self, factor: gtsam.NonlinearFactor, nodes: list[int]) -> None:
        self._new_factors.push_back(factor)
        self._factors.push_back(factor)
        for n in nodes:
            if n in self._pending_nodes:
                self._pending_nodes.discard(n)
                self._new_values.insert(node_key(n), self._predicted(n))

    def _predicted(self, node_id: int) -> gtsam.Pose3:
        return to_pose3(self._initial[node_id])

    # ------------------------------------------------------------------ optimisation
    def update(self, extra_iterations: int = 0) -> OptimizationResult:
        """One iSAM2 update with the new factors (plus ``extra_iterations`` relinearisations)."""
        t0 = time.perf_counter()
        res = self._isam.update(self._new_factors, self._new_values)
        before = res.getErrorBefore() if res.getErrorBefore() is not None else float("nan")
        for _ in range(max(0, extra_iterations)):
            res = self._isam.update()
        self._in_isam.update(gtsam.Symbol(k).index() for k in self._new_values.keys())
        self._new_factors = gtsam.NonlinearFactorGraph()
        self._new_values = gtsam.Values()
        self._estimate = self._isam.calculateEstimate()
        after = self._factors.error(self._estimate) if self._in_isam else 0.0
        return OptimizationResult("isam2", time.perf_counter() - t0, float(before), float(after),
                                  1 + max(0, extra_iterations))

    def optimize(self) -> OptimizationResult:
        """Batch Levenberg-Marquardt over every factor from the current estimate, then restart
        iSAM2 from the result (so later incremental updates linearise there)."""
        self.update()
        t0 = time.perf_counter()
        if not self._in_isam:
            return OptimizationResult("batch", 0.0, 0.0, 0.0, 0)
        params = gtsam.LevenbergMarquardtParams()
        params.setMaxIterations(self.config.batch_max_iterations)
        params.setRelativeErrorTol(self.config.batch_relative_tolerance)
        opt = gtsam.LevenbergMarquardtOptimizer(self._factors, self._estimate, params)
        before = self._factors.error(self._estimate)
        result = opt.optimize()
        self._isam = self._make_isam()
        self._isam.update(self._factors, result)
        self._estimate = self._isam.calculateEstimate()
        return OptimizationResult("batch", time.perf_counter() - t0, float(before),
                                  float(self._factors.error(self._estimate)), opt.iterations())

    def _make_isam(self) -> gtsam.ISAM2:
        p = gtsam.ISAM2Params()
        p.setRelinearizeThreshold(self.config.relinearize_threshold)
        p.relinearizeSkip = self.config.relinearize_skip
        return gtsam.ISAM2(p)

    # ------------------------------------------------------------------ results
    def pose(self, node_id: int) -> np.ndarray:
        """(4, 4) current estimate of a node (its initial pose while it is not estimated).

        Raises:
            GraphError: unknown id.
        """
        if node_id not in self._initial:
            raise GraphError(f"unknown node id {node_id}")
        if node_id in self._in_isam:
            return from_pose3(self._estimate.atPose3(node_key(node_id)))
        return self._initial[node_id].copy()

    def poses(self) -> dict[int, np.ndarray]:
        """Every node's (4, 4) current estimate, in insertion order."""
        return {i: self.pose(i) for i in self._initial}

    def covariance(self, node_id: int) -> np.ndarray:
        """(6, 6) marginal covariance of an estimated node, ROS order, right perturbation.

        Raises:
            GraphError: unknown or not yet estimated node.
        """
        self._require_estimated(node_id)
        return swap_blocks(self._isam.marginalCovariance(node_key(node_id)))

    def chi2(self, edge: GraphEdge, covariance_gtsam: Optional[np.ndarray] = None) -> float:
        """Mahalanobis distance squared of a relative edge from the current estimate.

        The innovation covariance adds the edge's covariance and the joint marginal of its two
        nodes, so a true loop after a long drift passes while a wrong one fails.

        Args:
            edge: a relative edge between two estimated nodes.
            covariance_gtsam: the edge covariance in GTSAM order (default: from its information).

        Raises:
            GraphError: an end that is not estimated, or a prior.
        """
        if edge.type is EdgeType.PRIOR or edge.from_id == edge.to_id:
            raise GraphError("chi2 is defined for relative edges only")
        for n in (edge.from_id, edge.to_id):
            self._require_estimated(n)
        keys = gtsam.KeyVector([node_key(edge.from_id), node_key(edge.to_id)])
        joint = self._isam.jointMarginalCovariance(keys).fullMatrix()
        cov = (swap_blocks(edge.covariance) if covariance_gtsam is None
               else np.asarray(covariance_gtsam))
        return relative_chi2(self._estimate.atPose3(node_key(edge.from_id)),
                             self._estimate.atPose3(node_key(edge.to_id)), joint,
                             to_pose3(edge.T_from_to), cov)

    def _require_estimated(self, node_id: int) -> None:
        if node_id not in self._initial:
            raise GraphError(f"unknown node id {node_id}")
        if node_id not in self._in_isam:
            raise GraphError(f"node {node_id} has no estimate yet (no edge touches it, or "
                             "update() was not called)")
