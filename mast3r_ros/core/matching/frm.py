"""Fast reciprocal nearest neighbours (FRM) between two dense descriptor maps.

Same pairs, in the same order, as MASt3R's ``fast_reciprocal_NNs`` (``mast3r/fast_nn.py``), but

* the walk runs entirely on the descriptors' device (torch index arithmetic, no numpy book-keeping);
  per iteration only a few scalar sizes reach the host (``nonzero``/``unique`` on CUDA synchronise),
  the index arrays themselves never leave the device,
* every nearest-neighbour search is exact and memory-bounded (:mod:`.nn`): a 512x384 pair never
  builds the 196k x 196k distance matrix,
* nearest neighbours are cached per pixel: a pixel queried in an earlier iteration (or by another
  seed) is never searched again.

Semantics (facts of the reference, see ``shared/golden/frm/README.md``):

* Seeds: the grid ``y in range(S//2, H1, S)``, ``x in range(S//2, W1, S)`` (up to ``max_iter``
  iterations), or explicit ``(x, y)`` seeds (exactly **one** iteration). Seeds become flat indices
  ``x + W1 * y``, de-duplicated and sorted.
* One iteration, all active seeds at once: ``q = NN_2(p)``; unless ``ret_basin``, a seed whose ``q``
  equals its previous ``q`` is finished; ``p' = NN_1(q)``; with ``ret_basin`` ``basin[p] = p'``;
  a seed with ``p' == p`` is finished; the others continue from ``p'``.
* ``pixel_tol == 0``: finished seeds are kept (mutual nearest neighbours), unfinished ones dropped.
  ``pixel_tol > 0``: a seed is kept when its back-match ``p'`` lies at Euclidean distance
  ``< pixel_tol`` pixels from it, and the returned image-1 pixel is the **seed**.
* Output: duplicate pairs removed, sorted by flat image-1 index then flat image-2 index.

Deliberate differences from the reference (documented behaviour instead of a crash):

* an int ``subsample`` with ``pixel_tol > 0`` uses the grid as explicit seeds (one iteration), as
  the
  reference's ``extract_correspondences_nonsym`` does; the reference raises on that combination;
* maps with zero pixels, or no seed inside the image (e.g. a 1x1 map with the default grid), give
  empty results instead of errors; NaN/inf descriptors, a descriptor-size mismatch, non-integer or
  out-of-image seeds raise :class:`~mast3r_ros.core.errors.MatchingError`;
* exact ties resolve to the smallest index (``torch.argmax``'s rule, i.e. the reference's
  brute-force backend; its KD-tree backend may break ties differently). All-identical descriptors
  therefore match everything to pixel 0.
"""

from __future__ import annotations

import logging
from numbers import Integral, Real
from typing import Optional, Sequence, Union

import numpy as np
import torch

from mast3r_ros.core.errors import MatchingError
from mast3r_ros.core.matching.nn import DISTANCES, nearest_neighbors, prepare_targets

__all__ = ["fast_reciprocal_nn", "check_descriptor_pair", "grid_seeds", "seed_indices"]

logger = logging.getLogger(__name__)

ArrayLike = Union[np.ndarray, torch.Tensor]


def _as_desc(desc: ArrayLike, name: str) -> torch.Tensor:
    if isinstance(desc, np.ndarray):
        desc = torch.from_numpy(desc)
    if not isinstance(desc, torch.Tensor):
        raise MatchingError(f"{name} must be a torch tensor (H, W, D), got {type(desc).__name__}")
    if desc.ndim != 3:
        raise MatchingError(f"{name} must have shape (H, W, D), got {tuple(desc.shape)}")
    if not desc.is_floating_point():
        raise MatchingError(f"{name} must be a floating-point tensor, got {desc.dtype}")
    return desc


def check_descriptor_pair(desc1: ArrayLike, desc2: ArrayLike) -> tuple[torch.Tensor, torch.Tensor]:
    """Validate two descriptor maps and bring them to one device and dtype.

    Args:
        desc1: (H1, W1, D) float descriptors (torch or numpy).
        desc2: (H2, W2, D) float descriptors.

    Returns:
        The two maps as tensors on ``desc1``'s device, with the promoted floating dtype.

    Raises:
        MatchingError: wrong rank/dtype, different D, D == 0, or NaN/inf values.
    """
    d1, d2 = _as_desc(desc1, "desc1"), _as_desc(desc2, "desc2")
    if d1.shape[-1] != d2.shape[-1]:
        raise MatchingError(f"descriptor sizes differ: desc1 has D={d1.shape[-1]}, desc2 has "
                            f"D={d2.shape[-1]}; both maps must come from the same head")
    if d1.shape[-1] == 0:
        raise MatchingError("descriptors have D=0; expected (H, W, D) with D >= 1")
    dtype = torch.promote_types(d1.dtype, d2.dtype)
    d1, d2 = d1.to(dtype), d2.to(device=d1.device, dtype=dtype)
    for name, d in (("desc1", d1), ("desc2", d2)):
        # one cheap reduction first; the sum is non-finite iff some value is (or on overflow)
        if d.numel() and not bool(torch.isfinite(d.sum())) and not bool(torch.isfinite(d).all()):
            raise MatchingError(f"{name} contains NaN or inf values; mask invalid pixels before "
                                "matching")
    return d1, d2


def grid_seeds(h: int, w: int, subsample: int, device: torch.device) -> torch.Tensor:
    """Flat indices of the seed grid ``y in range(S//2, h, S)``, ``x in range(S//2, w, S)``.

    Returns:
        (n,) int64 sorted flat indices ``x + w * y`` (row-major).
    """
    ys = torch.tensor(range(subsample // 2, h, subsample), dtype=torch.int64, device=device)
    xs = torch.tensor(range(subsample // 2, w, subsample), dtype=torch.int64, device=device)
    return (ys[:, None] * w + xs[None, :]).reshape(-1)


def _as_index_vector(v: ArrayLike, name: str, device: torch.device) -> torch.Tensor:
    if isinstance(v, (list, tuple)):
        v = np.asarray(v)
    if isinstance(v, np.ndarray):
        if v.dtype == bool or not np.issubdtype(v.dtype, np.integer):
            raise MatchingError(f"seed {name} must be integers, got dtype {v.dtype}")
        v = torch.from_numpy(v.astype(np.int64, copy=False))
    if not isinstance(v, torch.Tensor):
        raise MatchingError(f"seed {name} must be an integer array, got {type(v).__name__}")
    if v.is_floating_point() or v.is_complex() or v.dtype == torch.bool:
        raise MatchingError(f"seed {name} must be integers, got dtype {v.dtype}")
    if v.ndim != 1:
        raise MatchingError(f"seed {name} must be 1-D, got shape {tuple(v.shape)}")
    return v.to(device=device, dtype=torch.int64)


def seed_indices(seeds: Sequence[ArrayLike], h: int, w: int, device: torch.device) -> torch.Tensor:
    """Validate explicit ``(x, y)`` seeds and return their sorted unique flat indices.

    Raises:
        MatchingError: not a pair, non-integer, different lengths, or a seed outside the image.
    """
    if isinstance(seeds, (np.ndarray, torch.Tensor)) and seeds.ndim == 2 and seeds.shape[0] == 2:
        seeds = (seeds[0], seeds[1])
    if not isinstance(seeds, (tuple, list)) or len(seeds) != 2:
        raise MatchingError("seeds must be a pair (x, y) of 1-D integer arrays")
    x = _as_index_vector(seeds[0], "x", device)
    y = _as_index_vector(seeds[1], "y", device)
    if x.shape != y.shape:
        raise MatchingError(f"seed x and y differ in length: {x.numel()} vs {y.numel()}")
    if x.numel() and bool(((x < 0) | (x >= w) | (y < 0) | (y >= h)).any()):
        raise MatchingError(f"seeds must lie inside the {w}x{h} (W x H) descriptor map")
    return torch.unique(x + w * y)


def _check_params(subsample: int, pixel_tol: float, dist: str, max_iter: int) -> None:
    if isinstance(subsample, bool) or not isinstance(subsample, Integral) or subsample < 1:
        raise MatchingError(f"subsample must be an int >= 1, got {subsample!r}")
    if isinstance(pixel_tol, bool) or not isinstance(pixel_tol, Real) or not pixel_tol >= 0:
        raise MatchingError(f"pixel_tol must be a number >= 0, got {pixel_tol!r}")
    if dist not in DISTANCES:
        raise MatchingError(f"unknown dist={dist!r}; use one of {DISTANCES}")
    if isinstance(max_iter, bool) or not isinstance(max_iter, Integral) or max_iter < 1:
        raise MatchingError(f"max_iter must be an int >= 1, got {max_iter!r}")


class _CachedNN:
    """Nearest neighbours of source pixels among target pixels, computed once per source pixel."""

    def __init__(self, src: torch.Tensor, tgt: torch.Tensor, dist: str) -> None:
        self.src, self.dist = src, dist
        self.tgt = prepare_targets(tgt, dist)
        self.cache = torch.full((src.shape[0],), -1, dtype=torch.int64, device=src.device)
        self.searched = 0

    def __call__(self, idx: torch.Tensor) -> torch.Tensor:
        uniq = torch.unique(idx)
        missing = uniq[self.cache[uniq] < 0]
        if missing.numel():
            self.cache[missing] = nearest_neighbors(self.src[missing], self.tgt, self.dist)
            self.searched += int(missing.numel())
        return self.cache[idx]


def _walk(p: torch.Tensor, nn12: _CachedNN, nn21: _CachedNN, n_iter: int,
          basin: Optional[torch.Tensor]
          ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Run the reciprocal walk. Returns (p, q, p_before_last_iter, still_active)."""
    q = torch.full_like(p, -1)
    old_p, old_q = p.clone(), q.clone()
    active = torch.ones_like(p, dtype=torch.bool)
    for it in range(n_iter):
        act = active.nonzero().squeeze(1)
        if act.numel() == 0:
            break
        q[act] = nn12(p[act])
        if basin is None:
            active &= old_q != q
            act = active.nonzero().squeeze(1)
        p_new = p.clone()
        p_new[act] = nn21(q[act])
        if basin is not None:
            basin[old_p[act]] = p_new[act].to(basin.dtype)
        active &= old_p != p_new
        p = p_new
        if it + 1 >= n_iter:
            break
        old_p, old_q = p.clone(), q.clone()
    return p, q, old_p, active


def _merge(p: torch.Tensor, q: torch.Tensor, w1: int, w2: int,
           n2: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Unique pairs sorted by (flat p, flat q), as (x, y) int64 pixel arrays."""
    key = torch.unique(p * n2 + q)
    p, q = key // n2, key % n2
    return torch.stack([p % w1, p // w1], 1), torch.stack([q % w2, q // w2], 1)


@torch.no_grad()
def fast_reciprocal_nn(desc1: ArrayLike, desc2: ArrayLike, subsample: int = 8,
                       seeds: Optional[Sequence[ArrayLike]] = None, pixel_tol: float = 0,
                       dist: str = "dot", max_iter: int = 10, ret_basin: bool = False):
    """Reciprocal nearest-neighbour matches between two descriptor maps (MASt3R's FRM).

    Args:
        desc1: (H1, W1, D) float descriptors of image 1 (any device; numpy is accepted).
        desc2: (H2, W2, D) float descriptors of image 2 (moved to ``desc1``'s device).
        subsample: seed grid step S in pixels (used when ``seeds`` is None).
        seeds: optional pair ``(x, y)`` of 1-D integer arrays (numpy or torch) of image-1 pixels
            replacing the grid; then exactly one iteration runs (reference semantics).
        pixel_tol: 0 for strict reciprocity; > 0 keeps a seed whose back-match lies closer than
            ``pixel_tol`` pixels and returns the seed itself as the image-1 pixel.
        dist: ``"dot"`` (largest inner product) or ``"l2"`` (smallest Euclidean distance).
        max_iter: iterations of the walk for grid seeds with ``pixel_tol == 0`` (else 1).
        ret_basin: also return the basin array; this also disables the "same q as before" early
            stop, exactly like the reference.

    Returns:
        ``(xy1, xy2)``: (N, 2) int64 tensors of (x, y) pixels in image 1 / image 2, on ``desc1``'s
        device, sorted by flat image-1 index ``y * W1 + x`` then flat image-2 index. With
        ``ret_basin`` a third value: (H1 * W1 + 1,) int32 tensor, ``basin[p] = p'`` (flat image-1
        indices) for every pixel ``p`` a walk left, -1 elsewhere.

    Raises:
        MatchingError: invalid descriptors, seeds or parameters (see module docstring).
    """
    _check_params(subsample, pixel_tol, dist, max_iter)
    d1, d2 = check_descriptor_pair(desc1, desc2)
    (h1, w1, dim), (h2, w2, _) = d1.shape, d2.shape
    n1, n2, device = h1 * w1, h2 * w2, d1.device
    basin = torch.full((n1 + 1,), -1, dtype=torch.int32, device=device) if ret_basin else None
    if seeds is None:
        p0 = grid_seeds(h1, w1, int(subsample), device)
        n_iter = int(max_iter) if pixel_tol == 0 else 1
    else:
        p0 = seed_indices(seeds, h1, w1, device)
        n_iter = 1
    if p0.numel() == 0 or n2 == 0:
        empty = torch.empty((0, 2), dtype=torch.int64, device=device)
        return (empty, empty.clone(), basin) if ret_basin else (empty, empty.clone())
    f1, f2 = d1.reshape(n1, dim), d2.reshape(n2, dim)
    nn12, nn21 = _CachedNN(f1, f2, dist), _CachedNN(f2, f1, dist)
    p, q, old_p, active = _walk(p0, nn12, nn21, n_iter, basin)
    if pixel_tol > 0:
        dy = (old_p // w1 - p // w1).double()
        dx = (old_p % w1 - p % w1).double()
        keep = torch.sqrt(dy * dy + dx * dx) < float(pixel_tol)
        p = old_p
    else:
        keep = ~active
    xy1, xy2 = _merge(p[keep], q[keep], w1, w2, n2)
    logger.debug("FRM: %d seeds, %d+%d NN searches, %d matches", p0.numel(), nn12.searched,
                 nn21.searched, xy1.shape[0])
    return (xy1, xy2, basin) if ret_basin else (xy1, xy2)
