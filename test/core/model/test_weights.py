"""Checkpoint loading: args parsing, official and Hugging Face formats, strict key checks."""

from __future__ import annotations

import argparse
import json
import math
import os
from pathlib import Path

import pytest
import torch

from mast3r_ros.core.errors import CheckpointError, ConfigError
from mast3r_ros.core.model import (RELEASE_ARGS, Mast3rModel, ModelArgs, load_model,
                                   parse_model_args, resolve_device, save_hf)

TINY_ARGS_KW = dict(enc_embed_dim=64, enc_depth=2, enc_num_heads=4, dec_embed_dim=48,
                    dec_depth=10, dec_num_heads=4)


# ------------------------------------------------------------------------------- args parsing
def test_parse_release_args() -> None:
    kw = parse_model_args(RELEASE_ARGS)
    assert kw["depth_mode"] == ("exp", -math.inf, math.inf)
    assert kw["conf_mode"] == ("exp", 1, math.inf)
    assert kw["img_size"] == (512, 512) and kw["enc_depth"] == 24 and kw["two_confs"] is True
    assert kw["patch_embed_cls"] == "ManyAR_PatchEmbed"
    args = ModelArgs.from_kwargs(kw)
    assert args.patch_embed_cls == "PatchEmbedDust3R" and args.landscape_only is False
    assert args.desc_dim == 24 and args.rope_base == 100.0
    assert args.effective_desc_conf_mode == ("exp", 0.0, math.inf)
    assert ModelArgs.from_kwargs(parse_model_args(args.to_string())) == args


def test_parse_literal_kinds() -> None:
    kw = parse_model_args("AsymmetricMASt3R(mlp_ratio=4.0, two_confs=False, landscape_only=True, "
                          "depth_mode=('exp', -inf, +inf), img_size=[512, 384], enc_depth=-3, "
                          "desc_conf_mode=None, head_type=\"catmlp+dpt\")")
    assert kw == {"mlp_ratio": 4.0, "two_confs": False, "landscape_only": True,
                  "depth_mode": ("exp", -math.inf, math.inf), "img_size": (512, 384),
                  "enc_depth": -3, "desc_conf_mode": None, "head_type": "catmlp+dpt"}
    assert isinstance(kw["mlp_ratio"], float) and isinstance(kw["enc_depth"], int)
    with pytest.raises(CheckpointError, match="enc_depth"):
        ModelArgs.from_kwargs(kw)  # parsed, but not a valid configuration


@pytest.mark.parametrize("bad", [
    "AsymmetricMASt3R(enc_depth=2, evil_kw=1)",                # unknown keyword
    "AsymmetricMASt3R(enc_depth=__import__('os').getpid())",   # code, not a literal
    "AsymmetricMASt3R(enc_depth=[x for x in range(3)])",       # comprehension
    "AsymmetricCroCo3DStereo(enc_depth=2)",                    # other architecture
    "AsymmetricMASt3R(2)",                                     # positional
    "AsymmetricMASt3R(**dict(a=1))",                           # **kwargs
    "AsymmetricMASt3R(enc_depth=2",                            # syntax
    "os.system('true')",                                       # not a plain constructor
    "AsymmetricMASt3R(pos_embed=-'RoPE100')",                  # sign on a string
])
def test_parse_rejects(bad: str) -> None:
    with pytest.raises(CheckpointError):
        parse_model_args(bad)


@pytest.mark.parametrize("change", [
    dict(head_type="linear"), dict(output_mode="pts3d"), dict(pos_embed="cosine"),
    dict(dec_depth=8), dict(patch_size=14), dict(depth_mode=("log", 0, 1)),
    dict(enc_depth="2"), dict(enc_num_heads=5),
])
def test_unsupported_configurations_rejected(change: dict) -> None:
    kw = parse_model_args(RELEASE_ARGS)
    kw.update(change)
    with pytest.raises(CheckpointError):
        ModelArgs.from_kwargs(kw)


# ------------------------------------------------------------------------------ release layout
def test_full_release_layout_matches_key_for_key(golden_dir: Path) -> None:
    ref = json.loads((golden_dir / "full_model_keys.json").read_text())
    kw = parse_model_args(ref["args"])
    assert ModelArgs.from_kwargs(kw) == ModelArgs.from_kwargs(parse_model_args(ref["loader_args"]))
    with torch.device("meta"):
        model = Mast3rModel(ModelArgs.from_kwargs(kw))
    sd = model.state_dict()
    assert list(sd.keys()) == [e["key"] for e in ref["keys"]]
    for e in ref["keys"]:
        assert list(sd[e["key"]].shape) == e["shape"], e["key"]
        assert sd[e["key"]].dtype == torch.float32
    assert sum(p.numel() for p in model.parameters()) == ref["n_parameters"]
    params = model.state_dict(keep_vars=True)
    for name, others in ref["aliases"].items():
        for other in others:
            assert params[other] is params[name]


# ------------------------------------------------------------------------------ official format
def _tiny_ckpt(tiny_checkpoint: Path) -> dict:
    with torch.serialization.safe_globals([argparse.Namespace]):
        return torch.load(tiny_checkpoint, map_location="cpu", weights_only=True)


def test_loaded_weights_equal_checkpoint(tiny_model: Mast3rModel, tiny_checkpoint: Path) -> None:
    ck = _tiny_ckpt(tiny_checkpoint)
    sd = tiny_model.state_dict()
    assert set(sd) == set(ck["model"])
    for k, v in ck["model"].items():
        assert torch.equal(sd[k], v), k
    assert not any(p.requires_grad for p in tiny_model.parameters())
    assert not tiny_model.training


def _save(tmp_path: Path, ck: dict, name: str = "ck.pth") -> Path:
    p = tmp_path / name
    torch.save(ck, p)
    return p


def test_strict_keys_listed(tmp_path: Path, tiny_checkpoint: Path) -> None:
    ck = _tiny_ckpt(tiny_checkpoint)
    sd = dict(ck["model"])
    del sd["enc_norm.weight"]
    sd["extra.weight"] = torch.zeros(3)
    sd["decoder_embed.bias"] = torch.zeros(7)
    with pytest.raises(CheckpointError) as err:
        load_model(_save(tmp_path, {"args": ck["args"], "model": sd}))
    msg = str(err.value)
    assert "missing 1: [enc_norm.weight]" in msg
    assert "unexpected 1: [extra.weight]" in msg
    assert "decoder_embed.bias (7,) != (48,)" in msg


def test_many_missing_keys_are_truncated(tmp_path: Path, tiny_checkpoint: Path) -> None:
    ck = _tiny_ckpt(tiny_checkpoint)
    sd = {k: v for k, v in ck["model"].items() if not k.startswith("dec_blocks2.")}
    with pytest.raises(CheckpointError, match=r"missing 240: \[.*\] \(\+230 more\)"):
        load_model(_save(tmp_path, {"args": ck["args"], "model": sd}))


def test_alias_under_one_name_is_enough(tmp_path: Path, tiny_checkpoint: Path,
                                        tiny_model: Mast3rModel) -> None:
    ck = _tiny_ckpt(tiny_checkpoint)
    sd = {k: v for k, v in ck["model"].items() if ".scratch.layer_rn." not in k}
    model = load_model(_save(tmp_path, {"args": ck["args"], "model": sd}))
    w = model.downstream_head2.dpt.scratch.layer_rn[2].weight
    assert w is model.downstream_head2.dpt.scratch.layer3_rn.weight
    assert torch.equal(w, tiny_model.downstream_head2.dpt.scratch.layer3_rn.weight)
    sd = dict(ck["model"])
    sd["downstream_head1.dpt.scratch.layer_rn.0.weight"] = torch.zeros_like(
        sd["downstream_head1.dpt.scratch.layer1_rn.weight"])
    with pytest.raises(CheckpointError, match="aliased entries"):
        load_model(_save(tmp_path, {"args": ck["args"], "model": sd}, "b.pth"))


def test_plain_string_args_accepted(tmp_path: Path, tiny_checkpoint: Path) -> None:
    ck = _tiny_ckpt(tiny_checkpoint)
    model = load_model(_save(tmp_path, {"args": ck["args"].model, "model": ck["model"]}))
    assert model.args.enc_embed_dim == 64


def test_bad_files_raise_checkpoint_error(tmp_path: Path, tiny_checkpoint: Path) -> None:
    with pytest.raises(CheckpointError, match="does not exist"):
        load_model(tmp_path / "missing.pth")
    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"this is not a checkpoint" * 10)
    with pytest.raises(CheckpointError, match="not a readable"):
        load_model(junk)
    with pytest.raises(CheckpointError, match="'args' and 'model'"):
        load_model(_save(tmp_path, {"state_dict": {}}, "sd.pth"))
    ck = _tiny_ckpt(tiny_checkpoint)
    other = argparse.Namespace(model="AsymmetricCroCo3DStereo(enc_depth=2)")
    with pytest.raises(CheckpointError, match="architecture"):
        load_model(_save(tmp_path, {"args": other, "model": ck["model"]}, "other.pth"))


class _Evil:
    """Unpickling this runs ``os.mkdir(marker)``: proof that code from the file was executed."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.mkdir, (str(self.marker),))


def test_arbitrary_pickles_refused(tmp_path: Path) -> None:
    p, marker = tmp_path / "evil.pth", tmp_path / "pwned"
    torch.save({"args": _Evil(marker), "model": {}}, p)
    with pytest.raises(CheckpointError, match="weights_only"):
        load_model(p)
    assert not marker.exists()
    torch.load(p, weights_only=False)  # the file really is malicious
    assert marker.exists()


# --------------------------------------------------------------------------- Hugging Face format
def _assert_same_outputs(a: Mast3rModel, b: Mast3rModel) -> None:
    torch.manual_seed(0)
    x1, x2 = torch.rand(1, 3, 32, 48) * 2 - 1, torch.rand(1, 3, 48, 32) * 2 - 1
    with torch.inference_mode():
        oa, ob = a.forward_pair(x1, x2), b.forward_pair(x1, x2)
    for va, vb in zip(oa, ob):
        for f in ("pts3d", "conf", "desc", "desc_conf"):
            assert torch.equal(getattr(va, f), getattr(vb, f)), f


def test_hf_directory_roundtrip(tmp_path: Path, tiny_model: Mast3rModel) -> None:
    d = save_hf(tiny_model, tmp_path / "hf")
    cfg = json.loads((d / "config.json").read_text())
    assert cfg["enc_embed_dim"] == 64 and cfg["depth_mode"][1] == -math.inf
    _assert_same_outputs(load_model(d), tiny_model)
    again = load_model(d / "model.safetensors").state_dict()
    for k, v in tiny_model.state_dict().items():
        assert torch.equal(again[k], v), k


def test_hf_cache_model_id(tmp_path: Path, tiny_model: Mast3rModel, monkeypatch) -> None:
    repo = tmp_path / "hub" / "models--naver--Tiny_MASt3R"
    save_hf(tiny_model, repo / "snapshots" / "abc123")
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("abc123\n")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.chdir(tmp_path)
    loaded = load_model("naver/Tiny_MASt3R").state_dict()
    assert loaded.keys() == tiny_model.state_dict().keys()
    assert all(torch.equal(loaded[k], v) for k, v in tiny_model.state_dict().items())
    with pytest.raises(CheckpointError, match="not in the Hugging Face cache"):
        load_model("naver/Not_There")


def test_hf_directory_errors(tmp_path: Path, tiny_model: Mast3rModel) -> None:
    cfg = {f: getattr(tiny_model.args, f) for f in tiny_model.args.__dataclass_fields__}
    d = tmp_path / "hf"
    d.mkdir()
    (d / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(CheckpointError, match="no model.safetensors"):
        load_model(d)
    (d / "model.safetensors").write_bytes(b"garbage")
    with pytest.raises(CheckpointError, match="cannot read"):
        load_model(d)
    (d / "config.json").write_text(json.dumps({"enc_depth": 2, "bogus_option": 1}))
    with pytest.raises(CheckpointError, match="unknown model arguments"):
        load_model(d)
    (d / "config.json").write_text("{not json")
    with pytest.raises(CheckpointError, match="not valid JSON"):
        load_model(d)
    (d / "config.json").unlink()
    with pytest.raises(CheckpointError, match="no config.json"):
        load_model(d)


# ------------------------------------------------------------------------------------- devices
def test_resolve_device() -> None:
    assert resolve_device("cpu") == torch.device("cpu")
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert resolve_device("auto").type == expected
    assert resolve_device(torch.device("cpu")).type == "cpu"
    with pytest.raises(ConfigError):
        resolve_device("tpu")
    with pytest.raises(ConfigError):
        resolve_device(3)
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="CUDA is not available"):
            resolve_device("cuda:0")
