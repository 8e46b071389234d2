"""Exact, memory-bounded nearest-neighbour search between descriptor sets.

The search never materialises the full (M, N) similarity matrix: queries are processed in blocks of
rows and targets in blocks of columns, so peak extra memory is about ``block_bytes``. For each
block only the per-*sub-block* maxima (256 consecutive targets) are kept; the winning sub-block of
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

import torch

from mast3r_ros.core.errors import MatchingError

__all__ = ["DISTANCES", "nearest_neighbors", "prepare_targets"]

DISTANCES = ("dot", "l2")
_SUB = 256  # targets per sub-block whose maximum is kept
_DEFAULT_BLOCK_BYTES = 64 * 2**20  # scratch for one (query block x target block) score tile


def prepare_targets(targets: torch.Tensor, dist: str) -> torch.Tensor:
    """Turn a (N, D) target set into the matrix used by :func:`nearest_neighbors`.

    Args:
        targets: (N, D) float descriptors.
        dist: ``"dot"`` or ``"l2"``.

    Returns:
        (N, D) for ``"dot"`` (the input itself), (N, D + 1) ``[t, |t|^2]`` for ``"l2"``.
    """
    if dist == "dot":
        return targets
    if dist == "l2":
        return torch.cat([targets, (targets * targets).sum(-1, keepdim=True)], dim=-1)
    raise MatchingError(f"unknown dist={dist!r}; use one of {DISTANCES}")


def _prepare_queries(queries: torch.Tensor, dist: str) -> torch.Tensor:
    if dist == "dot":
        return queries
    minus_one = torch.full_like(queries[:, :1], -1.0)
    return torch.cat([2.0 * queries, minus_one], dim=-1)


_TILE_COLS = 4096  # targets per score tile (CPU: keeps the tile in the last-level cache)
_TILE_ROWS = 1024  # queries per score tile


def _block_sizes(n_queries: int, n_targets: int, block_bytes: int, elem: int) -> tuple[int, int]:
    cols = min(n_targets, _TILE_COLS)
    cols = max(_SUB, math.ceil(cols / _SUB) * _SUB)
    rows = max(1, min(n_queries, _TILE_ROWS, block_bytes // (cols * elem)))
    return rows, cols


@torch.no_grad()
def _submax_rows(q: torch.Tensor, t: torch.Tensor, cols: int, scratch: torch.Tensor) -> torch.Tensor:
    """Per-sub-block maxima of ``q @ t.T``: (nq, ceil(N / _SUB))."""
    nq, n = q.shape[0], t.shape[0]
    nsub = math.ceil(n / _SUB)
    out = torch.empty((nq, nsub), dtype=q.dtype, device=q.device)
    for j0 in range(0, n, cols):
        tb = t[j0:j0 + cols]
        width = tb.shape[0]
        padded = math.ceil(width / _SUB) * _SUB
        tile = scratch[: nq * padded].view(nq, padded)
        if padded != width:
            tile[:, width:] = -math.inf
        if padded == width:
            torch.mm(q, tb.T, out=tile)
        else:
            tile[:, :width] = q @ tb.T
        s0 = j0 // _SUB
        out[:, s0:s0 + padded // _SUB] = tile.view(nq, -1, _SUB).amax(-1)
    return out


@torch.no_grad()
def _rescore_subblocks(q: torch.Tensor, t: torch.Tensor, best_sub: torch.Tensor) -> torch.Tensor:
    """Arg-max inside each query's winning sub-block (first index on ties)."""
    n = t.shape[0]
    cand = best_sub[:, None] * _SUB + torch.arange(_SUB, device=q.device)[None]
    valid = cand < n
    tc = t[cand.clamp_(max=n - 1)]  # (nq, SUB, D)
    scores = torch.bmm(tc, q[:, :, None]).squeeze(-1)
    scores.masked_fill_(~valid, -math.inf)
    return cand.gather(1, scores.argmax(1, keepdim=True)).squeeze(1)


@torch.no_grad()
def nearest_neighbors(queries: torch.Tensor, targets: torch.Tensor, dist: str = "dot",
                      prepared: bool = False, block_bytes: int = _DEFAULT_BLOCK_BYTES) -> torch.Tensor:
    """Index of the nearest target of every query (exact, blocked).

    Args:
        queries: (M, D) float descriptors.
        targets: (N, D) float descriptors, N >= 1, same device and dtype; or, with
            ``prepared=True``, the output of :func:`prepare_targets` (saves work when the same
            targets are searched repeatedly).
        dist: ``"dot"`` (largest inner product) or ``"l2"`` (smallest Euclidean distance).
        prepared: whether ``targets`` already went through :func:`prepare_targets`.
        block_bytes: bound on the scratch memory of one score tile, in bytes.

    Returns:
        (M,) int64 indices into ``targets`` on the queries' device; ties resolve to the first
        (smallest) index.
    """
    if dist not in DISTANCES:
        raise MatchingError(f"unknown dist={dist!r}; use one of {DISTANCES}")
    t = targets if prepared else prepare_targets(targets, dist)
    m, n = queries.shape[0], t.shape[0]
    if m == 0:
        return torch.empty((0,), dtype=torch.int64, device=queries.device)
    if n == 0:
        raise MatchingError("cannot search nearest neighbours in an empty target set")
    q_all = _prepare_queries(queries, dist)
    rows, cols = _block_sizes(m, n, block_bytes, q_all.element_size())
    scratch = torch.empty(rows * math.ceil(cols / _SUB) * _SUB, dtype=q_all.dtype, device=q_all.device)
    result = torch.empty((m,), dtype=torch.int64, device=queries.device)
    for i0 in range(0, m, rows):
        q = q_all[i0:i0 + rows]
        submax = _submax_rows(q, t, cols, scratch)
        result[i0:i0 + rows] = _rescore_subblocks(q, t, submax.argmax(1))
    return result
