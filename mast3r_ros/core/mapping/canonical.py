"""Canonical view of each image: the fusion of its pairwise pointmaps, its focal and its anchors.

For each image, its pairwise pointmaps in its own frame are fused (weights ``conf - 0.999``), a
per-pixel depth relative to the anchor at the centre of its ``s x s`` block is averaged in
"avg-angle" mode, the focal is estimated from the fused pointmap, and every matched pixel is
attached to its block's anchor with a depth ratio.

The fusion is a sum over the image's pairs, so it streams: :class:`CanonicalAccumulator` takes one
pairwise pointmap at a time and holds O(H x W) sums whatever the number of pairs (the official
code stacks all of them).

Pixel convention of this module (the official one, kept so results match its fixtures): a pixel
``(x, y)`` is addressed by its integer index and the principal point of a canonical view is
``(W / 2, H / 2)``; :func:`canonical_focal` passes it to the package's one focal estimator.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Optional

import numpy as np
import torch
import torch.nn.functional as F

from mast3r_ros.core.errors import InputError
from mast3r_ros.core.geometry.scale import estimate_focal

__all__ = ["CanonicalView", "CanonicalAccumulator", "canonical_view", "canonical_focal",
           "anchor_depth_offsets", "dense_depth"]

logger = logging.getLogger(__name__)


@dataclass
class CanonicalView:
    """Fused pointmap of one image.

    Attributes:
        canon: (H, W, 3) fused pointmap in the image's camera frame.
        rel_depth: (H, W) depth relative to the block's anchor (1 at the anchors).
        conf: (H, W) fused confidence.
    """

    canon: torch.Tensor
    rel_depth: torch.Tensor
    conf: torch.Tensor

    @property
    def pp(self) -> tuple[float, float]:
        """Principal point (x, y) of the view in pixels: ``(W / 2, H / 2)`` (official choice)."""
        return self.canon.shape[1] / 2, self.canon.shape[0] / 2


class CanonicalAccumulator:
    """Streaming 'avg-angle' fusion of the pairwise pointmaps of one image.

    Adding the maps one by one in pair order gives the official stacked result (same sums, same
    order). Memory: 7 x H x W values, independent of the number of pairs.

    Args:
        subsample: anchor block size s (H and W multiples of s).
        dtype: accumulation dtype.
    """

    def __init__(self, subsample: int, dtype: torch.dtype = torch.float32) -> None:
        self.s, self.dtype, self.count = int(subsample), dtype, 0
        self._sum_wx: Optional[torch.Tensor] = None
        self._sum_w = self._sum_w2 = self._sum_angle = self._sum_radius = torch.zeros(0)

    def add(self, pts: torch.Tensor, conf: torch.Tensor) -> None:
        """Add one pointmap (H, W, 3) of the image in its own frame and its confidence (H, W).

        Raises:
            InputError: size not a multiple of s, or another size than the previous maps.
        """
        s = self.s
        pts, conf = pts.to(self.dtype), conf.to(self.dtype)
        H, W = pts.shape[:2]
        if H % s or W % s or conf.shape != (H, W):
            raise InputError(f"pointmap {tuple(pts.shape)} / conf {tuple(conf.shape)}: sizes "
                             f"must agree and be multiples of subsample={s}")
        if self._sum_wx is not None and self._sum_wx.shape[:2] != (H, W):
            raise InputError(f"an image has two sizes across pairs: {tuple(self._sum_wx.shape[:2])}"
                             f" and {(H, W)}")
        w = conf.unsqueeze(-1) - 0.999  # (H, W, 1)
        sl = slice(s // 2, None, s)
        depth = pts[..., 2][None, None]  # (1, 1, H, W)
        centre_depth = depth[:, :, sl, sl].clip(min=torch.finfo(depth.dtype).eps)
        st_depth = F.pixel_unshuffle(depth, s)[0]  # (s*s, h, w)
        st_conf = F.pixel_unshuffle(w[..., 0][None, None], s)[0]
        xy = pts[..., :2].permute(2, 0, 1)  # (2, H, W)
        st_xy = F.pixel_unshuffle(xy[None], s)[0]  # (2*s*s, h, w)
        h, wd = st_xy.shape[1:]
        radius = (st_xy.view(2, -1, h, wd) - xy[:, None, sl, sl]).norm(dim=0).clip(min=1e-8)
        angle = torch.arctan((st_depth - centre_depth[0]) / radius)
        terms = (w * pts, w[..., 0], w[..., 0].square(), st_conf * angle, radius)
        if self._sum_wx is None:
            self._sum_wx, self._sum_w, self._sum_w2, self._sum_angle, self._sum_radius = terms
        else:
            self._sum_wx = self._sum_wx + terms[0]
            self._sum_w = self._sum_w + terms[1]
            self._sum_w2 = self._sum_w2 + terms[2]
            self._sum_angle = self._sum_angle + terms[3]
            self._sum_radius = self._sum_radius + terms[4]
        self.count += 1

    def result(self) -> CanonicalView:
        """The fused view of the maps added so far.

        Raises:
            InputError: nothing was added.
        """
        if self._sum_wx is None:
            raise InputError("a canonical view needs at least one pointmap")
        s = self.s
        sl = slice(s // 2, None, s)
        canon = self._sum_wx / self._sum_w.unsqueeze(-1)
        avg_angle = self._sum_angle / F.pixel_unshuffle(self._sum_w[None, None], s)[0]
        st_rel = (self._sum_radius / self.count) * torch.tan(avg_angle)
        rel = F.pixel_shuffle((1 + st_rel / canon[sl, sl, 2])[None], s)[0, 0]
        return CanonicalView(canon, rel, self._sum_w2 / self._sum_w)


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
    acc = CanonicalAccumulator(subsample, ptmaps.dtype)
    for pts, conf in zip(ptmaps, confs):
        acc.add(pts, conf)
    v = acc.result()
    return v.canon, v.rel_depth, v.conf


def canonical_focal(view: CanonicalView, min_rel: float = 0.5, max_rel: float = 3.5) -> float:
    """Focal (pixels) of a canonical view, principal point ``(W / 2, H / 2)``, clipped to
    ``[min_rel, max_rel] * max(H, W) / (2 tan 30deg)`` (the official sparse-GA rule).

    A view without any usable point (non-finite fusion) gets the lower bound, with a warning.
    """
    H, W = view.canon.shape[:2]
    base = max(H, W) / (2 * math.tan(math.radians(30)))
    f = estimate_focal(view.canon, view.pp)
    if not math.isfinite(f):
        logger.warning("canonical view %dx%d has no usable point; focal set to %.1f px", W, H,
                       min_rel * base)
        return min_rel * base
    return min(max(f, min_rel * base), max_rel * base)


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


def dense_depth(rel_depth: torch.Tensor, base_focal: float, anchor_depth: np.ndarray,
                focal: float, subsample: int = 8) -> np.ndarray:
    """Dense depth of one image from its optimised anchor depths.

    Every pixel takes its block anchor's depth times its canonical depth ratio, the ratio's
    deviation from 1 rescaled by ``base_focal / focal`` (as for the matched points).

    Args:
        rel_depth: (H, W) relative depth of the image's canonical view.
        base_focal: focal of the canonical view (pixels).
        anchor_depth: (h*w,) optimised anchor depths (row-major anchor grid).
        focal: optimised focal (pixels).
        subsample: anchor block size s.

    Returns:
        (H, W) float32 depth along the optical axis, in the alignment's world units.
    """
    H, W = rel_depth.shape
    ys, xs = np.mgrid[:H, :W]
    xy = torch.from_numpy(np.stack((xs.ravel(), ys.ravel()), 1))
    idx, off = anchor_depth_offsets(rel_depth, xy, subsample)
    off = 1 + (off.double() - 1) * (base_focal / focal)
    d = torch.as_tensor(np.asarray(anchor_depth), dtype=torch.float64)[idx] * off
    return d.reshape(H, W).float().numpy()
