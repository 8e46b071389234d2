"""One way to get a network: :func:`make_engine` turns a :class:`ModelConfig` into an
:class:`~mast3r_ros.core.model.engine.InferenceEngine` holding the loaded weights, their identity,
the device and the precision. The localizer backend, the mapper, the CLI and the pairwise stage
all use it, so the checkpoint is loaded once per process and resolved the same way everywhere.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
from pathlib import Path
from typing import Mapping, Optional

from mast3r_ros.core.config import ModelConfig
from mast3r_ros.core.errors import CheckpointError
from mast3r_ros.core.model.device import resolve_device
from mast3r_ros.core.model.engine import InferenceEngine
from mast3r_ros.core.model.weights import find_in_hf_cache, load_model

__all__ = ["CHECKPOINT_ENV", "resolve_checkpoint", "checkpoint_id", "make_engine"]

log = logging.getLogger(__name__)

#: environment variable naming the checkpoint when ``ModelConfig.checkpoint`` is empty
CHECKPOINT_ENV = "MAST3R_CHECKPOINT"


def resolve_checkpoint(cfg: ModelConfig, environ: Optional[Mapping[str, str]] = None) -> str:
    """The checkpoint path or id to load: ``cfg.checkpoint``, else ``$MAST3R_CHECKPOINT``.

    Raises:
        CheckpointError: neither is set.
    """
    env = os.environ if environ is None else environ
    path = cfg.checkpoint or env.get(CHECKPOINT_ENV, "")
    if not path:
        raise CheckpointError("backend 'mast3r' needs a checkpoint: set model.checkpoint or "
                              f"${CHECKPOINT_ENV} (MASt3R_ViTLarge_BaseDecoder_512_catmlpdpt_"
                              "metric.pth); use backend 'sift' only for the classical baseline")
    return path


def _files(path: Path) -> list[Path]:
    return sorted(p for p in path.iterdir() if p.is_file()) if path.is_dir() else [path]


def _signature(files: list[Path]) -> str:
    """What must not change for a cached hash to stay valid: real paths, sizes, mtimes."""
    parts = []
    for f in files:
        st = f.stat()
        parts.append(f"{f.resolve()}|{st.st_size}|{st.st_mtime_ns}")
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()


def _hash_cache_file() -> Path:
    root = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(root) / "mast3r_ros" / "checkpoint_ids.json"


def _read_cache(path: Path) -> dict[str, str]:
    try:
        if path.is_file() and path.stat().st_size < (1 << 20):
            data = json.loads(path.read_text())
            if isinstance(data, dict):
                return {str(k): str(v) for k, v in data.items()}
    except (OSError, ValueError):
        pass
    return {}


def _write_cache(path: Path, entries: dict[str, str]) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
        with os.fdopen(fd, "w") as f:
            json.dump(dict(list(entries.items())[-64:]), f)
        os.replace(tmp, path)
    except OSError as exc:  # read-only home etc.: the hash is just computed again next time
        log.debug("cannot write the checkpoint hash cache %s: %s", path, exc)


def checkpoint_id(path: Path, cache: bool = True) -> str:
    """sha256 of a checkpoint file (or of the sorted files of a Hugging Face directory).

    Hashing the 2.75 GB release takes seconds, so the result is remembered in
    ``$XDG_CACHE_HOME/mast3r_ros/checkpoint_ids.json`` under the files' real paths, sizes and
    modification times; any change to them means hashing again.

    Args:
        path: checkpoint file or directory.
        cache: use and update the cache.

    Raises:
        CheckpointError: the file cannot be read.
    """
    try:
        files = _files(path)
        key = _signature(files)
    except OSError as exc:
        raise CheckpointError(f"cannot read checkpoint {path}: {exc}") from exc
    store = _hash_cache_file()
    entries = _read_cache(store) if cache else {}
    if key in entries:
        return entries[key]
    h = hashlib.sha256()
    try:
        for f in files:
            with open(f, "rb") as fh:
                for chunk in iter(lambda: fh.read(1 << 22), b""):
                    h.update(chunk)
    except OSError as exc:
        raise CheckpointError(f"cannot read checkpoint {path}: {exc}") from exc
    digest = h.hexdigest()
    if cache:
        entries[key] = digest
        _write_cache(store, entries)
    return digest


def make_engine(cfg: ModelConfig) -> InferenceEngine:
    """Load the configured checkpoint onto the configured device and precision.

    Args:
        cfg: checkpoint (or ``$MAST3R_CHECKPOINT``), device (``auto`` = CUDA when available),
            precision and network input size.

    Returns:
        An engine whose ``model_id`` is the checkpoint's sha256 (for an HF cache id: of the
        snapshot's files, so another snapshot is another model) and whose ``image_size`` is
        ``cfg.image_size``.

    Raises:
        CheckpointError: no checkpoint configured, missing, unreadable or invalid.
        ConfigError: unknown device or precision.
    """
    path = resolve_checkpoint(cfg)
    device = resolve_device(cfg.device)
    model = load_model(path, device)
    p = Path(os.path.expanduser(path))
    model_id = checkpoint_id(p if p.exists() else find_in_hf_cache(str(path)))
    log.info("loaded MASt3R checkpoint %s (id %s...) on %s", path, model_id[:12], device)
    return InferenceEngine(model, device, cfg.precision, model_id=model_id,
                           image_size=cfg.image_size)
