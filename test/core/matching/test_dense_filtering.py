"""dense_reciprocal_nn and confidence filtering / scoring."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mast3r_ros.core.errors import MatchingError
from mast3r_ros.core.matching import (
    confidence_mask,
    dense_reciprocal_nn,
    fast_reciprocal_nn,
    filter_by_confidence,
    gather_confidence,
    is_confident,
    match_scores,
    nearest_neighbors,
    sparse_ga_confidence,
    visloc_confidence,
)
from mast3r_ros.core.matching.nn import ReducedPrecisionWarning
from mast3r_ros.core.matching.reference import smooth_descriptor_maps


def test_dense_equals_brute_force_mutual_nn() -> None:
    a, b = smooth_descriptor_maps(20, 30, 25, 22, dim=8, seed=5)
    d1, d2 = torch.from_numpy(a), torch.from_numpy(b)
    xy1, xy2 = dense_reciprocal_nn(d1, d2)
    s = d1.reshape(-1, 8) @ d2.reshape(-1, 8).T
    nn12, nn21 = s.argmax(1), s.argmax(0)
    p = torch.nonzero(nn21[nn12] == torch.arange(600)).squeeze(1)
    assert len(p) > 50
    assert torch.equal(xy1, torch.stack([p % 30, p // 30], 1))
    assert torch.equal(xy2, torch.stack([nn12[p] % 22, nn12[p] // 22], 1))
    # every FRM match is a dense mutual match
    f1, f2 = fast_reciprocal_nn(d1, d2, subsample=2)
    dense = set(map(tuple, torch.cat([xy1, xy2], 1).tolist()))
    assert set(map(tuple, torch.cat([f1, f2], 1).tolist())) <= dense


def test_dense_bad_and_empty_input() -> None:
    with pytest.raises(MatchingError):
        dense_reciprocal_nn(torch.zeros(4, 4, 3), torch.zeros(4, 4, 2))
    xy1, xy2 = dense_reciprocal_nn(torch.zeros(0, 4, 3), torch.ones(4, 4, 3))
    assert xy1.shape == (0, 2) and xy2.shape == (0, 2)


def test_filter_by_confidence_official_rule() -> None:
    xy1 = torch.tensor([[0, 0], [1, 0], [2, 1], [0, 1]])
    xy2 = torch.tensor([[1, 1], [0, 0], [1, 2], [1, 0]])
    conf1 = torch.tensor([[1.0, 3.0, 5.0], [2.0, 2.0, 1.5]])
    conf2 = torch.tensor([[4.0, 1.5], [9.0, 9.0], [0.5, 0.5]])
    # min confidences: min(1, 9)=1, min(3, 4)=3, min(1.5, 0.5)=0.5, min(2, 1.5)=1.5
    mask = confidence_mask(xy1, xy2, conf1, conf2, 1.5)
    assert mask.tolist() == [False, True, False, True]
    k1, k2 = filter_by_confidence(xy1.numpy(), xy2.numpy(), conf1.numpy(), conf2.numpy(), 1.5)
    assert k1.tolist() == [[1, 0], [0, 1]] and k2.tolist() == [[0, 0], [1, 0]]
    scores = match_scores(xy1, xy2, conf1, conf2)
    np.testing.assert_allclose(scores.numpy(), np.sqrt([9.0, 12.0, 0.5 * 1.5, 3.0]), rtol=1e-6)


def test_filter_bad_input() -> None:
    conf = torch.ones(3, 3)
    with pytest.raises(MatchingError, match="outside"):
        filter_by_confidence(torch.tensor([[3, 0]]), torch.tensor([[0, 0]]), conf, conf, 1.0)
    with pytest.raises(MatchingError, match="integer"):
        filter_by_confidence(torch.tensor([[0.5, 0.0]]), torch.tensor([[0, 0]]), conf, conf, 1.0)
    with pytest.raises(MatchingError, match="length"):
        filter_by_confidence(torch.zeros(2, 2, dtype=torch.long),
                             torch.zeros(1, 2, dtype=torch.long), conf, conf, 1.0)
    none = torch.zeros(0, 2, dtype=torch.long)
    k1, k2 = filter_by_confidence(none, none, conf, conf, 1.0)
    assert k1.shape == (0, 2)


def test_the_two_official_scores_and_the_keep_rule() -> None:
    c1 = torch.tensor([1.0, 3.0, 1.5, 2.0, float("nan")])
    c2 = torch.tensor([9.0, 4.0, 0.5, 1.5, 9.0])
    assert visloc_confidence(c1, c2)[:4].tolist() == [1.0, 3.0, 0.5, 1.5]
    np.testing.assert_allclose(sparse_ga_confidence(c1, c2)[:4].numpy(),
                               np.sqrt([9.0, 12.0, 0.75, 3.0]), rtol=1e-6)
    keep = is_confident(visloc_confidence(c1, c2), 1.5)
    assert keep.tolist() == [False, True, False, True, False]  # NaN never passes
    as_np = is_confident(np.array([1.4, 1.5]), 1.5)
    assert isinstance(as_np, np.ndarray) and as_np.tolist() == [False, True]
    conf = torch.arange(12.0).reshape(3, 4)
    assert gather_confidence(torch.tensor([[3, 0], [0, 2]]), conf).tolist() == [3.0, 8.0]
    with pytest.raises(MatchingError, match="outside"):
        gather_confidence(torch.tensor([[4, 0]]), conf)


def test_reduced_matmul_precision_warns_without_module_state() -> None:
    q, t = torch.randn(5, 8), torch.randn(7, 8)
    before = torch.get_float32_matmul_precision()
    try:
        torch.set_float32_matmul_precision("high")
        for _ in range(2):  # no warn-once flag: every call reports it to the warnings machinery
            with pytest.warns(ReducedPrecisionWarning):
                nearest_neighbors(q, t)
    finally:
        torch.set_float32_matmul_precision(before)
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        nearest_neighbors(q, t)  # highest precision: silent
