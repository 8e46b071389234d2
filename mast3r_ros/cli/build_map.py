"""``mast3r-ros build-map SOURCE OUT``: build a map with MASt3R sparse global alignment.

SOURCE is a folder of images (sorted by name, read when needed) or a rosbag2 (folder or ``.mcap`` /
``.db3`` file, read with ``rosbags``; ``--topic`` picks a ``sensor_msgs/Image`` or
``CompressedImage`` topic).

``--ray [ADDRESS]`` runs the pairwise stage on a Ray cluster (one model per worker, results into
the shared ``--cache-dir``); without it nothing imports Ray.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from mast3r_ros.cli.common import add_localizer_args, config_from_args, dump_json
from mast3r_ros.core.config import MappingConfig, ModelConfig, RayConfig
from mast3r_ros.core.errors import ConfigError, ImageError, InputError
from mast3r_ros.core.mapping.images import ImageArrays, ImageFiles, ImageSource

if TYPE_CHECKING:
    from mast3r_ros.core.mapping.ray_compute import RayPairCompute

NAME = "build-map"
HELP = "build a map from an image folder or a rosbag2 with MASt3R sparse global alignment"
_EXT = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff"}


def add_arguments(p: argparse.ArgumentParser) -> None:
    d = MappingConfig()
    p.add_argument("source", type=Path, help="image folder or rosbag2")
    p.add_argument("out", type=Path, help="map directory to write")
    p.add_argument("--topic", default="",
                   help="rosbag2 image topic (default: the first image topic)")
    p.add_argument("--stride", type=int, default=1, help="keep every N-th image")
    p.add_argument("--max-images", type=int, default=0, help="keep at most N images (0 = all)")
    p.add_argument("--intrinsics", type=Path, default=None,
                   help="3x3 K of the original images (text file); fixed during the alignment")
    p.add_argument("--scene-graph", default=d.scene_graph, help="complete, swin-N, logwin-N, "
                   "oneref-I, retrieval-Na-k")
    p.add_argument("--niter1", type=int, default=d.niter1, help="coarse-stage iterations")
    p.add_argument("--niter2", type=int, default=d.niter2, help="refinement iterations (0 = skip)")
    p.add_argument("--lr1", type=float, default=d.lr1)
    p.add_argument("--lr2", type=float, default=d.lr2)
    p.add_argument("--matching-conf-thr", type=float, default=d.matching_conf_thr)
    p.add_argument("--kinematic-mode", default=d.kinematic_mode)
    p.add_argument("--shared-intrinsics", action="store_true")
    p.add_argument("--cache-dir", default="", help="pairwise cache directory (reused across runs "
                   "and machines)")
    dr = RayConfig()
    p.add_argument("--ray", nargs="?", const="auto-or-local", default=None, metavar="ADDRESS",
                   help="run the pairwise stage on Ray: a cluster address (host:port, "
                   "ray://host:port), or nothing for $RAY_ADDRESS / a local instance")
    p.add_argument("--ray-workers", type=int, default=dr.num_workers,
                   help="Ray workers, one model each (0 = one per GPU of the cluster)")
    add_localizer_args(p)


def _decode_image(msg, typename: str) -> np.ndarray:
    import cv2

    if typename.endswith("CompressedImage"):
        bgr = cv2.imdecode(np.frombuffer(bytes(msg.data), np.uint8), cv2.IMREAD_COLOR)
        if bgr is None:
            raise ImageError("cannot decode a CompressedImage")
        return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
    enc, h, w = msg.encoding.lower(), int(msg.height), int(msg.width)
    ch = {"rgb8": 3, "bgr8": 3, "mono8": 1, "rgba8": 4, "bgra8": 4}.get(enc)
    if ch is None:
        raise ImageError(f"unsupported image encoding {msg.encoding!r}; use rgb8/bgr8/mono8")
    buf = np.frombuffer(bytes(msg.data), np.uint8)
    if int(msg.step) < w * ch or buf.size < h * int(msg.step):
        raise ImageError(f"image data too short for {w}x{h} {enc} with step {msg.step}")
    img = buf[:h * int(msg.step)].reshape(h, int(msg.step))[:, :w * ch].reshape(h, w, ch)
    if enc == "mono8":
        return np.repeat(img, 3, axis=2)
    img = img[..., :3]
    return np.ascontiguousarray(img[..., ::-1] if enc.startswith("bgr") else img)


def _read_bag(path: Path, topic: str) -> tuple[list[np.ndarray], list[float]]:
    from rosbags.highlevel import AnyReader
    from rosbags.typesys import Stores, get_typestore

    images, stamps = [], []
    with AnyReader([path], default_typestore=get_typestore(Stores.ROS2_KILTED)) as reader:
        conns = [c for c in reader.connections
                 if c.msgtype in ("sensor_msgs/msg/Image", "sensor_msgs/msg/CompressedImage")
                 and (not topic or c.topic == topic)]
        if not conns:
            raise InputError(f"no image topic {topic or ''} in {path}; topics: "
                             f"{sorted({c.topic for c in reader.connections})}")
        conns = [c for c in conns if c.topic == conns[0].topic]
        for conn, _, raw in reader.messages(connections=conns):
            msg = reader.deserialize(raw, conn.msgtype)
            images.append(_decode_image(msg, conn.msgtype))
            stamps.append(msg.header.stamp.sec + 1e-9 * msg.header.stamp.nanosec)
    return images, stamps


def _images(args: argparse.Namespace) -> tuple[ImageSource, list[float]]:
    """The selected images (a folder's files stay on disk; a bag is decoded into memory)."""
    keep = slice(None, None, max(args.stride, 1))
    if args.source.is_dir() and not (args.source / "metadata.yaml").exists():
        files = sorted(f for f in args.source.iterdir() if f.suffix.lower() in _EXT)
        stamps = [float(k) for k in range(len(files))][keep]  # the frame index
        files = files[keep]
        n = args.max_images or len(files)
        return ImageFiles(files[:n]), stamps[:n]
    arrays, stamps = _read_bag(args.source, args.topic)
    arrays, stamps = arrays[keep], stamps[keep]
    n = args.max_images or len(arrays)
    return ImageArrays(arrays[:n]), stamps[:n]


def _ray_compute(args: argparse.Namespace, model_cfg: ModelConfig,
                 cfg: MappingConfig) -> RayPairCompute:
    """The pairwise stage on Ray workers (imports Ray; only with ``--ray``)."""
    from mast3r_ros.core.mapping.ray_compute import RayPairCompute

    address = "" if args.ray == "auto-or-local" else args.ray
    return RayPairCompute(model_cfg, RayConfig(address=address, num_workers=args.ray_workers),
                          cfg.encodings_in_memory)


def run(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from mast3r_ros.core.backends import encode_map
    from mast3r_ros.core.backends.mast3r import Mast3rBackend
    from mast3r_ros.core.map import read_matrix, save_map
    from mast3r_ros.core.mapping.build import build_map
    from mast3r_ros.core.model.factory import make_engine

    if args.backend != "mast3r":
        raise ConfigError("build-map needs the mast3r backend (--backend mast3r and a checkpoint)")
    if not args.source.exists():
        raise InputError(f"{args.source} does not exist")
    images, stamps = _images(args)
    cfg = MappingConfig(scene_graph=args.scene_graph, niter1=args.niter1, niter2=args.niter2,
                        lr1=args.lr1, lr2=args.lr2, matching_conf_thr=args.matching_conf_thr,
                        kinematic_mode=args.kinematic_mode,
                        shared_intrinsics=args.shared_intrinsics,
                        cache_dir=args.cache_dir, device=args.device)
    K = read_matrix(args.intrinsics, (3, 3)) if args.intrinsics else None
    model_cfg = config_from_args(args).model
    engine = make_engine(model_cfg) if args.ray is None else None  # --ray: none on the driver
    bars: dict[str, tqdm] = {}

    def progress(stage: str, done: int, total: int) -> None:
        bar = bars.get(stage) or bars.setdefault(stage, tqdm(total=total, desc=stage, leave=False))
        bar.update(done - bar.n)

    res = build_map(images, engine or _ray_compute(args, model_cfg, cfg), cfg, stamps=stamps,
                    K=K, progress=progress)
    for bar in bars.values():
        bar.close()
    encode_map(res.kmap, Mast3rBackend(engine or make_engine(model_cfg)))
    save_map(res.kmap, args.out)
    print(dump_json({"map": str(args.out), "keyframes": len(res.kmap), "pairs": len(res.pairs),
                     "pairs_computed": res.compute.computed, "pairs_cached": res.compute.cached,
                     "focals": res.alignment.focals, "loss_coarse": res.alignment.loss_coarse,
                     "loss_fine": res.alignment.loss_fine, "timings": res.timings}))
    return 0
