"""Inference engine: cached encodings + batched decoding equal forward_pair; heads; precision."""

from __future__ import annotations

import logging

import pytest
import torch

from mast3r_ros.core.errors import ConfigError, InputError
from mast3r_ros.core.model import EncodedImages, HeadOutput, InferenceEngine, Mast3rModel

FIELDS = ("pts3d", "conf", "desc", "desc_conf")


def _imgs(n: int, h: int, w: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, 3, h, w, generator=g) * 2 - 1


def _assert_close(a: HeadOutput, b: HeadOutput, fields=FIELDS) -> None:
    for f in fields:
        x, y = getattr(a, f), getattr(b, f)
        assert x is not None and y is not None, f
        err = float(((x - y).abs() / (1 + y.abs())).max())
        tol = 1e-4 if f == "pts3d" else 2e-5  # batching changes float summation order only
        assert err <= tol, f"{f}: {err}"


@pytest.fixture(scope="module")
def engine(tiny_model: Mast3rModel) -> InferenceEngine:
    return InferenceEngine(tiny_model, device="cpu")


@pytest.mark.parametrize("k,ref_hw,chunk", [(1, (48, 64), None), (2, (48, 64), None),
                                             (3, (64, 48), None), (3, (64, 48), 2),
                                             (3, (48, 64), 3)])
def test_decode_equals_forward_pair(tiny_model: Mast3rModel, k: int,
                                    ref_hw: tuple[int, int], chunk) -> None:
    """Batched (chunk >= k), one-by-one (CPU default) and mixed chunking all equal forward_pair."""
    engine = InferenceEngine(tiny_model, device="cpu", decode_chunk=chunk)
    query = _imgs(1, 48, 64, seed=1)
    refs = _imgs(k, *ref_hw, seed=2)
    cache = [engine.encode(refs[i:i + 1]) for i in range(k)]
    out_q, out_r = engine.decode(engine.encode(query), EncodedImages.concat(cache))
    assert out_q.pts3d.shape == (k, 48, 64, 3) and out_r.desc.shape == (k, *ref_hw, 24)
    with torch.inference_mode():
        for i in range(k):
            o1, o2 = tiny_model.forward_pair(query, refs[i:i + 1])
            _assert_close(HeadOutput(*(getattr(out_q, f)[i:i + 1] for f in FIELDS)), o1)
            _assert_close(HeadOutput(*(getattr(out_r, f)[i:i + 1] for f in FIELDS)), o2)


def test_heads_subsets(engine: InferenceEngine) -> None:
    q, r = engine.encode(_imgs(1, 48, 64, 3)), engine.encode(_imgs(2, 48, 64, 4))
    full_q, full_r = engine.decode(q, r, heads=("pts3d", "desc"))
    d_q, d_r = engine.decode(q, r, heads=("desc",))
    p_q, p_r = engine.decode(q, r, heads=("pts3d",))
    for out in (d_q, d_r):
        assert out.pts3d is None and out.conf is None
    for out in (p_q, p_r):
        assert out.desc is None and out.desc_conf is None
    _assert_close(d_q, full_q, ("desc", "desc_conf"))
    _assert_close(d_r, full_r, ("desc", "desc_conf"))
    _assert_close(p_r, full_r, ("pts3d", "conf"))
    with pytest.raises(InputError):
        engine.decode(q, r, heads=("depth",))
    with pytest.raises(InputError):
        engine.decode(q, r, heads=())


def test_engine_forward_pair_equals_model(engine: InferenceEngine, tiny_model: Mast3rModel,
                                          golden_pairs) -> None:
    g = golden_pairs["tiny_pair_mixed"]
    x1, x2 = torch.from_numpy(g["view1_img"]), torch.from_numpy(g["view2_img"])
    e1, e2 = engine.forward_pair(x1, x2)
    m1, m2 = tiny_model.forward_pair(x1, x2)
    for a, b in ((e1, m1), (e2, m2)):
        for f in FIELDS:
            assert torch.equal(getattr(a, f), getattr(b, f))


def test_encoded_images_container(engine: InferenceEngine) -> None:
    enc = engine.encode(_imgs(3, 32, 48, 5))
    assert enc.feat.shape == (3, 6, 64) and enc.pos.shape == (3, 6, 2)
    assert enc.true_shape == (32, 48)
    assert enc.pos[0, 4].tolist() == [1, 1]  # token 4 of a 2x3 grid: row 1, column 1
    assert len(enc[1]) == 1 and len(enc[[0, 2]]) == 2 and len(enc[-1]) == 1
    assert torch.equal(enc[-1].feat, enc.feat[2:])
    assert torch.equal(EncodedImages.stack([enc[0], enc[1], enc[2]]).feat, enc.feat)
    assert enc.cpu().feat.device.type == "cpu"
    other = engine.encode(_imgs(1, 48, 32, 6))
    with pytest.raises(InputError, match="different image shapes"):
        EncodedImages.concat([enc, other])
    with pytest.raises(InputError):
        EncodedImages.concat([])
    with pytest.raises(InputError):
        EncodedImages(enc.feat, enc.pos, (48, 48))
    with pytest.raises(InputError, match="exactly one"):
        engine.decode(enc, other)


def test_global_descriptor(engine: InferenceEngine) -> None:
    imgs = _imgs(3, 48, 64, 7)
    enc = engine.encode(imgs)
    g = engine.global_descriptor(enc)
    assert g.shape == (3, 64) and g.dtype == torch.float32
    assert torch.allclose(g.norm(dim=-1), torch.ones(3), atol=1e-6)
    single = engine.global_descriptor(engine.encode(imgs[1:2]))
    assert torch.allclose(single[0], g[1], atol=1e-5)
    assert float((g[0] - g[1]).abs().max()) > 1e-4  # different images, different descriptors


def test_precision_and_device_options(tiny_model: Mast3rModel, caplog) -> None:
    with pytest.raises(ConfigError):
        InferenceEngine(tiny_model, device="cpu", precision="int8")
    with pytest.raises(ConfigError):
        InferenceEngine(tiny_model, device="nope")
    with pytest.raises(ConfigError):
        InferenceEngine(object(), device="cpu")  # type: ignore[arg-type]
    if not torch.cuda.is_available():
        with caplog.at_level(logging.WARNING):
            eng = InferenceEngine(tiny_model, device="cpu", precision="fp16")
        assert eng.autocast_dtype == torch.float32 and "fp32" in caplog.text


@pytest.mark.parametrize("bad,match", [
    (torch.zeros(1, 3, 48, 64, dtype=torch.uint8), "float"),
    (torch.zeros(3, 48, 64), "shape"),
    (torch.zeros(1, 1, 48, 64), "shape"),
    (torch.zeros(1, 3, 40, 64), "multiples of 16"),
    (torch.full((1, 3, 48, 64), 3.0), r"\[-1, 1\]"),
    (torch.full((1, 3, 48, 64), float("nan")), "finite"),
    (torch.zeros(1, 3, 48, 64).numpy(), "torch.Tensor"),
])
def test_bad_inputs_rejected(tiny_model: Mast3rModel, engine: InferenceEngine, bad, match) -> None:
    good = torch.zeros(1, 3, 48, 64)
    with pytest.raises(InputError, match=match):
        tiny_model.forward_pair(bad, good)
    with pytest.raises(InputError, match=match):
        engine.encode(bad)


def test_batch_mismatch_rejected(tiny_model: Mast3rModel) -> None:
    with pytest.raises(InputError, match="batch"):
        tiny_model.forward_pair(torch.zeros(2, 3, 48, 64), torch.zeros(1, 3, 48, 64))


#: reduced-precision bounds vs fp32 (encoder + decoder autocast, heads fp32). Measured with CPU
#: autocast on the golden pair (tiny model): bf16 (8-bit mantissa) pts3d relative error max 6.3 %,
#: median 0.7 %, desc max 0.014; fp16 max 0.9 %, median 0.09 %, desc 0.0015. The bounds leave ~1.5x.
#: The max is a worst pixel (low-confidence sky/edge); the median is what matching and PnP feel.
PRECISION_BOUNDS = {  # precision: (pts3d max rel, pts3d median rel, desc max abs)
    "fp32": (1e-3, 1e-4, 1e-3), "fp16": (1.5e-2, 2e-3, 3e-3), "bf16": (1e-1, 1.5e-2, 2.5e-2)}


def _precision_errors(out, ref) -> tuple[float, float, float]:
    rel = (out.pts3d.float().cpu() - ref.pts3d).abs() / (1 + ref.pts3d.abs())
    med = ((out.pts3d.float().cpu() - ref.pts3d).norm(dim=-1) / ref.pts3d.norm(dim=-1)).median()
    return float(rel.max()), float(med), float((out.desc.float().cpu() - ref.desc).abs().max())


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_reduced_precision_error_bounds_cpu_autocast(tiny_model: Mast3rModel, golden_pairs,
                                                     dtype: torch.dtype) -> None:
    """The network under autocast stays within the bounds the CUDA precisions are held to."""
    g = golden_pairs["tiny_pair"]
    x1, x2 = torch.from_numpy(g["view1_img"]), torch.from_numpy(g["view2_img"])
    with torch.inference_mode():
        ref = tiny_model.forward_pair(x1, x2)
        with torch.autocast("cpu", dtype=dtype):
            f1, f2 = tiny_model.encode(x1), tiny_model.encode(x2)
            d1, d2 = tiny_model.decode(f1, tuple(x1.shape[-2:]), f2, tuple(x2.shape[-2:]))
        outs = (tiny_model.run_head(1, d1, tuple(x1.shape[-2:]), ("pts3d", "desc")),
                tiny_model.run_head(2, d2, tuple(x2.shape[-2:]), ("pts3d", "desc")))
    name = {torch.bfloat16: "bf16", torch.float16: "fp16"}[dtype]
    for out, r in zip(outs, ref):
        errs = _precision_errors(out, r)
        assert all(e <= b for e, b in zip(errs, PRECISION_BOUNDS[name])), (name, errs)
        assert errs[1] > 0  # autocast really ran in reduced precision


@pytest.mark.gpu
@pytest.mark.parametrize("precision", ["fp32", "fp16", "bf16"])
def test_cuda_matches_cpu(tiny_model: Mast3rModel, golden_pairs, precision: str) -> None:
    g = golden_pairs["tiny_pair"]
    x1, x2 = torch.from_numpy(g["view1_img"]), torch.from_numpy(g["view2_img"])
    cpu1, cpu2 = tiny_model.forward_pair(x1, x2)
    eng = InferenceEngine(tiny_model, device="cuda", precision=precision)  # copies the model
    out1, out2 = eng.forward_pair(x1, x2)
    for a, b in ((out1, cpu1), (out2, cpu2)):
        assert a.pts3d.dtype == torch.float32
        errs = _precision_errors(a, b)
        assert all(e <= bound for e, bound in zip(errs, PRECISION_BOUNDS[precision])), errs


def test_decode_chunk_validation(tiny_model: Mast3rModel) -> None:
    assert InferenceEngine(tiny_model, device="cpu").decode_chunk == 1  # CPU default
    for bad in (0, -1, 1.5, True):
        with pytest.raises(ConfigError, match="decode_chunk"):
            InferenceEngine(tiny_model, device="cpu", decode_chunk=bad)


def test_engine_never_mutates_the_callers_model(tiny_model: Mast3rModel) -> None:
    tiny_model.train()
    try:
        eng = InferenceEngine(tiny_model, device="cpu")
        assert tiny_model.training and eng.model is not tiny_model and not eng.model.training
    finally:
        tiny_model.eval()
    assert InferenceEngine(tiny_model, device="cpu").model is tiny_model  # already usable: shared
    with pytest.raises(ConfigError, match="image_size"):
        InferenceEngine(tiny_model, device="cpu", image_size=100)
