"""Match filtering and scoring by the descriptor confidences of the MASt3R head: the one home of
these rules, used by every path that filters or scores matches (localizer backend, coarse-to-fine,
the mapping pairwise stage).

Two official scores, on the descriptor confidences ``c1 = conf1[y1, x1]``, ``c2 = conf2[y2, x2]``
of a match's two pixels (:func:`gather_confidence`):

* :func:`visloc_confidence` ``min(c1, c2)``: the official localization (``visloc.py``); a match is
  kept when that score is ``>= threshold`` (:func:`is_confident`; its ``--confidence_threshold``,
  1.001 by default in :class:`~mast3r_ros.core.config.MatchingConfig`), i.e. when **both**
  confidences reach the threshold. :func:`confidence_mask` / :func:`filter_by_confidence` apply
  exactly that rule to pixel matches.
* :func:`sparse_ga_confidence` ``sqrt(c1 * c2)``: the official sparse global alignment's match
  confidence (it weights the alignment losses and gates its pairs); :func:`match_scores` gives it
  for pixel matches.
"""

from __future__ import annotations

from typing import TypeVar, Union

import numpy as np
import torch

from mast3r_ros.core.errors import MatchingError

__all__ = ["gather_confidence", "visloc_confidence", "sparse_ga_confidence", "is_confident",
           "confidence_mask", "filter_by_confidence", "match_scores"]

ArrayLike = Union[np.ndarray, torch.Tensor]
ArrayT = TypeVar("ArrayT", np.ndarray, torch.Tensor)


def _as_tensor(x: ArrayLike, name: str, device: torch.device) -> torch.Tensor:
    if isinstance(x, np.ndarray):
        x = torch.from_numpy(x)
    if not isinstance(x, torch.Tensor):
        raise MatchingError(f"{name} must be a tensor or numpy array, got {type(x).__name__}")
    return x.to(device)


def visloc_confidence(c1: torch.Tensor, c2: torch.Tensor) -> torch.Tensor:
    """(N,) official visloc match score ``min(c1, c2)`` of gathered confidences (N,) each."""
    return torch.minimum(c1, c2)


def sparse_ga_confidence(c1: torch.Tensor, c2: torch.Tensor) -> torch.Tensor:
    """(N,) official sparse-GA match confidence ``sqrt(c1 * c2)`` of gathered confidences."""
    return torch.sqrt(c1 * c2)


def is_confident(score: ArrayT, threshold: float) -> ArrayT:
    """(N,) bool ``score >= threshold`` (the official keep rule; NaN never passes).

    Works on numpy arrays and tensors alike (returns the same kind).
    """
    return score >= threshold


def gather_confidence(xy: ArrayLike, conf: ArrayLike) -> torch.Tensor:
    """(N,) ``conf[y, x]`` for every (x, y) row of ``xy`` (N, 2) integer pixels inside ``conf``
    (H, W), on ``xy``'s device.

    Raises:
        MatchingError: bad shapes, float pixels, or pixels outside ``conf``.
    """
    return _gather(xy, conf, "")


def _gather(xy: ArrayLike, conf: ArrayLike, name: str) -> torch.Tensor:
    """conf[y, x] for every (x, y) row of ``xy`` (integer pixels inside ``conf``)."""
    dev = torch.device("cpu") if isinstance(xy, np.ndarray) else xy.device
    xy_t = _as_tensor(xy, f"xy{name}", dev)
    c = _as_tensor(conf, f"conf{name}", xy_t.device)
    if xy_t.ndim != 2 or xy_t.shape[1] != 2 or c.ndim != 2:
        raise MatchingError(f"xy{name} must be (N, 2) and conf{name} (H, W); got "
                            f"{tuple(xy_t.shape)} and {tuple(c.shape)}")
    if xy_t.is_floating_point():
        raise MatchingError(f"xy{name} must hold integer pixel indices, got {xy_t.dtype}")
    xy_t = xy_t.long()
    h, w = c.shape
    if xy_t.numel() and bool(((xy_t[:, 0] < 0) | (xy_t[:, 0] >= w) | (xy_t[:, 1] < 0)
                              | (xy_t[:, 1] >= h)).any()):
        raise MatchingError(f"xy{name} has pixels outside the {w}x{h} confidence map")
    return c[xy_t[:, 1], xy_t[:, 0]]


def _pair(xy1: ArrayLike, xy2: ArrayLike, conf1: ArrayLike, conf2: ArrayLike
          ) -> tuple[torch.Tensor, torch.Tensor]:
    if len(xy1) != len(xy2):
        raise MatchingError(f"xy1 and xy2 differ in length: {len(xy1)} vs {len(xy2)}")
    c1, c2 = _gather(xy1, conf1, "1"), _gather(xy2, conf2, "2")
    return c1, c2.to(c1.device)


def confidence_mask(xy1: ArrayLike, xy2: ArrayLike, conf1: ArrayLike, conf2: ArrayLike,
                    threshold: float) -> torch.Tensor:
    """(N,) bool: ``min(conf1[y1, x1], conf2[y2, x2]) >= threshold`` (official visloc rule)."""
    c1, c2 = _pair(xy1, xy2, conf1, conf2)
    return is_confident(visloc_confidence(c1, c2), threshold)


def filter_by_confidence(xy1: ArrayLike, xy2: ArrayLike, conf1: ArrayLike, conf2: ArrayLike,
                         threshold: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Keep the matches whose two descriptor confidences both reach ``threshold``.

    Args:
        xy1: (N, 2) integer (x, y) pixels in image 1 (output of the matchers).
        xy2: (N, 2) integer (x, y) pixels in image 2.
        conf1: (H1, W1) descriptor confidence of image 1 (``desc_conf``, >= 1 for MASt3R).
        conf2: (H2, W2) descriptor confidence of image 2.
        threshold: minimum confidence; NaN confidences never pass.

    Returns:
        The kept rows of ``xy1`` and ``xy2`` (as tensors), order preserved.

    Raises:
        MatchingError: shape mismatch, float pixels, or pixels outside the confidence maps.
    """
    keep = confidence_mask(xy1, xy2, conf1, conf2, threshold)
    t1 = _as_tensor(xy1, "xy1", keep.device)
    t2 = _as_tensor(xy2, "xy2", keep.device)
    return t1[keep], t2[keep]


def match_scores(xy1: ArrayLike, xy2: ArrayLike, conf1: ArrayLike,
                 conf2: ArrayLike) -> torch.Tensor:
    """(N,) match score ``sqrt(conf1[y1, x1] * conf2[y2, x2])`` (geometric mean of confidences)."""
    c1, c2 = _pair(xy1, xy2, conf1, conf2)
    return sparse_ga_confidence(c1, c2)
