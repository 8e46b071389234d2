"""``mast3r-ros localize MAP IMAGE|FOLDER...``: localize images against a map, one JSON line each."""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from mast3r_ros.cli.common import add_localizer_args, config_from_args, dump_json
from mast3r_ros.core.errors import InputError
from mast3r_ros.core.localizer import Localizer
from mast3r_ros.core.map import read_matrix, read_rgb
from mast3r_ros.core.types import Frame

NAME = "localize"
HELP = "localize images (files or folders) against a map; prints one JSON line per image"
_EXT = (".jpg", ".jpeg", ".png", ".bmp")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("map", type=Path, help="map directory")
    p.add_argument("images", type=Path, nargs="+", help="image files or folders of images")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--intrinsics", type=Path, help="file with the 3x3 K of the images")
    g.add_argument("--K", type=float, nargs=4, metavar=("FX", "FY", "CX", "CY"),
                   help="pinhole intrinsics of the images (pixels)")
    add_localizer_args(p)


def list_images(paths: list[Path]) -> list[Path]:
    """Image files of the arguments (folders expanded, sorted)."""
    out: list[Path] = []
    for p in paths:
        if p.is_dir():
            out.extend(sorted(q for q in p.iterdir() if q.suffix.lower() in _EXT))
        elif p.is_file():
            out.append(p)
        else:
            raise InputError(f"{p} is neither an image file nor a folder")
    return out


def run(args: argparse.Namespace) -> int:
    K = None
    if args.intrinsics is not None:
        K = read_matrix(args.intrinsics, (3, 3))
    elif args.K is not None:
        fx, fy, cx, cy = args.K
        K = np.array([[fx, 0, cx], [0, fy, cy], [0, 0, 1]], dtype=np.float64)
    loc = Localizer.from_paths(config_from_args(args), args.map)
    failures = 0
    for path in list_images(args.images):
        r = loc.localize(Frame(read_rgb(path), K))
        failures += not r.success
        print(dump_json({"image": str(path), "success": r.success, "reason": r.reason,
                         "T_map_cam": r.T_map_cam, "covariance": r.covariance,
                         "num_matches": r.num_matches, "num_inliers": r.num_inliers,
                         "reprojection_error_px": r.reprojection_error,
                         "keyframe_ids": r.keyframe_ids, "method": r.method,
                         "backend": r.backend, "timings_s": r.timings.as_dict()}), flush=True)
    return 0 if failures == 0 else 1
