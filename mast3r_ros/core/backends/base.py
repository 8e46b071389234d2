"""The matcher-backend interface shared by ``mast3r`` (the product) and ``sift`` (baseline).

A backend turns a query frame and a few keyframes into 2D-2D matches in ORIGINAL image pixels
(pixel-centre convention). Backends may cache per-query work between :meth:`global_descriptor` and
:meth:`match` of the same :class:`~mast3r_ros.core.types.Frame` object (identity, not content).
"""

from __future__ import annotations

from typing import Optional, Protocol, Sequence, runtime_checkable

import numpy as np

from mast3r_ros.core.map.keyframe import Keyframe, KeyframeMap
from mast3r_ros.core.types import Frame, Matches

__all__ = ["MatcherBackend"]


@runtime_checkable
class MatcherBackend(Protocol):
    """What the localizer needs from a matcher.

    Attributes:
        name: backend name ("mast3r", "sift").
        descriptor_name: name/version of its global descriptor (stored in ``MapMeta.descriptor``).
        timings: seconds per sub-stage of the last call(s) for the current query (e.g.
            ``preprocess``, ``encode``, ``decode``, ``matching``); reset by :meth:`global_descriptor`.
    """

    name: str
    descriptor_name: str
    timings: dict[str, float]

    def prepare_map(self, kmap: KeyframeMap) -> None:
        """Compute (or validate cached) per-keyframe features and ``kmap.global_desc`` in place."""

    def global_descriptor(self, frame: Frame) -> np.ndarray:
        """(D,) float32 L2-normalised global descriptor of the query (same space as the map's)."""

    def match(self, frame: Frame, keyframes: Sequence[Keyframe]) -> list[Matches]:
        """Matches of the query against each keyframe (one :class:`Matches` per keyframe, in order).

        Pixels are in the original query / keyframe images. May be empty (0 matches).
        """

    def estimate_intrinsics(self, frame: Frame) -> Optional[np.ndarray]:
        """(3, 3) K of the query estimated from the data (None when this backend cannot)."""

    def query_depth(self, frame: Frame, xy: np.ndarray) -> Optional[np.ndarray]:
        """(N,) metric depth of query pixels predicted by the backend (None when it cannot)."""
