"""Top-k keyframe retrieval over L2-normalised global descriptors with faiss.

A flat inner-product index (exact cosine search) costs O(N * D) per query: for D = 1024 it stays
well under a millisecond up to ~10^4 keyframes on one CPU core. Beyond ~10^5 keyframes (or for many
queries per second) an IVF index (``faiss.IndexIVFFlat``, nlist ~ sqrt(N)) or HNSW
(``faiss.IndexHNSWFlat``) should take over; that is not needed at robot-map scale.
"""

from __future__ import annotations

from typing import Optional, Sequence

import faiss
import numpy as np

from mast3r_ros.core.errors import InputError

__all__ = ["GlobalIndex", "l2_normalize"]


def l2_normalize(x: np.ndarray, axis: int = -1) -> np.ndarray:
    """Float32 copy of ``x`` with unit L2 norm along ``axis`` (zero vectors stay zero)."""
    x = np.asarray(x, dtype=np.float32)
    n = np.linalg.norm(x, axis=axis, keepdims=True)
    return x / np.maximum(n, 1e-12)


class GlobalIndex:
    """Exact cosine-similarity index of keyframe descriptors.

    Args:
        desc: (N, D) descriptors (normalised here).
        ids: N keyframe ids, row order of ``desc``.
    """

    def __init__(self, desc: np.ndarray, ids: Sequence[int]) -> None:
        desc = np.asarray(desc)
        if desc.ndim != 2 or desc.shape[0] != len(ids):
            raise InputError(f"descriptors must be (N={len(ids)}, D), got {desc.shape}")
        self.ids = np.asarray(list(ids), dtype=np.int64)
        self.dim = int(desc.shape[1])
        self._index = faiss.IndexFlatIP(self.dim)
        if len(ids):
            self._index.add(np.ascontiguousarray(l2_normalize(desc)))

    def __len__(self) -> int:
        return int(self._index.ntotal)

    def search(self, query: np.ndarray, k: int,
               allowed: Optional[np.ndarray] = None) -> tuple[np.ndarray, np.ndarray]:
        """Best ``k`` keyframes of one query descriptor.

        Args:
            query: (D,) descriptor.
            k: number of results (fewer when the index is smaller).
            allowed: optional (N,) bool mask over index rows (e.g. keyframes near a pose prior).

        Returns:
            ``(ids (k',) int64, scores (k',) float32)``, best first.
        """
        q = l2_normalize(np.asarray(query).reshape(1, -1))
        if q.shape[1] != self.dim:
            raise InputError(f"query descriptor has {q.shape[1]} dims, index has {self.dim}")
        n = len(self)
        if n == 0 or k <= 0:
            return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float32)
        kk = n if allowed is not None else min(k, n)
        scores, rows = self._index.search(np.ascontiguousarray(q), kk)
        rows, scores = rows[0], scores[0]
        keep = rows >= 0
        if allowed is not None:
            keep &= np.asarray(allowed, dtype=bool)[np.maximum(rows, 0)]
        rows, scores = rows[keep][:k], scores[keep][:k]
        return self.ids[rows], scores
