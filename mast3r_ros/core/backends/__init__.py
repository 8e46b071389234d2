"""Matcher backends: ``mast3r`` (the product) and ``sift`` (classical baseline), one interface."""

from __future__ import annotations

import logging
from typing import Callable, Optional

from mast3r_ros.core.backends.base import MatcherBackend
from mast3r_ros.core.config import LocalizerConfig
from mast3r_ros.core.errors import ConfigError, MapCompatibilityError
from mast3r_ros.core.map.keyframe import KeyframeMap

__all__ = ["MatcherBackend", "create_backend", "encode_map", "BACKENDS"]

logger = logging.getLogger(__name__)

#: backend names accepted by :func:`create_backend`
BACKENDS = ("mast3r", "sift")


def create_backend(config: LocalizerConfig) -> MatcherBackend:
    """Instantiate the backend named by ``config.backend``.

    For ``mast3r`` this loads the checkpoint of ``config.model`` (or ``$MAST3R_CHECKPOINT``)
    through :func:`~mast3r_ros.core.model.factory.make_engine` and raises
    :class:`~mast3r_ros.core.errors.CheckpointError` when it is missing or invalid; it never falls
    back to ``sift`` silently.
    """
    if config.backend == "sift":
        from mast3r_ros.core.backends.sift import SiftBackend

        return SiftBackend(config.sift)
    if config.backend == "mast3r":
        from mast3r_ros.core.backends.mast3r import Mast3rBackend
        from mast3r_ros.core.model.factory import make_engine

        return Mast3rBackend(make_engine(config.model))
    raise ConfigError(f"unknown matcher backend {config.backend!r}; use one of {list(BACKENDS)}")


def encode_map(kmap: KeyframeMap, backend: MatcherBackend,
               progress: Optional[Callable[[int, int], None]] = None) -> int:
    """Give every keyframe of ``kmap`` an encoding of ``backend`` (in place).

    Stored encodings of the same encoder are kept; keyframes without one are encoded. A map
    encoded by another backend is re-encoded in memory (with a warning: save it to keep the new
    encodings). A map encoded by the same backend with other weights or preprocessing is refused:
    its stored network data belong to another model.

    Args:
        kmap: the map.
        backend: the encoder.
        progress: called with (done, total) after each encoded keyframe.

    Returns:
        The number of keyframes encoded.

    Raises:
        MapCompatibilityError: same backend, other model / preprocessing.
    """
    have, want = kmap.encoder, backend.encoder_id
    if have is not None and have != want:
        if have.backend == want.backend and want.backend != "sift":
            raise MapCompatibilityError(
                f"map was encoded by {have.backend} with another model or preprocessing "
                f"({have.mismatch(want)}); rebuild the map with the configured model or configure "
                "the map's model")
        logger.warning("map encodings come from %s (%s); re-encoding %d keyframes with %s",
                       have.backend, have.mismatch(want), len(kmap), want.backend)
        kmap.clear_encodings()
    todo = kmap.missing_encodings()
    for n, kid in enumerate(todo):
        kmap.set_encoding(kid, backend.encode(kmap.keyframe(kid).rgb))
        if progress is not None:
            progress(n + 1, len(todo))
    if todo:
        logger.info("%s: encoded %d of %d keyframes", backend.name, len(todo), len(kmap))
    return len(todo)
