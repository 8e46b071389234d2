"""``mast3r-ros encode-map MAP``: give every keyframe of a saved map an encoding of a backend and
save it (in place; only the new encodings are appended). Also migrates maps of earlier releases
(schema 1) to the current store, since saving always writes the current schema."""

from __future__ import annotations

import argparse
from pathlib import Path

from mast3r_ros.cli.common import add_localizer_options, dump_json, localizer_config, os_errors_as
from mast3r_ros.core.backends import create_backend, encode_map
from mast3r_ros.core.errors import MapError
from mast3r_ros.core.map import load_map, save_map

NAME = "encode-map"
HELP = ("encode the keyframes of a map with a backend (global descriptors + local features) and "
        "save it in place; migrates maps of earlier releases")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("map", type=Path, help="map directory (written by map-from-rgbd, build-map or "
                                          "a mapper's save_map)")
    add_localizer_options(p, only=("backend", "model", "sift", "map_store"))


def run(args: argparse.Namespace) -> int:
    cfg = localizer_config(args)
    kmap = load_map(args.map, config=cfg.map_store)
    backend = create_backend(cfg)
    encoded = encode_map(kmap, backend)
    with os_errors_as(MapError, f"cannot write the map to {args.map}"):
        save_map(kmap, args.map, config=cfg.map_store)
    print(dump_json({"map": str(args.map), "keyframes": len(kmap), "encoded": encoded,
                     "backend": backend.name, "model_id": backend.encoder_id.model_id}))
    return 0
