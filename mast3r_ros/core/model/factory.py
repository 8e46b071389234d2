"""One way to get a network: :func:`make_engine` turns a :class:`ModelConfig` into an
:class:`~mast3r_ros.core.model.engine.InferenceEngine` holding the loaded weights, their identity,
the device and the precision. The localizer backend, the mapper, the CLI and the pairwise stage
all use it, so the checkpoint is loaded once per process and resolved the same way everywhere.
"""

from __future__ import annotations

import hashlib
import logging
import os
from pathlib import Path
from typing import Mapping, Optional

from mast3r_ros.core.config import ModelConfig
from mast3r_ros.core.errors import CheckpointError
from mast3r_ros.core.model.device import resolve_device
from mast3r_ros.core.model.engine import InferenceEngine
from mast3r_ros.core.model.weights import load_model

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


def checkpoint_id(path: Path) -> str:
    """sha256 of a checkpoint file (or of the sorted files of a Hugging Face directory).

    Raises:
        CheckpointError: the file cannot be read.
    """
    files = sorted(p for p in path.iterdir() if p.is_file()) if path.is_dir() else [path]
    h = hashlib.sha256()
    try:
        for f in files:
            with open(f, "rb") as fh:
                for chunk in iter(lambda: fh.read(1 << 22), b""):
                    h.update(chunk)
    except OSError as exc:
        raise CheckpointError(f"cannot read checkpoint {path}: {exc}") from exc
    return h.hexdigest()


def make_engine(cfg: ModelConfig) -> InferenceEngine:
    """Load the configured checkpoint onto the configured device and precision.

    Args:
        cfg: checkpoint (or ``$MAST3R_CHECKPOINT``), device (``auto`` = CUDA when available),
            precision and network input size.

    Returns:
        An engine whose ``model_id`` is the checkpoint's sha256 (or the HF cache id when the
        checkpoint is not a local path) and whose ``image_size`` is ``cfg.image_size``.

    Raises:
        CheckpointError: no checkpoint configured, missing, unreadable or invalid.
        ConfigError: unknown device or precision.
    """
    path = resolve_checkpoint(cfg)
    device = resolve_device(cfg.device)
    model = load_model(path, device)
    p = Path(os.path.expanduser(path))
    model_id = checkpoint_id(p) if p.exists() else str(path)
    log.info("loaded MASt3R checkpoint %s (id %s...) on %s", path, model_id[:12], device)
    return InferenceEngine(model, device, cfg.precision, model_id=model_id,
                           image_size=cfg.image_size)
