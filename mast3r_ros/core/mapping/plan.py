"""Plan of a mapping job: image content keys, the scene graph, and which pairs the cache lacks.

``plan -> compute -> gather``: :func:`plan_build` is shared by the local and the Ray paths; only
the compute step differs (:class:`~.pairwise.LocalPairCompute`,
:class:`~.ray_compute.RayPairCompute`), and the gather reads the cache
(:func:`~.gather.gather_problem`). A plan holds O(N) small values (keys, transforms) and the pair
list, never pixels or pair outputs.
"""

from __future__ import annotations

import logging
import tempfile
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Optional, Sequence, Union

import numpy as np

from mast3r_ros.core.config import MappingConfig
from mast3r_ros.core.errors import InputError
from mast3r_ros.core.mapping.cache import PairCache, PairSettings, image_key
from mast3r_ros.core.mapping.images import ImageSource, as_image_source
from mast3r_ros.core.mapping.scene_graph import make_pairs, parse_scene_graph

if TYPE_CHECKING:
    from mast3r_ros.core.mapping.pairwise import PairCompute
    from mast3r_ros.core.model.preprocess import ImageTransform

__all__ = ["MappingPlan", "plan_build", "unique_pairs"]

logger = logging.getLogger(__name__)
Pair = tuple[int, int]


def unique_pairs(pairs: Sequence[Pair]) -> list[Pair]:
    """Unordered pairs in order of first appearance, each in its first orientation.

    Raises:
        InputError: a pair of an image with itself.
    """
    seen: set[frozenset] = set()
    out = []
    for i, j in pairs:
        if i == j:
            raise InputError(f"pair ({i}, {j}) pairs an image with itself")
        if frozenset((i, j)) not in seen:
            seen.add(frozenset((i, j)))
            out.append((int(i), int(j)))
    return out


@dataclass
class MappingPlan:
    """What a build will compute and align.

    Attributes:
        images: where the images are read.
        keys: (N,) content key of each network image (:func:`~.cache.image_key`).
        transforms: (N,) original -> network pixel transform of each image.
        pairs: unordered scene-graph pairs in order of first appearance.
        cache: the pair cache the compute step fills and the gather reads.
    """

    images: ImageSource
    keys: list[str]
    transforms: list[ImageTransform]
    pairs: list[Pair]
    cache: PairCache
    _tmp: Optional[tempfile.TemporaryDirectory] = field(default=None, repr=False)

    @property
    def num_images(self) -> int:
        return len(self.keys)

    @property
    def temporary_cache(self) -> bool:
        """True when the cache is the plan's own temporary directory (no ``cache_dir`` given)."""
        return self._tmp is not None

    def close(self) -> None:
        """Remove the plan's temporary pair cache (none when ``cache_dir`` was given)."""
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None

    def todo(self) -> list[Pair]:
        """Pairs without a cache file, ordered by (min index, max index) so that consecutive
        pairs share images (the compute step's encoder LRU then hits)."""
        missing = [p for p in self.pairs if not self.cache.contains(self.keys[p[0]],
                                                                    self.keys[p[1]])]
        return sorted(missing, key=lambda p: (min(p), max(p)))


def _image_keys(images: ImageSource, image_size: int) -> tuple[list[str], list[ImageTransform]]:
    from mast3r_ros.core.model import preprocess_image

    keys, transforms = [], []
    for k in range(len(images)):
        pre = preprocess_image(images.load(k), image_size)
        keys.append(image_key(pre.rgb))
        transforms.append(pre.transform)
    return keys, transforms


def plan_build(images: Union[ImageSource, Sequence[np.ndarray]], compute: PairCompute,
               cfg: MappingConfig, pairs: Optional[Sequence[Pair]] = None) -> MappingPlan:
    """Content keys of the images, the scene graph and the cache of a build.

    Args:
        images: the original images (an :class:`~.images.ImageSource` or arrays).
        compute: the compute step (gives the cache settings, and the retrieval descriptors for a
            ``retrieval-*`` scene graph).
        cfg: scene graph, subsample, cache directory.
        pairs: explicit pairs instead of ``cfg.scene_graph``.

    Returns:
        The plan. Without ``cfg.cache_dir`` the cache lives in a temporary directory owned by
        the plan.

    Raises:
        InputError: fewer than 2 images, bad pairs. ConfigError: bad scene graph.
    """
    src = as_image_source(images)
    if len(src) < 2:
        raise InputError(f"building a map needs at least 2 images, got {len(src)}")
    settings: PairSettings = compute.settings(cfg.subsample)
    keys, transforms = _image_keys(src, settings.image_size)
    tmp = None
    root = cfg.cache_dir
    if not root:
        tmp = tempfile.TemporaryDirectory(prefix="mast3r-ros-pairs-")
        root = tmp.name
    plan = MappingPlan(src, keys, transforms, [], PairCache(root, settings), tmp)
    graph = cfg.scene_graph if pairs is None else "given pairs"
    if pairs is None:
        kind = parse_scene_graph(cfg.scene_graph)[0]
        sim = None
        if kind == "retrieval":
            desc = compute.descriptors(plan)
            sim = desc @ desc.T
        pairs = make_pairs(len(src), cfg.scene_graph, symmetrize=True, sim=sim)
    plan.pairs = unique_pairs(pairs)
    for i, j in plan.pairs:
        if not (0 <= i < len(src) and 0 <= j < len(src)):
            raise InputError(f"pair ({i}, {j}) refers to an image outside [0, {len(src)})")
    logger.info("plan: %d images, %d pairs (%s), %d already in the cache %s", len(src),
                len(plan.pairs), graph,
                len(plan.pairs) - len(plan.todo()), root)
    return plan
