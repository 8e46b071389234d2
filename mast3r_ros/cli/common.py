"""Arguments shared by the subcommands: backend/model/pipeline options -> LocalizerConfig."""

from __future__ import annotations

import argparse
import json
import math
from typing import Any

import numpy as np

from mast3r_ros.core.config import (LocalizerConfig, ModelConfig, PoseConfig, RetrievalConfig)

__all__ = ["add_localizer_args", "config_from_args", "to_jsonable", "dump_json"]


def add_localizer_args(p: argparse.ArgumentParser) -> None:
    """Add --backend, --checkpoint, --device, --precision, --image-size, --top-k, PnP options."""
    d, dp = LocalizerConfig(backend="sift"), PoseConfig()
    p.add_argument("--backend", choices=("mast3r", "sift"), default="mast3r",
                   help="matcher backend (sift = classical baseline)")
    p.add_argument("--checkpoint", default="", help="MASt3R checkpoint (default $MAST3R_CHECKPOINT)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N")
    p.add_argument("--precision", default="fp32", choices=("fp32", "fp16", "bf16"))
    p.add_argument("--image-size", type=int, default=d.model.image_size,
                   help="network input long side (pixels)")
    p.add_argument("--top-k", type=int, default=d.retrieval.top_k, help="keyframes per query")
    p.add_argument("--reproj-threshold", type=float, default=dp.ransac_reproj_threshold,
                   help="PnP RANSAC threshold (px)")
    p.add_argument("--min-inliers", type=int, default=dp.min_inliers, help="success gate")


def config_from_args(args: argparse.Namespace) -> LocalizerConfig:
    """LocalizerConfig from the options of :func:`add_localizer_args` (validated)."""
    return LocalizerConfig(
        backend=args.backend,
        model=ModelConfig(checkpoint=args.checkpoint, device=args.device,
                          precision=args.precision, image_size=args.image_size),
        retrieval=RetrievalConfig(top_k=args.top_k),
        pose=PoseConfig(ransac_reproj_threshold=args.reproj_threshold,
                        min_inliers=args.min_inliers))


def to_jsonable(x: Any) -> Any:
    """Convert numpy values / arrays (and non-finite floats -> None) for JSON output."""
    if isinstance(x, dict):
        return {str(k): to_jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [to_jsonable(v) for v in x]
    if isinstance(x, np.ndarray):
        return to_jsonable(x.tolist())
    if isinstance(x, (np.floating, float)):
        return float(x) if math.isfinite(float(x)) else None
    if isinstance(x, (np.integer,)):
        return int(x)
    if isinstance(x, np.bool_):
        return bool(x)
    return x


def dump_json(obj: Any) -> str:
    """One JSON document (numpy-safe, NaN/inf as null)."""
    return json.dumps(to_jsonable(obj), indent=None, sort_keys=False)
