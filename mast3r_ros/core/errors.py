"""Typed errors of mast3r_ros.

Every error a user, a robot or a file can provoke is a subclass of :class:`Mast3rRosError`, with a
message that says what went wrong and what to do. Expected outcomes ("could not localize this
frame")
are values (``LocalizationResult(success=False, reason=...)``), never exceptions.
"""

from __future__ import annotations

__all__ = [
    "Mast3rRosError",
    "ConfigError",
    "InputError",
    "ImageError",
    "IntrinsicsError",
    "CheckpointError",
    "MapError",
    "MapFormatError",
    "MapCompatibilityError",
    "MatchingError",
    "GeometryError",
]


class Mast3rRosError(Exception):
    """Base class of every error raised on purpose by mast3r_ros."""


class ConfigError(Mast3rRosError, ValueError):
    """A configuration value is out of range or inconsistent."""


class InputError(Mast3rRosError, ValueError):
    """An input array or tensor has the wrong type, shape, range or content."""


class ImageError(InputError):
    """An image cannot be decoded or converted (encoding, step, size, truncated data)."""


class IntrinsicsError(InputError):
    """A camera matrix is missing, non-finite, or not a valid pinhole matrix."""


class CheckpointError(Mast3rRosError):
    """A model checkpoint is missing, unreadable, untrusted or of another architecture."""


class MapError(Mast3rRosError):
    """A keyframe map cannot be read, written or used."""


class MapFormatError(MapError):
    """A map directory is corrupt, incomplete or of an unknown schema version."""


class MapCompatibilityError(MapError):
    """A map was built with another model or other preprocessing than the one configured."""


class MatchingError(InputError):
    """Descriptor maps or seeds given to a matcher are invalid."""


class GeometryError(Mast3rRosError):
    """A geometric solver was called with invalid arguments (not: 'did not converge')."""
