"""Scene graphs: which image pairs go through the network before global alignment.

Same semantics as the official ``make_pairs`` of MASt3R (``complete``, ``swin-N[-noncyclic]``,
``logwin-N[-noncyclic]``, ``oneref-I``, ``retrieval-Na-k``), but on image *indices*: a pair is a
tuple ``(i, j)`` of ints, and ``symmetrize=True`` appends every reversed pair after the forward
ones.

Example:
    >>> make_pairs(3, "complete", symmetrize=False)
    [(1, 0), (2, 0), (2, 1)]
"""

from __future__ import annotations

import logging
from typing import Optional

import numpy as np

from mast3r_ros.core.errors import ConfigError, InputError

__all__ = ["make_pairs", "farthest_point_sampling", "retrieval_pairs", "parse_scene_graph"]

logger = logging.getLogger(__name__)

Pair = tuple[int, int]


def parse_scene_graph(spec: str) -> tuple[str, list[int], bool]:
    """Split a scene-graph spec into (kind, integer arguments, cyclic).

    Raises:
        ConfigError: unknown kind or malformed numbers.
    """
    parts = spec.split("-")
    kind = parts[0]
    cyclic = True
    if parts[-1] == "noncyclic":
        cyclic = False
        parts = parts[:-1]
    if kind not in ("complete", "swin", "logwin", "oneref", "retrieval"):
        raise ConfigError(f"unknown scene graph {spec!r}; use complete, swin-N, logwin-N, oneref-I "
                          "or retrieval-Na-k")
    try:
        args = [int(p) for p in parts[1:]]
    except ValueError as exc:
        raise ConfigError(f"scene graph {spec!r}: arguments must be integers") from exc
    if kind == "retrieval" and len(args) != 2:
        raise ConfigError(f"scene graph {spec!r}: retrieval needs two numbers, "
                          "e.g. retrieval-20-10")
    if any(a < 0 for a in args):
        raise ConfigError(f"scene graph {spec!r}: arguments must be >= 0")
    return kind, args, cyclic


def _window_pairs(n: int, offsets: list[int], cyclic: bool, both_sides: bool) -> list[Pair]:
    pairs: set[Pair] = set()
    for i in range(n):
        cands = [i + o for o in offsets] + ([i - o for o in offsets] if both_sides else [])
        for j in cands:
            if cyclic:
                j %= n
            if j < 0 or j >= n or j == i:
                continue
            pairs.add((min(i, j), max(i, j)))
    return sorted(pairs)


def farthest_point_sampling(dist: np.ndarray, n: int, seed: Optional[int] = 0,
                            dist_thresh: Optional[float] = None) -> np.ndarray:
    """Farthest point sampling on a distance matrix.

    Args:
        dist: (N, N) distances (``1 - similarity`` for retrieval).
        n: number of samples wanted (at most N).
        seed: seed of the random first pick (the official code draws it with ``np.random``);
            ``None`` starts at index 0.
        dist_thresh: stop early once the largest remaining distance is below this.

    Returns:
        (K,) int64 indices, the first pick first.
    """
    num = dist.shape[0]
    first = 0 if seed is None else int(np.random.default_rng(seed).integers(num))
    picked = [first]
    mind = dist[first].astype(np.float64).copy()
    for _ in range(1, min(n, num)):
        best = int(mind.argmax())
        if dist_thresh is not None and mind[best] < dist_thresh:
            break
        picked.append(best)
        mind = np.minimum(mind, dist[best])
    return np.asarray(picked, dtype=np.int64)


def retrieval_pairs(sim: np.ndarray, num_key: int, top_k: int,
                    seed: Optional[int] = 0) -> tuple[list[Pair], np.ndarray]:
    """Pairs from retrieval similarity: key images (FPS) fully connected, each other image linked to
    its nearest key image, and every image linked to its ``top_k`` most similar images.

    Args:
        sim: (N, N) similarity (higher = more similar).
        num_key: number of key images (0 disables the key-image part).
        top_k: neighbours per image (the official code counts the image itself when it is its own
            most similar entry, as ``argsort`` includes it).
        seed: seed of the first key image.

    Returns:
        (sorted list of (i, j) with i < j, (K,) key image indices).
    """
    dist = 1.0 - np.asarray(sim, dtype=np.float64)
    pairs: set[Pair] = set()
    keys = np.zeros(0, dtype=np.int64)
    if num_key > 0:
        keys = farthest_point_sampling(dist, num_key, seed=seed)
        for a in range(len(keys)):
            for b in range(a + 1, len(keys)):
                i, j = int(keys[a]), int(keys[b])
                pairs.add((min(i, j), max(i, j)))
        key_set = set(keys.tolist())
        nearest = dist[:, keys].argmin(axis=1)
        for i in range(dist.shape[0]):
            if i in key_set:
                continue
            j = int(keys[nearest[i]])
            if i != j:
                pairs.add((min(i, j), max(i, j)))
    if top_k > 0:
        order = np.argsort(dist, axis=1, kind="stable")[:, :top_k]
        for i in range(dist.shape[0]):
            for j in order[i]:
                if int(j) != i:
                    pairs.add((min(i, int(j)), max(i, int(j))))
    return sorted(pairs), keys


def make_pairs(num_images: int, scene_graph: str = "complete", symmetrize: bool = True,
               sim: Optional[np.ndarray] = None, seed: Optional[int] = 0) -> list[Pair]:
    """Image pairs of a scene graph.

    Args:
        num_images: N, images are ``0..N-1`` in sequence order.
        scene_graph: ``complete``, ``swin-N``, ``logwin-N`` (either with ``-noncyclic``),
            ``oneref-I``, ``retrieval-Na-k``.
        symmetrize: append ``(j, i)`` for every ``(i, j)``.
        sim: (N, N) retrieval similarity, required by ``retrieval-*``.
        seed: seed of the first key image of ``retrieval-*``.

    Returns:
        List of (i, j) pairs. ``complete`` gives ``(i, j)`` with ``i > j`` in the official order.

    Raises:
        ConfigError: bad spec. InputError: fewer than 2 images, or a bad ``sim``.
    """
    if num_images < 2:
        raise InputError(f"a scene graph needs at least 2 images, got {num_images}")
    kind, args, cyclic = parse_scene_graph(scene_graph)
    n = num_images
    if kind == "complete":
        pairs = [(i, j) for i in range(n) for j in range(i)]
    elif kind in ("swin", "logwin"):
        win = args[0] if args else 3
        offsets = list(range(1, win + 1)) if kind == "swin" else [2 ** k for k in range(win)]
        pairs = _window_pairs(n, offsets, cyclic, both_sides=(kind == "logwin"))
    elif kind == "oneref":
        ref = args[0] if args else 0
        if ref >= n:
            raise ConfigError(f"scene graph {scene_graph!r}: reference {ref} >= {n} images")
        pairs = [(ref, j) for j in range(n) if j != ref]
    else:
        if sim is None:
            raise InputError("retrieval scene graph needs a similarity matrix (sim)")
        sim = np.asarray(sim)
        if sim.shape != (n, n) or not np.isfinite(sim).all():
            raise InputError(f"sim must be a finite ({n}, {n}) matrix, got shape {sim.shape}")
        pairs, keys = retrieval_pairs(sim, args[0], args[1], seed=seed)
        logger.debug("retrieval scene graph: key images %s", keys.tolist())
    if symmetrize:
        pairs = pairs + [(j, i) for i, j in pairs]
    return pairs
