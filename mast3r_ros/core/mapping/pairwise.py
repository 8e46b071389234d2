"""Pairwise stage of the sparse global alignment: network outputs and matches per image pair.

For a pair (i, j) the decoder + heads run in both directions (i as the first view, then j), giving
i and j in i's frame and j and i in j's frame with confidences and descriptors. Matches: fast
reciprocal NN in both directions on both decodings, merged (unique, sorted by the flat index in
i, then in j), confidence :func:`~mast3r_ros.core.matching.filtering.sparse_ga_confidence`.

:class:`PairComputer` runs pairs and streams each result straight into the
:class:`~.cache.PairCache` (nothing is returned or kept), holding a bounded LRU of encoder outputs
keyed by image content. It is the one implementation of the stage: the local path
(:class:`LocalPairCompute`) and every Ray worker (:mod:`.ray_compute`) use it.
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, Iterable, Iterator, Optional, Protocol, Sequence

import numpy as np
import torch

from mast3r_ros.core.errors import MappingError
from mast3r_ros.core.mapping.cache import PairCache, PairSettings, image_key
from mast3r_ros.core.mapping.pairdata import PairData, PairView
from mast3r_ros.core.matching.filtering import sparse_ga_confidence

if TYPE_CHECKING:
    from mast3r_ros.core.mapping.plan import MappingPlan
    from mast3r_ros.core.model.engine import EncodedImages, InferenceEngine

__all__ = ["match_symmetric", "infer_pair", "engine_settings", "PairComputer", "PairCompute",
           "ComputeStats", "LocalPairCompute"]

logger = logging.getLogger(__name__)
ProgressFn = Callable[[str, int, int], None]


def match_symmetric(desc: Sequence[torch.Tensor], qconf: Sequence[torch.Tensor],
                    settings: PairSettings) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Merged reciprocal matches of both decodings.

    Args:
        desc: (d_ii, d_ji, d_jj, d_ij) descriptors (H, W, D): i and j from the decoding with i
            first, then j and i from the decoding with j first.
        qconf: the matching descriptor confidences (H, W).
        settings: FRM subsample, distance and iterations.

    Returns:
        xy_i (n, 2) int64, xy_j (n, 2) int64, conf (n,) float32, sorted by flat index in i then j.
    """
    from mast3r_ros.core.matching import fast_reciprocal_nn

    def frm(a: torch.Tensor, b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return fast_reciprocal_nn(a, b, subsample=settings.subsample, dist=settings.frm_dist,
                                  max_iter=settings.frm_max_iter)

    d_ii, d_ji, d_jj, d_ij = desc
    q_ii, q_ji, q_jj, q_ij = (q.detach().float().cpu().reshape(-1) for q in qconf)
    wi, (hj, wj) = d_ii.shape[1], d_jj.shape[:2]
    idx_i, idx_j, c_i, c_j = [], [], [], []
    for a, b, qa, qb in ((d_ii, d_ji, q_ii, q_ji), (d_ij, d_jj, q_ij, q_jj)):
        x1, x2 = frm(a, b)
        y2, y1 = frm(b, a)
        fi = torch.cat((x1[:, 1] * wi + x1[:, 0], y1[:, 1] * wi + y1[:, 0])).cpu()
        fj = torch.cat((x2[:, 1] * wj + x2[:, 0], y2[:, 1] * wj + y2[:, 0])).cpu()
        idx_i.append(fi)
        idx_j.append(fj)
        c_i.append(qa[fi])
        c_j.append(qb[fj])
    flat_i, flat_j = torch.cat(idx_i).numpy(), torch.cat(idx_j).numpy()
    _, first = np.unique(flat_i.astype(np.int64) * (hj * wj) + flat_j, return_index=True)
    conf = sparse_ga_confidence(torch.cat(c_i), torch.cat(c_j)).numpy()[first].astype(np.float32)
    flat_i, flat_j = flat_i[first], flat_j[first]
    xy_i = np.stack((flat_i % wi, flat_i // wi), 1).astype(np.int64)
    xy_j = np.stack((flat_j % wj, flat_j // wj), 1).astype(np.int64)
    return xy_i, xy_j, conf


def infer_pair(engine: InferenceEngine, enc_i: EncodedImages, enc_j: EncodedImages, i: int,
               j: int, settings: PairSettings) -> PairData:
    """Network outputs of both decodings + merged matches for the pair (i, j).

    Args:
        engine: the inference engine (its model, device and precision).
        enc_i, enc_j: encodings (batch 1) of both images.
        i, j: image indices.
        settings: FRM settings.
    """
    heads = ("pts3d", "desc")
    o_ii, o_ji = engine.decode(enc_i, enc_j, heads=heads)
    o_jj, o_ij = engine.decode(enc_j, enc_i, heads=heads)
    outs = (o_ii, o_ji, o_jj, o_ij)
    X = [_head(o.pts3d)[0] for o in outs]
    C = [_head(o.conf)[0].float() for o in outs]
    xy_i, xy_j, conf = match_symmetric([_head(o.desc)[0] for o in outs],
                                       [_head(o.desc_conf)[0] for o in outs], settings)
    mean_score = float(torch.stack([c.mean() for c in C]).prod().sqrt().sqrt())

    def np32(t: torch.Tensor) -> np.ndarray:
        return t.detach().float().cpu().numpy()

    view_i = PairView(np32(X[0]), np32(C[0]), np32(X[1]), np32(C[1]), xy_i)
    view_j = PairView(np32(X[2]), np32(C[2]), np32(X[3]), np32(C[3]), xy_j)
    return PairData(i, j, view_i, view_j, conf,
                    np.array([mean_score, float(conf.sum()), len(conf)], dtype=np.float64))


def _head(t: Optional[torch.Tensor]) -> torch.Tensor:
    if t is None:
        raise MappingError("the engine skipped a head the pairwise stage asked for")
    return t


def engine_settings(engine: InferenceEngine, subsample: int) -> PairSettings:
    """The :class:`PairSettings` of pairs computed by ``engine``."""
    return PairSettings(model_id=engine.model_id, precision=engine.precision,
                        image_size=engine.image_size, subsample=subsample)


class PairComputer:
    """Computes pairs into a cache with one engine (one per process / Ray worker).

    Args:
        engine: the network.
        cache: where results go (put-if-absent); its settings must be the engine's.
        max_encodings: encoder outputs kept (LRU, keyed by image content).

    Raises:
        MappingError: the engine is not the one the cache's settings describe.
    """

    def __init__(self, engine: InferenceEngine, cache: PairCache, max_encodings: int = 16) -> None:
        mine = engine_settings(engine, cache.settings.subsample)
        theirs = cache.settings
        if (mine.model_id, mine.precision, mine.image_size) != \
                (theirs.model_id, theirs.precision, theirs.image_size):
            raise MappingError(f"this worker's network (model {mine.model_id[:12]}, "
                               f"{mine.precision}, size {mine.image_size}) is not the planned one "
                               f"(model {theirs.model_id[:12]}, {theirs.precision}, size "
                               f"{theirs.image_size}); give every worker the same checkpoint, "
                               "precision and image size")
        self.engine, self.cache, self.max_encodings = engine, cache, max(2, int(max_encodings))
        self._enc: OrderedDict[str, EncodedImages] = OrderedDict()

    def encoding(self, key: str, load: Callable[[], np.ndarray]) -> EncodedImages:
        """The encoder output of the image with content key ``key`` (``load`` reads it).

        Raises:
            MappingError: the image read now is not the one planned (its key changed).
        """
        from mast3r_ros.core.model import preprocess_image

        enc = self._enc.get(key)
        if enc is not None:
            self._enc.move_to_end(key)
            return enc
        pre = preprocess_image(load(), self.engine.image_size)
        if image_key(pre.rgb) != key:
            raise MappingError("an image changed between planning and computing (content key "
                               f"{key[:12]}...); re-run build-map")
        enc = self.engine.encode(pre.tensor)
        self._enc[key] = enc
        while len(self._enc) > self.max_encodings:
            self._enc.popitem(last=False)
        return enc

    def run(self, i: int, j: int, key_i: str, key_j: str, load_i: Callable[[], np.ndarray],
            load_j: Callable[[], np.ndarray]) -> bool:
        """Compute pair (i, j) into the cache unless it is there; True when this call wrote it."""
        if self.cache.contains(key_i, key_j):
            return False
        enc_i, enc_j = self.encoding(key_i, load_i), self.encoding(key_j, load_j)
        pd = infer_pair(self.engine, enc_i, enc_j, i, j, self.cache.settings)
        return self.cache.put(pd, key_i, key_j)

    def descriptor(self, key: str, load: Callable[[], np.ndarray]) -> np.ndarray:
        """(C,) float32 retrieval descriptor of one image (its encoding stays in the LRU)."""
        return self.engine.global_descriptor(self.encoding(key, load))[0].float().cpu().numpy()


@dataclass(frozen=True)
class ComputeStats:
    """What a compute run did: pairs computed now, pairs already cached, seconds."""

    computed: int
    cached: int
    seconds: float


class PairCompute(Protocol):
    """The compute step of a build: local (:class:`LocalPairCompute`) or Ray
    (:class:`~.ray_compute.RayPairCompute`)."""

    def settings(self, subsample: int) -> PairSettings:
        """The cache settings of the pairs this compute produces."""
        ...

    def descriptors(self, plan: MappingPlan) -> np.ndarray:
        """(N, C) float32 unit retrieval descriptors of the plan's images."""
        ...

    def run(self, plan: MappingPlan, progress: Optional[ProgressFn] = None) -> ComputeStats:
        """Compute every pair of the plan missing from its cache, into the cache."""
        ...


class LocalPairCompute:
    """The pairwise stage in this process, with one engine.

    Args:
        engine: the network (from :func:`~mast3r_ros.core.model.factory.make_engine`).
        max_encodings: encoder outputs kept in memory (LRU).
    """

    def __init__(self, engine: InferenceEngine, max_encodings: int = 16) -> None:
        self.engine, self.max_encodings = engine, max_encodings

    def settings(self, subsample: int) -> PairSettings:
        return engine_settings(self.engine, subsample)

    def descriptors(self, plan: MappingPlan) -> np.ndarray:
        pc = PairComputer(self.engine, plan.cache, self.max_encodings)
        return np.stack([pc.descriptor(plan.keys[k], _loader(plan, k))
                         for k in range(plan.num_images)])

    def run(self, plan: MappingPlan, progress: Optional[ProgressFn] = None) -> ComputeStats:
        t0 = time.perf_counter()
        pc = PairComputer(self.engine, plan.cache, self.max_encodings)
        todo = plan.todo()
        done = 0
        for n, (i, j) in enumerate(todo):
            done += pc.run(i, j, plan.keys[i], plan.keys[j], _loader(plan, i), _loader(plan, j))
            if progress is not None:
                progress("pairs", n + 1, len(todo))
        stats = ComputeStats(done, len(plan.pairs) - len(todo), time.perf_counter() - t0)
        logger.info("pairwise stage: %d pairs computed, %d already cached (%.1f s)",
                    stats.computed, stats.cached, stats.seconds)
        return stats


def _loader(plan: MappingPlan, k: int) -> Callable[[], np.ndarray]:
    return lambda: plan.images.load(k)


def iter_chunks(items: Iterable[tuple[int, int]], size: int) -> Iterator[list[tuple[int, int]]]:
    """Consecutive lists of at most ``size`` items (the last one shorter)."""
    chunk: list[tuple[int, int]] = []
    for it in items:
        chunk.append(it)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk
