"""``mast3r-ros build-map SOURCE OUT``: build a map with MASt3R sparse global alignment.

SOURCE is a folder of images (sorted by name; each image read when the mapping needs it) or a
rosbag2 (folder or ``.mcap`` / ``.db3`` file, read with :func:`mast3r_ros.core.io.read_bag`;
``--topic`` picks a ``sensor_msgs/Image`` or ``CompressedImage`` topic; decoded into memory).
Every image is decoded through :mod:`mast3r_ros.core.io` with the pixel limit; frames skipped by
``--stride`` / ``--max-images`` are not decoded at all.

``--ray [ADDRESS]`` runs the pairwise stage on a Ray cluster (one model per worker, results into
the shared ``--cache-dir``; ``--ray.*`` options tune it); without it nothing imports Ray.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Iterable, Optional, TypeVar

import numpy as np

from mast3r_ros.cli.common import (
    LOCALIZER_ALIASES,
    add_input_options,
    add_localizer_options,
    dump_json,
    input_config,
    localizer_config,
    os_errors_as,
    read_intrinsics,
)
from mast3r_ros.cli.localize import IMAGE_SUFFIXES
from mast3r_ros.cli.options import add_alias, add_config_options, config_from_args
from mast3r_ros.core.config import (
    InputConfig,
    LocalizerConfig,
    MappingConfig,
    RayConfig,
    opt,
    validate_fields,
)
from mast3r_ros.core.errors import ConfigError, InputError, MapError
from mast3r_ros.core.io import (
    CompressedImageRecord,
    ImageRecord,
    bag_topics,
    is_bag,
    read_bag,
)
from mast3r_ros.core.mapping.images import ImageArrays, ImageFiles, ImageSource

if TYPE_CHECKING:
    from mast3r_ros.core.mapping.ray_compute import RayPairCompute

NAME = "build-map"
HELP = "build a map from an image folder or a rosbag2 with MASt3R sparse global alignment"

#: short flags of earlier releases -> dotted MappingConfig fields (``--device`` sets both devices)
MAPPING_ALIASES = {
    "--scene-graph": ("mapping.scene_graph",), "--niter1": ("mapping.niter1",),
    "--niter2": ("mapping.niter2",), "--lr1": ("mapping.lr1",), "--lr2": ("mapping.lr2",),
    "--matching-conf-thr": ("mapping.matching_conf_thr",),
    "--kinematic-mode": ("mapping.kinematic_mode",),
    "--shared-intrinsics": ("mapping.shared_intrinsics",), "--cache-dir": ("mapping.cache_dir",),
}
_T = TypeVar("_T")


@dataclass(frozen=True)
class BuildMapOptions:
    """Which images of the source become keyframes."""

    topic: str = opt("", "rosbag2 image topic (default: the first Image/CompressedImage topic)")
    stride: int = opt(1, "keep every N-th image", range=(1, 1_000_000))
    max_images: int = opt(0, "keep at most N images after the stride (0 = all)", range=(0, None))

    def __post_init__(self) -> None:
        validate_fields(self)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("source", type=Path, help="image folder or rosbag2")
    p.add_argument("out", type=Path, help="map directory to write")
    p.add_argument("--intrinsics", type=Path,
                   help="3x3 K of the original images (text file); fixed during the alignment")
    add_config_options(p, BuildMapOptions, title="images")
    mapping = add_config_options(p, MappingConfig, prefix="mapping.", title="alignment",
                                 aliases=MAPPING_ALIASES)
    model = add_localizer_options(p, only=("backend", "model", "map_store"),
                                  aliases={k: v for k, v in LOCALIZER_ALIASES.items()
                                           if k != "--device"})
    add_alias(p, "--device", [o for o in model + mapping
                              if o.name in ("model.device", "mapping.device")])
    add_config_options(p, RayConfig, prefix="ray.", title="Ray (with --ray)",
                       aliases={"--ray-workers": ("ray.num_workers",)})
    p.add_argument("--ray", nargs="?", const="", metavar="ADDRESS",
                   help="run the pairwise stage on Ray: a cluster address (host:port, "
                        "ray://host:port); without ADDRESS, --ray.address, then $RAY_ADDRESS, then "
                        "a Ray instance on this machine")
    add_input_options(p)


def _keep(items: Iterable[_T], opts: BuildMapOptions) -> Iterable[_T]:
    """Every ``stride``-th item, at most ``max_images`` of them (lazily)."""
    kept = 0
    for k, item in enumerate(items):
        if opts.max_images and kept >= opts.max_images:
            return
        if k % opts.stride == 0:
            kept += 1
            yield item


def _folder(folder: Path, opts: BuildMapOptions,
            max_pixels: int) -> tuple[ImageFiles, list[float]]:
    """The kept image files of a folder (read when the mapping needs them) and their indices."""
    files = sorted(f for f in folder.iterdir() if f.suffix.lower() in IMAGE_SUFFIXES)
    kept = list(_keep(enumerate(files), opts))
    if not kept:
        raise InputError(f"no images in {folder} (looked for {', '.join(IMAGE_SUFFIXES)})")
    return ImageFiles([f for _, f in kept], max_pixels), [float(k) for k, _ in kept]


def _read_bag(path: Path, topic: str, opts: Optional[BuildMapOptions] = None,
              max_pixels: Optional[int] = None) -> tuple[list[np.ndarray], list[float]]:
    """RGB images and header stamps (s) of one image topic of a bag (default: the first)."""
    opts = opts or BuildMapOptions()
    limit = max_pixels if max_pixels is not None else InputConfig().max_image_pixels
    if not topic:
        image_types = ("sensor_msgs/msg/Image", "sensor_msgs/msg/CompressedImage")
        found = [t for t, kind in bag_topics(path).items() if kind in image_types]
        if not found:
            raise InputError(f"no image topic in {path}; topics: {sorted(bag_topics(path))}")
        topic = found[0]
    records = (r for r in read_bag(path, topics={topic})
               if isinstance(r, (ImageRecord, CompressedImageRecord)))
    images, stamps = [], []
    for rec in _keep(records, opts):
        images.append(rec.to_rgb(limit))
        stamps.append(rec.stamp)
    return images, stamps


def _read_source(args: argparse.Namespace, opts: BuildMapOptions
                 ) -> tuple[ImageSource, list[float]]:
    max_pixels = input_config(args).max_image_pixels
    if is_bag(args.source):
        images, stamps = _read_bag(args.source, opts.topic, opts, max_pixels)
        return ImageArrays(images), stamps
    if args.source.is_dir():
        return _folder(args.source, opts, max_pixels)
    raise InputError(f"{args.source} is neither an image folder nor a rosbag2 (a directory with "
                     "metadata.yaml, or a .mcap / .db3 file)")


def _ray_compute(args: argparse.Namespace, model_cfg: LocalizerConfig,
                 cfg: MappingConfig) -> RayPairCompute:
    """The pairwise stage on Ray workers (imports Ray; only with ``--ray``)."""
    from mast3r_ros.core.mapping.ray_compute import RayPairCompute

    ray_cfg: RayConfig = config_from_args(RayConfig, args, prefix="ray.",
                                          **({"address": args.ray} if args.ray else {}))
    return RayPairCompute(model_cfg.model, ray_cfg, cfg.encodings_in_memory)


def run(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from mast3r_ros.core.backends import encode_map
    from mast3r_ros.core.backends.mast3r import Mast3rBackend
    from mast3r_ros.core.map import save_map
    from mast3r_ros.core.mapping.build import build_map
    from mast3r_ros.core.model.factory import make_engine

    opts: BuildMapOptions = config_from_args(BuildMapOptions, args)
    model_cfg = localizer_config(args)
    if model_cfg.backend != "mast3r":
        raise ConfigError("build-map needs the mast3r backend (--backend mast3r and a checkpoint)")
    cfg: MappingConfig = config_from_args(MappingConfig, args, prefix="mapping.")
    K = read_intrinsics(args.intrinsics)
    images, stamps = _read_source(args, opts)
    engine = make_engine(model_cfg.model) if args.ray is None else None  # --ray: not the driver
    bars: dict[str, tqdm] = {}

    def progress(stage: str, done: int, total: int) -> None:
        bar = bars.get(stage) or bars.setdefault(stage, tqdm(total=total, desc=stage, leave=False))
        bar.update(done - bar.n)

    with os_errors_as(MapError, f"cannot write the pairwise cache {cfg.cache_dir or ''}"):
        res = build_map(images, engine or _ray_compute(args, model_cfg, cfg), cfg,
                        stamps=stamps, K=K, progress=progress)
    for bar in bars.values():
        bar.close()
    kmap = res.kmap
    encode_map(kmap, Mast3rBackend(engine or make_engine(model_cfg.model)))
    with os_errors_as(MapError, f"cannot write the map to {args.out}"):
        save_map(kmap, args.out, config=model_cfg.map_store)
    print(dump_json({"map": str(args.out), "keyframes": len(kmap), "pairs": len(res.pairs),
                     "pairs_computed": res.compute.computed, "pairs_cached": res.compute.cached,
                     "focals": res.alignment.focals, "loss_coarse": res.alignment.loss_coarse,
                     "loss_fine": res.alignment.loss_fine, "timings": res.timings}))
    return 0
