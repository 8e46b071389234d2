"""Checkpoint loading: the official ``.pth`` format and the Hugging Face layout.

* Official: ``{'args': Namespace(model='AsymmetricMASt3R(...)'), 'model': state_dict}``, unpickled
  with ``torch.load(weights_only=True)`` allowing only :class:`argparse.Namespace` (a checkpoint is
  untrusted input); the constructor string goes through the whitelist parser
  (:func:`~mast3r_ros.core.model.args.parse_model_args`), never ``eval``.
* Hugging Face: a directory with ``config.json`` (constructor keyword arguments) and
  ``model.safetensors``, or a model id (``naver/MASt3R_...``) already present in the local HF cache.
  Nothing is downloaded.

Keys must match exactly (the aliased DPT entries ``scratch.layer_rn.K`` / ``scratch.layerK+1_rn`` may
come under either name); otherwise :class:`CheckpointError` lists what is missing, unexpected or
mis-shaped. The model is built on the ``meta`` device and the checkpoint tensors are assigned to it,
so loading the 2.75 GB release needs no second copy and no random initialisation.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
from pathlib import Path
from typing import Any, Mapping, Union

import torch

from mast3r_ros.core.errors import CheckpointError
from mast3r_ros.core.model.args import ModelArgs, parse_model_args
from mast3r_ros.core.model.device import resolve_device
from mast3r_ros.core.model.mast3r import Mast3rModel

__all__ = ["load_model", "read_checkpoint", "build_model", "check_state_dict", "save_hf",
           "find_in_hf_cache", "alias_groups"]

log = logging.getLogger(__name__)

_HF_META_KEYS = {"architectures", "model_type", "torch_dtype", "transformers_version"}
_LIST_LIMIT = 10


def _short(names: list[str]) -> str:
    head = ", ".join(names[:_LIST_LIMIT])
    more = f" (+{len(names) - _LIST_LIMIT} more)" if len(names) > _LIST_LIMIT else ""
    return f"{len(names)}: [{head}]{more}"


def alias_groups(model: torch.nn.Module) -> list[list[str]]:
    """State-dict names that refer to the same tensor (e.g. ``layer1_rn`` / ``layer_rn.0``)."""
    by_id: dict[int, list[str]] = {}
    for name, t in model.state_dict(keep_vars=True).items():
        by_id.setdefault(id(t), []).append(name)
    return [names for names in by_id.values() if len(names) > 1]


def _fill_aliases(model: torch.nn.Module, sd: dict[str, torch.Tensor]) -> None:
    """Complete alias entries present under one name only; refuse inconsistent duplicates."""
    for group in alias_groups(model):
        present = [n for n in group if n in sd]
        if not present:
            continue
        ref = sd[present[0]]
        for n in present[1:]:
            if sd[n].shape != ref.shape or not torch.equal(sd[n], ref):
                raise CheckpointError(f"aliased entries {present[0]} and {n} differ; the "
                                      "checkpoint is inconsistent")
        for n in group:
            sd.setdefault(n, ref)


def check_state_dict(model: torch.nn.Module, sd: Mapping[str, torch.Tensor]) -> None:
    """Strict key and shape check of ``sd`` against ``model``.

    Raises:
        CheckpointError: listing (the first 10 of) missing, unexpected and mis-shaped entries.
    """
    expected = {k: tuple(v.shape) for k, v in model.state_dict(keep_vars=True).items()}
    missing = [k for k in expected if k not in sd]
    unexpected = [k for k in sd if k not in expected]
    bad = [f"{k} {tuple(sd[k].shape)} != {expected[k]}" for k in expected
           if k in sd and tuple(sd[k].shape) != expected[k]]
    not_float = [k for k in expected if k in sd and not sd[k].is_floating_point()]
    if missing or unexpected or bad or not_float:
        parts = []
        if missing:
            parts.append(f"missing {_short(missing)}")
        if unexpected:
            parts.append(f"unexpected {_short(unexpected)}")
        if bad:
            parts.append(f"mis-shaped {_short(bad)}")
        if not_float:
            parts.append(f"not floating point {_short(not_float)}")
        raise CheckpointError("checkpoint does not match the model built from its args: "
                              + "; ".join(parts))


def build_model(args: ModelArgs, sd: Mapping[str, torch.Tensor],
                device: Union[str, torch.device] = "cpu") -> Mast3rModel:
    """Build :class:`Mast3rModel` for ``args`` and load ``sd`` strictly, without a random init.

    Returns:
        The model in eval mode on ``device``, float32, gradients disabled.
    """
    dev = resolve_device(device)
    with torch.device("meta"):
        model = Mast3rModel(args)
    sd = dict(sd)
    _fill_aliases(model, sd)
    check_state_dict(model, sd)
    ready = {k: v.to(device=dev, dtype=torch.float32).contiguous() for k, v in sd.items()}
    model.load_state_dict(ready, strict=True, assign=True)
    model.requires_grad_(False)
    return model.eval()


def _unpickle(path: Path) -> Any:
    try:
        with torch.serialization.safe_globals([argparse.Namespace]):
            try:
                return torch.load(path, map_location="cpu", weights_only=True, mmap=True)
            except RuntimeError as exc:
                if "mmap" not in str(exc):
                    raise
                return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unpickling failure means "not a checkpoint"
        raise CheckpointError(
            f"{path} is not a readable MASt3R checkpoint (torch.load with weights_only=True, "
            f"only argparse.Namespace allowed): {type(exc).__name__}: {str(exc)[:300]}") from exc


def _read_official(path: Path) -> tuple[ModelArgs, dict[str, torch.Tensor]]:
    ckpt = _unpickle(path)
    if not isinstance(ckpt, Mapping) or "model" not in ckpt or "args" not in ckpt:
        raise CheckpointError(f"{path} is not an official MASt3R checkpoint: expected a dict with "
                              "'args' and 'model'")
    args = ckpt["args"]
    model_str = args if isinstance(args, str) else getattr(args, "model", None)
    if not isinstance(model_str, str):
        raise CheckpointError(f"{path}: ckpt['args'] has no constructor string 'model'")
    sd = ckpt["model"]
    if not isinstance(sd, Mapping) or not all(isinstance(v, torch.Tensor) for v in sd.values()):
        raise CheckpointError(f"{path}: ckpt['model'] is not a state_dict of tensors")
    return ModelArgs.from_kwargs(parse_model_args(model_str)), dict(sd)


def _read_hf(directory: Path) -> tuple[ModelArgs, dict[str, torch.Tensor]]:
    cfg_path, weights = directory / "config.json", directory / "model.safetensors"
    if not cfg_path.is_file():
        raise CheckpointError(f"{directory} has no config.json (Hugging Face layout expected)")
    if not weights.is_file():
        raise CheckpointError(f"{directory} has no model.safetensors; download the weights "
                              "into that directory")
    try:
        cfg = json.loads(cfg_path.read_text())
    except (OSError, ValueError) as exc:
        raise CheckpointError(f"{cfg_path} is not valid JSON: {exc}") from exc
    if not isinstance(cfg, dict):
        raise CheckpointError(f"{cfg_path} must hold a JSON object of constructor arguments")
    if isinstance(cfg.get("model"), str):
        kwargs = parse_model_args(cfg["model"])
    else:
        kwargs = {k: v for k, v in cfg.items() if not k.startswith("_") and k not in _HF_META_KEYS}
    args = ModelArgs.from_kwargs(kwargs)  # validate the config before reading gigabytes
    try:
        from safetensors.torch import load_file

        sd = load_file(str(weights), device="cpu")
    except Exception as exc:  # noqa: BLE001 - corrupt or foreign file
        raise CheckpointError(f"cannot read {weights}: {type(exc).__name__}: {exc}") from exc
    return args, sd


def _hf_cache_root() -> Path:
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"])
    hf_home = os.environ.get("HF_HOME")
    base = Path(hf_home) if hf_home else Path.home() / ".cache" / "huggingface"
    return base / "hub"


def find_in_hf_cache(model_id: str) -> Path:
    """Snapshot directory of ``model_id`` (``owner/name``) in the local HF cache (no network).

    Raises:
        CheckpointError: the model is not in the cache.
    """
    repo = _hf_cache_root() / ("models--" + model_id.replace("/", "--"))
    snapshots = repo / "snapshots"
    ref = repo / "refs" / "main"
    if ref.is_file():
        cand = snapshots / ref.read_text().strip()
        if cand.is_dir():
            return cand
    dirs = sorted(snapshots.glob("*"), key=lambda p: p.stat().st_mtime) if snapshots.is_dir() else []
    if not dirs:
        raise CheckpointError(f"{model_id!r} is neither a file nor a directory, and is not in the "
                              f"Hugging Face cache {repo.parent}; give the checkpoint path")
    return dirs[-1]


def read_checkpoint(path: Union[str, Path]) -> tuple[ModelArgs, dict[str, torch.Tensor]]:
    """Read constructor args and state_dict from any supported checkpoint location."""
    p = Path(os.path.expanduser(str(path)))
    if p.is_dir():
        return _read_hf(p)
    if p.is_file():
        if p.suffix == ".safetensors":
            return _read_hf(p.parent)
        return _read_official(p)
    if isinstance(path, str) and path.count("/") == 1 and not path.startswith((".", "/", "~")):
        return _read_hf(find_in_hf_cache(path))
    raise CheckpointError(f"checkpoint {str(path)!r} does not exist; set the model checkpoint "
                          "path (MASt3R_ViTLarge_BaseDecoder_512_catmlpdpt_metric.pth)")


def load_model(path: Union[str, Path], device: Union[str, torch.device] = "cpu") -> Mast3rModel:
    """Load a MASt3R model from an official ``.pth``, an HF directory, or an HF cache model id.

    Args:
        path: checkpoint file, directory with config.json + model.safetensors, or ``owner/name``.
        device: where to put the model (``"auto"``, ``"cpu"``, ``"cuda:N"`` or a torch.device).

    Returns:
        The model in eval mode, float32, gradients disabled.

    Raises:
        CheckpointError: missing/unreadable file, other architecture, unsupported args, key or
            shape mismatch.
    """
    args, sd = read_checkpoint(path)
    model = build_model(args, sd, device)
    log.info("loaded MASt3R (%d encoder / %d decoder blocks, %.1f M parameters) from %s",
             args.enc_depth, args.dec_depth,
             sum(p.numel() for p in model.parameters()) / 1e6, path)
    return model


def save_hf(model: Mast3rModel, directory: Union[str, Path]) -> Path:
    """Write ``model`` in the Hugging Face layout (config.json + model.safetensors).

    Aliased entries are stored once (safetensors refuses shared tensors); the loader restores them.
    """
    from safetensors.torch import save_file

    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    drop = {n for g in alias_groups(model) for n in g[1:]}
    sd = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items() if k not in drop}
    save_file(sd, str(out / "model.safetensors"))
    cfg = {f: getattr(model.args, f) for f in model.args.__dataclass_fields__}
    (out / "config.json").write_text(json.dumps(cfg, indent=1))
    return out
