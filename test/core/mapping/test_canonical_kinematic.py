"""Canonical views, focal estimation, anchors, kinematic trees, trajectory metrics."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mast3r_ros.core.errors import InputError
from mast3r_ros.core.mapping.canonical import (
    CanonicalView,
    anchor_depth_offsets,
    canonical_focal,
    canonical_view,
)
from mast3r_ros.core.mapping.kinematic import KinematicTree, max_spanning_tree, spanning_tree
from mast3r_ros.core.mapping.trajectory import absolute_trajectory_error, umeyama


def _pointmap(H=16, W=24, f=20.0, seed=0):
    rng = np.random.default_rng(seed)
    ys, xs = np.mgrid[:H, :W].astype(np.float64)
    z = 3 + 0.5 * np.sin(xs / 5) + 0.3 * np.cos(ys / 4) + 0.01 * rng.random((H, W))
    X = np.stack(((xs - W / 2) / f * z, (ys - H / 2) / f * z, z), -1)
    return torch.tensor(X, dtype=torch.float32)


def test_canonical_view_of_scaled_copies_is_consistent():
    X = _pointmap()
    maps = torch.stack([X, 1.2 * X])
    conf = torch.ones(2, 16, 24) * 2.0
    canon, rel, c = canonical_view(maps, conf, 8)
    torch.testing.assert_close(canon, 1.1 * X, rtol=1e-5, atol=1e-5)
    # relative depth w.r.t. the block anchor (4 + 8k) is scale-free and exact
    anchors = X[4::8, 4::8, 2]
    expect = X[..., 2] / anchors.repeat_interleave(8, 0).repeat_interleave(8, 1)
    torch.testing.assert_close(rel, expect, rtol=1e-4, atol=1e-4)
    assert torch.allclose(rel[4::8, 4::8], torch.ones(2, 3))
    torch.testing.assert_close(c, torch.full((16, 24), 1.001), rtol=1e-5, atol=1e-5)


def _view(X):
    return CanonicalView(X, torch.ones(X.shape[:2]), torch.ones(X.shape[:2]))


def test_canonical_focal_official_pp_and_clipping():
    X = _pointmap(f=20.0)  # made with the principal point (W/2, H/2) = (12, 8)
    assert _view(X).pp == (12.0, 8.0)
    assert canonical_focal(_view(X)) == pytest.approx(20.0, rel=1e-4)
    far = _pointmap(f=500.0)  # beyond 3.5 x 24 / (2 tan 30 deg)
    base = 24 / (2 * np.tan(np.radians(30)))
    assert canonical_focal(_view(far)) == pytest.approx(3.5 * base, rel=1e-5)
    nowhere = torch.full((16, 24, 3), float("nan"))
    assert canonical_focal(_view(nowhere)) == pytest.approx(0.5 * base)


def test_anchor_offsets():
    rel = torch.ones(16, 24)
    rel[9, 13] = 1.5
    idx, off = anchor_depth_offsets(rel, torch.tensor([[13, 9], [0, 0], [23, 15]]), 8)
    assert idx.tolist() == [1 * 3 + 1, 0, 1 * 3 + 2]
    torch.testing.assert_close(off, torch.tensor([1.5, 1.0, 1.0]))


def test_max_spanning_tree_on_a_chain_roots_in_the_middle():
    w = np.zeros((5, 5))
    for i in range(4):
        w[i, i + 1] = w[i + 1, i] = 100
    w[0, 4] = w[4, 0] = 1  # weak loop closure edge is dropped
    tree = max_spanning_tree(w)
    assert tree.root == 2
    assert {frozenset(e) for e in tree.edges} == {frozenset((i, i + 1)) for i in range(4)}
    parents = {b: a for a, b in tree.edges}
    assert all(a in parents or a == tree.root for a, _ in tree.edges)  # breadth-first order
    assert [len(c) for _, c in tree.levels()] == [2, 2]


def test_disconnected_graph_is_an_error():
    w = np.zeros((4, 4))
    w[0, 1] = w[1, 0] = w[2, 3] = w[3, 2] = 10
    with pytest.raises(InputError, match="not connected"):
        max_spanning_tree(w)
    # hclust links everything (distance 2 between unmatched images), as the official code does
    tree = spanning_tree(w, "hclust-ward", np.array([48] * 4))
    assert len(tree.edges) == 3 and isinstance(tree, KinematicTree)


def test_umeyama_and_ate():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(10, 3))
    q, _ = np.linalg.qr(rng.normal(size=(3, 3)))
    R = q * np.sign(np.linalg.det(q))
    Y = 2.5 * X @ R.T + [1, 2, 3]
    s, R2, t = umeyama(X, Y)
    assert s == pytest.approx(2.5) and np.allclose(R2, R) and np.allclose(t, [1, 2, 3])
    T = np.tile(np.eye(4), (10, 1, 1))
    T[:, :3, 3] = X
    T2 = T.copy()
    T2[:, :3, 3] = Y
    T2[:, :3, :3] = R
    ate, err = absolute_trajectory_error(T, T2)
    assert ate < 1e-9 and err.shape == (10,)
    with pytest.raises(InputError):
        umeyama(X[:2], Y[:2])
