"""Images -> KeyframeMap: the offline mapping pipeline, as plan -> compute -> gather -> align.

1. :func:`~.plan.plan_build`: image content keys, scene graph, cache lookups;
2. compute: the pairs missing from the cache, streamed into it, locally
   (:class:`~.pairwise.LocalPairCompute`) or on a Ray cluster (:mod:`.ray_compute`);
3. :func:`~.gather.gather_problem`: the cached pairs streamed into the alignment problem, then
   :func:`~.gather.check_connected`;
4. kinematic tree + sparse global alignment; dense depth per keyframe.

Keyframes are stored at the network resolution (the preprocessed image, its optimised K and the
dense depth of the alignment), so the map is self-consistent. Their pixels are produced on demand
(:class:`BuiltPayload`), so the returned map holds only poses and intrinsics; the localizer
backend then adds its global descriptors and encoder features.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Callable, Optional, Sequence, Union

import numpy as np

from mast3r_ros.core.config import MappingConfig
from mast3r_ros.core.mapping.canonical import dense_depth
from mast3r_ros.core.mapping.gather import MissingPairError, check_connected, gather_problem
from mast3r_ros.core.mapping.images import ImageSource
from mast3r_ros.core.mapping.kinematic import spanning_tree
from mast3r_ros.core.mapping.known import AlignmentResult, KnownCameras
from mast3r_ros.core.mapping.pairwise import ComputeStats, LocalPairCompute, PairCompute
from mast3r_ros.core.mapping.plan import MappingPlan, plan_build
from mast3r_ros.core.mapping.problem import RelDepthStore
from mast3r_ros.core.mapping.sparse_ga import sparse_scene_optimize

if TYPE_CHECKING:
    from mast3r_ros.core.map import Keyframe, KeyframeMap, KeyframeRecord
    from mast3r_ros.core.model.engine import InferenceEngine

__all__ = ["BuildResult", "BuiltPayload", "build_map", "compute_pairs"]

logger = logging.getLogger(__name__)
ProgressFn = Callable[[str, int, int], None]


@dataclass
class BuildResult:
    """kmap: the map; alignment: optimiser output; pairs: scene-graph pairs used; compute: what
    the pairwise stage did; timings: seconds per step."""

    kmap: KeyframeMap
    alignment: AlignmentResult
    pairs: list[tuple[int, int]]
    compute: ComputeStats
    timings: dict[str, float] = field(default_factory=dict)


class BuiltPayload:
    """Keyframe pixels of a built map, made on demand (a map's
    :class:`~mast3r_ros.core.map.keyframe.PayloadSource`): the network image from the image
    source, the dense depth from the spilled relative depth and the optimised anchors."""

    def __init__(self, images: ImageSource, image_size: int, res: AlignmentResult,
                 base_focals: np.ndarray, rel_depths: RelDepthStore, subsample: int) -> None:
        self.images, self.image_size, self.res = images, image_size, res
        self.base_focals, self.rel_depths, self.subsample = base_focals, rel_depths, subsample

    def keyframe(self, record: KeyframeRecord) -> Keyframe:
        from mast3r_ros.core.map import Keyframe
        from mast3r_ros.core.model import preprocess_image

        k = record.id
        rgb = preprocess_image(self.images.load(k), self.image_size).rgb
        depth = dense_depth(self.rel_depths.get(k), float(self.base_focals[k]),
                            self.res.anchor_depth[k], float(self.res.K[k, 0, 0]), self.subsample)
        depth[~np.isfinite(depth) | (depth <= 0)] = 0.0
        return Keyframe(k, rgb, record.K, record.T_map_cam, record.stamp, depth=depth)

    def features(self, record: KeyframeRecord) -> None:
        return None


def _known(plan: MappingPlan, K_orig: Optional[np.ndarray],
           poses: Optional[Sequence[Optional[np.ndarray]]], intrinsics_mode: str,
           poses_mode: str) -> KnownCameras:
    known = KnownCameras(intrinsics_mode=intrinsics_mode, poses_mode=poses_mode)
    if K_orig is not None:
        Ks = np.asarray(K_orig)
        for k, tr in enumerate(plan.transforms):
            known.K[k] = tr.scale_intrinsics(np.asarray(Ks[k] if Ks.ndim == 3 else Ks, np.float64))
    if poses is not None:
        known.T_world_cam = {k: np.asarray(T, np.float64) for k, T in enumerate(poses)
                             if T is not None}
    return known


def _as_compute(engine: Union[InferenceEngine, PairCompute], cfg: MappingConfig) -> PairCompute:
    from mast3r_ros.core.model.engine import InferenceEngine

    if isinstance(engine, InferenceEngine):
        return LocalPairCompute(engine, cfg.encodings_in_memory)
    return engine


def compute_pairs(images: Union[ImageSource, Sequence[np.ndarray]],
                  engine: Union[InferenceEngine, PairCompute], cfg: MappingConfig,
                  pairs: Optional[Sequence[tuple[int, int]]] = None,
                  progress: Optional[ProgressFn] = None) -> tuple[MappingPlan, ComputeStats]:
    """Plan + compute: every pair of the scene graph (or of ``pairs``) into ``cfg.cache_dir``.

    The mapper node calls this in the background so that a later :func:`build_map` over the same
    images finds the pairs cached.

    Returns:
        The plan (its cache holds every pair) and what the compute step did.
    """
    compute = _as_compute(engine, cfg)
    plan = plan_build(images, compute, cfg, pairs)
    return plan, compute.run(plan, progress)


def build_map(images: Union[ImageSource, Sequence[np.ndarray]],
              engine: Union[InferenceEngine, PairCompute], cfg: MappingConfig, *,
              stamps: Optional[Sequence[float]] = None, K: Optional[np.ndarray] = None,
              poses: Optional[Sequence[Optional[np.ndarray]]] = None,
              intrinsics_mode: str = "fixed", poses_mode: str = "prior",
              progress: Optional[ProgressFn] = None) -> BuildResult:
    """Build a keyframe map from images.

    Args:
        images: the original images, in capture order (>= 2): an
            :class:`~.images.ImageSource` (files are read when needed) or (H, W, 3) uint8 arrays.
        engine: the network (:func:`~mast3r_ros.core.model.factory.make_engine`; its
            ``model_id``, ``precision`` and ``image_size`` key the pair cache), or a
            :class:`~.pairwise.PairCompute` such as :class:`~.ray_compute.RayPairCompute`.
        cfg: mapping configuration (scene graph, optimiser, cache directory, device).
        stamps: capture times (s), default 0..N-1.
        K: known intrinsics of the ORIGINAL images, (3, 3) for all or (N, 3, 3).
        poses: known camera-to-world poses (e.g. odometry), None entries = unknown.
        intrinsics_mode, poses_mode: see :class:`~.known.KnownCameras`.
        progress: called with (stage, done, total).

    Returns:
        :class:`BuildResult` (map without descriptors: the backend encodes it).

    Raises:
        MappingError: the scene graph falls apart, or the pairwise stage failed.
        InputError / ConfigError: bad images, known cameras or settings.
    """
    from mast3r_ros.core.model import resolve_device

    t0 = time.perf_counter()
    compute = _as_compute(engine, cfg)
    plan = plan_build(images, compute, cfg)
    stats = compute.run(plan, progress)
    t1 = time.perf_counter()
    rel = RelDepthStore(cfg.spill_dir) if cfg.spill_dir else RelDepthStore.on_disk()
    try:
        problem = gather_problem(plan, cfg, rel)
    except MissingPairError as exc:  # a file went bad after the plan looked: recompute once
        logger.warning("%s; computing the missing pairs again", exc)
        again = compute.run(plan, progress)
        stats = ComputeStats(stats.computed + again.computed, stats.cached,
                             stats.seconds + again.seconds)
        problem = gather_problem(plan, cfg, rel)
    check_connected(problem, cfg.matching_conf_thr)
    t2 = time.perf_counter()
    tree = spanning_tree(problem.num_matches.numpy(), cfg.kinematic_mode, problem.n_anchors)
    known = _known(plan, K, poses, intrinsics_mode, poses_mode)
    cb = (lambda stage, d, n, loss: progress(stage, d, n)) if progress else None
    res = sparse_scene_optimize(problem, tree, cfg, known, resolve_device(cfg.device), cb)
    base_focals = problem.base_focals.numpy().copy()
    del problem
    kmap = _lazy_map(plan, res, base_focals, rel, cfg, stamps)
    plan.close()
    t3 = time.perf_counter()
    timings = {"pairwise": t1 - t0, "gather": t2 - t1, "alignment": t3 - t2, "total": t3 - t0}
    logger.info("built a map of %d keyframes (%d pairs) in %.1f s", len(kmap), len(plan.pairs),
                timings["total"])
    return BuildResult(kmap, res, list(plan.pairs), stats, timings)


def _lazy_map(plan: MappingPlan, res: AlignmentResult, base_focals: np.ndarray,
              rel: RelDepthStore, cfg: MappingConfig,
              stamps: Optional[Sequence[float]]) -> KeyframeMap:
    from mast3r_ros.core.map import KeyframeMap, KeyframeRecord, MapMeta

    meta = MapMeta(created=datetime.now(timezone.utc).isoformat(timespec="seconds"),
                   source=f"build-map:sparse_ga:{cfg.scene_graph}")
    kmap = KeyframeMap(meta)
    kmap.source = BuiltPayload(plan.images, plan.cache.settings.image_size, res, base_focals,
                               rel, cfg.subsample)
    for k, tr in enumerate(plan.transforms):
        stamp = float(stamps[k]) if stamps is not None else float(k)
        kmap.add_record(KeyframeRecord(k, tr.net_size[0], tr.net_size[1], res.K[k],
                                       res.T_world_cam[k], stamp, True, False))
    return kmap
