"""``mast3r-ros map-from-rgbd DATA OUT``: build a map directory from posed RGB-D frames."""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path

from mast3r_ros.cli.common import add_localizer_options, dump_json, localizer_config, os_errors_as
from mast3r_ros.cli.options import add_config_options, config_from_args
from mast3r_ros.core.backends import create_backend, encode_map
from mast3r_ros.core.config import opt, validate_fields
from mast3r_ros.core.errors import InputError, MapError
from mast3r_ros.core.map import build_map_from_rgbd, save_map

NAME = "map-from-rgbd"
HELP = "build a map from posed RGB-D frames (7-Scenes layout: map/frame-*.color|depth|pose)"


@dataclass(frozen=True)
class RgbdImportOptions:
    """Which frames to read and how to read depth."""

    stride: int = opt(1, "keep every N-th frame", range=(1, 1_000_000))
    max_frames: int = opt(0, "keep at most N frames after the stride (0 = all)", range=(0, None))
    depth_scale: float = opt(1000.0, "depth PNG units per metre (1000 = millimetres); must be "
                                     "positive", range=(1e-6, 1e9))

    def __post_init__(self) -> None:
        validate_fields(self)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("data", type=Path, help="folder with map/ and color-/camera-intrinsics.txt")
    p.add_argument("out", type=Path, help="map directory to write")
    add_config_options(p, RgbdImportOptions, title="frames")
    add_localizer_options(p, only=("backend", "model", "sift", "map_store"))


def run(args: argparse.Namespace) -> int:
    opts: RgbdImportOptions = config_from_args(RgbdImportOptions, args)
    cfg = localizer_config(args)
    with os_errors_as(InputError, f"cannot read the RGB-D frames in {args.data}"):
        kmap = build_map_from_rgbd(args.data, depth_scale=opts.depth_scale, stride=opts.stride,
                                   max_frames=opts.max_frames or None)
    backend = create_backend(cfg)
    encode_map(kmap, backend)  # global descriptors + local features of every keyframe
    with os_errors_as(MapError, f"cannot write the map to {args.out}"):
        save_map(kmap, args.out, config=cfg.map_store)
    print(dump_json({"map": str(args.out), "keyframes": len(kmap), "backend": backend.name,
                     "descriptor": backend.encoder_id.descriptor,
                     "model_id": backend.encoder_id.model_id}))
    return 0
