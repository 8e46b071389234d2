"""Images -> KeyframeMap: the offline mapping pipeline (scene graph, pairwise stage, canonical
views, kinematic tree, sparse global alignment, dense depth per keyframe).

Keyframes are stored at the network resolution (the preprocessed image, its optimised K and the
dense depth of the alignment), so the map is self-consistent; the localizer backend then adds its
global descriptors and cached encoder features (``backend.prepare_map``).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Callable, Optional, Sequence

import numpy as np
import torch

from mast3r_ros.core.config import MappingConfig
from mast3r_ros.core.errors import InputError
from mast3r_ros.core.mapping.canonical import build_problem, dense_depth
from mast3r_ros.core.mapping.kinematic import spanning_tree
from mast3r_ros.core.mapping.pairwise import PairCache, compute_pairs
from mast3r_ros.core.mapping.scene_graph import make_pairs
from mast3r_ros.core.mapping.sparse_ga import AlignmentResult, KnownCameras, sparse_scene_optimize

__all__ = ["BuildResult", "build_map"]

logger = logging.getLogger(__name__)


@dataclass
class BuildResult:
    """kmap: the map; alignment: optimiser output; pairs: scene-graph pairs used; timings: s."""

    kmap: object
    alignment: AlignmentResult
    pairs: list[tuple[int, int]]
    timings: dict[str, float] = field(default_factory=dict)


def _similarity(engine, tensors: Sequence[torch.Tensor]) -> np.ndarray:
    desc = torch.cat([engine.global_descriptor(engine.encode(t)) for t in tensors]).float().cpu()
    return (desc @ desc.T).numpy()


def _known(pre, cfg: MappingConfig, K_orig, poses, intrinsics_mode, poses_mode) -> KnownCameras:
    known = KnownCameras(intrinsics_mode=intrinsics_mode, poses_mode=poses_mode)
    if K_orig is not None:
        for k, p in enumerate(pre):
            Kk = K_orig[k] if np.asarray(K_orig).ndim == 3 else K_orig
            if Kk is not None:
                known.K[k] = p.transform.scale_intrinsics(np.asarray(Kk, dtype=np.float64))
    if poses is not None:
        known.T_world_cam = {k: np.asarray(T, np.float64) for k, T in enumerate(poses)
                             if T is not None}
    return known


def build_map(images: Sequence[np.ndarray], engine, cfg: MappingConfig, *, model_id: str = "",
              image_size: int = 512, stamps: Optional[Sequence[float]] = None,
              K: Optional[np.ndarray] = None,
              poses: Optional[Sequence[Optional[np.ndarray]]] = None,
              intrinsics_mode: str = "fixed", poses_mode: str = "prior",
              progress: Optional[Callable[[str, int, int], None]] = None) -> BuildResult:
    """Build a keyframe map from images.

    Args:
        images: (H, W, 3) uint8 RGB images, in capture order (>= 2).
        engine: :class:`~mast3r_ros.core.model.InferenceEngine`.
        cfg: mapping configuration (scene graph, optimiser, cache directory, device).
        model_id: checkpoint identity (part of the cache keys and of the map metadata).
        image_size: network long side.
        stamps: capture times (s), default 0..N-1.
        K: known intrinsics of the ORIGINAL images, (3, 3) for all or (N, 3, 3).
        poses: known camera-to-world poses (e.g. odometry), None entries = unknown.
        intrinsics_mode, poses_mode: see :class:`KnownCameras`.
        progress: called with (stage, done, total).

    Returns:
        :class:`BuildResult` (map without descriptors: call ``backend.prepare_map``).
    """
    from mast3r_ros.core.map import Keyframe, KeyframeMap, MapMeta
    from mast3r_ros.core.model import preprocess_image, resolve_device

    if len(images) < 2:
        raise InputError(f"building a map needs at least 2 images, got {len(images)}")
    t0 = time.perf_counter()
    timings: dict[str, float] = {}
    pre = [preprocess_image(np.asarray(im), image_size) for im in images]
    tensors = [p.tensor for p in pre]
    sim = _similarity(engine, tensors) if cfg.scene_graph.startswith("retrieval") else None
    pairs = make_pairs(len(images), cfg.scene_graph, symmetrize=True, sim=sim)
    cache = PairCache(cfg.cache_dir, model_id, cfg.subsample) if cfg.cache_dir else None
    cb = (lambda d, n: progress("pairs", d, n)) if progress else None
    pair_data = compute_pairs(engine, tensors, pairs, cfg.subsample, cache, cb)
    timings["pairwise"] = time.perf_counter() - t0
    t1 = time.perf_counter()
    problem = build_problem(len(images), pair_data, cfg.subsample)
    tree = spanning_tree(problem.num_matches.numpy(), cfg.kinematic_mode, problem.n_anchors)
    known = _known(pre, cfg, K, poses, intrinsics_mode, poses_mode)
    cb2 = (lambda stage, d, n, loss: progress(stage, d, n)) if progress else None
    res = sparse_scene_optimize(problem, tree, cfg, known, resolve_device(cfg.device), cb2)
    timings["alignment"] = time.perf_counter() - t1
    kfs = []
    for k, p in enumerate(pre):
        depth = dense_depth(problem.views[k], res.anchor_depth[k], float(res.K[k, 0, 0]),
                            cfg.subsample)
        depth[~np.isfinite(depth) | (depth <= 0)] = 0.0
        stamp = float(stamps[k]) if stamps is not None else float(k)
        kfs.append(Keyframe(k, p.rgb, res.K[k], res.T_world_cam[k], stamp, depth=depth))
    meta = MapMeta(created=datetime.now(timezone.utc).isoformat(timespec="seconds"),
                   source=f"build-map:sparse_ga:{cfg.scene_graph}")
    timings["total"] = time.perf_counter() - t0
    logger.info("built a map of %d keyframes (%d pairs) in %.1f s", len(kfs), len(pair_data),
                timings["total"])
    return BuildResult(KeyframeMap(meta, kfs), res, pairs, timings)
