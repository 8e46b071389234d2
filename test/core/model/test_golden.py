"""Our network reproduces the official MASt3R outputs on the golden pairs (tiny checkpoint)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from model_helpers import PAIRS, rel_err
from mast3r_ros.core.model import Mast3rModel

OUTPUTS = {
    "pred1_pts3d": (0, "pts3d"),
    "pred1_conf": (0, "conf"),
    "pred1_desc": (0, "desc"),
    "pred1_desc_conf": (0, "desc_conf"),
    "pred2_pts3d_in_other_view": (1, "pts3d"),
    "pred2_conf": (1, "conf"),
    "pred2_desc": (1, "desc"),
    "pred2_desc_conf": (1, "desc_conf"),
}


@pytest.mark.parametrize("pair", PAIRS)
def test_forward_pair_matches_official(tiny_model: Mast3rModel, golden_pairs, pair: str) -> None:
    g = golden_pairs[pair]
    with torch.inference_mode():
        outs = tiny_model.forward_pair(torch.from_numpy(g["view1_img"]),
                                       torch.from_numpy(g["view2_img"]))
    for key, (view, field) in OUTPUTS.items():
        err = rel_err(getattr(outs[view], field), g[key])
        assert err <= 1e-4, f"{pair} {key}: max rel error {err:.3g}"
    # tolerances suggested by the fixture README (tighter than the bound)
    np.testing.assert_allclose(outs[0].desc.numpy(), g["pred1_desc"], atol=1e-5, rtol=1e-5)
    np.testing.assert_allclose(outs[1].pts3d.numpy(), g["pred2_pts3d_in_other_view"],
                               atol=1e-4, rtol=1e-5)


@pytest.mark.parametrize("pair", PAIRS)
def test_intermediates_match_official(tiny_model: Mast3rModel, golden_dir, golden_pairs,
                                      pair: str) -> None:
    g = golden_pairs[pair]
    with np.load(golden_dir / "tiny" / f"{pair}_intermediates.npz") as im:
        ref = {k: im[k] for k in im.files}
    img1, img2 = torch.from_numpy(g["view1_img"]), torch.from_numpy(g["view2_img"])
    with torch.inference_mode():
        tok1 = tiny_model.patch_embed(img1)
        f1, f2 = tiny_model.encode(img1), tiny_model.encode(img2)
        dec1, dec2 = tiny_model.decode(f1, tuple(img1.shape[-2:]), f2, tuple(img2.shape[-2:]))
        head1 = tiny_model.downstream_head1
        dpt_raw = head1.run_dpt(dec1, tuple(img1.shape[-2:]))
    assert rel_err(tok1, ref["patch_embed1"]) <= 1e-5
    assert rel_err(f1, ref["enc_feat1"]) <= 1e-5
    assert rel_err(f2, ref["enc_feat2"]) <= 1e-5
    assert len(dec1) == tiny_model.args.dec_depth + 1
    for i, (d1, d2) in enumerate(zip(dec1, dec2)):
        assert rel_err(d1, ref[f"dec1_{i:02d}"]) <= 1e-5, f"decoder view 1 layer {i}"
        assert rel_err(d2, ref[f"dec2_{i:02d}"]) <= 1e-5, f"decoder view 2 layer {i}"
    assert rel_err(dpt_raw, ref["head1_dpt_raw"]) <= 1e-4


def test_outputs_have_documented_shapes_and_ranges(tiny_model: Mast3rModel, golden_pairs) -> None:
    g = golden_pairs["tiny_pair_mixed"]
    with torch.inference_mode():
        o1, o2 = tiny_model.forward_pair(torch.from_numpy(g["view1_img"]),
                                         torch.from_numpy(g["view2_img"]))
    assert o1.pts3d.shape == (1, 48, 64, 3) and o2.pts3d.shape == (1, 64, 48, 3)
    assert o2.desc.shape == (1, 64, 48, 24) and o2.desc_conf.shape == (1, 64, 48)
    assert torch.allclose(o1.desc.norm(dim=-1), torch.ones(1, 48, 64), atol=1e-5)
    assert bool((o1.conf >= 1).all()) and bool((o2.desc_conf >= 0).all())
    assert o1.pts3d.dtype == torch.float32
