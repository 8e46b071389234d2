"""The sparse-alignment problem: canonical views, anchors and flat match arrays, gathered pair by
pair with bounded memory.

:func:`assemble_problem` visits the images in order. For each image it reads, one pair at a time,
only that image's half of each of its pairs (:class:`~.cache.PairHalf`: its pointmap, the other
image's pointmap in its frame, its matched pixels), feeds the pointmap to a streaming
:class:`~.canonical.CanonicalAccumulator` and keeps only what the optimiser uses: the matched
pixels, their anchors and depth ratios, the match confidences, and for pairs that fall back to the
regression loss the other image's prediction on the anchor grid. Dense pair outputs never pile
up: the peak is one image's canonical sums plus one pair half. Each image's relative depth map
(needed only for the final dense depth) goes to a :class:`RelDepthStore`, on disk for large maps.

Point order (it fixes the optimiser's summation order, so it follows the official code): image by
image, and within an image pair by pair in the order the scene graph first lists each pair.
"""

from __future__ import annotations

import ctypes
import logging
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Protocol, Sequence

import numpy as np
import torch

from mast3r_ros.core.errors import InputError
from mast3r_ros.core.mapping.cache import PairHalf
from mast3r_ros.core.mapping.canonical import (
    CanonicalAccumulator,
    anchor_depth_offsets,
    canonical_focal,
)
from mast3r_ros.core.mapping.pairdata import PairData

__all__ = ["AlignmentProblem", "HalfSource", "MemoryHalves", "RelDepthStore", "assemble_problem",
           "build_problem"]

logger = logging.getLogger(__name__)
Pair = tuple[int, int]


@dataclass
class AlignmentProblem:
    """Everything the optimiser needs, flattened over images (P points, A anchors, M matches).

    Attributes:
        image_sizes: (N, 2) float (W, H) of each image.
        base_focals: (N,) focal of each canonical view (pixels).
        pps: (N, 2) principal points (pixels).
        core_depth: (A,) anchor depths of all images (canonical depth at the block centres).
        anchor_start: (N + 1,) offsets of each image's anchors in ``core_depth``.
        pt_img, pt_xy, pt_anchor, pt_offset: (P,) image, (P, 2) pixel (x, y), (P,) global anchor
            index and (P,) depth ratio of every matched pixel (one per match and side).
        pt_start: (N + 1,) offsets of each image's points.
        pairs: unordered pairs (i, j), in order of first appearance.
        m_pair, m_pt_i, m_pt_j, m_conf: (M,) pair index, point indices of both sides, confidence.
        pair_max_conf: (len(pairs),) largest match confidence of each pair.
        fb_pairs: ordered pairs (a, b) of the fallback loss, both ways for every pair whose best
            match confidence is at most ``fallback_conf_thr`` (all pairs when that is None).
        fb_target: list of ((P_a, 3) points of a predicted in b's frame, (P_a,) confidences).
        fallback_conf_thr: the gate the fallback data was gathered for (None: every pair).
        num_matches: (N, N) number of matches of each pair (pairwise scores).
        n_anchors: (N,) anchors per image.
    """

    image_sizes: torch.Tensor
    base_focals: torch.Tensor
    pps: torch.Tensor
    core_depth: torch.Tensor
    anchor_start: np.ndarray
    pt_img: torch.Tensor
    pt_xy: torch.Tensor
    pt_anchor: torch.Tensor
    pt_offset: torch.Tensor
    pt_start: np.ndarray
    pairs: list[Pair]
    m_pair: torch.Tensor
    m_pt_i: torch.Tensor
    m_pt_j: torch.Tensor
    m_conf: torch.Tensor
    pair_max_conf: torch.Tensor
    fb_pairs: list[Pair]
    fb_target: list[tuple[torch.Tensor, torch.Tensor]]
    fallback_conf_thr: Optional[float]
    num_matches: torch.Tensor
    n_anchors: np.ndarray

    @property
    def num_images(self) -> int:
        return int(self.image_sizes.shape[0])

    @property
    def nbytes(self) -> int:
        """Bytes held by the problem's tensors (the optimiser's input data)."""
        ts = [v for v in vars(self).values() if isinstance(v, torch.Tensor)]
        ts += [t for pair in self.fb_target for t in pair]
        return sum(t.element_size() * t.numel() for t in ts)


class HalfSource(Protocol):
    """Where :func:`assemble_problem` reads pair halves (the disk cache, or memory in tests)."""

    def half(self, pair_index: int, img: int) -> PairHalf:
        """The half of pair ``pair_index`` seen from ``img`` (raises MappingError when absent)."""
        ...


class MemoryHalves:
    """A :class:`HalfSource` over in-memory :class:`PairData` (tests, synthetic scenes)."""

    def __init__(self, pairs: Sequence[PairData]) -> None:
        self.pairs = pairs

    def half(self, pair_index: int, img: int) -> PairHalf:
        p = self.pairs[pair_index]
        return PairHalf(p.view_of(img), p.conf)


class RelDepthStore:
    """Relative depth maps (H, W) of the canonical views, kept until the dense depths are made.

    Args:
        directory: spill directory (one ``.npy`` per image, read back on demand); None keeps the
            maps in memory. A temporary directory is removed with the store.
    """

    def __init__(self, directory: Optional[str | Path] = None) -> None:
        self._tmp: Optional[tempfile.TemporaryDirectory] = None
        self._dir: Optional[Path] = Path(directory) if directory is not None else None
        self._mem: dict[int, torch.Tensor] = {}

    @classmethod
    def on_disk(cls) -> RelDepthStore:
        """A store in a private temporary directory (deleted when the store is collected)."""
        tmp = tempfile.TemporaryDirectory(prefix="mast3r-ros-reldepth-")
        store = cls(tmp.name)
        store._tmp = tmp
        return store

    def put(self, img: int, rel_depth: torch.Tensor) -> None:
        if self._dir is None:
            self._mem[img] = rel_depth
        else:
            self._dir.mkdir(parents=True, exist_ok=True)
            np.save(self._dir / f"{img}.npy", rel_depth.numpy())

    def get(self, img: int) -> torch.Tensor:
        if self._dir is None:
            return self._mem[img]
        return torch.from_numpy(np.load(self._dir / f"{img}.npy"))


def _return_free_heap() -> None:
    """Give the C heap's free pages back to the OS (glibc ``malloc_trim``; a no-op elsewhere).

    The gather allocates and frees several MB per pair half while small arrays it keeps pile up
    between them; without this, freed space stuck behind them inflates the resident set (measured:
    +260 MB over 235 pairs at 512x384). It changes no setting: it only releases free memory now.
    """
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(ctypes.c_size_t(0))
    except (OSError, AttributeError):  # not glibc
        pass


def _neighbour_order(num_images: int, pairs: Sequence[Pair]) -> list[list[int]]:
    """For each image, indices into ``pairs`` in order of first appearance."""
    order: list[list[int]] = [[] for _ in range(num_images)]
    for k, (i, j) in enumerate(pairs):
        if not (0 <= i < num_images and 0 <= j < num_images) or i == j:
            raise InputError(f"pair ({i}, {j}) is not a pair of two images in [0, {num_images})")
        order[i].append(k)
        order[j].append(k)
    missing = [k for k in range(num_images) if not order[k]]
    if missing:
        raise InputError(f"images {missing} are in no pair; every image needs at least one pair")
    return order


class _Gather:
    """Running state of :func:`assemble_problem` (pass over images, then over pairs)."""

    def __init__(self, n: int, pairs: Sequence[Pair], subsample: int, dtype: torch.dtype,
                 fb_thr: Optional[float], rel_depths: RelDepthStore) -> None:
        self.n, self.pairs, self.s, self.dtype, self.fb_thr = n, pairs, subsample, dtype, fb_thr
        self.rel_depths = rel_depths
        self.sizes: list[tuple[int, int]] = []
        self.focals: list[float] = []
        self.core: list[torch.Tensor] = []
        self.anchor_start, self.pt_start = [0], [0]
        self.pt_xy: list[torch.Tensor] = []
        self.pt_anchor: list[torch.Tensor] = []
        self.pt_off: list[torch.Tensor] = []
        self.pt_of: dict[tuple[int, int], int] = {}  # (pair, img) -> first point index
        self.img_counts: list[int] = []
        self.conf: dict[int, torch.Tensor] = {}
        self.grids: dict[Pair, tuple[torch.Tensor, torch.Tensor]] = {}  # (a, b): b's view of a

    def image(self, img: int, ks: list[int], halves: HalfSource) -> None:
        acc = CanonicalAccumulator(self.s, self.dtype)
        xys = []
        for k in ks:
            h = halves.half(k, img)
            acc.add(torch.as_tensor(h.view.pts_self), torch.as_tensor(h.view.conf_self))
            xys.append(torch.as_tensor(h.view.xy).long())
            if k not in self.conf:
                self.conf[k] = torch.as_tensor(h.conf, dtype=self.dtype)
            c = self.conf[k]
            if self.fb_thr is None or not (len(c) and float(c.max()) > self.fb_thr):
                i, j = self.pairs[k]
                sl = slice(None, None, self.s)  # the official fallback grid starts at 0
                X = torch.as_tensor(h.view.pts_other[sl, sl], dtype=self.dtype).reshape(-1, 3)
                C = torch.as_tensor(h.view.conf_other[sl, sl], dtype=self.dtype).reshape(-1)
                self.grids[(j if img == i else i, img)] = (X, C)
        view = acc.result()
        H, W = view.canon.shape[:2]
        self.sizes.append((W, H))
        self.focals.append(canonical_focal(view))
        sl = slice(self.s // 2, None, self.s)
        self.core.append(view.canon[sl, sl, 2].reshape(-1))
        self.rel_depths.put(img, view.rel_depth)
        a0 = self.anchor_start[-1]
        self.img_counts.append(sum(len(xy) for xy in xys))
        for k, xy in zip(ks, xys):
            if len(xy) and (int(xy[:, 0].min()) < 0 or int(xy[:, 0].max()) >= W
                            or int(xy[:, 1].min()) < 0 or int(xy[:, 1].max()) >= H):
                raise InputError(f"pair {self.pairs[k]}: matched pixels of image {img} lie "
                                 f"outside its {W}x{H} image")
            idx, off = anchor_depth_offsets(view.rel_depth, xy, self.s)
            self.pt_of[(k, img)] = self.pt_start[-1]
            self.pt_start.append(self.pt_start[-1] + len(xy))
            self.pt_xy.append(xy.to(self.dtype))
            self.pt_anchor.append(idx + a0)
            self.pt_off.append(off)
        self.anchor_start.append(a0 + self.core[-1].numel())

    def finish(self) -> AlignmentProblem:
        n, dt = self.n, self.dtype
        img_start = np.concatenate(([0], np.cumsum(self.img_counts))).astype(np.int64)
        pt_img = torch.repeat_interleave(torch.arange(n), torch.as_tensor(self.img_counts))
        pt_anchor = torch.cat(self.pt_anchor)
        num_matches = torch.zeros(n, n, dtype=dt)
        m_pair, m_i, m_j, m_conf, maxc = [], [], [], [], []
        fb_pairs, fb_target = [], []
        for k, (i, j) in enumerate(self.pairs):
            conf = self.conf[k]
            m = len(conf)
            m_pair.append(torch.full((m,), k, dtype=torch.long))
            m_i.append(torch.arange(m) + self.pt_of[(k, i)])
            m_j.append(torch.arange(m) + self.pt_of[(k, j)])
            m_conf.append(conf)
            maxc.append(conf.max() if m else torch.tensor(0.0, dtype=dt))
            num_matches[i, j] = num_matches[j, i] = float(m)
            for a, b in ((i, j), (j, i)):
                grid = self.grids.pop((a, b), None)
                if grid is None:
                    continue
                local = pt_anchor[img_start[a]:img_start[a + 1]] - self.anchor_start[a]
                fb_pairs.append((a, b))
                fb_target.append((grid[0][local], grid[1][local]))
        sizes = torch.tensor(self.sizes, dtype=dt)
        return AlignmentProblem(
            image_sizes=sizes, base_focals=torch.tensor(self.focals, dtype=dt), pps=sizes / 2,
            core_depth=torch.cat(self.core), anchor_start=np.asarray(self.anchor_start),
            pt_img=pt_img, pt_xy=torch.cat(self.pt_xy), pt_anchor=pt_anchor,
            pt_offset=torch.cat(self.pt_off), pt_start=img_start, pairs=list(self.pairs),
            m_pair=torch.cat(m_pair), m_pt_i=torch.cat(m_i), m_pt_j=torch.cat(m_j),
            m_conf=torch.cat(m_conf), pair_max_conf=torch.stack(maxc), fb_pairs=fb_pairs,
            fb_target=fb_target, fallback_conf_thr=self.fb_thr, num_matches=num_matches,
            n_anchors=np.diff(np.asarray(self.anchor_start)))


def assemble_problem(num_images: int, pairs: Sequence[Pair], halves: HalfSource,
                     subsample: int = 8, dtype: torch.dtype = torch.float32, *,
                     fallback_conf_thr: Optional[float] = None,
                     rel_depths: Optional[RelDepthStore] = None) -> AlignmentProblem:
    """Canonical views, focals, anchors and flattened match arrays, streamed pair half by half.

    Args:
        num_images: N.
        pairs: unordered pairs (i, j) in the order the scene graph first lists each (this order
            fixes the order of each image's points, as in the official code).
        halves: where each pair's halves are read.
        subsample: anchor grid step s.
        dtype: dtype of the problem.
        fallback_conf_thr: gather the fallback-loss data only for pairs whose best match
            confidence is at most this (the optimiser's ``matching_conf_thr``); None: all pairs.
        rel_depths: where the relative depth maps go (default: in memory).

    Raises:
        InputError: an image in no pair, inconsistent sizes, sizes not multiples of s.
    """
    order = _neighbour_order(num_images, pairs)
    g = _Gather(num_images, pairs, subsample, dtype, fallback_conf_thr,
                rel_depths if rel_depths is not None else RelDepthStore())
    for img in range(num_images):
        g.image(img, order[img], halves)
        _return_free_heap()
    return g.finish()


def build_problem(num_images: int, pairs: Sequence[PairData], subsample: int = 8,
                  dtype: torch.dtype = torch.float32, *,
                  fallback_conf_thr: Optional[float] = None,
                  rel_depths: Optional[RelDepthStore] = None) -> AlignmentProblem:
    """:func:`assemble_problem` over in-memory pairs (one :class:`PairData` per unordered pair,
    in order of first appearance)."""
    return assemble_problem(num_images, [(p.i, p.j) for p in pairs], MemoryHalves(pairs),
                            subsample, dtype, fallback_conf_thr=fallback_conf_thr,
                            rel_depths=rel_depths)
