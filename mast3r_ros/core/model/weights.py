"""Checkpoint loading: the official ``.pth`` format and the Hugging Face layout.

* Official: ``{'args': Namespace(model='AsymmetricMASt3R(...)'), 'model': state_dict}``, unpickled
  with ``torch.load(weights_only=True)`` allowing only :class:`argparse.Namespace` (a checkpoint is
  untrusted input); the constructor string goes through the whitelist parser
  (:func:`~mast3r_ros.core.model.args.parse_model_args`), never ``eval``.
* Hugging Face: a directory with ``config.json`` (constructor keyword arguments) and
  ``model.safetensors``, or a model id (``naver/MASt3R_...``) already present in the local HF cache.
  Nothing is downloaded.

Keys must match exactly (the aliased DPT entries ``scratch.layer_rn.K`` /
``scratch.layerK+1_rn`` may come under either name); otherwise :class:`CheckpointError` lists what
is missing, unexpected or mis-shaped. The model is built on the ``meta`` device and the checkpoint
tensors are assigned to it, so loading the 2.75 GB release needs no second copy and no random
initialisation.

Untrusted-input bounds (see the README's limits): the architecture is bounded before anything is
built (:mod:`~mast3r_ros.core.model.args`), and its parameter count (:data:`MAX_PARAMETERS`,
counted on the ``meta`` model) before a tensor is converted: a pickle can rebuild a large tensor
from a few bytes of storage with zero or overlapping strides, so only the architecture bounds what
loading allocates. ``config.json`` and ``refs/main`` are read with a size bound; checkpoint files
must be regular files (a FIFO would block); every path found through the Hugging Face cache
metadata must stay inside that model's cache entry.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
from pathlib import Path
from typing import Any, Mapping, Optional, Union

import torch

from mast3r_ros.core.errors import CheckpointError
from mast3r_ros.core.io.files import check_regular_file, read_regular_file
from mast3r_ros.core.model.args import ModelArgs, parse_model_args
from mast3r_ros.core.model.device import resolve_device
from mast3r_ros.core.model.mast3r import Mast3rModel

__all__ = ["load_model", "read_checkpoint", "build_model", "check_state_dict",
           "read_hf_config", "save_hf", "find_in_hf_cache", "alias_groups",
           "MAX_CONFIG_BYTES", "MAX_PARAMETERS"]

log = logging.getLogger(__name__)

_HF_META_KEYS = {"architectures", "model_type", "torch_dtype", "transformers_version"}
_LIST_LIMIT = 10
MAX_PARAMETERS = 1_500_000_000
"""Largest accepted parameter count (about 2.2x the release's 688.6 M; 6 GB in float32)."""
MAX_CONFIG_BYTES = 1 << 20
"""Largest accepted ``config.json`` (bytes); the release's is about 1 kB."""
_MAX_REF_BYTES = 256
_MODEL_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,95}/[A-Za-z0-9][A-Za-z0-9._-]{0,95}")
_REVISION = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")


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
    n_params = sum(p.numel() for p in model.parameters())
    if n_params > MAX_PARAMETERS:
        raise CheckpointError(f"checkpoint declares a network of {n_params / 1e6:.0f} M "
                              f"parameters, more than the limit of {MAX_PARAMETERS / 1e6:.0f} M "
                              "(the release has 689 M); not a MASt3R checkpoint")
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
    except Exception as exc:
        raise CheckpointError(
            f"{path} is not a readable MASt3R checkpoint (torch.load with weights_only=True, "
            f"only argparse.Namespace allowed): {type(exc).__name__}: {str(exc)[:300]}") from exc


def _state_dict(sd: Any, source: Path) -> dict[str, torch.Tensor]:
    """``sd`` as a dict of string names to tensors, or CheckpointError."""
    if not isinstance(sd, Mapping) or not all(isinstance(k, str) and isinstance(v, torch.Tensor)
                                              for k, v in sd.items()):
        raise CheckpointError(f"{source}: the weights are not a state_dict of named tensors")
    return dict(sd)


def _read_official(path: Path) -> tuple[ModelArgs, dict[str, torch.Tensor]]:
    check_regular_file(path, CheckpointError)
    ckpt = _unpickle(path)
    if not isinstance(ckpt, Mapping) or "model" not in ckpt or "args" not in ckpt:
        raise CheckpointError(f"{path} is not an official MASt3R checkpoint: expected a dict with "
                              "'args' and 'model'")
    args = ckpt["args"]
    model_str = args if isinstance(args, str) else getattr(args, "model", None)
    if not isinstance(model_str, str):
        raise CheckpointError(f"{path}: ckpt['args'] has no constructor string 'model'")
    sd = _state_dict(ckpt["model"], path)
    return ModelArgs.from_kwargs(parse_model_args(model_str)), sd


def _contained(path: Path, root: Optional[Path], what: str) -> Path:
    """``path`` itself, after checking that it resolves inside ``root`` (when given)."""
    if root is None:
        return path
    try:
        real, top = path.resolve(), root.resolve()
    except (OSError, RuntimeError) as exc:  # a symlink loop (RuntimeError before Python 3.13)
        raise CheckpointError(f"cannot resolve {what} {path}: {exc}") from exc
    if not real.is_relative_to(top):
        raise CheckpointError(f"{what} {path} resolves to {real}, outside the Hugging Face cache "
                              f"entry {top}; the cache is corrupt or crafted, refusing it")
    return path


def read_hf_config(path: Path) -> ModelArgs:
    """Constructor args from an HF ``config.json`` of at most :data:`MAX_CONFIG_BYTES` bytes.

    Raises:
        CheckpointError: not a regular file, too large, not a JSON object, unsupported args.
    """
    raw = read_regular_file(path, MAX_CONFIG_BYTES, CheckpointError)
    try:
        cfg = json.loads(raw)
    except (ValueError, RecursionError) as exc:  # UnicodeDecodeError is a ValueError
        raise CheckpointError(f"{path} is not valid JSON: {type(exc).__name__}: "
                              f"{str(exc)[:200]}") from exc
    if not isinstance(cfg, dict):
        raise CheckpointError(f"{path} must hold a JSON object of constructor arguments")
    if isinstance(cfg.get("model"), str):
        return ModelArgs.from_kwargs(parse_model_args(cfg["model"]))
    return ModelArgs.from_kwargs({k: v for k, v in cfg.items()
                                  if not k.startswith("_") and k not in _HF_META_KEYS})


def _read_hf(directory: Path, root: Optional[Path] = None
             ) -> tuple[ModelArgs, dict[str, torch.Tensor]]:
    """Read an HF directory; with ``root``, every file must resolve inside it (the cache entry)."""
    cfg_path, weights = directory / "config.json", directory / "model.safetensors"
    if not cfg_path.exists():
        raise CheckpointError(f"{directory} has no config.json (Hugging Face layout expected)")
    if not weights.exists():
        raise CheckpointError(f"{directory} has no model.safetensors; download the weights "
                              "into that directory")
    args = read_hf_config(_contained(cfg_path, root, "config.json"))  # before reading gigabytes
    check_regular_file(_contained(weights, root, "model.safetensors"), CheckpointError)
    try:
        from safetensors.torch import load_file

        sd = load_file(str(weights), device="cpu")
    except Exception as exc:
        raise CheckpointError(f"cannot read {weights}: {type(exc).__name__}: {exc}") from exc
    return args, _state_dict(sd, weights)


def _hf_cache_root() -> Path:
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"])
    hf_home = os.environ.get("HF_HOME")
    base = Path(hf_home) if hf_home else Path.home() / ".cache" / "huggingface"
    return base / "hub"


def _cache_entry(model_id: str) -> Path:
    if not _MODEL_ID.fullmatch(model_id) or ".." in model_id:
        raise CheckpointError(f"{model_id!r} is not a Hugging Face model id (owner/name)")
    return _hf_cache_root() / ("models--" + model_id.replace("/", "--"))


def find_in_hf_cache(model_id: str) -> Path:
    """Snapshot directory of ``model_id`` (``owner/name``) in the local HF cache (no network).

    The revision in ``refs/main`` must be a plain name (a commit hash), and the snapshot must
    resolve inside the model's cache entry (``models--owner--name``).

    Raises:
        CheckpointError: the model is not in the cache, or the cache points outside its entry.
    """
    repo = _cache_entry(model_id)
    snapshots = repo / "snapshots"
    ref = repo / "refs" / "main"
    if ref.exists():
        rev = read_regular_file(ref, _MAX_REF_BYTES, CheckpointError).decode("ascii", "replace")
        if not _REVISION.fullmatch(rev.strip()):
            raise CheckpointError(f"{ref} holds {rev.strip()[:80]!r}, not a revision name; the "
                                  "cache is corrupt or crafted")
        cand = snapshots / rev.strip()
        if cand.is_dir():
            return _contained(cand, repo, "snapshot")
    try:
        dirs = sorted((d for d in snapshots.iterdir() if d.is_dir()),
                      key=lambda d: d.stat().st_mtime) if snapshots.is_dir() else []
    except OSError as exc:  # unreadable, or an entry removed while listing
        raise CheckpointError(f"cannot list the snapshots of {model_id!r} in {snapshots}: "
                              f"{exc}") from exc
    if not dirs:
        raise CheckpointError(f"{model_id!r} is neither a file nor a directory, and is not in the "
                              f"Hugging Face cache {repo.parent}; give the checkpoint path")
    return _contained(dirs[-1], repo, "snapshot")


def read_checkpoint(path: Union[str, Path]) -> tuple[ModelArgs, dict[str, torch.Tensor]]:
    """Read constructor args and state_dict from any supported checkpoint location.

    Raises:
        CheckpointError: see :func:`load_model`; also a path that is a FIFO, device or socket.
    """
    p = Path(os.path.expanduser(str(path)))
    if p.is_dir():
        return _read_hf(p)
    if p.exists():
        check_regular_file(p, CheckpointError)
        if p.suffix == ".safetensors":
            return _read_hf(p.parent)
        return _read_official(p)
    if isinstance(path, str) and path.count("/") == 1 and not path.startswith((".", "/", "~")):
        snapshot = find_in_hf_cache(path)
        return _read_hf(snapshot, root=_cache_entry(path))
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
