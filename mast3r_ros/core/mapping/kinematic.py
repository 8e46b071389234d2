"""Kinematic tree of the camera chain: a rooted spanning tree of the pair graph.

Each camera's pose is parameterised relative to its parent in this tree, rooted at the most central
node (the node farthest from every leaf). Two modes, as in MASt3R-SfM:

* ``mst``: spanning tree maximising the number of matches;
* ``hclust-<linkage>``: agglomerative clustering on ``1 - min(1, n_matches / (3 * min(#anchors)))``
  whose merges (each cluster represented by its best-connected member) form the tree.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.cluster.hierarchy as sch
from scipy import sparse
from scipy.sparse import csgraph

from mast3r_ros.core.errors import ConfigError, InputError

__all__ = ["KinematicTree", "spanning_tree", "max_spanning_tree", "hclust_tree"]


@dataclass(frozen=True)
class KinematicTree:
    """root: index of the root camera; edges: (parent, child) in breadth-first order."""

    root: int
    edges: tuple[tuple[int, int], ...]

    def levels(self) -> list[tuple[np.ndarray, np.ndarray]]:
        """Edges grouped by depth: list of (parents, children) int arrays, root level first."""
        depth = {self.root: 0}
        groups: dict[int, list[tuple[int, int]]] = {}
        for a, b in self.edges:
            depth[b] = depth[a] + 1
            groups.setdefault(depth[b], []).append((a, b))
        return [(np.array([e[0] for e in groups[d]]), np.array([e[1] for e in groups[d]]))
                for d in sorted(groups)]


def _bfs_ranks(tree: sparse.spmatrix, start: int) -> np.ndarray:
    order = csgraph.breadth_first_order(tree, start, directed=False, return_predecessors=False)
    ranks = np.zeros(tree.shape[0], dtype=np.int64)
    ranks[order] = np.arange(len(order))
    return ranks


def _rooted(tree: sparse.spmatrix) -> KinematicTree:
    """Root a spanning tree at its most central node and list its edges breadth first."""
    r1 = _bfs_ranks(tree, 0)
    r2 = _bfs_ranks(tree, int(r1.argmax()))
    r1 = _bfs_ranks(tree, int(r2.argmax()))
    root = int(np.minimum(r1, r2).argmax())
    order, pred = csgraph.breadth_first_order(tree, root, directed=False)
    return KinematicTree(root, tuple((int(pred[k]), int(k)) for k in order[1:]))


def max_spanning_tree(weights: np.ndarray) -> KinematicTree:
    """Rooted spanning tree maximising the sum of ``weights`` (N, N), zeros = no edge.

    Raises:
        InputError: the graph is not connected.
    """
    w = np.asarray(weights, dtype=np.float64)
    n = w.shape[0]
    if n == 1:
        return KinematicTree(0, ())
    ii, jj = np.nonzero(w)
    graph = sparse.coo_array((-w[ii, jj], (ii, jj)), shape=(n, n)).tocsr()
    mst = csgraph.minimum_spanning_tree(graph)
    ncomp, labels = csgraph.connected_components(mst, directed=False)
    if ncomp > 1:
        raise InputError(f"the pair graph is not connected ({ncomp} components, labels "
                         f"{labels.tolist()}); add pairs (denser scene graph) or drop images")
    return _rooted(mst)


def hclust_tree(num_matches: np.ndarray, n_anchors: np.ndarray,
                linkage: str = "ward") -> KinematicTree:
    """Tree from agglomerative clustering of the pair affinities (see module doc)."""
    n = num_matches.shape[0]
    if n == 1:
        return KinematicTree(0, ())
    cap = 3 * np.minimum(n_anchors[:, None], n_anchors[None, :]).astype(np.float64)
    pws = np.minimum(np.asarray(num_matches, dtype=np.float64) / cap, 1.0)
    np.fill_diagonal(pws, 1.0)
    dist = np.where(pws != 0, 1 - pws, 2.0)
    Z = sch.linkage(sch.distance.squareform(dist, checks=False), method=linkage)
    tree = np.zeros((n, n))
    rep = {i: i for i in range(n)}
    for k, (a, b) in enumerate(Z[:, :2].astype(int)):
        a, b = rep[a], rep[b]
        tree[a, b] = tree[b, a] = 1
        best = a if pws[a].sum() > pws[b].sum() else b
        rep[n + k] = best
        pws[best] = np.maximum(pws[a], pws[b])
    return max_spanning_tree(tree)


def spanning_tree(num_matches: np.ndarray, mode: str = "hclust-ward",
                  n_anchors: np.ndarray | None = None) -> KinematicTree:
    """Dispatch on ``mode`` (``mst`` or ``hclust-<ward|single|complete|average>``).

    Args:
        num_matches: (N, N) symmetric number of matches per pair.
        n_anchors: (N,) anchors per image (required by hclust).
    """
    if mode == "mst":
        return max_spanning_tree(num_matches)
    if mode.startswith("hclust-"):
        if n_anchors is None:
            raise ConfigError("hclust kinematic mode needs n_anchors")
        return hclust_tree(num_matches, np.asarray(n_anchors), mode.split("-", 1)[1])
    raise ConfigError(f"unknown kinematic_mode {mode!r}; use mst or hclust-ward")
