"""Exact, memory-bounded nearest-neighbour search between descriptor sets.

The search never materialises the full (M, N) similarity matrix: queries are processed in blocks of
rows and targets in blocks of columns, so peak extra memory is about ``block_bytes``. For each
block only the per-*sub-block* maxima (64 consecutive targets) are kept; the winning sub-block of
every query is re-scored at the end and its arg-max taken. This gives the same answer as a plain
``argmax`` over the full row (first index on exact ties, like ``torch.argmax``) at a fraction of
the memory traffic, because ``amax`` without indices is several times cheaper than ``max`` with
indices on CPU.

Distances:
    * ``"dot"``: largest inner product ``q . t``.
    * ``"l2"``: smallest Euclidean distance ``|q - t|``, computed as the largest ``2 q.t - |t|^2``
      (the same ordering; the matrix-product form that ``torch.cdist`` itself uses on large inputs).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Union

import logging

import torch

from mast3r_ros.core.errors import MatchingError

logger = logging.getLogger(__name__)
_warned_precision = False

__all__ = ["DISTANCES", "TargetSet", "nearest_neighbors", "prepare_targets"]

DISTANCES = ("dot", "l2")
_SUB = 64  # targets per sub-block whose maximum is kept
_DEFAULT_BLOCK_BYTES = 256 * 2**20  # bound on one (query block x target block) score tile


@dataclass(frozen=True)
class TargetSet:
    """Targets prepared for :func:`nearest_neighbors`.

    Attributes:
        data: (n_pad, D') rows ``t`` (``"dot"``) or ``[t, |t|^2]`` (``"l2"``), zero-padded to a
            multiple of the sub-block size.
        n: number of real targets (rows ``n:`` are padding and never returned).
        dist: the distance the rows were prepared for.
    """

    data: torch.Tensor
    n: int
    dist: str


def prepare_targets(targets: torch.Tensor, dist: str) -> TargetSet:
    """Prepare a (N, D) target set once for repeated :func:`nearest_neighbors` calls."""
    if dist not in DISTANCES:
        raise MatchingError(f"unknown dist={dist!r}; use one of {DISTANCES}")
    n = targets.shape[0]
    cols = targets.shape[1] + (1 if dist == "l2" else 0)
    data = targets.new_zeros((max(1, math.ceil(n / _SUB)) * _SUB, cols))
    data[:n, :targets.shape[1]] = targets
    if dist == "l2":
        data[:n, -1] = (targets * targets).sum(-1)
    return TargetSet(data, n, dist)


def _prepare_queries(queries: torch.Tensor, dist: str) -> torch.Tensor:
    if dist == "dot":
        return queries
    minus_one = torch.full_like(queries[:, :1], -1.0)
    return torch.cat([2.0 * queries, minus_one], dim=-1)


_TILE_COLS = 2048  # targets per score tile (CPU: a 4 MB tile stays in the L2/L3 caches)
_TILE_ROWS = 512  # queries per score tile


def _block_sizes(n_queries: int, n_pad: int, block_bytes: int, elem: int, device: torch.device
                 ) -> tuple[int, int]:
    """(rows, cols) of one score tile: small cache-resident tiles on CPU, wide ones on GPUs."""
    if device.type == "cpu":
        cols = min(n_pad, _TILE_COLS)
        rows = min(n_queries, _TILE_ROWS)
    else:  # few large kernels; the tile is bounded by block_bytes only
        cols = min(n_pad, max(_SUB, (block_bytes // (256 * elem)) // _SUB * _SUB))
        rows = n_queries
    rows = max(1, min(rows, block_bytes // (cols * elem)))
    return rows, cols


@torch.no_grad()
def _submax_rows(q: torch.Tensor, ts: TargetSet, cols: int, scratch: torch.Tensor) -> torch.Tensor:
    """Per-sub-block maxima of ``q @ t.T``: (nq, n_pad / _SUB); padding scores are -inf."""
    nq, n_pad = q.shape[0], ts.data.shape[0]
    out = torch.empty((nq, n_pad // _SUB), dtype=q.dtype, device=q.device)
    for j0 in range(0, n_pad, cols):
        tb = ts.data[j0:j0 + cols]
        tile = scratch[: nq * tb.shape[0]].view(nq, tb.shape[0])
        torch.mm(q, tb.T, out=tile)
        if j0 + tb.shape[0] > ts.n:
            tile[:, max(0, ts.n - j0):] = -math.inf
        out[:, j0 // _SUB:(j0 + tb.shape[0]) // _SUB] = tile.view(nq, -1, _SUB).amax(-1)
    return out


@torch.no_grad()
def _rescore_subblocks(q: torch.Tensor, ts: TargetSet, best_sub: torch.Tensor) -> torch.Tensor:
    """Arg-max inside each query's winning sub-block (first index on ties)."""
    blocks = ts.data.view(-1, _SUB, ts.data.shape[1])[best_sub]  # (nq, SUB, D')
    scores = torch.bmm(blocks, q[:, :, None]).squeeze(-1)
    cand = best_sub[:, None] * _SUB + torch.arange(_SUB, device=q.device)[None]
    scores.masked_fill_(cand >= ts.n, -math.inf)
    return cand.gather(1, scores.argmax(1, keepdim=True)).squeeze(1)


def _check_matmul_precision(device: torch.device) -> None:
    """Warn once when float32 products may run in reduced precision (TF32 / bf16)."""
    global _warned_precision
    reduced = torch.get_float32_matmul_precision() != "highest" or (
        device.type == "cuda" and torch.backends.cuda.matmul.allow_tf32)
    if reduced and not _warned_precision:
        _warned_precision = True
        logger.warning("float32 matmul precision is reduced (TF32/bf16); nearest neighbours may "
                       "differ from the float32 reference on near-ties. Use "
                       "torch.set_float32_matmul_precision('highest') for exact results.")


@torch.no_grad()
def nearest_neighbors(queries: torch.Tensor, targets: Union[torch.Tensor, TargetSet], dist: str = "dot",
                      block_bytes: int = _DEFAULT_BLOCK_BYTES) -> torch.Tensor:
    """Index of the nearest target of every query (exact, blocked).

    Args:
        queries: (M, D) float descriptors.
        targets: (N, D) float descriptors, N >= 1, same device and dtype, or the
            :class:`TargetSet` from :func:`prepare_targets` (saves work on repeated searches).
        dist: ``"dot"`` (largest inner product) or ``"l2"`` (smallest Euclidean distance).
        block_bytes: bound on the scratch memory of one score tile, in bytes.

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
    rows, cols = _block_sizes(m, ts.data.shape[0], block_bytes, q_all.element_size(), q_all.device)
    scratch = torch.empty(rows * cols, dtype=q_all.dtype, device=q_all.device)
    result = torch.empty((m,), dtype=torch.int64, device=queries.device)
    for i0 in range(0, m, rows):
        q = q_all[i0:i0 + rows]
        submax = _submax_rows(q, ts, cols, scratch)
        result[i0:i0 + rows] = _rescore_subblocks(q, ts, submax.argmax(1))
    return result
