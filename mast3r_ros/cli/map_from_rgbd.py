"""``mast3r-ros map-from-rgbd DATA OUT``: build a map directory from posed RGB-D frames."""

from __future__ import annotations

import argparse
from pathlib import Path

from mast3r_ros.cli.common import add_localizer_args, config_from_args, dump_json
from mast3r_ros.core.backends import create_backend, encode_map
from mast3r_ros.core.map import build_map_from_rgbd, save_map

NAME = "map-from-rgbd"
HELP = "build a map from posed RGB-D frames (7-Scenes layout: map/frame-*.color|depth|pose)"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("data", type=Path, help="folder with map/ and color-/camera-intrinsics.txt")
    p.add_argument("out", type=Path, help="map directory to write")
    p.add_argument("--stride", type=int, default=1, help="keep every N-th frame")
    p.add_argument("--max-frames", type=int, default=None, help="keep at most N frames")
    p.add_argument("--depth-scale", type=float, default=1000.0, help="depth units per metre")
    add_localizer_args(p)


def run(args: argparse.Namespace) -> int:
    kmap = build_map_from_rgbd(args.data, depth_scale=args.depth_scale, stride=args.stride,
                               max_frames=args.max_frames)
    backend = create_backend(config_from_args(args))
    encode_map(kmap, backend)  # global descriptors + local features of every keyframe
    save_map(kmap, args.out)
    enc = backend.encoder_id
    print(dump_json({"map": str(args.out), "keyframes": len(kmap), "backend": backend.name,
                     "descriptor": enc.descriptor, "model_id": enc.model_id}))
    return 0
