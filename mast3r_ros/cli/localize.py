"""``mast3r-ros localize MAP IMAGE|FOLDER...``: localize images against a map, one JSON line each.

Images are decoded through :mod:`mast3r_ros.core.io` with the pixel limit
(``--max-image-pixels``). An image that cannot be read gives a JSON line with ``success: false``
and the reason, and the command goes on; the exit status is 1 when any image was not localized.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

import numpy as np

from mast3r_ros.cli.common import (
    add_input_options,
    add_localizer_options,
    dump_json,
    input_config,
    localizer_config,
    read_intrinsics,
)
from mast3r_ros.cli.options import finite_float
from mast3r_ros.core.errors import ImageError, InputError
from mast3r_ros.core.io import read_image_file
from mast3r_ros.core.localizer import Localizer
from mast3r_ros.core.types import Frame

NAME = "localize"
HELP = "localize images (files or folders) against a map; prints one JSON line per image"
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")

log = logging.getLogger(__name__)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("map", type=Path, help="map directory")
    p.add_argument("images", type=Path, nargs="+", help="image files or folders of images")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--intrinsics", type=Path, help="file with the 3x3 K of the images")
    g.add_argument("--K", type=finite_float, nargs=4, metavar=("FX", "FY", "CX", "CY"),
                   help="pinhole intrinsics of the images (pixels)")
    add_localizer_options(p)
    add_input_options(p)


def list_images(paths: list[Path]) -> list[Path]:
    """Image files of the arguments (folders expanded, sorted by name).

    Raises:
        InputError: an argument is neither a file nor a folder, or no image was found.
    """
    out: list[Path] = []
    for p in paths:
        if p.is_dir():
            out.extend(sorted(q for q in p.iterdir() if q.suffix.lower() in IMAGE_SUFFIXES))
        elif p.exists():
            out.append(p)  # a FIFO or device is refused when it is read, without blocking
        else:
            raise InputError(f"{p} is neither an image file nor a folder")
    if not out:
        raise InputError(f"no images in {', '.join(map(str, paths))} (looked for "
                         f"{', '.join(IMAGE_SUFFIXES)})")
    return out


def run(args: argparse.Namespace) -> int:
    cfg, max_pixels = localizer_config(args), input_config(args).max_image_pixels
    K = read_intrinsics(args.intrinsics, None if args.K is None else np.array(
        [[args.K[0], 0, args.K[2]], [0, args.K[1], args.K[3]], [0, 0, 1]], dtype=np.float64))
    images = list_images(args.images)  # before loading the model and the map
    loc = Localizer.from_paths(cfg, args.map)
    failures = 0
    for path in images:
        try:
            rgb = read_image_file(path, max_pixels)
        except ImageError as exc:
            log.warning("%s", exc)
            failures += 1
            print(dump_json({"image": str(path), "success": False, "reason": str(exc)}),
                  flush=True)
            continue
        r = loc.localize(Frame(rgb, K))
        failures += not r.success
        print(dump_json({"image": str(path), "success": r.success, "reason": r.reason,
                         "T_map_cam": r.T_map_cam, "covariance": r.covariance,
                         "num_matches": r.num_matches, "num_inliers": r.num_inliers,
                         "reprojection_error_px": r.reprojection_error,
                         "keyframe_ids": r.keyframe_ids, "method": r.method,
                         "backend": r.backend, "timings_s": r.timings.as_dict()}), flush=True)
    return 0 if failures == 0 else 1
