"""Coarse-to-fine crop-pair selection (MASt3R's ``mast3r.utils.coarse_to_fine`` semantics).

Given coarse correspondences between two full-resolution images, choose pairs of crops (one per
image, each the network's input size) that together cover ~90 % of the correspondence weight:

1. an overlapping grid of windows per image (:func:`overlapping_grid`),
2. windows re-centred and forced to the crop resolution (:func:`normalize_windows`),
3. every window with >= 10 correspondences predicts its partner window in the other image, and
   each correspondence gets a Gaussian weight in that pair (:func:`score_cells`),
4. greedy set cover on the weights (:func:`greedy_selection`); the yield order is the pick order.

Numerics follow the reference step by step (float32 NaN-masked means/quantiles, the same
promotions), so crops are identical to the official ones (``shared/golden/c2f``).

Deliberate differences: ``forced_resolution=None`` (the reference's default, which crashes there)
keeps each window's centre and uses a 3.01:4 aspect clipped to the image (the reference's own
``None`` branch of the window normalisation); numpy integers are accepted in a flat ``(H, W)``;
:func:`select_crop_pairs` returns a list of ``(crop_q, crop_r)`` (no ``pair_tag`` closure, use
:func:`crop_tag`); :func:`greedy_selection` stops when no candidate adds weight (the reference
would loop forever).
"""

from __future__ import annotations

import logging
from numbers import Integral
from typing import Optional, Sequence, Union, cast

import numpy as np

from mast3r_ros.core.errors import MatchingError

__all__ = ["crop_slice", "crop_tag", "start_positions", "overlapping_grid", "normalize_windows",
           "score_cells", "greedy_selection", "select_crop_pairs", "split_resolution"]

logger = logging.getLogger(__name__)

Resolution = Optional[tuple[int, int]]
ShapeLike = Union[np.ndarray, Sequence[int]]


def crop_tag(cell: Sequence[int]) -> str:
    """``'[y0:y1,x0:x1]'`` for a window ``[x0, y0, x1, y1]``."""
    return f"[{cell[1]}:{cell[3]},{cell[0]}:{cell[2]}]"


def crop_slice(cell: Sequence[int]) -> tuple[slice, slice]:
    """(rows, cols) slices selecting window ``[x0, y0, x1, y1]`` of an (H, W, ...) array."""
    return slice(cell[1], cell[3]), slice(cell[0], cell[2])


def start_positions(total: int, win: int, overlap: float) -> np.ndarray:
    """Start offsets of windows of size ``win`` covering ``[0, total)`` with at least ``overlap``.

    The first window starts at 0, the last at ``total - win``; ``2 + floor((L - 1) / s)`` windows
    with ``L = total - win`` and spacing ``s = win * (1 - overlap)``, rounded evenly spaced starts.
    """
    if not 0 <= overlap < 1:
        raise MatchingError(f"overlap must be in [0, 1), got {overlap}")
    if total < win or win <= 0:
        raise MatchingError(f"window {win} px does not fit in {total} px")
    spacing = win * (1 - overlap)
    last = total - win
    count = 2 + int((last - 1) // spacing)
    return np.linspace(0, last, count).round().astype(int)


def overlapping_grid(h: int, w: int, size: int, overlap: float) -> np.ndarray:
    """(n, 4) int windows ``[x0, y0, x1, y1]`` tiling an (h, w) image, y-major order.

    Window size: ``(h * size // max(h, w)) // 16 * 16`` by ``(w * size // max(h, w)) // 16 * 16``.
    """
    win_h = (h * size // max(h, w)) // 16 * 16
    win_w = (w * size // max(h, w)) // 16 * 16
    xs = start_positions(w, win_w, overlap)
    ys = start_positions(h, win_h, overlap)
    x0, y0 = np.meshgrid(xs, ys, indexing="xy")
    starts = np.stack([x0, y0], axis=-1)
    return np.concatenate([starts, starts + (win_w, win_h)], axis=-1).reshape(-1, 4)


def _sizes(cells: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    width, height = cells[:, 2] - cells[:, 0], cells[:, 3] - cells[:, 1]
    if len(cells) and (width.min() < 0 or height.min() < 0):
        raise MatchingError("windows must have x1 >= x0 and y1 >= y0")
    return width, height


def _target_sizes(width: np.ndarray, height: np.ndarray, h: int, w: int,
                  resolution: Resolution) -> tuple[np.ndarray, np.ndarray]:
    width2, height2 = width.clip(max=w), height.clip(max=h)
    if resolution is None:
        tall = width < height
        width2[tall] = (height2[tall] * 3.01 / 4).clip(max=w)
        height2[~tall] = (width2[~tall] * 3.01 / 4).clip(max=h)
    else:
        height2[:], width2[:] = resolution
    return width2, height2


def normalize_windows(cells: np.ndarray, h: int, w: int,
                      resolution: Resolution = None) -> np.ndarray:
    """Resize windows around their centre to ``resolution`` and shift them inside the image.

    Args:
        cells: (n, 4) windows ``[x0, y0, x1, y1]`` (float or int) in pixels.
        h, w: image size the windows must fit in.
        resolution: forced (height, width), or None for a 3.01:4 aspect clipped to the image.

    Returns:
        (n, 4) int64 windows of exactly the target size with ``0 <= x0, x1 <= w, 0 <= y0, y1 <= h``.
    """
    cells = np.asarray(cells, dtype=np.float64)
    width, height = _sizes(cells)
    width2, height2 = _target_sizes(width, height, h, w, resolution)
    if resolution is not None and (resolution[0] > h or resolution[1] > w):
        raise MatchingError(f"crop resolution {tuple(resolution)} (H, W) exceeds the {h}x{w} image")
    out = cells.copy()
    out[:, 0] -= (width2 - width) / 2
    out[:, 2] += (width2 - width) / 2
    out[:, 1] -= (height2 - height) / 2
    out[:, 3] += (height2 - height) / 2
    out = np.floor(out).astype(np.int64)
    got_w, got_h = _sizes(out)
    want_w, want_h = width2.astype(np.int64), height2.astype(np.int64)
    out[:, 0] += got_w - want_w  # flooring may change the size by one pixel
    out[:, 1] += got_h - want_h
    out[:, 0::2] -= out[:, [0]].clip(max=0)
    out[:, 1::2] -= out[:, [1]].clip(max=0)
    out[:, 0::2] -= out[:, [2]].clip(min=w) - w
    out[:, 1::2] -= out[:, [3]].clip(min=h) - h
    return out


def _gaussian_weights(cells: np.ndarray, xy: np.ndarray, assigned: np.ndarray, var: float = 2.0
                      ) -> np.ndarray:
    """``exp(-var * |(centre - xy) / (width, height)|^2)`` where assigned, else 0: (n, N)."""
    centre = cells.reshape(-1, 2, 2).mean(axis=1)
    width, height = _sizes(cells)
    d = (centre[:, None] - xy[None]) / np.c_[width, height][:, None]
    return np.where(assigned, np.exp(-var * np.square(d).sum(axis=-1)), 0)


def _masked(xy: np.ndarray, assigned: np.ndarray) -> np.ndarray:
    out = np.empty((len(assigned), len(xy), 2), dtype=np.float32)
    out[:] = xy[None]
    out[~assigned] = np.nan
    return out


def score_cells(cells1: np.ndarray, h2: int, w2: int, xy1: np.ndarray, xy2: np.ndarray,
                min_corres: int = 10, resolution: Resolution = None
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Predict, for every window of image 1 holding enough correspondences, its image-2 window.

    Args:
        cells1: (n, 4) int windows of image 1.
        h2, w2: size of image 2.
        xy1: (N, 2) float (x, y) correspondences in image 1; ``xy2`` (N, 2) their partners.
        min_corres: windows with fewer assigned correspondences are dropped.
        resolution: (H, W) of the image-2 windows (see :func:`normalize_windows`).

    Returns:
        (kept cells1 (k, 4), cells2 (k, 4), weights (k, N) float64): a correspondence inside a
        kept window gets ``exp(-2 |d1|^2) * exp(-2 |d2|^2)`` (``d`` = offset from the window centre
        in window widths/heights), others 0. The partner window is centred on the mean of the
        assigned ``xy2`` and scaled by their 10-90 % quantile spread (>= 20 px) over that of
        ``xy1``.
    """
    x, y = xy1.T
    left, top, right, bottom = (c[:, None] for c in cells1.T)
    assigned = (left <= x) & (x < right) & (top <= y) & (y < bottom)
    valid = assigned.sum(axis=1) >= min_corres
    cells1, assigned = cells1[valid], assigned[valid]
    if not valid.any():
        return cells1, cells1.copy(), assigned.astype(np.float64)
    p1, p2 = _masked(xy1, assigned), _masked(xy2, assigned)
    centre2 = np.nanmean(p2, axis=1)
    lo1, hi1 = np.nanquantile(p1, (0.1, 0.9), axis=1)
    lo2, hi2 = np.nanquantile(p2, (0.1, 0.9), axis=1)
    spread1, spread2 = (hi1 - lo1).clip(20.0), (hi2 - lo2).clip(20.0)
    size2 = (cells1[:, 2:4] - cells1[:, 0:2]) * spread2 / spread1
    cells2 = normalize_windows(np.c_[centre2 - size2 / 2, centre2 + size2 / 2], h2, w2, resolution)
    weights = _gaussian_weights(cells1, xy1, assigned) * _gaussian_weights(cells2, xy2, assigned)
    return cells1, cells2, weights


def greedy_selection(weights: np.ndarray, target: float = 0.9) -> list[int]:
    """Greedy cover: indices of candidate pairs (rows) in pick order.

    Picks the row with the largest sum (first on ties), subtracts it from every row (clipped at
    0) and repeats until the picked weight reaches ``target`` x the sum of per-column maxima.
    Stops early (documented difference) when no row adds any weight.
    """
    if not 0 < target <= 1:
        raise MatchingError(f"target must be in (0, 1], got {target}")
    w = np.array(weights, dtype=np.float64, copy=True)
    goal = target * w.max(axis=0).sum() if w.size else 0.0
    picked: list[int] = []
    covered = np.zeros(w.shape[1])
    while covered.sum() < goal:
        sums = w.sum(axis=1)
        best = int(sums.argmax())
        if not sums[best] > 0:
            logger.debug("greedy selection stopped: no candidate adds weight")
            break
        picked.append(best)
        covered += w[best]
        w = (w - w[best]).clip(min=0)
    return picked


def _is_hw(res: object) -> bool:
    return (isinstance(res, (tuple, list, np.ndarray)) and len(res) == 2
            and all(isinstance(v, Integral) and not isinstance(v, bool) for v in res))


def split_resolution(forced_resolution: object) -> tuple[Resolution, Resolution]:
    """Per-image (H, W) crop resolutions from None, one ``(H, W)`` or ``((Hq, Wq), (Hr, Wr))``."""
    if forced_resolution is None:
        return None, None
    if _is_hw(forced_resolution):
        hw = cast(Sequence[int], forced_resolution)
        res = (int(hw[0]), int(hw[1]))
        return res, res
    if (isinstance(forced_resolution, (tuple, list, np.ndarray)) and len(forced_resolution) == 2
            and all(_is_hw(r) for r in forced_resolution)):
        rq, rr = forced_resolution
        return (int(rq[0]), int(rq[1])), (int(rr[0]), int(rr[1]))
    raise MatchingError(f"forced_resolution must be None, (H, W) or ((Hq, Wq), (Hr, Wr)); "
                        f"got {forced_resolution!r}")


def _hw(img_or_shape: ShapeLike) -> tuple[int, int]:
    shape = img_or_shape.shape if hasattr(img_or_shape, "shape") else img_or_shape
    if len(shape) < 2 or shape[0] < 1 or shape[1] < 1:
        raise MatchingError(f"expected an image or an (H, W) shape, got {tuple(shape)}")
    return int(shape[0]), int(shape[1])


def _check_corres(xy_q: np.ndarray, xy_r: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    xy_q, xy_r = np.asarray(xy_q, dtype=np.float64), np.asarray(xy_r, dtype=np.float64)
    if xy_q.ndim != 2 or xy_q.shape[-1] != 2 or xy_q.shape != xy_r.shape:
        raise MatchingError(f"correspondences must be two (N, 2) arrays, got {xy_q.shape} and "
                            f"{xy_r.shape}")
    if not (np.isfinite(xy_q).all() and np.isfinite(xy_r).all()):
        raise MatchingError("correspondences contain NaN or inf; drop them before crop selection")
    return xy_q.reshape(-1, 2), xy_r.reshape(-1, 2)


def select_crop_pairs(img_q: ShapeLike, img_r: ShapeLike, xy_q: np.ndarray, xy_r: np.ndarray,
                      maxdim: int = 512, overlap: float = 0.5, forced_resolution: object = None,
                      min_corres: int = 10,
                      target: float = 0.9) -> list[tuple[np.ndarray, np.ndarray]]:
    """Pairs of crops of a query and a reference image that cover their coarse correspondences.

    Args:
        img_q: query image (H, W, ...) or its (H, W) shape; ``img_r`` likewise for the reference.
        xy_q: (N, 2) float (x, y) pixels of the coarse correspondences in the query image.
        xy_r: (N, 2) matching pixels in the reference image.
        maxdim: long side of the grid windows in pixels (the network input size).
        overlap: minimum overlap of neighbouring grid windows, in [0, 1).
        forced_resolution: crop (H, W) for both images, ``((Hq, Wq), (Hr, Wr))``, or None.
        min_corres: correspondences needed for a window to be considered.
        target: fraction of the correspondence weight the selected pairs must cover.

    Returns:
        List of ``(crop_q, crop_r)`` int64 windows ``[x0, y0, x1, y1]`` (right/bottom exclusive),
        in selection order; empty when no window holds ``min_corres`` correspondences.
    """
    (hq, wq), (hr, wr) = _hw(img_q), _hw(img_r)
    xy_q, xy_r = _check_corres(xy_q, xy_r)
    res_q, res_r = split_resolution(forced_resolution)
    grid_q = normalize_windows(overlapping_grid(hq, wq, maxdim, overlap), hq, wq, res_q)
    grid_r = normalize_windows(overlapping_grid(hr, wr, maxdim, overlap), hr, wr, res_r)
    q_cells, q_partner, q_w = score_cells(grid_q, hr, wr, xy_q, xy_r, min_corres, res_r)
    r_cells, r_partner, r_w = score_cells(grid_r, hq, wq, xy_r, xy_q, min_corres, res_q)
    cells_q = np.concatenate([q_cells, r_partner])
    cells_r = np.concatenate([q_partner, r_cells])
    weights = np.concatenate([q_w, r_w])
    if len(weights) == 0:
        return []
    order = greedy_selection(weights, target)
    return [(cells_q[i].copy(), cells_r[i].copy()) for i in order]
