"""Top-k keyframe retrieval over L2-normalised global descriptors with faiss.

:class:`GlobalIndex` is an exact cosine-similarity index (``faiss.IndexFlatIP``) that grows and
shrinks with its map: :meth:`GlobalIndex.add` appends one row (amortised O(1), no rebuild) and
:meth:`GlobalIndex.remove` marks a row dead (O(1)); dead rows are filtered from results and
compacted away once they outnumber the live ones, so removal is amortised O(1) too.

A flat index costs O(N * D) per query: for D = 1024 it stays under a few milliseconds up to ~10^4
keyframes on one CPU core.
"""

from __future__ import annotations

from typing import Optional, Sequence

import faiss
import numpy as np

from mast3r_ros.core.errors import InputError

__all__ = ["GlobalIndex", "l2_normalize"]

#: compact when dead rows exceed this many and outnumber the live ones
_MIN_DEAD_TO_COMPACT = 64


def l2_normalize(x: np.ndarray, axis: int = -1) -> np.ndarray:
    """Float32 copy of ``x`` with unit L2 norm along ``axis`` (zero vectors stay zero)."""
    x = np.asarray(x, dtype=np.float32)
    n = np.linalg.norm(x, axis=axis, keepdims=True)
    return x / np.maximum(n, 1e-12)


class GlobalIndex:
    """Exact cosine-similarity index of keyframe descriptors, keyed by keyframe id.

    Args:
        desc: (N, D) descriptors (normalised here); (0, D) for an empty index of dimension D.
        ids: N keyframe ids, row order of ``desc`` (unique).

    Raises:
        InputError: shape mismatch, duplicate ids or non-finite descriptors.
    """

    def __init__(self, desc: np.ndarray, ids: Sequence[int]) -> None:
        desc = np.asarray(desc)
        if desc.ndim != 2 or desc.shape[0] != len(ids):
            raise InputError(f"descriptors must be (N={len(ids)}, D), got {desc.shape}")
        self.dim = int(desc.shape[1])
        if self.dim < 1:
            raise InputError("descriptors need at least one dimension")
        self._index = faiss.IndexFlatIP(self.dim)
        self._row_ids: list[int] = []          # keyframe id of every faiss row (dead rows too)
        self._row_of: dict[int, int] = {}      # live keyframe id -> faiss row
        self._dead = 0
        if len(ids):
            self._append(desc, [int(i) for i in ids])

    # ------------------------------------------------------------------ updates
    def _append(self, desc: np.ndarray, ids: list[int]) -> None:
        if len(set(ids)) != len(ids) or any(i in self._row_of for i in ids):
            raise InputError("keyframe ids in a GlobalIndex must be unique")
        d = l2_normalize(np.asarray(desc).reshape(len(ids), -1))
        if d.shape[1] != self.dim:
            raise InputError(f"descriptor has {d.shape[1]} dims, index has {self.dim}")
        if not np.all(np.isfinite(d)):
            raise InputError("global descriptors must be finite")
        start = len(self._row_ids)
        self._index.add(np.ascontiguousarray(d))
        for k, i in enumerate(ids):
            self._row_of[i] = start + k
        self._row_ids.extend(ids)

    def add(self, keyframe_id: int, desc: np.ndarray) -> None:
        """Append one keyframe's (D,) descriptor (amortised O(1)).

        Raises:
            InputError: duplicate id, wrong dimension or non-finite values.
        """
        self._append(np.asarray(desc, dtype=np.float32).reshape(1, -1), [int(keyframe_id)])

    def remove(self, keyframe_id: int) -> None:
        """Drop a keyframe (amortised O(1); KeyError when absent)."""
        del self._row_of[int(keyframe_id)]
        self._dead += 1
        if self._dead > _MIN_DEAD_TO_COMPACT and self._dead > len(self._row_of):
            self._compact()

    def _compact(self) -> None:
        rows = np.array(sorted(self._row_of.values()), dtype=np.int64)
        desc = self._rows_view()[rows].copy()
        ids = [self._row_ids[r] for r in rows]
        self._index = faiss.IndexFlatIP(self.dim)
        self._row_ids, self._row_of, self._dead = [], {}, 0
        if ids:
            self._append(desc, ids)

    # ------------------------------------------------------------------ queries
    def __len__(self) -> int:
        return len(self._row_of)

    def __contains__(self, keyframe_id: object) -> bool:
        return keyframe_id in self._row_of

    @property
    def ids(self) -> np.ndarray:
        """(N,) int64 live keyframe ids in row (insertion) order."""
        return np.array(sorted(self._row_of, key=self._row_of.__getitem__), dtype=np.int64)

    def _rows_view(self) -> np.ndarray:
        """(ntotal, D) float32 view (no copy) of the flat index's stored vectors."""
        n = self._index.ntotal
        if n == 0:
            return np.zeros((0, self.dim), np.float32)
        return faiss.rev_swig_ptr(self._index.get_xb(), n * self.dim).reshape(n, self.dim)

    def descriptor(self, keyframe_id: int) -> np.ndarray:
        """(D,) float32 normalised descriptor of a keyframe (KeyError when absent)."""
        return self._rows_view()[self._row_of[int(keyframe_id)]].copy()

    def descriptors(self, ids: Sequence[int]) -> np.ndarray:
        """(len(ids), D) float32 normalised descriptors, in the order of ``ids``."""
        rows = np.array([self._row_of[int(i)] for i in ids], dtype=np.int64)
        return self._rows_view()[rows].copy()

    def search(self, query: np.ndarray, k: int,
               allowed: Optional[Sequence[int]] = None) -> tuple[np.ndarray, np.ndarray]:
        """Best ``k`` keyframes of one query descriptor.

        Args:
            query: (D,) descriptor.
            k: number of results (fewer when the index is smaller).
            allowed: optional keyframe ids to search among (e.g. keyframes near a pose prior);
                unknown ids are ignored.

        Returns:
            ``(ids (k',) int64, scores (k',) float32)``, best first (ties: lower row first).
        """
        q = l2_normalize(np.asarray(query).reshape(1, -1))
        if q.shape[1] != self.dim:
            raise InputError(f"query descriptor has {q.shape[1]} dims, index has {self.dim}")
        if not np.all(np.isfinite(q)):
            raise InputError("query descriptor must be finite")
        if len(self) == 0 or k <= 0:
            return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float32)
        if allowed is not None:
            rows = np.array(sorted(self._row_of[int(i)] for i in allowed
                                   if int(i) in self._row_of), dtype=np.int64)
            if rows.size == 0:
                return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float32)
            sims = self._rows_view()[rows] @ q[0]
            order = np.argsort(-sims, kind="stable")[:k]
            return (np.array([self._row_ids[r] for r in rows[order]], dtype=np.int64),
                    sims[order].astype(np.float32))
        kk = min(k + self._dead, self._index.ntotal)
        scores, rows = self._index.search(np.ascontiguousarray(q), kk)
        out_ids, out_scores = [], []
        for r, s in zip(rows[0], scores[0]):
            if r < 0:
                continue
            kid = self._row_ids[r]
            if self._row_of.get(kid) == r:
                out_ids.append(kid)
                out_scores.append(s)
                if len(out_ids) == k:
                    break
        return np.array(out_ids, dtype=np.int64), np.array(out_scores, dtype=np.float32)
