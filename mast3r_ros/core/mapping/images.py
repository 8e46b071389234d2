"""Where the mapping reads its images: one at a time, by index, never all at once.

An :class:`ImageSource` gives the original (H, W, 3) uint8 RGB image ``k`` on demand. Files are the
scalable case: a worker on another machine (the Ray pairwise stage) opens the same path itself, so
no pixels travel through the driver. In-memory arrays serve the mapper node and tests.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional, Protocol, Sequence, Union, runtime_checkable

import numpy as np

from mast3r_ros.core.config import InputConfig
from mast3r_ros.core.errors import InputError
from mast3r_ros.core.io import read_image_file

__all__ = ["ImageSource", "ImageFiles", "ImageArrays", "as_image_source"]


@runtime_checkable
class ImageSource(Protocol):
    """Random access to the original images of a mapping job."""

    def __len__(self) -> int:
        ...

    def load(self, k: int) -> np.ndarray:
        """Image ``k``: (H, W, 3) uint8 RGB (raises InputError when it cannot be read)."""
        ...

    def path(self, k: int) -> Optional[str]:
        """A file a remote worker can open for image ``k``, or None when it lives in memory."""
        ...


class ImageFiles:
    """Images read from files when needed (header-checked, :func:`mast3r_ros.core.io.
    read_image_file`).

    Args:
        paths: image files (PNG, JPEG, ...), in capture order.
        max_pixels: images with more pixels are refused (read from the header first).
    """

    def __init__(self, paths: Sequence[Union[str, Path]],
                 max_pixels: int = InputConfig.max_image_pixels) -> None:
        self._paths = [str(p) for p in paths]
        self.max_pixels = int(max_pixels)

    def __len__(self) -> int:
        return len(self._paths)

    def load(self, k: int) -> np.ndarray:
        return read_image_file(self._paths[k], self.max_pixels)

    def path(self, k: int) -> Optional[str]:
        return self._paths[k]


class ImageArrays:
    """Images already in memory (the mapper node's keyframes, tests).

    Args:
        images: (H, W, 3) uint8 RGB arrays, in capture order (not copied).
    """

    def __init__(self, images: Sequence[np.ndarray]) -> None:
        self._images = images

    def __len__(self) -> int:
        return len(self._images)

    def load(self, k: int) -> np.ndarray:
        return np.asarray(self._images[k])

    def path(self, k: int) -> Optional[str]:
        return None


def as_image_source(images: Union[ImageSource, Sequence[np.ndarray]]) -> ImageSource:
    """``images`` itself when it is an :class:`ImageSource`, else arrays wrapped in
    :class:`ImageArrays`.

    Raises:
        InputError: neither.
    """
    if isinstance(images, ImageSource):
        return images
    if isinstance(images, (list, tuple)):
        return ImageArrays(images)
    raise InputError(f"images must be an ImageSource or a sequence of arrays, got "
                     f"{type(images).__name__}")
