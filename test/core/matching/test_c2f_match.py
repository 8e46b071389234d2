"""coarse_to_fine_match end to end: exact coordinate mapping with an analytic engine, plumbing
with the tiny golden checkpoint."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from mast3r_ros.core.errors import MatchingError
from mast3r_ros.core.matching import coarse_to_fine_match, fast_reciprocal_nn
from mast3r_ros.core.matching.c2f import crop_slice
from mast3r_ros.core.model import HeadOutput, InferenceEngine, load_model, normalize_rgb, preprocess_image

SHIFT = np.array([37, -21])  # reference pixel (x, y) sees the query point (x, y) + SHIFT


def _coord_image(h: int, w: int) -> np.ndarray:
    """RGB image whose colours encode each pixel's own (x, y): v = x << 12 | y in 24 bits."""
    y, x = np.mgrid[:h, :w]
    v = (x << 12) | y
    return np.stack([(v >> 16) & 255, (v >> 8) & 255, v & 255], -1).astype(np.uint8)


class CoordEngine:
    """Fake engine: descriptors are an analytic function of original *query* coordinates.

    It decodes each pixel's original coordinates from its colour (crops are exact pixel copies),
    maps view-2 (reference) coordinates into the query by ``SHIFT``, and embeds them with unit-norm
    random Fourier features, so the only exact descriptor matches are the true correspondences.
    """

    def __init__(self) -> None:
        g = torch.Generator().manual_seed(0)
        self.freq = torch.randn(12, 2, generator=g, dtype=torch.float64) * 0.05
        self.phase = torch.rand(12, generator=g, dtype=torch.float64) * 6.28
        self.calls: list[tuple[int, tuple, tuple]] = []

    @staticmethod
    def _decode(img: torch.Tensor) -> torch.Tensor:
        u = torch.round((img.double() + 1) * 127.5).long()  # (B, 3, H, W) -> uint8 values
        v = (u[:, 0] << 16) | (u[:, 1] << 8) | u[:, 2]
        return torch.stack([v >> 12, v & 4095], -1).double()  # (B, H, W, 2) as (x, y)

    def _desc(self, xy: torch.Tensor) -> HeadOutput:
        arg = xy @ self.freq.T + self.phase
        desc = torch.cat([arg.cos(), arg.sin()], -1) / 12 ** 0.5
        conf = 1.0 + xy[..., 0] / 1000.0  # any positive, position-dependent confidence
        return HeadOutput(desc=desc.float(), desc_conf=conf.float())

    def forward_pair(self, img1: torch.Tensor, img2: torch.Tensor, heads=("desc",)):
        self.calls.append((img1.shape[0], tuple(img1.shape[-2:]), tuple(img2.shape[-2:])))
        shift = torch.tensor(SHIFT, dtype=torch.float64)
        return self._desc(self._decode(img1)), self._desc(self._decode(img2) + shift)


def _coarse_grid(hq: int, wq: int, hr: int, wr: int) -> tuple[np.ndarray, np.ndarray]:
    y, x = np.mgrid[5:hq:9, 7:wq:9].reshape(2, -1)
    xy_q = np.stack([x, y], 1).astype(float)
    xy_r = xy_q - SHIFT
    ok = (xy_r[:, 0] >= 0) & (xy_r[:, 0] < wr) & (xy_r[:, 1] >= 0) & (xy_r[:, 1] < hr)
    return xy_q[ok], xy_r[ok]


def test_fine_matches_land_exactly_on_the_geometry() -> None:
    hq, wq, hr, wr = 300, 420, 330, 400
    rgb_q, rgb_r = _coord_image(hq, wq), _coord_image(hr, wr)
    engine = CoordEngine()
    res = coarse_to_fine_match(engine, rgb_q, rgb_r, size=128, crop_batch=3, max_crop_pairs=5,
                               coarse=_coarse_grid(hq, wq, hr, wr))
    assert res.refined and len(res.crops) == 5
    assert len(res.xy_q) > 200
    np.testing.assert_array_equal(res.xy_q - res.xy_r, np.broadcast_to(SHIFT, res.xy_q.shape))
    # crops have each image's network resolution (80x128 / 96x128 at size 128) and lie inside
    for cq, cr in res.crops:
        assert (cq[3] - cq[1], cq[2] - cq[0]) == (80, 128) and (cr[3] - cr[1], cr[2] - cr[0]) == (96, 128)
        assert cq[0] >= 0 and cq[1] >= 0 and cq[2] <= wq and cq[3] <= hq
        assert cr[0] >= 0 and cr[1] >= 0 and cr[2] <= wr and cr[3] <= hr
    # batched: crop pairs go to the engine 3 at a time, query crops first
    assert engine.calls == [(3, (80, 128), (96, 128)), (2, (80, 128), (96, 128))]
    # every match lies inside at least one selected crop pair; no duplicates; conf = min of both
    inside = np.zeros(len(res.xy_q), bool)
    for cq, cr in res.crops:
        inside |= ((res.xy_q[:, 0] >= cq[0]) & (res.xy_q[:, 0] < cq[2]) & (res.xy_q[:, 1] >= cq[1])
                   & (res.xy_q[:, 1] < cq[3]) & (res.xy_r[:, 0] >= cr[0]) & (res.xy_r[:, 0] < cr[2]))
    assert inside.all()
    assert len(np.unique(np.c_[res.xy_q, res.xy_r], axis=0)) == len(res.xy_q)
    np.testing.assert_allclose(res.conf, 1.0 + res.xy_q[:, 0] / 1000.0, rtol=1e-6)
    strict = coarse_to_fine_match(engine, rgb_q, rgb_r, size=128, coarse=_coarse_grid(hq, wq, hr, wr),
                                  conf_threshold=1.2, max_crop_pairs=1)
    assert len(strict.crops) == 1 and (strict.conf >= 1.2).all() and len(strict.conf) > 0


def test_small_images_return_coarse_matches() -> None:
    rgb = _coord_image(100, 120)
    xy = np.array([[10.0, 12.0], [50.0, 60.0]])
    res = coarse_to_fine_match(CoordEngine(), rgb, rgb, size=128, coarse=(xy, xy + 1))
    assert not res.refined and res.crops == []
    np.testing.assert_array_equal(res.xy_q, xy)
    np.testing.assert_array_equal(res.xy_r, xy + 1)


def test_bad_input() -> None:
    rgb = _coord_image(300, 400)
    with pytest.raises(MatchingError):
        coarse_to_fine_match(CoordEngine(), rgb.astype(np.float32), rgb)
    with pytest.raises(MatchingError):
        coarse_to_fine_match(CoordEngine(), rgb[:8], rgb)
    with pytest.raises(MatchingError):
        coarse_to_fine_match(CoordEngine(), rgb, rgb, coarse=(np.zeros((3, 2)), np.zeros((4, 2))))


@pytest.fixture(scope="module")
def tiny_engine(tiny_checkpoint: Path) -> InferenceEngine:
    return InferenceEngine(load_model(tiny_checkpoint, device="cpu"), device="cpu")


def test_tiny_checkpoint_plumbing(tiny_engine: InferenceEngine) -> None:
    rng = np.random.default_rng(0)
    base = rng.integers(0, 256, (60, 80, 3), dtype=np.uint8).repeat(4, 0).repeat(4, 1)  # 240x320
    rgb_q, rgb_r = base[:224, :288], base[10:234, 20:320]  # overlapping views, 224x288 / 224x300
    res = coarse_to_fine_match(tiny_engine, rgb_q, rgb_r, size=128, subsample=4, crop_batch=1,
                               max_crop_pairs=2)
    # coarse stage: FRM (reference as image 1) on the network outputs, 3-px border, to_original
    pre_q, pre_r = preprocess_image(rgb_q, size=128), preprocess_image(rgb_r, size=128)
    out_q, out_r = tiny_engine.forward_pair(pre_q.tensor, pre_r.tensor, heads=("desc",))
    xr, xq = fast_reciprocal_nn(out_r.desc[0], out_q.desc[0], subsample=4)
    hq, wq = out_q.desc.shape[1:3]
    hr, wr = out_r.desc.shape[1:3]
    keep = ((xq[:, 0] >= 3) & (xq[:, 0] < wq - 3) & (xq[:, 1] >= 3) & (xq[:, 1] < hq - 3)
            & (xr[:, 0] >= 3) & (xr[:, 0] < wr - 3) & (xr[:, 1] >= 3) & (xr[:, 1] < hr - 3))
    np.testing.assert_allclose(res.coarse_xy_q, pre_q.transform.to_original(xq[keep].numpy()))
    np.testing.assert_allclose(res.coarse_xy_r, pre_r.transform.to_original(xr[keep].numpy()))
    assert res.refined and len(res.crops) == 2
    # fine stage of the first crop pair, recomputed by hand, is contained in the merged result
    cq, cr = res.crops[0]
    o_q, o_r = tiny_engine.forward_pair(normalize_rgb(rgb_q[crop_slice(cq)]),
                                        normalize_rgb(rgb_r[crop_slice(cr)]), heads=("desc",))
    fr, fq = fast_reciprocal_nn(o_r.desc[0], o_q.desc[0], subsample=4)
    expected = {tuple(v) for v in np.c_[fq.numpy() + cq[:2], fr.numpy() + cr[:2]].tolist()}
    got = {tuple(v) for v in np.c_[res.xy_q, res.xy_r].astype(int).tolist()}
    assert len(expected) > 0 and expected <= got
    assert res.conf.shape == (len(res.xy_q),) and np.isfinite(res.conf).all()
