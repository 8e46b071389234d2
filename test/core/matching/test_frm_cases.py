"""fast_reciprocal_nn: agreement with the plain reference, blocked NN search, and bad input."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mast3r_ros.core.errors import MatchingError
from mast3r_ros.core.matching import fast_reciprocal_nn, nearest_neighbors
from mast3r_ros.core.matching.reference import reference_frm, smooth_descriptor_maps


def _unit(rng: np.random.Generator, *shape: int) -> torch.Tensor:
    x = rng.normal(size=shape).astype(np.float32)
    return torch.from_numpy(x / np.linalg.norm(x, axis=-1, keepdims=True))


@pytest.fixture()
def smooth_pair():
    a, b = smooth_descriptor_maps(45, 70, 52, 61, dim=16, seed=3)
    return torch.from_numpy(a), torch.from_numpy(b)


@pytest.mark.parametrize("kwargs", [
    {}, {"subsample": 3}, {"subsample": 5, "dist": "l2"}, {"subsample": 4, "max_iter": 2},
    {"subsample": 1, "max_iter": 1}, {"pixel_tol": 2, "subsample": 4},
])
def test_equals_reference_smooth(smooth_pair, kwargs) -> None:
    d1, d2 = smooth_pair
    xy1, xy2 = fast_reciprocal_nn(d1, d2, **kwargs)
    r1, r2 = reference_frm(d1, d2, **kwargs)
    assert len(r1) > 10
    np.testing.assert_array_equal(xy1.numpy(), r1)
    np.testing.assert_array_equal(xy2.numpy(), r2)


@pytest.mark.parametrize("pixel_tol", [0, 1, 3.5])
def test_equals_reference_random_seeds(rng, pixel_tol) -> None:
    d1, d2 = _unit(rng, 33, 27, 8), _unit(rng, 19, 41, 8)
    seeds = (rng.integers(0, 27, 300), rng.integers(0, 33, 300))
    xy1, xy2 = fast_reciprocal_nn(d1, d2, seeds=seeds, pixel_tol=pixel_tol)
    r1, r2 = reference_frm(d1, d2, seeds=seeds, pixel_tol=pixel_tol)
    np.testing.assert_array_equal(xy1.numpy(), r1)
    np.testing.assert_array_equal(xy2.numpy(), r2)
    if pixel_tol > 0:  # returned image-1 pixels are seeds
        flat_seeds = set((seeds[0] + 27 * seeds[1]).tolist())
        assert set((xy1[:, 0] + 27 * xy1[:, 1]).tolist()) <= flat_seeds


def test_matches_are_mutual_and_sorted(smooth_pair) -> None:
    d1, d2 = smooth_pair
    xy1, xy2 = fast_reciprocal_nn(d1, d2, subsample=2)
    f1, f2 = d1.reshape(-1, 16), d2.reshape(-1, 16)
    p = xy1[:, 1] * d1.shape[1] + xy1[:, 0]
    q = xy2[:, 1] * d2.shape[1] + xy2[:, 0]
    assert torch.equal((f1[p] @ f2.T).argmax(1), q)
    assert torch.equal((f2[q] @ f1.T).argmax(1), p)
    key = p * f2.shape[0] + q
    assert torch.all(key[1:] > key[:-1])


def test_basin_records_walk(smooth_pair) -> None:
    d1, d2 = smooth_pair
    xy1, _, basin = fast_reciprocal_nn(d1, d2, ret_basin=True)
    assert basin.dtype == torch.int32 and basin.shape == (45 * 70 + 1,)
    assert basin[-1] == -1
    written = basin[:-1] >= 0
    assert written.any() and (~written).any()
    # every written target is itself a pixel whose basin is written (the walk continues from it)
    # or a finished reciprocal point
    p_final = set((xy1[:, 1] * 70 + xy1[:, 0]).tolist())
    for p, t in zip(torch.nonzero(written).squeeze(1).tolist(), basin[:-1][written].tolist()):
        assert t == p or t in p_final or basin[t] >= 0


@pytest.mark.parametrize("n_targets", [1, 255, 256, 257, 5000])
@pytest.mark.parametrize("dist", ["dot", "l2"])
def test_nearest_neighbors_blocked_equals_argmax(rng, n_targets, dist) -> None:
    q, t = _unit(rng, 300, 5), _unit(rng, n_targets, 5) * 1.3
    t[n_targets // 2] = t[0]  # exact duplicate target: first index must win
    expected = (q @ t.T).argmax(1) if dist == "dot" else torch.cdist(q, t).argmin(1)
    for block_bytes in (1 << 17, 64 << 20):
        got = nearest_neighbors(q, t, dist, block_bytes=block_bytes)
        assert got.dtype == torch.int64
        assert torch.equal(got, expected)


# ---------------------------------------------------------------- bad / degenerate input


def test_empty_maps_give_empty_matches(rng) -> None:
    xy1, xy2 = fast_reciprocal_nn(torch.zeros(0, 10, 4), _unit(rng, 5, 5, 4))
    assert xy1.shape == (0, 2) and xy2.shape == (0, 2) and xy1.dtype == torch.int64
    xy1, xy2, basin = fast_reciprocal_nn(_unit(rng, 5, 5, 4), torch.zeros(3, 0, 4), ret_basin=True)
    assert xy1.shape == (0, 2) and basin.shape == (26,) and bool((basin == -1).all())


def test_descriptor_size_mismatch_raises(rng) -> None:
    with pytest.raises(MatchingError, match="D=4.*D=5"):
        fast_reciprocal_nn(_unit(rng, 8, 8, 4), _unit(rng, 8, 8, 5))


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_non_finite_descriptors_raise(rng, bad) -> None:
    d = _unit(rng, 8, 8, 4)
    d[3, 2, 1] = bad
    with pytest.raises(MatchingError, match="NaN or inf"):
        fast_reciprocal_nn(_unit(rng, 8, 8, 4), d)


def test_wrong_rank_and_dtype_raise(rng) -> None:
    with pytest.raises(MatchingError, match=r"\(H, W, D\)"):
        fast_reciprocal_nn(torch.zeros(8, 4), _unit(rng, 8, 8, 4))
    with pytest.raises(MatchingError, match="floating"):
        fast_reciprocal_nn(torch.zeros(8, 8, 4, dtype=torch.int32), _unit(rng, 8, 8, 4))


def test_non_integer_seeds_raise(rng) -> None:
    d = _unit(rng, 8, 8, 4)
    with pytest.raises(MatchingError, match="integers"):
        fast_reciprocal_nn(d, d, seeds=(np.array([1.0, 2.5]), np.array([1, 2])))
    with pytest.raises(MatchingError, match="integers"):
        fast_reciprocal_nn(d, d, seeds=(torch.tensor([1, 2]), torch.tensor([1.0, 2.0])))
    with pytest.raises(MatchingError, match="pair"):
        fast_reciprocal_nn(d, d, seeds=np.array([1, 2, 3]))


@pytest.mark.parametrize("seeds", [([8], [0]), ([0], [8]), ([-1], [0]), ([0, 1], [0])])
def test_seeds_outside_image_raise(rng, seeds) -> None:
    d = _unit(rng, 8, 8, 4)
    with pytest.raises(MatchingError):
        fast_reciprocal_nn(d, d, seeds=tuple(np.asarray(s) for s in seeds))


def test_single_pixel_image(rng) -> None:
    one, other = _unit(rng, 1, 1, 6), _unit(rng, 4, 3, 6)
    xy1, xy2 = fast_reciprocal_nn(one, other)  # default grid starts at (4, 4): no seed inside
    assert xy1.shape == (0, 2)
    xy1, xy2 = fast_reciprocal_nn(one, other, subsample=1)
    q = int((one.reshape(1, 6) @ other.reshape(-1, 6).T).argmax())
    mutual = int((other.reshape(-1, 6)[q] @ one.reshape(1, 6).T).argmax()) == 0
    assert mutual  # a single target pixel is everybody's nearest neighbour
    assert xy1.tolist() == [[0, 0]] and xy2.tolist() == [[q % 3, q // 3]]


def test_all_identical_descriptors_tie_to_first_index() -> None:
    d1 = torch.ones(16, 16, 8) / 8 ** 0.5
    d2 = torch.ones(12, 20, 8) / 8 ** 0.5
    for dist in ("dot", "l2"):
        xy1, xy2 = fast_reciprocal_nn(d1, d2, dist=dist)
        assert xy1.tolist() == [[0, 0]] and xy2.tolist() == [[0, 0]]
        r1, r2 = reference_frm(d1, d2, dist=dist)
        assert r1.tolist() == [[0, 0]] and r2.tolist() == [[0, 0]]
    _, _, basin = fast_reciprocal_nn(d1, d2, ret_basin=True)
    assert basin[0] == 0 and basin[4 * 16 + 4] == 0  # seed (4, 4) walked to pixel 0


@pytest.mark.parametrize("kwargs", [{"subsample": 0}, {"subsample": 2.0}, {"pixel_tol": -1},
                                    {"dist": "cosine"}, {"max_iter": 0}])
def test_bad_parameters_raise(rng, kwargs) -> None:
    d = _unit(rng, 8, 8, 4)
    with pytest.raises(MatchingError):
        fast_reciprocal_nn(d, d, **kwargs)


def test_pixel_tol_with_int_subsample_uses_grid_as_seeds(smooth_pair) -> None:
    d1, d2 = smooth_pair
    ys, xs = np.mgrid[2:45:4, 2:70:4].reshape(2, -1)
    a = fast_reciprocal_nn(d1, d2, subsample=4, pixel_tol=3)
    b = fast_reciprocal_nn(d1, d2, seeds=(xs, ys), pixel_tol=3)
    assert len(a[0]) > 0
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])


def test_score_tiles_are_bounded(rng, monkeypatch) -> None:
    """The search never materialises more than ``block_bytes`` of scores at once."""
    from mast3r_ros.core.matching import nn

    sizes = []
    real_mm = torch.mm

    def spy_mm(a, b, *args, **kwargs):
        out = real_mm(a, b, *args, **kwargs)
        sizes.append(out.numel() * out.element_size())
        return out

    monkeypatch.setattr(nn.torch, "mm", spy_mm)
    q, t = _unit(rng, 3000, 24), _unit(rng, 20000, 24)
    got = nn.nearest_neighbors(q, t, "dot", block_bytes=1 << 20)
    assert torch.equal(got, (q @ t.T).argmax(1))
    assert sizes and max(sizes) <= 1 << 20
