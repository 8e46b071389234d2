"""Scene graphs against the official make_pairs semantics."""

from __future__ import annotations

import numpy as np
import pytest

from mast3r_ros.core.errors import ConfigError, InputError
from mast3r_ros.core.mapping.scene_graph import (
    farthest_point_sampling,
    make_pairs,
    parse_scene_graph,
)


def _und(pairs):
    return {tuple(sorted(p)) for p in pairs}


def test_complete_order_and_symmetrize():
    assert make_pairs(3, "complete", symmetrize=False) == [(1, 0), (2, 0), (2, 1)]
    # the order of the official fixture: forward pairs, then the reversed ones
    assert make_pairs(3, "complete") == [(1, 0), (2, 0), (2, 1), (0, 1), (0, 2), (1, 2)]
    assert len(make_pairs(6, "complete", symmetrize=False)) == 15


def test_swin_cyclic_and_noncyclic():
    cyc = _und(make_pairs(5, "swin-2", symmetrize=False))
    assert cyc == {(0, 1), (0, 2), (1, 2), (1, 3), (2, 3), (2, 4), (3, 4), (0, 3), (0, 4), (1, 4)}
    non = _und(make_pairs(5, "swin-2-noncyclic", symmetrize=False))
    assert non == {(0, 1), (0, 2), (1, 2), (1, 3), (2, 3), (2, 4), (3, 4)}
    assert _und(make_pairs(6, "swin", symmetrize=False)) == _und(make_pairs(6, "swin-3", False))


def test_logwin_offsets_are_powers_of_two():
    pairs = _und(make_pairs(10, "logwin-3-noncyclic", symmetrize=False))
    assert pairs == {(i, j) for i in range(10) for j in range(i + 1, 10) if j - i in (1, 2, 4)}
    cyc = _und(make_pairs(10, "logwin-3", symmetrize=False))
    assert (0, 9) in cyc and (0, 6) in cyc and (0, 5) not in cyc


def test_oneref():
    assert make_pairs(4, "oneref-2", symmetrize=False) == [(2, 0), (2, 1), (2, 3)]
    assert make_pairs(3, "oneref", symmetrize=False) == [(0, 1), (0, 2)]
    with pytest.raises(ConfigError):
        make_pairs(3, "oneref-5")


def _block_sim(groups: list[int]) -> np.ndarray:
    g = np.asarray(groups)
    sim = np.where(g[:, None] == g[None, :], 0.9, 0.1)
    idx = np.arange(len(g))
    sim = sim - 0.01 * np.abs(idx[:, None] - idx[None, :])  # break ties: nearer = more similar
    np.fill_diagonal(sim, 1.0)
    return sim


def test_farthest_point_sampling_picks_one_per_cluster():
    sim = _block_sim([0, 0, 0, 1, 1, 1, 2, 2, 2])
    keys = farthest_point_sampling(1 - sim, 3, seed=0)
    assert sorted(np.asarray(keys) // 3) == [0, 1, 2]


def test_retrieval_keys_complete_plus_knn():
    groups = [0, 0, 0, 1, 1, 1, 2, 2, 2]
    sim = _block_sim(groups)
    pairs = _und(make_pairs(9, "retrieval-3-2", symmetrize=False, sim=sim, seed=0))
    keys = farthest_point_sampling(1 - sim, 3, seed=0)
    for a in keys:  # key images fully connected
        for b in keys:
            if a != b:
                assert tuple(sorted((int(a), int(b)))) in pairs
    for i in range(9):  # top-2 includes the image itself, so one nearest neighbour each
        nn = int(np.argsort(1 - sim[i], kind="stable")[1])
        assert tuple(sorted((i, nn))) in pairs
        # every non-key image is linked to the key image of its cluster
        if i not in keys:
            k = int(keys[[groups[int(k)] for k in keys].index(groups[i])])
            assert tuple(sorted((i, k))) in pairs
    # nothing else: only key-key, nearest key, and k-NN edges
    allowed = {tuple(sorted((int(a), int(b)))) for a in keys for b in keys if a != b}
    allowed |= {tuple(sorted((i, int(np.argsort(1 - sim[i], kind="stable")[1])))) for i in range(9)}
    allowed |= {tuple(sorted((i, int(keys[np.argmin(1 - sim[i, keys])])))) for i in range(9)
                if i not in keys}
    assert pairs == allowed


def test_retrieval_needs_similarity_and_errors():
    with pytest.raises(InputError):
        make_pairs(4, "retrieval-2-1")
    with pytest.raises(InputError):
        make_pairs(4, "retrieval-2-1", sim=np.ones((3, 3)))
    with pytest.raises(ConfigError):
        make_pairs(4, "retrieval-2")
    with pytest.raises(ConfigError):
        make_pairs(4, "star-3")
    with pytest.raises(ConfigError):
        parse_scene_graph("swin-x")
    with pytest.raises(InputError):
        make_pairs(1, "complete")
