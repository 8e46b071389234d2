"""Hostile checkpoints: architecture bounds (D10), typed errors for huge numbers (D11), bounded
config.json (D14), Hugging Face cache containment (D15), non-regular files, odd state dicts."""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tracemalloc
from pathlib import Path

import pytest
import torch

from mast3r_ros.core.errors import CheckpointError
from mast3r_ros.core.model import (
    RELEASE_ARGS,
    Mast3rModel,
    ModelArgs,
    load_model,
    parse_model_args,
    save_hf,
)
from mast3r_ros.core.model.args import ARCH_BOUNDS
from mast3r_ros.core.model.weights import MAX_CONFIG_BYTES, MAX_PARAMETERS, read_checkpoint

REPO = Path(__file__).resolve().parents[3]
BIG = "1" + "0" * 400  # a 401-digit integer: beyond any float


def _args(**change: object) -> str:
    """RELEASE_ARGS with some keywords replaced (values written as Python literals)."""
    kw = parse_model_args(RELEASE_ARGS)
    kw.update(change)
    return f"AsymmetricMASt3R({', '.join(f'{k}={v!r}' for k, v in kw.items())})"


def _ckpt(tmp_path: Path, args: str, name: str = "ck.pth") -> Path:
    p = tmp_path / name
    torch.save({"args": argparse.Namespace(model=args), "model": {}}, p)
    return p


# ------------------------------------------------------------------------------------------ D10
_HUGE = (RELEASE_ARGS.replace("enc_depth=24", "enc_depth=100000")
         .replace("dec_depth=12", "dec_depth=100000"))
_PROBE = """
import argparse, sys, torch
from mast3r_ros.core.errors import CheckpointError
from mast3r_ros.core.model import load_model
torch.save({"args": argparse.Namespace(model=sys.argv[2]), "model": {}}, sys.argv[1])
try:
    load_model(sys.argv[1])
except CheckpointError as exc:
    print("refused:", exc)
"""


def test_d10_hundred_thousand_blocks_refused_before_building(tmp_path: Path) -> None:
    """D10: a ~1 kB checkpoint asking for 2 x 100,000 blocks used to build them all (> 2.5 GB,
    ~17 min); now the bounds refuse it before any module exists (the subprocess guards a hang)."""
    p = tmp_path / "huge.pth"
    out = subprocess.run([sys.executable, "-c", _PROBE, str(p), _HUGE], capture_output=True,
                         text=True, cwd=REPO, timeout=300)
    assert p.stat().st_size < 2000
    assert out.returncode == 0, out.stderr[-2000:]
    assert "refused: unsupported model configuration: enc_depth=100000 must be an integer in " \
           "[1, 48]" in out.stdout


@pytest.mark.parametrize("name", sorted(ARCH_BOUNDS))
def test_d10_every_integer_bound(name: str) -> None:
    lo, hi = ARCH_BOUNDS[name]
    kw = parse_model_args(RELEASE_ARGS)
    for bad in (hi + 1, lo - 1):
        kw[name] = bad
        with pytest.raises(CheckpointError, match=rf"{name}={bad} must be an integer in "
                                                  rf"\[{lo}, {hi}\]"):
            ModelArgs.from_kwargs(kw)


@pytest.mark.parametrize("change, match", [
    (dict(mlp_ratio=64.0), r"mlp_ratio=64.0 must be in \(0, 8.0\]"),
    (dict(mlp_ratio=float("nan")), r"mlp_ratio=nan"),
    (dict(output_mode="pts3d+desc100000"), "0 < N <= 256"),
    (dict(output_mode="pts3d+desc\u00b2"), "need 'pts3d\\+descN'"),  # unicode digit: ValueError
    (dict(pos_embed="RoPE1e999"), "0 < base <= 1e\\+06"),  # inf frequency base
    (dict(img_size=(512, 10**9)), "img_size"),
    (dict(img_size=(1, 2, 3)), "img_size"),
    (dict(mask_ratio=7), "mask_ratio"),
    (dict(freeze="x" * 1000), "freeze"),
])
def test_d10_other_bounds(change: dict, match: str) -> None:
    kw = parse_model_args(RELEASE_ARGS)
    kw.update(change)
    with pytest.raises(CheckpointError, match=match):
        ModelArgs.from_kwargs(kw)


def test_d10_parameter_cap(tmp_path: Path) -> None:
    """Within every per-argument bound but 9 G parameters: refused on the meta model."""
    widest = _args(enc_embed_dim=2048, enc_depth=48, enc_num_heads=16, dec_embed_dim=2048,
                   dec_depth=48, dec_num_heads=16)
    limit = MAX_PARAMETERS // 10**6
    with pytest.raises(CheckpointError, match=f"more than the limit of {limit} M"):
        load_model(_ckpt(tmp_path, widest))


# ------------------------------------------------------------------------------------------ D11
@pytest.mark.parametrize("field", ["desc_conf_mode", "depth_mode", "conf_mode"])
def test_d11_huge_integer_in_modes_pth(tmp_path: Path, field: str) -> None:
    s = re.sub(rf"\b{field}=\([^)]*\)", f"{field}=('exp', -{BIG}, {BIG})", RELEASE_ARGS)
    assert f"{field}=('exp', -{BIG}, {BIG})" in s
    with pytest.raises(CheckpointError, match=f"{field}=.*numbers within the float range"):
        load_model(_ckpt(tmp_path, s))


def _hf_dir(tmp_path: Path, tiny_model: Mast3rModel, **cfg_change: object) -> Path:
    d = save_hf(tiny_model, tmp_path / "hf")
    cfg = json.loads((d / "config.json").read_text())
    cfg.update(cfg_change)
    (d / "config.json").write_text(json.dumps(cfg))
    return d


@pytest.mark.parametrize("field", ["desc_conf_mode", "depth_mode"])
def test_d11_huge_integer_in_modes_hf(tmp_path: Path, tiny_model: Mast3rModel,
                                      field: str) -> None:
    d = _hf_dir(tmp_path, tiny_model, **{field: "@BIG"})
    text = (d / "config.json").read_text().replace('"@BIG"', f'["exp", 0, {BIG}]')
    (d / "config.json").write_text(text)
    with pytest.raises(CheckpointError, match=f"{field}=.*float range"):
        load_model(d)


@pytest.mark.parametrize("bad", [
    "AsymmetricMASt3R(enc_depth=" + "-" * 8000 + "1)",   # parser stack: MemoryError before
    "AsymmetricMASt3R(img_size=((((((2,),),),),),))",   # nesting beyond any real argument
    "AsymmetricMASt3R(enc_depth=\0)",                   # NUL byte: ValueError from the parser
], ids=["8000-signs", "nested-tuples", "nul-byte"])
def test_d11_parser_errors_are_typed(bad: str) -> None:
    with pytest.raises(CheckpointError):
        parse_model_args(bad)


def test_d11_deeply_nested_json(tmp_path: Path, tiny_model: Mast3rModel) -> None:
    d = _hf_dir(tmp_path, tiny_model)
    (d / "config.json").write_text('{"enc_depth": ' + "[" * 100_000 + "]" * 100_000 + "}")
    with pytest.raises(CheckpointError, match="RecursionError"):
        load_model(d)


# ------------------------------------------------------------------------------------------ D14
def test_d14_config_json_size_bounded(tmp_path: Path, tiny_model: Mast3rModel) -> None:
    d = _hf_dir(tmp_path, tiny_model)
    with open(d / "config.json", "r+b") as f:  # sparse: 3 GB claimed, no disk used
        f.truncate(3 * 2**30)
    tracemalloc.start()
    try:
        with pytest.raises(CheckpointError, match=f"more than the limit of {MAX_CONFIG_BYTES}"):
            load_model(d)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 4 * 2**20, peak


# ------------------------------------------------------------------------------------------ D15
def _cache(tmp_path: Path, tiny_model: Mast3rModel, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An HF cache entry laid out as huggingface_hub does: snapshot files -> ../../blobs/."""
    repo = tmp_path / "hub" / "models--naver--Tiny_MASt3R"
    src = save_hf(tiny_model, tmp_path / "export")
    (repo / "blobs").mkdir(parents=True)
    snap = repo / "snapshots" / "abc123"
    snap.mkdir(parents=True)
    for name in ("config.json", "model.safetensors"):
        os.replace(src / name, repo / "blobs" / f"blob-{name}")
        (snap / name).symlink_to(Path("../../blobs") / f"blob-{name}")
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("abc123")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.chdir(tmp_path)
    return repo


def test_hf_cache_with_blobs_loads(tmp_path: Path, tiny_model: Mast3rModel, monkeypatch) -> None:
    _cache(tmp_path, tiny_model, monkeypatch)
    args, sd = read_checkpoint("naver/Tiny_MASt3R")
    assert args == tiny_model.args and sd.keys() <= tiny_model.state_dict().keys()


def test_d15_refs_main_outside_cache(tmp_path: Path, tiny_model: Mast3rModel, monkeypatch) -> None:
    repo = _cache(tmp_path, tiny_model, monkeypatch)
    save_hf(tiny_model, tmp_path / "x")  # a loadable model where ../../../x leads
    (repo / "refs" / "main").write_text("../../../x")
    assert (repo / "snapshots" / "../../../x" / "config.json").exists()
    with pytest.raises(CheckpointError, match="not a revision name"):
        load_model("naver/Tiny_MASt3R")


def test_d15_snapshot_symlink_outside(tmp_path: Path, tiny_model: Mast3rModel,
                                      monkeypatch) -> None:
    repo = _cache(tmp_path, tiny_model, monkeypatch)
    save_hf(tiny_model, tmp_path / "elsewhere")
    (repo / "snapshots" / "evil").symlink_to(tmp_path / "elsewhere")
    (repo / "refs" / "main").write_text("evil")
    with pytest.raises(CheckpointError, match="outside the Hugging Face cache entry"):
        load_model("naver/Tiny_MASt3R")
    (repo / "refs" / "main").write_text("abc123")
    cfg = repo / "snapshots" / "abc123" / "config.json"
    cfg.unlink()
    cfg.symlink_to(tmp_path / "elsewhere" / "config.json")
    with pytest.raises(CheckpointError, match="config.json .* outside the Hugging Face cache"):
        load_model("naver/Tiny_MASt3R")


def test_odd_cache_entries_are_typed(tmp_path: Path, tiny_model: Mast3rModel,
                                     monkeypatch) -> None:
    """A dangling snapshot link (used to escape as FileNotFoundError from the mtime sort) and a
    symlink loop."""
    repo = _cache(tmp_path, tiny_model, monkeypatch)
    (repo / "refs" / "main").unlink()
    (repo / "snapshots" / "gone").symlink_to(tmp_path / "nowhere")
    args, _ = read_checkpoint("naver/Tiny_MASt3R")  # the dangling entry is skipped
    assert args == tiny_model.args
    cfg = repo / "snapshots" / "abc123" / "config.json"
    cfg.unlink()
    cfg.symlink_to(cfg)
    with pytest.raises(CheckpointError):
        load_model("naver/Tiny_MASt3R")


def test_model_id_must_be_plain(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(CheckpointError, match="not a Hugging Face model id"):
        load_model("naver/..")


# ------------------------------------------------------------------------------ non-regular files
def test_fifo_checkpoints_refused(tmp_path: Path, tiny_model: Mast3rModel) -> None:
    fifo = tmp_path / "model.pth"
    os.mkfifo(fifo)
    with pytest.raises(CheckpointError, match="named pipe"):
        load_model(fifo)
    for name in ("config.json", "model.safetensors"):
        d = save_hf(tiny_model, tmp_path / f"hf-{name}")
        (d / name).unlink()
        os.mkfifo(d / name)
        with pytest.raises(CheckpointError, match="named pipe"):
            load_model(d)
    with pytest.raises(CheckpointError, match="a device"):
        load_model("/dev/zero")


# --------------------------------------------------------------------------- odd state dicts
def test_non_string_keys_refused(tmp_path: Path, tiny_checkpoint: Path) -> None:
    """Used to escape as TypeError from the missing/unexpected key listing."""
    with torch.serialization.safe_globals([argparse.Namespace]):
        ck = torch.load(tiny_checkpoint, map_location="cpu", weights_only=True)
    sd = dict(ck["model"])
    sd[7] = torch.zeros(1)
    p = tmp_path / "k.pth"
    torch.save({"args": ck["args"], "model": sd}, p)
    with pytest.raises(CheckpointError, match="not a state_dict of named tensors"):
        load_model(p)


@pytest.mark.parametrize("header", [
    (2**40).to_bytes(8, "little") + b"{}",                                    # header length
    (60).to_bytes(8, "little")
    + b'{"w":{"dtype":"F32","shape":[1000000000000],"data_offsets":[0,4000000000000]}}',
])
def test_safetensors_claims_checked(tmp_path: Path, tiny_model: Mast3rModel,
                                    header: bytes) -> None:
    d = save_hf(tiny_model, tmp_path / "hf")
    (d / "model.safetensors").write_bytes(header + b"\0" * 64)
    with pytest.raises(CheckpointError, match="cannot read"):
        load_model(d)
