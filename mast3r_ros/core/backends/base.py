"""The matcher-backend interface shared by ``mast3r`` (the product) and ``sift`` (baseline).

A backend is a pure function of typed values: :meth:`MatcherBackend.encode` turns an image into an
:class:`~mast3r_ros.core.types.Encoding` (global descriptor + typed local features), and
:meth:`MatcherBackend.match` turns a query encoding and keyframe encodings into 2D-2D matches in
ORIGINAL image pixels (pixel-centre convention), plus the query's predicted geometry when it was
asked for. Nothing is cached on the backend between calls: whatever a later stage needs is in the
returned values, and keyframe encodings are owned by the map.
"""

from __future__ import annotations

from typing import Optional, Protocol, Sequence, runtime_checkable

import numpy as np

from mast3r_ros.core.config import MatchingConfig
from mast3r_ros.core.features import EncoderId
from mast3r_ros.core.types import Encoding, KeyframeEncoding, MatchResult

__all__ = ["MatcherBackend"]


@runtime_checkable
class MatcherBackend(Protocol):
    """What the localizer, the tracker and the mapper need from a matcher.

    Attributes:
        name: backend name ("mast3r", "sift").
        encoder_id: identity of its encodings; a map's stored encodings are used only under an
            equal identity.
    """

    name: str
    encoder_id: EncoderId

    def encode(self, rgb: np.ndarray) -> Encoding:
        """Encode one (H, W, 3) uint8 RGB image.

        Raises:
            InputError: an image the backend cannot process (e.g. too small for the network).
        """
        ...

    def match(self, query: Encoding, refs: Sequence[KeyframeEncoding], config: MatchingConfig, *,
              geometry: bool = False, query_image: Optional[np.ndarray] = None) -> MatchResult:
        """Match the query against each reference (one ``PairMatches`` per reference, in order).

        Args:
            query: the query's encoding (same ``encoder_id``).
            refs: keyframe encodings to match against.
            config: matching settings (read per call, so run-time parameter changes apply).
            geometry: also return the query's predicted geometry (depth at pixels, K estimate)
                when the backend can predict it.
            query_image: the query's original (H, W, 3) uint8 image, used by coarse-to-fine.

        Raises:
            InputError: an encoding of another encoder.
        """
        ...
