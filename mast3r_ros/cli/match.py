"""``mast3r-ros match IMG1 IMG2``: run MASt3R on two images and report the matches (JSON)."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from mast3r_ros.cli.common import dump_json
from mast3r_ros.core.config import LocalizerConfig, ModelConfig
from mast3r_ros.core.map import read_rgb
from mast3r_ros.core.types import KeyframeEncoding

NAME = "match"
HELP = "run the MASt3R network on two images and print what it found (matches, confidence)"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("image1", type=Path)
    p.add_argument("image2", type=Path)
    p.add_argument("--checkpoint", default="", help="MASt3R checkpoint (default $MAST3R_CHECKPOINT)")
    p.add_argument("--device", default="auto")
    p.add_argument("--precision", default="fp32", choices=("fp32", "fp16", "bf16"))
    p.add_argument("--image-size", type=int, default=512)


def run(args: argparse.Namespace) -> int:
    from mast3r_ros.core.backends.mast3r import Mast3rBackend
    from mast3r_ros.core.model.factory import make_engine

    cfg = LocalizerConfig(backend="mast3r", model=ModelConfig(
        checkpoint=args.checkpoint, device=args.device, precision=args.precision,
        image_size=args.image_size))
    backend = Mast3rBackend(make_engine(cfg.model))
    rgb1, rgb2 = read_rgb(args.image1), read_rgb(args.image2)
    t0 = time.perf_counter()
    q = backend.encode(rgb1)
    res = backend.match(q, [KeyframeEncoding(0, backend.encode(rgb2), lambda: rgb2)], cfg.matching,
                        geometry=True, query_image=rgb1)
    m = res.pairs[0]
    K = res.geometry.K if res.geometry is not None else None
    print(dump_json({"image1": str(args.image1), "image2": str(args.image2),
                     "num_matches": len(m),
                     "median_confidence": float(np.median(m.score)) if len(m) else None,
                     "focal1_px": float(K[0, 0]) if K is not None else None,
                     "device": str(backend.engine.device), "seconds": time.perf_counter() - t0,
                     "timings_s": q.timings.merge(res.timings).as_dict(),
                     "first_matches": np.concatenate([m.xy_query[:5], m.xy_ref[:5]], axis=1)}))
    return 0
