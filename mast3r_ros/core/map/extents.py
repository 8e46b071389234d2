"""Where the stored arrays of every keyframe of a map version live, validated in bulk.

The index stores a packed table of :data:`~mast3r_ros.core.map.format.ARRAY_REC` records per
keyframe. :func:`read_extents` checks all of them at once with numpy (names, dtypes, shapes
against the keyframe rows, byte ranges against the committed length of each payload file), and an
:class:`ExtentTable` keeps them packed, making an :class:`Extent` only when an array is read.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from typing import Optional

import numpy as np

from mast3r_ros.core.errors import MapFormatError
from mast3r_ros.core.map.format import (
    ARRAY_REC,
    DTYPES,
    MAX_ARRAY_BYTES,
    MAX_RANK,
    PAYLOAD_FILES,
    Extent,
)

__all__ = ["ExtentTable", "read_extents"]

_FEATURE_NAME = re.compile(r"f\.[a-z_][a-z0-9_]{0,21}")
_FIXED = (b"rgb", b"depth", b"pointmap", b"desc")


class ExtentTable:
    """Extents of the keyframes of one version: packed as read, plus those written since.

    Args:
        packed: :data:`ARRAY_REC` records of the keyframes as read (validated).
        spans: keyframe id -> (first record, number of records) in ``packed``.
    """

    def __init__(self, packed: Optional[np.ndarray] = None,
                 spans: Optional[dict[int, tuple[int, int]]] = None) -> None:
        self._packed = packed if packed is not None else np.zeros(0, ARRAY_REC)
        self._cum = np.concatenate([[0], np.cumsum(self._packed["nbytes"], dtype=np.int64)])
        self._spans = dict(spans or {})
        self._overlay: dict[int, dict[str, Extent]] = {}
        kids = np.zeros(len(self._packed), np.int64)
        for kid, (start, count) in self._spans.items():
            kids[start:start + count] = kid
        self._kids = kids

    def __contains__(self, kid: object) -> bool:
        return kid in self._overlay or kid in self._spans

    def __iter__(self) -> Iterator[int]:
        yield from self._spans
        yield from self._overlay

    def get(self, kid: int) -> dict[str, Extent]:
        """Name -> extent of a keyframe's arrays (KeyError when it has none here)."""
        ext = self._overlay.get(kid)
        if ext is not None:
            return ext
        start, count = self._spans[kid]
        return {e.name: e for e in map(Extent.unpack, self._packed[start:start + count])}

    def column(self, name: str, ids: Sequence[int]) -> tuple[np.ndarray, list[bytes]]:
        """Offsets (int64) and content hashes of array ``name`` of each keyframe of ``ids``
        (KeyError when one has none)."""
        rows = np.flatnonzero(self._packed["name"] == name.encode())
        found = dict(zip(self._kids[rows].tolist(), rows.tolist()))
        offsets = np.empty(len(ids), np.int64)
        shas: list[bytes] = []
        for i, k in enumerate(ids):
            ext = self._overlay.get(k)
            if ext is not None:
                offsets[i] = ext[name].offset
                shas.append(ext[name].sha256)
            else:
                if k not in self._spans:
                    raise KeyError(k)
                rec = self._packed[found[k]]
                offsets[i] = rec["offset"]
                shas.append(bytes(rec["sha256"]))
        return offsets, shas

    def set(self, kid: int, extents: dict[str, Extent]) -> None:
        """Record (or replace) a keyframe's arrays."""
        self._spans.pop(kid, None)
        self._overlay[kid] = extents

    def drop(self, kid: int) -> None:
        """Forget a keyframe."""
        self._spans.pop(kid, None)
        self._overlay.pop(kid, None)

    def nbytes(self, kid: int) -> int:
        """Stored bytes of a keyframe's arrays."""
        if kid in self._overlay:
            return sum(e.nbytes for e in self._overlay[kid].values())
        start, count = self._spans[kid]
        return int(self._cum[start + count] - self._cum[start])

    def live_bytes(self) -> int:
        """Stored bytes of every keyframe's arrays."""
        return sum(self.nbytes(k) for k in self)

    def copy(self) -> ExtentTable:
        """An independent table (the packed records are shared, read-only)."""
        out = ExtentTable.__new__(ExtentTable)
        out._packed, out._cum, out._kids = self._packed, self._cum, self._kids
        out._spans, out._overlay = dict(self._spans), dict(self._overlay)
        return out


def _fail(where: str, ids: Sequence[int], kidx: np.ndarray, bad: np.ndarray, what: str) -> None:
    if np.any(bad):
        first = int(np.flatnonzero(bad)[0])
        raise MapFormatError(f"{where}: keyframe {ids[int(kidx[first])]}: {what} "
                             f"({int(np.count_nonzero(bad))} arrays); restore or rebuild the map")


def _check_names_and_dtypes(rec: np.ndarray, where: str, ids: Sequence[int], kidx: np.ndarray
                            ) -> np.ndarray:
    """Validate names and dtypes; the item size of each record."""
    names = rec["name"]
    for name in np.unique(names):
        if name not in _FIXED and not _FEATURE_NAME.fullmatch(name.decode("latin-1")):
            _fail(where, ids, kidx, names == name, f"unknown array name {name[:24]!r}")
    itemsize = np.zeros(len(rec), np.int64)
    for code in np.unique(rec["dtype"]):
        dt = DTYPES.get(code.decode("latin-1"))
        if dt is None:
            _fail(where, ids, kidx, rec["dtype"] == code, f"dtype {code!r} is not allowed")
        else:
            itemsize[rec["dtype"] == code] = dt.itemsize
    return itemsize


def _check_sizes(rec: np.ndarray, itemsize: np.ndarray, lengths: dict[str, int], where: str,
                 ids: Sequence[int], kidx: np.ndarray) -> None:
    rank, shape, nbytes, offset = rec["rank"], rec["shape"], rec["nbytes"], rec["offset"]
    used = np.arange(MAX_RANK)[None, :] < rank[:, None]
    _fail(where, ids, kidx, (rank > MAX_RANK) | np.any(~used & (shape != 0), axis=1),
          "malformed shape")
    _fail(where, ids, kidx, nbytes > MAX_ARRAY_BYTES, f"an array above {MAX_ARRAY_BYTES} bytes")
    count = np.prod(np.where(used, shape, 1).astype(np.float64), axis=1)
    _fail(where, ids, kidx, count * itemsize != nbytes.astype(np.float64),
          "shape and dtype do not take the stored number of bytes")
    file_len = np.full(len(rec), lengths.get("features.bin", 0), np.float64)
    for name in _FIXED:
        file_len[rec["name"] == name] = lengths.get(name.decode() + ".bin", 0)
    _fail(where, ids, kidx, offset.astype(np.float64) + nbytes > file_len,
          "bytes beyond the committed length of their payload file (a truncated map?)")


def _check_layout(rec: np.ndarray, kidx: np.ndarray, rows: dict[str, np.ndarray], dim: int,
                  where: str, ids: Sequence[int]) -> None:
    """Which arrays each keyframe has, and the dtype and shape of its image, depth, pointmap
    and descriptor."""
    n, names = len(ids), rec["name"]
    is_feat = np.char.startswith(names, b"f.")
    want = {b"rgb": np.ones(n, bool), b"depth": rows["has_depth"],
            b"pointmap": rows["has_pointmap"], b"desc": rows["has_features"]}
    for name, expected in want.items():
        have = np.bincount(kidx[names == name], minlength=n)
        _fail(where, ids, np.arange(n), have != expected, f"{name.decode()} stored "
              "a wrong number of times for its row")
    feats = np.bincount(kidx[is_feat], minlength=n)
    _fail(where, ids, np.arange(n), (feats > 0) != rows["has_features"],
          "features stored without the row saying so, or missing")
    pairs = np.unique(np.stack([kidx[is_feat].astype(np.int64),
                                np.unique(names[is_feat], return_inverse=True)[1]]), axis=1)
    _fail(where, ids, np.arange(n), np.bincount(pairs[0], minlength=n) != feats,
          "a feature array stored twice")
    h, w = rows["height"][kidx], rows["width"][kidx]
    specs = {b"rgb": (b"|u1", [h, w, 3]), b"depth": (b"<f4", [h, w]),
             b"pointmap": (b"<f4", [h, w, 3]), b"desc": (b"<f4", [dim])}
    for name, (dtype, dims) in specs.items():
        sel = names == name
        ok = (rec["dtype"] == dtype) & (rec["rank"] == len(dims))
        for i, d in enumerate(dims):
            ok &= rec["shape"][:, i] == d
        _fail(where, ids, kidx, sel & ~ok, f"{name.decode()} of the wrong dtype or shape")
    _fail(where, ids, kidx, (names == b"desc") & (rec["offset"] % max(4 * dim, 1) != 0),
          "misaligned global descriptor")


def read_extents(blobs: Sequence[object], ids: Sequence[int], rows: dict[str, np.ndarray],
                 dim: int, lengths: dict[str, int], where: str, total: int) -> ExtentTable:
    """Validate the packed ``arrays`` columns of the keyframe rows (see the module docstring).

    Args:
        blobs: one ``arrays`` value per keyframe row.
        ids: keyframe ids of the rows.
        rows: per-row arrays ``width``, ``height``, ``has_depth``, ``has_pointmap``,
            ``has_features``.
        dim: global descriptor dimension.
        lengths: committed length of each payload file.
        where: the version directory (for messages).
        total: number of arrays the index says it stores.

    Raises:
        MapFormatError: naming the first keyframe at fault.
    """
    counts = np.zeros(len(ids), np.int64)
    for i, b in enumerate(blobs):
        if not isinstance(b, bytes) or len(b) % ARRAY_REC.itemsize or len(b) > 64 * 96:
            raise MapFormatError(f"{where}: keyframe {ids[i]}: malformed table of arrays")
        counts[i] = len(b) // ARRAY_REC.itemsize
    if int(counts.sum()) != total:
        raise MapFormatError(f"{where}: the keyframes store {int(counts.sum())} arrays, the index "
                             f"says {total}; restore or rebuild the map")
    rec = np.frombuffer(b"".join(blobs), ARRAY_REC)  # type: ignore[arg-type]
    kidx = np.repeat(np.arange(len(ids)), counts)
    if set(lengths) - set(PAYLOAD_FILES):
        raise MapFormatError(f"{where}: unknown payload files {sorted(set(lengths))}")
    itemsize = _check_names_and_dtypes(rec, where, ids, kidx)
    _check_sizes(rec, itemsize, lengths, where, ids, kidx)
    _check_layout(rec, kidx, rows, dim, where, ids)
    starts = np.cumsum(counts) - counts
    return ExtentTable(rec, {int(k): (int(s), int(c)) for k, s, c in zip(ids, starts, counts)})
