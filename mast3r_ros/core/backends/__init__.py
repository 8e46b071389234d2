"""Matcher backends: ``mast3r`` (the product) and ``sift`` (classical baseline), one interface."""

from __future__ import annotations

from mast3r_ros.core.backends.base import MatcherBackend
from mast3r_ros.core.config import LocalizerConfig
from mast3r_ros.core.errors import ConfigError

__all__ = ["MatcherBackend", "create_backend", "BACKENDS"]

#: backend names accepted by :func:`create_backend`
BACKENDS = ("mast3r", "sift")


def create_backend(config: LocalizerConfig) -> MatcherBackend:
    """Instantiate the backend named by ``config.backend``.

    For ``mast3r`` this loads the checkpoint of ``config.model`` (or ``$MAST3R_CHECKPOINT``) and
    raises :class:`~mast3r_ros.core.errors.CheckpointError` when it is missing or invalid; it never
    falls back to ``sift`` silently.
    """
    if config.backend == "sift":
        from mast3r_ros.core.backends.sift import SiftBackend

        return SiftBackend()
    if config.backend == "mast3r":
        from mast3r_ros.core.backends.mast3r import Mast3rBackend

        return Mast3rBackend.from_config(config)
    raise ConfigError(f"unknown matcher backend {config.backend!r}; use one of {list(BACKENDS)}")
