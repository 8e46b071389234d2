"""Typed result of the pairwise stage for one unordered image pair.

For a pair (i, j) the network runs twice: with i as the first view (giving i and j in i's camera
frame) and with j first (j and i in j's frame). :class:`PairView` holds what one of those decodings
says from its first image's point of view; :class:`PairData` holds both views plus the merged
matches. ``swapped()`` turns the (i, j) record into the (j, i) one, and the explicit array schema
(:meth:`PairData.to_arrays` / :meth:`PairData.from_arrays`) is what the disk cache stores.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mast3r_ros.core.errors import InputError

__all__ = ["PairView", "PairData", "VIEW_FIELDS"]

#: the arrays of a :class:`PairView`, in schema order
VIEW_FIELDS = ("pts_self", "conf_self", "pts_other", "conf_other", "xy")


@dataclass(frozen=True)
class PairView:
    """The decoding of a pair with image ``a`` as the first view, seen from ``a``.

    Attributes:
        pts_self: (H_a, W_a, 3) float32 pointmap of ``a`` in ``a``'s camera frame.
        conf_self: (H_a, W_a) float32 its confidence (>= 1).
        pts_other: (H_b, W_b, 3) float32 pointmap of the other image ``b`` in ``a``'s frame.
        conf_other: (H_b, W_b) float32 its confidence.
        xy: (n, 2) int64 matched pixels (x, y) in ``a`` (row k matches row k of the other view).
    """

    pts_self: np.ndarray
    conf_self: np.ndarray
    pts_other: np.ndarray
    conf_other: np.ndarray
    xy: np.ndarray

    def __post_init__(self) -> None:
        for name, arr, tail in (("pts_self", self.pts_self, (3,)), ("pts_other", self.pts_other,
                                                                     (3,))):
            if arr.ndim != 3 or arr.shape[2:] != tail:
                raise InputError(f"PairView.{name} must be (H, W, 3), got {arr.shape}")
        if self.conf_self.shape != self.pts_self.shape[:2]:
            raise InputError(f"PairView.conf_self {self.conf_self.shape} != pointmap "
                             f"{self.pts_self.shape[:2]}")
        if self.conf_other.shape != self.pts_other.shape[:2]:
            raise InputError(f"PairView.conf_other {self.conf_other.shape} != pointmap "
                             f"{self.pts_other.shape[:2]}")
        if self.xy.ndim != 2 or self.xy.shape[1] != 2 or self.xy.dtype.kind not in "iu":
            raise InputError(f"PairView.xy must be (n, 2) integers, got {self.xy.shape} "
                             f"{self.xy.dtype}")

    @property
    def hw(self) -> tuple[int, int]:
        """(H, W) of the view's own image in pixels."""
        return int(self.pts_self.shape[0]), int(self.pts_self.shape[1])

    @property
    def nbytes(self) -> int:
        """Bytes held by the arrays."""
        return sum(int(getattr(self, f).nbytes) for f in VIEW_FIELDS)


@dataclass(frozen=True)
class PairData:
    """Network outputs and merged matches of one unordered pair, oriented as (i, j).

    Attributes:
        i, j: image indices.
        view_i: the decoding with ``i`` first (``view_i.xy`` are the matched pixels in i).
        view_j: the decoding with ``j`` first (``view_j.xy`` are the matched pixels in j).
        conf: (n,) float32 match confidences (official sparse-GA score ``sqrt(c_i * c_j)`` of the
            descriptor confidences).
        score: (3,) float64 (4th root of the product of the four mean confidences, sum of match
            confidences, number of matches).

    Raises:
        InputError: inconsistent shapes between the two views and the matches.
    """

    i: int
    j: int
    view_i: PairView
    view_j: PairView
    conf: np.ndarray
    score: np.ndarray

    def __post_init__(self) -> None:
        if self.i == self.j:
            raise InputError(f"pair ({self.i}, {self.j}) pairs an image with itself")
        n = len(self.conf)
        if self.conf.ndim != 1 or self.view_i.xy.shape[0] != n or self.view_j.xy.shape[0] != n:
            raise InputError(f"pair ({self.i}, {self.j}): xy_i {self.view_i.xy.shape}, xy_j "
                             f"{self.view_j.xy.shape} and conf {self.conf.shape} disagree")
        if self.view_i.pts_other.shape != self.view_j.pts_self.shape \
                or self.view_j.pts_other.shape != self.view_i.pts_self.shape:
            raise InputError(f"pair ({self.i}, {self.j}): the two decodings disagree on the "
                             "image sizes")
        if self.score.shape != (3,):
            raise InputError(f"pair ({self.i}, {self.j}): score must be (3,), got "
                             f"{self.score.shape}")

    def swapped(self) -> PairData:
        """The same pair oriented as (j, i)."""
        return PairData(self.j, self.i, self.view_j, self.view_i, self.conf, self.score)

    def view_of(self, img: int) -> PairView:
        """The view whose first image is ``img``.

        Raises:
            InputError: ``img`` is not in the pair.
        """
        if img == self.i:
            return self.view_i
        if img == self.j:
            return self.view_j
        raise InputError(f"image {img} is not in pair ({self.i}, {self.j})")

    @property
    def num_matches(self) -> int:
        return len(self.conf)

    @property
    def nbytes(self) -> int:
        """Bytes held by the arrays (about 12.6 MB at 512x384)."""
        return self.view_i.nbytes + self.view_j.nbytes + self.conf.nbytes + self.score.nbytes

    def to_arrays(self) -> dict[str, np.ndarray]:
        """The cache schema: ``v0.<field>`` (view_i), ``v1.<field>`` (view_j), ``conf``,
        ``score``; fixed dtypes (float32 maps and confidences, int64 pixels, float64 score)."""
        out: dict[str, np.ndarray] = {}
        for tag, view in (("v0", self.view_i), ("v1", self.view_j)):
            for f in VIEW_FIELDS:
                out[f"{tag}.{f}"] = getattr(view, f)
        out["conf"], out["score"] = self.conf, self.score
        return out

    @classmethod
    def from_arrays(cls, i: int, j: int, arrays: dict[str, np.ndarray]) -> PairData:
        """Inverse of :meth:`to_arrays` (``v0`` becomes view ``i``).

        Raises:
            InputError: a missing array, a wrong dtype or inconsistent shapes.
        """
        views = [view_from_arrays(arrays, tag) for tag in ("v0", "v1")]
        return cls(i, j, views[0], views[1], _typed(arrays, "conf", np.float32),
                   _typed(arrays, "score", np.float64))


def view_from_arrays(arrays: dict[str, np.ndarray], tag: str) -> PairView:
    """The :class:`PairView` stored under ``tag`` (``v0`` or ``v1``) of a cache schema.

    Raises:
        InputError: a missing array or a wrong dtype.
    """
    dtypes = {"pts_self": np.float32, "conf_self": np.float32, "pts_other": np.float32,
              "conf_other": np.float32, "xy": np.int64}
    return PairView(**{f: _typed(arrays, f"{tag}.{f}", dtypes[f]) for f in VIEW_FIELDS})


def _typed(arrays: dict[str, np.ndarray], name: str, dtype: type) -> np.ndarray:
    if name not in arrays:
        raise InputError(f"pair record: missing array {name!r}")
    a = np.asarray(arrays[name])
    if a.dtype != dtype:
        raise InputError(f"pair record: {name} has dtype {a.dtype}, expected "
                         f"{np.dtype(dtype).name}")
    return a
