"""Canonical view of each image and the anchor data of the sparse global alignment.

For each image: its pairwise pointmaps in its own frame are fused (weights ``conf - 0.999``), a
per-pixel depth relative to the anchor at the centre of its ``s x s`` block is averaged in
"avg-angle" mode, the focal is estimated from the fused pointmap (Weiszfeld), and every matched
pixel is attached to its block's anchor with a depth ratio. Everything is then flattened into one
:class:`AlignmentProblem` (gathers instead of per-image Python loops in the optimiser).

Pixel convention of this module (the official one, kept so results match it): a pixel ``(x, y)`` is
addressed by its integer index and the default principal point is ``(W / 2, H / 2)``.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from mast3r_ros.core.errors import InputError

__all__ = ["PairData", "CanonicalView", "AlignmentProblem", "canonical_view",
           "estimate_focal_weiszfeld", "anchor_depth_offsets", "build_problem"]

logger = logging.getLogger(__name__)


@dataclass
class PairData:
    """Network outputs and matches of one unordered pair, computed with ``i`` as the first view.

    Attributes:
        i, j: image indices.
        X_i_in_i, X_j_in_i: (H_i, W_i, 3) / (H_j, W_j, 3) pointmaps in camera i's frame.
        C_i, C_j_in_i: their confidences (H, W).
        X_j_in_j, X_i_in_j, C_j, C_i_in_j: the same with j as the first view.
        xy_i, xy_j: (n, 2) int64 matched pixels (x, y) in i and j.
        conf: (n,) float32 match confidences ``sqrt(descconf_i * descconf_j)``.
        score: (3,) float64 (4th root of the product of the four mean confidences, sum of match
            confidences, number of matches).
    """

    i: int
    j: int
    X_i_in_i: np.ndarray
    C_i: np.ndarray
    X_j_in_i: np.ndarray
    C_j_in_i: np.ndarray
    X_j_in_j: np.ndarray
    C_j: np.ndarray
    X_i_in_j: np.ndarray
    C_i_in_j: np.ndarray
    xy_i: np.ndarray
    xy_j: np.ndarray
    conf: np.ndarray
    score: np.ndarray

    def view_of(self, img: int) -> tuple[np.ndarray, ...]:
        """(own pointmap, own conf, other's pointmap in img's frame, its conf, img's matched xy)."""
        if img == self.i:
            return self.X_i_in_i, self.C_i, self.X_j_in_i, self.C_j_in_i, self.xy_i
        if img == self.j:
            return self.X_j_in_j, self.C_j, self.X_i_in_j, self.C_i_in_j, self.xy_j
        raise InputError(f"image {img} is not in pair ({self.i}, {self.j})")


@dataclass
class CanonicalView:
    """Fused pointmap of one image. canon: (H, W, 3); rel_depth: (H, W) depth / anchor depth;
    conf: (H, W); focal: pixels; pp: (2,) pixels."""

    canon: torch.Tensor
    rel_depth: torch.Tensor
    conf: torch.Tensor
    focal: float
    pp: tuple[float, float]


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
        fb_pairs: ordered pairs (a, b) of the fallback loss (each unordered pair both ways).
        fb_target: list of ((P_a, 3) points of a predicted in b's frame, (P_a,) confidences).
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
    pairs: list[tuple[int, int]]
    m_pair: torch.Tensor
    m_pt_i: torch.Tensor
    m_pt_j: torch.Tensor
    m_conf: torch.Tensor
    pair_max_conf: torch.Tensor
    fb_pairs: list[tuple[int, int]]
    fb_target: list[tuple[torch.Tensor, torch.Tensor]]
    num_matches: torch.Tensor
    n_anchors: np.ndarray
    views: list[CanonicalView] = field(default_factory=list)

    @property
    def num_images(self) -> int:
        return int(self.image_sizes.shape[0])


def canonical_view(ptmaps: torch.Tensor, confs: torch.Tensor,
                   subsample: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Fuse the pairwise pointmaps of one image ('avg-angle' relative depths).

    Args:
        ptmaps: (n, H, W, 3) pointmaps of the image in its own frame (one per pair).
        confs: (n, H, W) their confidences (>= 1).
        subsample: anchor block size s (H and W multiples of s).

    Returns:
        canon (H, W, 3) fused pointmap, rel_depth (H, W) depth relative to the block's anchor
        (1 at anchors), conf (H, W) fused confidence.
    """
    w = confs.unsqueeze(-1) - 0.999
    canon = (w * ptmaps).sum(0) / w.sum(0)
    sl = slice(subsample // 2, None, subsample)
    depth = ptmaps[..., 2].unsqueeze(1)  # (n,1,H,W)
    centre_depth = depth[:, :, sl, sl].clip(min=torch.finfo(depth.dtype).eps)
    st_depth = F.pixel_unshuffle(depth, subsample)  # (n, s*s, h, w)
    st_conf = F.pixel_unshuffle(w[None, ..., 0].transpose(0, 1), subsample)
    xy = ptmaps[..., :2].permute(0, 3, 1, 2)
    st_xy = F.pixel_unshuffle(xy, subsample)
    n, _, h, wd = st_xy.shape
    radius = (st_xy.view(n, 2, -1, h, wd) - xy[:, :, None, sl, sl]).norm(dim=1).clip(min=1e-8)
    angle = torch.arctan((st_depth - centre_depth) / radius)
    avg_angle = (st_conf * angle).sum(0) / st_conf.sum(0)
    st_rel = radius.mean(0) * torch.tan(avg_angle)
    rel_depth = F.pixel_shuffle((1 + st_rel / canon[sl, sl, 2]).unsqueeze(0), subsample).squeeze(0)
    conf = (w.square().sum(0) / w.sum(0)).squeeze(-1)
    return canon, rel_depth.squeeze(0), conf


def estimate_focal_weiszfeld(pts: torch.Tensor, pp: torch.Tensor, min_rel: float = 0.5,
                             max_rel: float = 3.5, iters: int = 10) -> torch.Tensor:
    """Focal of a pointmap in its own camera frame (robust L1 fit of ``pixel - pp = f * xy / z``).

    Args:
        pts: (H, W, 3) points in the camera frame.
        pp: (2,) principal point (pixels, integer-index convention).
        min_rel, max_rel: clip to ``[min_rel, max_rel] * max(H, W) / (2 tan 30deg)``.

    Returns:
        0-d tensor, focal in pixels.
    """
    H, W = pts.shape[:2]
    ys, xs = torch.meshgrid(torch.arange(H, dtype=pts.dtype), torch.arange(W, dtype=pts.dtype),
                            indexing="ij")
    pix = torch.stack((xs, ys), -1).reshape(-1, 2) - pp.reshape(1, 2)
    p = pts.reshape(-1, 3)
    xyz = (p[:, :2] / p[:, 2:3]).nan_to_num(posinf=0, neginf=0)
    dot_xp = (xyz * pix).sum(-1)
    dot_xx = xyz.square().sum(-1)
    focal = dot_xp.mean() / dot_xx.mean()
    for _ in range(iters):
        dis = (pix - focal * xyz).norm(dim=-1)
        wgt = dis.clip(min=1e-8).reciprocal()
        focal = (wgt * dot_xp).mean() / (wgt * dot_xx).mean()
    base = max(H, W) / (2 * math.tan(math.radians(30)))
    return focal.clip(min=min_rel * base, max=max_rel * base)


def anchor_depth_offsets(rel_depth: torch.Tensor, xy: torch.Tensor,
                         subsample: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Attach pixels to the anchor of their block.

    Args:
        rel_depth: (H, W) relative depth (1 at anchors).
        xy: (n, 2) int64 pixels (x, y).
        subsample: block size s.

    Returns:
        (n,) int64 anchor index (row-major over the (H/s, W/s) grid) and (n,) depth ratios.
    """
    H, W = rel_depth.shape
    ws = len(range(subsample // 2, W, subsample))
    sl = slice(subsample // 2, None, subsample)
    core = rel_depth[sl, sl].reshape(-1)
    px, py = xy[:, 0].long(), xy[:, 1].long()
    idx = (py // subsample) * ws + (px // subsample)
    return idx, rel_depth[py, px] / core[idx]


def _check_pair(p: PairData, sizes: dict[int, tuple[int, int]], subsample: int) -> None:
    for img, X in ((p.i, p.X_i_in_i), (p.j, p.X_j_in_j)):
        H, W = X.shape[:2]
        if H % subsample or W % subsample:
            raise InputError(f"image {img}: size {W}x{H} is not a multiple of "
                             f"subsample={subsample}")
        if sizes.setdefault(img, (H, W)) != (H, W):
            raise InputError(f"image {img} has two sizes across pairs: {sizes[img]} and {(H, W)}")
    n = len(p.conf)
    if p.xy_i.shape != (n, 2) or p.xy_j.shape != (n, 2):
        raise InputError(f"pair ({p.i}, {p.j}): xy_i/xy_j must be ({n}, 2)")


def _neighbour_order(num_images: int, pairs: Sequence[PairData]) -> list[list[int]]:
    """For each image, indices into ``pairs`` in order of first appearance."""
    order: list[list[int]] = [[] for _ in range(num_images)]
    for k, p in enumerate(pairs):
        order[p.i].append(k)
        order[p.j].append(k)
    return order


def build_problem(num_images: int, pairs: Sequence[PairData], subsample: int = 8,
                  dtype: torch.dtype = torch.float32) -> AlignmentProblem:
    """Canonical views, focals, anchors and flattened match arrays.

    Args:
        num_images: N.
        pairs: one :class:`PairData` per unordered pair, in the order the scene graph first lists
            each (this order fixes the order of each image's points, as in the official code).
        subsample: anchor grid step s.

    Raises:
        InputError: an image in no pair, inconsistent sizes, sizes not multiples of s.
    """
    sizes: dict[int, tuple[int, int]] = {}
    for p in pairs:
        _check_pair(p, sizes, subsample)
    missing = [k for k in range(num_images) if k not in sizes]
    if missing:
        raise InputError(f"images {missing} are in no pair; every image needs at least one pair")
    order = _neighbour_order(num_images, pairs)
    t = lambda a: torch.as_tensor(np.asarray(a), dtype=dtype)  # noqa: E731
    views, core, pt_img, pt_xy, pt_anchor, pt_off = [], [], [], [], [], []
    anchor_start, pt_start = [0], [0]  # running offsets
    pt_of: dict[tuple[int, int], torch.Tensor] = {}  # (pair k, img) -> global point indices
    for img in range(num_images):
        own = [pairs[k].view_of(img) for k in order[img]]
        canon, rel, conf = canonical_view(torch.stack([t(o[0]) for o in own]),
                                          torch.stack([t(o[1]) for o in own]), subsample)
        H, W = canon.shape[:2]
        pp = torch.tensor([W / 2, H / 2], dtype=dtype)
        focal = estimate_focal_weiszfeld(canon, pp)
        views.append(CanonicalView(canon, rel, conf, float(focal), (W / 2, H / 2)))
        sl = slice(subsample // 2, None, subsample)
        core.append(canon[sl, sl, 2].reshape(-1))
        a0 = anchor_start[-1]
        for k, o in zip(order[img], own):
            xy = torch.as_tensor(o[4]).long()
            idx, off = anchor_depth_offsets(rel, xy, subsample)
            pt_of[k, img] = torch.arange(len(xy)) + pt_start[-1]
            pt_start.append(pt_start[-1] + len(xy))
            pt_img.append(torch.full((len(xy),), img, dtype=torch.long))
            pt_xy.append(xy.to(dtype))
            pt_anchor.append(idx + a0)
            pt_off.append(off)
        anchor_start.append(a0 + core[-1].numel())
    return _assemble(num_images, pairs, views, core, anchor_start, pt_img, pt_xy, pt_anchor, pt_off,
                     pt_of, subsample, dtype)


def _assemble(num_images, pairs, views, core, anchor_start, pt_img, pt_xy, pt_anchor, pt_off,
              pt_of, subsample, dtype) -> AlignmentProblem:
    """Second half of :func:`build_problem`: match arrays, fallback targets, scores."""
    pt_img_t = torch.cat(pt_img)
    img_start = np.searchsorted(pt_img_t.numpy(), np.arange(num_images + 1))
    m_pair, m_i, m_j, m_conf, maxc = [], [], [], [], []
    num_matches = torch.zeros(num_images, num_images, dtype=dtype)
    fb_pairs, fb_target = [], []
    sl = slice(None, None, subsample)
    pt_anchor_t = torch.cat(pt_anchor)
    for k, p in enumerate(pairs):
        conf = torch.as_tensor(p.conf, dtype=dtype)
        m_pair.append(torch.full((len(conf),), k, dtype=torch.long))
        m_i.append(pt_of[k, p.i])
        m_j.append(pt_of[k, p.j])
        m_conf.append(conf)
        maxc.append(conf.max() if len(conf) else torch.tensor(0.0, dtype=dtype))
        num_matches[p.i, p.j] = num_matches[p.j, p.i] = float(len(conf))
        for a, b in ((p.i, p.j), (p.j, p.i)):
            # b's prediction of a's points, on the 0-based s-grid, at a's matched pixels' anchors
            X_a_in_b = p.view_of(b)[2]
            C_a_in_b = p.view_of(b)[3]
            grid = torch.as_tensor(X_a_in_b[sl, sl].reshape(-1, 3), dtype=dtype)
            gconf = torch.as_tensor(C_a_in_b[sl, sl].reshape(-1), dtype=dtype)
            local = pt_anchor_t[img_start[a]:img_start[a + 1]] - anchor_start[a]
            fb_pairs.append((a, b))
            fb_target.append((grid[local], gconf[local]))
    sizes = torch.tensor([[v.canon.shape[1], v.canon.shape[0]] for v in views], dtype=dtype)
    return AlignmentProblem(
        image_sizes=sizes,
        base_focals=torch.tensor([v.focal for v in views], dtype=dtype),
        pps=torch.tensor([v.pp for v in views], dtype=dtype),
        core_depth=torch.cat(core), anchor_start=np.asarray(anchor_start),
        pt_img=pt_img_t, pt_xy=torch.cat(pt_xy), pt_anchor=pt_anchor_t,
        pt_offset=torch.cat(pt_off), pt_start=img_start,
        pairs=[(p.i, p.j) for p in pairs], m_pair=torch.cat(m_pair), m_pt_i=torch.cat(m_i),
        m_pt_j=torch.cat(m_j), m_conf=torch.cat(m_conf), pair_max_conf=torch.stack(maxc),
        fb_pairs=fb_pairs, fb_target=fb_target, num_matches=num_matches,
        n_anchors=np.diff(np.asarray(anchor_start)), views=views)


def dense_depth(view: CanonicalView, anchor_depth: np.ndarray, focal: float,
                subsample: int = 8) -> np.ndarray:
    """Dense depth of one image from its optimised anchor depths.

    Every pixel takes its block anchor's depth times its canonical depth ratio, the ratio's
    deviation from 1 rescaled by ``base_focal / focal`` (as for the matched points).

    Args:
        view: the image's canonical view.
        anchor_depth: (h*w,) optimised anchor depths (row-major anchor grid).
        focal: optimised focal (pixels).

    Returns:
        (H, W) float32 depth along the optical axis, in the alignment's world units.
    """
    H, W = view.rel_depth.shape
    ys, xs = np.mgrid[:H, :W]
    xy = torch.from_numpy(np.stack((xs.ravel(), ys.ravel()), 1))
    idx, off = anchor_depth_offsets(view.rel_depth, xy, subsample)
    off = 1 + (off.double() - 1) * (view.focal / focal)
    d = torch.as_tensor(np.asarray(anchor_depth), dtype=torch.float64)[idx] * off
    return d.reshape(H, W).float().numpy()
