"""Gather step of a build: stream the cached pairs into the alignment problem, and check that the
scene graph holds together.

:class:`CachedHalves` reads, for one image at a time, only that image's half of each of its pairs
from the :class:`~.cache.PairCache`; :func:`gather_problem` feeds them to
:func:`~.problem.assemble_problem` (bounded memory, see there). :func:`check_connected` refuses a
problem whose pairs fall apart into disconnected groups of images: their relative poses would be
arbitrary, so the build stops with the group sizes instead of gluing them silently.
"""

from __future__ import annotations

import logging
from typing import Optional

import numpy as np
from scipy import sparse
from scipy.sparse import csgraph

from mast3r_ros.core.config import MappingConfig
from mast3r_ros.core.errors import MappingError
from mast3r_ros.core.mapping.cache import PairHalf
from mast3r_ros.core.mapping.plan import MappingPlan
from mast3r_ros.core.mapping.problem import AlignmentProblem, RelDepthStore, assemble_problem

__all__ = ["MissingPairError", "CachedHalves", "gather_problem", "graph_components",
           "check_connected"]

logger = logging.getLogger(__name__)


class MissingPairError(MappingError):
    """A pair the gather needs is not in the cache (never computed, or corrupt and removed)."""


class CachedHalves:
    """A :class:`~.problem.HalfSource` reading the plan's cache.

    Raises (from :meth:`half`):
        MissingPairError: the pair is missing (or was corrupt and removed): run the compute step.
    """

    def __init__(self, plan: MappingPlan) -> None:
        self.plan = plan

    def half(self, pair_index: int, img: int) -> PairHalf:
        i, j = self.plan.pairs[pair_index]
        other = j if img == i else i
        h = self.plan.cache.load_half(self.plan.keys[img], self.plan.keys[other])
        if h is None:
            raise MissingPairError(f"pair ({i}, {j}) is not in the cache {self.plan.cache.root} "
                               "(never computed, or corrupt and removed): run the pairwise "
                               "stage again")
        return h


def gather_problem(plan: MappingPlan, cfg: MappingConfig,
                   rel_depths: Optional[RelDepthStore] = None) -> AlignmentProblem:
    """The alignment problem of a computed plan (every pair in the cache).

    Args:
        plan: the plan whose pairs were computed.
        cfg: subsample and the fallback gate ``matching_conf_thr``.
        rel_depths: where the relative depth maps go (default: in memory).

    Raises:
        MissingPairError: a pair is missing from the cache.
        InputError: inconsistent pair data.
    """
    return assemble_problem(plan.num_images, plan.pairs, CachedHalves(plan), cfg.subsample,
                            fallback_conf_thr=cfg.matching_conf_thr, rel_depths=rel_depths)


def graph_components(problem: AlignmentProblem, matching_conf_thr: float) -> np.ndarray:
    """(N,) component label of every image in the graph of pairs that constrain the alignment.

    A pair links its images when it adds a loss term: matches above the gate, or the fallback
    regression of at least one point.
    """
    n = problem.num_images
    counts = np.diff(problem.pt_start)
    edges = []
    for k, (i, j) in enumerate(problem.pairs):
        uses_matches = float(problem.pair_max_conf[k]) > matching_conf_thr
        if uses_matches or counts[i] + counts[j] > 0:
            edges.append((i, j))
    ii = np.array([e[0] for e in edges], dtype=np.int64)
    jj = np.array([e[1] for e in edges], dtype=np.int64)
    graph = sparse.coo_array((np.ones(len(edges)), (ii, jj)), shape=(n, n))
    return csgraph.connected_components(graph, directed=False)[1]


def check_connected(problem: AlignmentProblem, matching_conf_thr: float) -> None:
    """Refuse a scene graph that falls apart.

    Raises:
        MappingError: more than one component; the message gives their sizes and images.
    """
    labels = graph_components(problem, matching_conf_thr)
    sizes = np.bincount(labels)
    if len(sizes) <= 1:
        return
    order = np.argsort(-sizes, kind="stable")
    groups = [np.flatnonzero(labels == c).tolist() for c in order]
    shown = "; ".join(f"{len(g)} images {g[:8]}{'...' if len(g) > 8 else ''}" for g in groups[:5])
    raise MappingError(f"the scene graph falls apart into {len(sizes)} disconnected groups "
                       f"(sizes {sizes[order].tolist()}): {shown}. Their relative poses would be "
                       "arbitrary; use a denser scene graph (swin-N, logwin-N, retrieval-Na-k "
                       "with more neighbours) or map the groups separately")
