"""Coarse-to-fine matching of two full-resolution images (the official visloc ``--coarse_to_fine``).

1. Coarse: both images at network resolution, one forward pass, FRM on the descriptors, matches
   within ``border`` pixels of an image edge dropped, mapped to original pixels (pixel-centre
   convention, :meth:`ImageTransform.to_original`). Callers that already have coarse matches
   (e.g. from a batched decode against several keyframes) pass them as ``coarse``.
2. Crop pairs of the full-resolution images (:func:`~.c2f.select_crop_pairs`), each crop of its
   image's network resolution, so crops are exact pixel copies (no resampling).
3. The engine runs on the crop pairs in batches of ``crop_batch``; FRM per pair.
4. Matches are shifted by their crops' offsets into original pixels, merged, and exact duplicate
   pairs removed (keeping the highest confidence).

As in the official code the reference image is image 1 of every FRM call (seeds in the reference),
and the crop selection is called with the reference first; results are returned query-first.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Optional, Protocol

import numpy as np
import torch

from mast3r_ros.core.errors import MatchingError
from mast3r_ros.core.matching.c2f import crop_slice, select_crop_pairs
from mast3r_ros.core.matching.filtering import gather_confidence, is_confident, visloc_confidence
from mast3r_ros.core.matching.frm import fast_reciprocal_nn

__all__ = ["C2FResult", "coarse_to_fine_match"]

logger = logging.getLogger(__name__)


class PairEngine(Protocol):
    """What coarse-to-fine needs from :class:`~mast3r_ros.core.model.InferenceEngine`."""

    def forward_pair(self, img1: torch.Tensor, img2: torch.Tensor, heads=...):  # pragma: no cover
        ...


@dataclass
class C2FResult:
    """Matches between two full-resolution images.

    Attributes:
        xy_q: (N, 2) float64 (x, y) pixels in the original query image.
        xy_r: (N, 2) float64 pixels in the original reference image.
        conf: (N,) float64 ``min(desc_conf_q, desc_conf_r)`` of each match (official visloc score).
        crops: selected ``(crop_q, crop_r)`` windows ``[x0, y0, x1, y1]`` (empty: coarse only).
        coarse_xy_q: (M, 2) coarse matches in original query pixels; ``coarse_xy_r`` likewise.
        refined: True when the matches come from crops, False when they are the coarse ones.
    """

    xy_q: np.ndarray
    xy_r: np.ndarray
    conf: np.ndarray
    crops: list = field(default_factory=list)
    coarse_xy_q: np.ndarray = field(default_factory=lambda: np.zeros((0, 2)))
    coarse_xy_r: np.ndarray = field(default_factory=lambda: np.zeros((0, 2)))
    refined: bool = False


def _check_rgb(rgb: np.ndarray, name: str) -> np.ndarray:
    if not isinstance(rgb, np.ndarray) or rgb.dtype != np.uint8 or rgb.ndim != 3 \
            or rgb.shape[2] != 3:
        raise MatchingError(f"{name} must be a uint8 (H, W, 3) RGB array")
    if min(rgb.shape[:2]) < 16:
        raise MatchingError(f"{name} of {rgb.shape[1]}x{rgb.shape[0]} is too small to match")
    return rgb


def _inside(xy: torch.Tensor, hw: tuple[int, int], border: int) -> torch.Tensor:
    h, w = hw
    return ((xy[:, 0] >= border) & (xy[:, 0] < w - border) & (xy[:, 1] >= border)
            & (xy[:, 1] < h - border))


def _coarse(engine: PairEngine, rgb_q: np.ndarray, rgb_r: np.ndarray, size: int, subsample: int,
            border: int, dist: str) -> tuple[np.ndarray, np.ndarray, tuple, tuple]:
    from mast3r_ros.core.model import preprocess_image  # the model package is heavy: import late

    pre_q, pre_r = preprocess_image(rgb_q, size=size), preprocess_image(rgb_r, size=size)
    out_q, out_r = engine.forward_pair(pre_q.tensor, pre_r.tensor, heads=("desc",))
    xy_r, xy_q = fast_reciprocal_nn(out_r.desc[0], out_q.desc[0], subsample=subsample, dist=dist)
    hw_q, hw_r = tuple(out_q.desc.shape[1:3]), tuple(out_r.desc.shape[1:3])
    keep = _inside(xy_q, hw_q, border) & _inside(xy_r, hw_r, border)
    xy_q, xy_r = xy_q[keep].cpu().numpy(), xy_r[keep].cpu().numpy()
    res_q = (pre_q.transform.net_size[1], pre_q.transform.net_size[0])
    res_r = (pre_r.transform.net_size[1], pre_r.transform.net_size[0])
    return pre_q.transform.to_original(xy_q), pre_r.transform.to_original(xy_r), res_q, res_r


def _network_resolution(rgb: np.ndarray, size: int) -> tuple[int, int]:
    """(H, W) the network sees for an image of this shape (same rule as preprocess_image)."""
    from mast3r_ros.core.model import preprocess_image

    probe = preprocess_image(np.zeros(rgb.shape, np.uint8), size=size)
    return probe.transform.net_size[1], probe.transform.net_size[0]


def _crop_batch(rgb: np.ndarray, cells: list[np.ndarray]) -> torch.Tensor:
    from mast3r_ros.core.model import normalize_rgb

    return torch.cat([normalize_rgb(rgb[crop_slice(c)]) for c in cells])


def _fine(engine: PairEngine, rgb_q: np.ndarray, rgb_r: np.ndarray, pairs: list, crop_batch: int,
          subsample: int, pixel_tol: float, dist: str) -> tuple[list, list, list]:
    all_q, all_r, all_c = [], [], []
    for b0 in range(0, len(pairs), crop_batch):
        chunk = pairs[b0:b0 + crop_batch]
        imgs_q = _crop_batch(rgb_q, [cq for cq, _ in chunk])
        imgs_r = _crop_batch(rgb_r, [cr for _, cr in chunk])
        out_q, out_r = engine.forward_pair(imgs_q, imgs_r, heads=("desc",))
        for i, (cq, cr) in enumerate(chunk):
            xy_r, xy_q = fast_reciprocal_nn(out_r.desc[i], out_q.desc[i], subsample=subsample,
                                            pixel_tol=pixel_tol, dist=dist)
            conf = visloc_confidence(gather_confidence(xy_q, out_q.desc_conf[i]),
                                     gather_confidence(xy_r, out_r.desc_conf[i]))
            all_q.append(xy_q.cpu().numpy() + cq[:2])  # crop pixel -> original pixel (no scaling)
            all_r.append(xy_r.cpu().numpy() + cr[:2])
            all_c.append(conf.float().cpu().numpy().astype(np.float64))
    return all_q, all_r, all_c


def _merge(all_q: list, all_r: list, all_c: list) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Concatenate and remove duplicate (xy_q, xy_r) pairs, keeping the highest confidence."""
    if not all_q:
        return np.zeros((0, 2)), np.zeros((0, 2)), np.zeros(0)
    xy = np.concatenate([np.concatenate(all_q), np.concatenate(all_r)], axis=1).astype(np.int64)
    conf = np.concatenate(all_c)
    order = np.argsort(-conf, kind="stable")  # best first, so np.unique keeps the best copy
    uniq, first = np.unique(xy[order], axis=0, return_index=True)
    return uniq[:, :2].astype(np.float64), uniq[:, 2:].astype(np.float64), conf[order][first]


def coarse_to_fine_match(engine: PairEngine, rgb_q: np.ndarray, rgb_r: np.ndarray, *,
                         size: int = 512,
                         subsample: int = 8, fine_pixel_tol: float = 0, overlap: float = 0.5,
                         crop_batch: int = 8, max_crop_pairs: Optional[int] = None, border: int = 3,
                         dist: str = "dot", coarse: Optional[tuple[np.ndarray, np.ndarray]] = None,
                         conf_threshold: Optional[float] = None) -> C2FResult:
    """Match two full-resolution images by refining coarse matches on full-resolution crops.

    Args:
        engine: object with ``forward_pair(img1, img2, heads)`` like ``InferenceEngine``.
        rgb_q: (Hq, Wq, 3) uint8 query image at full resolution; ``rgb_r`` the reference.
        size: network long side (512 for the release checkpoint).
        subsample: FRM seed grid step at both stages.
        fine_pixel_tol: FRM ``pixel_tol`` on crops (0 = strict reciprocity; > 0 keeps near-
            reciprocal seeds, as the official fine stage does).
        overlap: crop grid overlap in [0, 1).
        crop_batch: crop pairs per engine call.
        max_crop_pairs: keep only the first (most useful) crop pairs; None keeps all.
        border: coarse matches closer than this to an edge (network pixels) are dropped.
        dist: FRM distance, ``"dot"`` or ``"l2"``.
        coarse: optional precomputed coarse matches ``(xy_q, xy_r)`` in original pixels (N, 2);
            skips the coarse forward pass.
        conf_threshold: keep matches with ``conf >= conf_threshold`` (official rule,
            :func:`~.filtering.is_confident`); None keeps all.

    Returns:
        :class:`C2FResult`. When both images fit the network size (nothing to refine) or no crop
        pair holds enough coarse matches, the coarse matches are returned (``refined=False``,
        with ``conf`` NaN when they were given by the caller).

    Raises:
        MatchingError: invalid images or arguments.
    """
    rgb_q, rgb_r = _check_rgb(rgb_q, "rgb_q"), _check_rgb(rgb_r, "rgb_r")
    if not isinstance(crop_batch, int) or crop_batch < 1:
        raise MatchingError(f"crop_batch must be an int >= 1, got {crop_batch!r}")
    if coarse is None:
        cq, cr, res_q, res_r = _coarse(engine, rgb_q, rgb_r, size, subsample, border, dist)
    else:
        cq, cr = (np.asarray(c, dtype=np.float64).reshape(-1, 2) for c in coarse)
        if cq.shape != cr.shape:
            raise MatchingError(f"coarse matches differ in shape: {cq.shape} vs {cr.shape}")
        res_q, res_r = _network_resolution(rgb_q, size), _network_resolution(rgb_r, size)
    coarse_only = C2FResult(cq, cr, np.full(len(cq), np.nan), [], cq, cr, False)
    fits = max(rgb_q.shape[:2]) <= size and max(rgb_r.shape[:2]) <= size
    too_small = any(r[0] > im.shape[0] or r[1] > im.shape[1]
                    for r, im in ((res_q, rgb_q), (res_r, rgb_r)))
    if fits or too_small or len(cq) == 0:
        return coarse_only
    pairs_rq = select_crop_pairs(rgb_r, rgb_q, cr, cq, maxdim=size, overlap=overlap,
                                 forced_resolution=(res_r, res_q))
    pairs = [(c_q, c_r) for c_r, c_q in pairs_rq][:max_crop_pairs]
    if not pairs:
        logger.info("coarse-to-fine: no crop pair holds enough coarse matches; keeping coarse ones")
        return coarse_only
    xy_q, xy_r, conf = _merge(*_fine(engine, rgb_q, rgb_r, pairs, crop_batch, subsample,
                                     fine_pixel_tol, dist))
    if conf_threshold is not None:
        keep = is_confident(conf, conf_threshold)
        xy_q, xy_r, conf = xy_q[keep], xy_r[keep], conf[keep]
    logger.debug("coarse-to-fine: %d coarse, %d crop pairs, %d fine matches", len(cq), len(pairs),
                 len(conf))
    return C2FResult(xy_q, xy_r, conf, pairs, cq, cr, True)
