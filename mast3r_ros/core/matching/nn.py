"""Exact, memory-bounded nearest-neighbour search between descriptor sets.

The search never materialises the full (M, N) similarity matrix. Targets are cut into tiles of
``cols`` columns and queries into blocks of ``rows``; one (rows x cols) score tile at a time is
computed with one matrix product. Of each tile only the maxima of 64 *sub-blocks* are kept:
sub-block ``k`` of a tile holds the columns ``k, k + L, ..., k + 63 L`` (``L = cols / 64``), so the
reduction runs across contiguous lanes (``view(rows, 64, L).amax(1)``), several times cheaper on
CPU than ``max`` with indices or a reduction along the innermost axis. At the end, the winning
sub-block of every query is re-scored (64 targets) and its arg-max taken.

Ties: the result is the first (smallest) index among the maxima, like ``torch.argmax``. Ties inside
a sub-block are resolved by the re-scoring ``argmax``; when a query's maximum is reached in several
sub-blocks (duplicated descriptors), that query is recomputed with a plain blocked first-index
arg-max.

Distances:
    * ``"dot"``: largest inner product ``q . t``.
    * ``"l2"``: smallest Euclidean distance ``|q - t|``, computed as the largest ``2 q.t - |t|^2``
      (the same ordering; the matrix-product form ``torch.cdist`` itself uses on large inputs).
"""

from __future__ import annotations

import logging
import math
import warnings
from dataclasses import dataclass
from typing import Union

import torch

from mast3r_ros.core.errors import MatchingError

__all__ = ["DISTANCES", "ReducedPrecisionWarning", "TargetSet", "nearest_neighbors",
           "prepare_targets"]

logger = logging.getLogger(__name__)

DISTANCES = ("dot", "l2")
_SUB = 64  # targets per sub-block (the re-scoring cost per query)
# CPU tile: 1024 x 2048 float32 = 8 MB (measured best on 2 idle Xeon threads: 1.1-1.2 s for a
# 512x384 FRM vs 1.4-1.7 s with 32-128 MB tiles; on a heavily loaded machine larger tiles, i.e.
# fewer thread barriers, win instead).
_TILE_COLS_CPU = 2048
_TILE_ROWS_CPU = 1024
_TILE_COLS_GPU = 65536
_DEFAULT_BLOCK_BYTES = 256 * 2**20  # bound on one score tile


class ReducedPrecisionWarning(UserWarning):
    """float32 matrix products run in reduced precision (TF32 / bf16): near-ties may differ from
    the float32 reference. Python's warning filters decide how often it shows (by default once per
    call site); ``warnings.simplefilter("ignore", ReducedPrecisionWarning)`` silences it."""


@dataclass(frozen=True)
class TargetSet:
    """Targets prepared for :func:`nearest_neighbors`.

    Attributes:
        data: (n_pad, D') rows ``t`` (``"dot"``) or ``[t, |t|^2]`` (``"l2"``), zero rows after
            ``n``; ``n_pad`` is a multiple of ``cols``.
        n: number of real targets (padding rows never win: their scores are set to -inf).
        dist: the distance the rows were prepared for.
        cols: tile width (a multiple of 64).
    """

    data: torch.Tensor
    n: int
    dist: str
    cols: int


def prepare_targets(targets: torch.Tensor, dist: str) -> TargetSet:
    """Prepare a (N, D) target set once for repeated :func:`nearest_neighbors` calls."""
    if dist not in DISTANCES:
        raise MatchingError(f"unknown dist={dist!r}; use one of {DISTANCES}")
    n, dim = targets.shape
    wide = _TILE_COLS_CPU if targets.device.type == "cpu" else _TILE_COLS_GPU
    cols = min(wide, max(1, math.ceil(n / _SUB)) * _SUB)
    data = targets.new_zeros((max(1, math.ceil(n / cols)) * cols, dim + (dist == "l2")))
    data[:n, :dim] = targets
    if dist == "l2":
        data[:n, -1] = (targets * targets).sum(-1)
    return TargetSet(data, n, dist, cols)


def _prepare_queries(queries: torch.Tensor, dist: str) -> torch.Tensor:
    if dist == "dot":
        return queries
    minus_one = torch.full_like(queries[:, :1], -1.0)
    return torch.cat([2.0 * queries, minus_one], dim=-1)


def _check_matmul_precision(device: torch.device) -> None:
    """Warn (:class:`ReducedPrecisionWarning`) when float32 products may run in reduced precision
    (TF32 / bf16). No state of its own: the ``warnings`` filters of the caller's process decide
    whether a repeat is shown."""
    reduced = torch.get_float32_matmul_precision() != "highest" or (
        device.type == "cuda" and torch.backends.cuda.matmul.allow_tf32)
    if reduced:
        warnings.warn("float32 matmul precision is reduced (TF32/bf16); nearest neighbours may "
                      "differ from the float32 reference on near-ties. Use "
                      "torch.set_float32_matmul_precision('highest') for exact results.",
                      ReducedPrecisionWarning, stacklevel=3)


def _tiles(q: torch.Tensor, ts: TargetSet, scratch: torch.Tensor):
    """Yield (first column, score tile (nq, cols)) with padding columns at -inf."""
    nq = q.shape[0]
    tile = scratch[: nq * ts.cols].view(nq, ts.cols)
    for j0 in range(0, ts.data.shape[0], ts.cols):
        torch.mm(q, ts.data[j0:j0 + ts.cols].T, out=tile)
        if j0 + ts.cols > ts.n:
            tile[:, max(0, ts.n - j0):] = -math.inf
        yield j0, tile


def _submax(q: torch.Tensor, ts: TargetSet, scratch: torch.Tensor) -> torch.Tensor:
    """(nq, n_pad / 64) sub-block maxima; sub-block ``s`` = tile ``s // L``, lane ``s % L``."""
    lanes, nq = ts.cols // _SUB, q.shape[0]
    out = torch.empty((ts.data.shape[0] // ts.cols, nq, lanes), dtype=q.dtype, device=q.device)
    for j0, tile in _tiles(q, ts, scratch):
        torch.amax(tile.view(nq, _SUB, lanes), dim=1, out=out[j0 // ts.cols])
    return out.permute(1, 0, 2).reshape(nq, -1)


def _rescore(q: torch.Tensor, ts: TargetSet, best_sub: torch.Tensor) -> torch.Tensor:
    """Arg-max inside each query's winning sub-block (first index on ties within it)."""
    lanes = ts.cols // _SUB
    tile_idx, lane = best_sub // lanes, best_sub % lanes
    members = ts.data.view(-1, _SUB, lanes, ts.data.shape[1])[tile_idx, :, lane]  # (nq, 64, D')
    scores = torch.bmm(members, q[:, :, None]).squeeze(-1)
    cand = (tile_idx * ts.cols + lane)[:, None] + lanes * torch.arange(_SUB, device=q.device)[None]
    scores.masked_fill_(cand >= ts.n, -math.inf)
    return cand.gather(1, scores.argmax(1, keepdim=True)).squeeze(1)


def _first_argmax(q: torch.Tensor, ts: TargetSet, scratch: torch.Tensor) -> torch.Tensor:
    """Plain blocked arg-max with first-index ties (slow path for tied queries)."""
    best = torch.full((q.shape[0],), -math.inf, dtype=q.dtype, device=q.device)
    arg = torch.zeros((q.shape[0],), dtype=torch.int64, device=q.device)
    for j0, tile in _tiles(q, ts, scratch):
        val, idx = tile.max(dim=1)
        better = val > best
        best = torch.where(better, val, best)
        arg = torch.where(better, idx + j0, arg)
    return arg


def _search_block(q: torch.Tensor, ts: TargetSet, scratch: torch.Tensor) -> torch.Tensor:
    submax = _submax(q, ts, scratch)
    top, best_sub = submax.max(dim=1)
    result = _rescore(q, ts, best_sub)
    submax.scatter_(1, best_sub[:, None], -math.inf)  # runner-up sub-block equal to the best: a tie
    tied = torch.nonzero(submax.amax(1) == top).squeeze(1)
    if tied.numel():
        result[tied] = _first_argmax(q[tied], ts, scratch)
    return result


@torch.no_grad()
def nearest_neighbors(queries: torch.Tensor, targets: Union[torch.Tensor, TargetSet],
                      dist: str = "dot",
                      block_bytes: int = _DEFAULT_BLOCK_BYTES) -> torch.Tensor:
    """Index of the nearest target of every query (exact, blocked).

    Args:
        queries: (M, D) float descriptors.
        targets: (N, D) float descriptors, N >= 1, same device and dtype, or the
            :class:`TargetSet` from :func:`prepare_targets` (saves work on repeated searches).
        dist: ``"dot"`` (largest inner product) or ``"l2"`` (smallest Euclidean distance).
        block_bytes: bound on the memory of one score tile, in bytes (at least one row of
            ``cols`` scores is always used).

    Returns:
        (M,) int64 indices into ``targets`` on the queries' device; ties resolve to the first
        (smallest) index.
    """
    ts = targets if isinstance(targets, TargetSet) else prepare_targets(targets, dist)
    if ts.dist != dist:
        raise MatchingError(f"targets were prepared for dist={ts.dist!r}, not {dist!r}")
    m = queries.shape[0]
    if m == 0:
        return torch.empty((0,), dtype=torch.int64, device=queries.device)
    if ts.n == 0:
        raise MatchingError("cannot search nearest neighbours in an empty target set")
    _check_matmul_precision(queries.device)
    q_all = _prepare_queries(queries, dist)
    rows = _TILE_ROWS_CPU if q_all.device.type == "cpu" else m
    rows = max(1, min(m, rows, block_bytes // (ts.cols * q_all.element_size())))
    scratch = torch.empty(rows * ts.cols, dtype=q_all.dtype, device=q_all.device)
    result = torch.empty((m,), dtype=torch.int64, device=queries.device)
    for i0 in range(0, m, rows):
        result[i0:i0 + rows] = _search_block(q_all[i0:i0 + rows], ts, scratch)
    return result
