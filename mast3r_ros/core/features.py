"""Typed per-image features of the matcher backends and the identity of the encoder that made them.

A backend turns an image into an :class:`~mast3r_ros.core.types.Encoding`: a global descriptor for
retrieval plus backend-specific local features, one of the typed values below. A keyframe map stores
the features of its keyframes (so a keyframe is encoded once, when it is added) together with the
:class:`EncoderId` that produced them; a map is used only by a backend with the same identity.

Each features class has an explicit persistence schema (:meth:`to_arrays` / :meth:`from_arrays`):
named arrays with fixed dtypes and checked shapes, never a blind dict. ``from_arrays`` validates
everything it reads and raises :class:`~mast3r_ros.core.errors.InputError` on a mismatch, so a
corrupt or foreign file cannot produce a wrong-but-plausible feature.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Union

import numpy as np
import torch

from mast3r_ros.core.errors import InputError

__all__ = ["EncoderId", "SiftFeatures", "Mast3rFeatures", "Features", "FEATURE_KINDS",
           "features_from_arrays"]


@dataclass(frozen=True)
class EncoderId:
    """What produced an encoding; two encodings are comparable only under equal identities.

    Attributes:
        backend: backend name (``"mast3r"``, ``"sift"``).
        model_id: weights identity (checkpoint sha256 for MASt3R; the feature settings for SIFT).
        image_size: network input long side in pixels (0 when the backend has none).
        preprocessing: name/version of the image preprocessing ("" when none).
        descriptor: name/version of the global descriptor.
        features: :attr:`Features.KIND` of the local features.
    """

    backend: str
    model_id: str
    image_size: int
    preprocessing: str
    descriptor: str
    features: str

    def mismatch(self, other: EncoderId) -> str:
        """"" when equal, else the first differing field as ``name: mine != other``."""
        for name in ("backend", "model_id", "image_size", "preprocessing", "descriptor",
                     "features"):
            a, b = getattr(self, name), getattr(other, name)
            if a != b:
                return f"{name}: {a!r} != {b!r}"
        return ""


def _arrays(owner: str, arrays: dict[str, np.ndarray],
            schema: tuple[tuple[str, type, int], ...]) -> list[np.ndarray]:
    """The arrays named in ``schema`` ((name, dtype, ndim) each), type-checked, in schema order.

    Raises:
        InputError: a missing array, or one of another dtype or dimensionality.
    """
    out = []
    for name, dtype, ndim in schema:
        if name not in arrays:
            raise InputError(f"{owner}: missing array {name!r} (have {sorted(arrays)})")
        a = np.asarray(arrays[name])
        if a.dtype != np.dtype(dtype) or a.ndim != ndim:
            raise InputError(f"{owner}: {name} must be {ndim}-d {np.dtype(dtype).name}, got "
                             f"{a.ndim}-d {a.dtype}")
        out.append(a)
    return out


@dataclass(frozen=True)
class SiftFeatures:
    """SIFT keypoints and descriptors of one image.

    Attributes:
        xy: (N, 2) float64 keypoint pixels in the original image (pixel-centre convention).
        desc: (N, 128) float32 descriptors (OpenCV SIFT values are integers in [0, 255]).
    """

    KIND: ClassVar[str] = "sift-v1"

    xy: np.ndarray
    desc: np.ndarray

    def __post_init__(self) -> None:
        if self.xy.ndim != 2 or self.xy.shape[1] != 2 or self.desc.ndim != 2 \
                or self.desc.shape[0] != self.xy.shape[0]:
            raise InputError(f"SiftFeatures: xy {self.xy.shape} and desc {self.desc.shape} must be "
                             "(N, 2) and (N, D)")

    def __len__(self) -> int:
        return int(self.xy.shape[0])

    @property
    def nbytes(self) -> int:
        """Bytes held in memory."""
        return int(self.xy.nbytes + self.desc.nbytes)

    def to_arrays(self) -> dict[str, np.ndarray]:
        """Persisted form: ``xy`` (N, 2) float32, ``desc`` (N, 128) uint8 (exact for SIFT)."""
        d = np.clip(np.rint(self.desc), 0, 255).astype(np.uint8)
        return {"xy": self.xy.astype(np.float32), "desc": d}

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray]) -> SiftFeatures:
        """Inverse of :meth:`to_arrays`; InputError on a schema mismatch or non-finite keypoints."""
        xy, desc = _arrays("SiftFeatures", arrays, (("xy", np.float32, 2), ("desc", np.uint8, 2)))
        if xy.shape[1] != 2 or desc.shape != (xy.shape[0], 128):
            raise InputError(f"SiftFeatures: xy {xy.shape} / desc {desc.shape}, expected (N, 2) / "
                             "(N, 128)")
        if not np.all(np.isfinite(xy)):
            raise InputError("SiftFeatures: non-finite keypoint coordinates")
        return cls(xy.astype(np.float64), desc.astype(np.float32))


@dataclass(frozen=True)
class Mast3rFeatures:
    """MASt3R encoder tokens of one preprocessed image.

    Attributes:
        tokens: (N, C) encoder tokens after ``enc_norm``, N = (H / 16) * (W / 16), row-major; any
            float dtype and device (the map keeps float16 on the host, a query keeps float32 on
            the model's device).
        true_shape: (H, W) of the network image in pixels (multiples of 16).
    """

    KIND: ClassVar[str] = "mast3r-encoder-v1"

    tokens: torch.Tensor
    true_shape: tuple[int, int]

    def __post_init__(self) -> None:
        h, w = (int(v) for v in self.true_shape)
        object.__setattr__(self, "true_shape", (h, w))
        if h <= 0 or w <= 0 or h % 16 or w % 16:
            raise InputError(f"Mast3rFeatures: true_shape {(h, w)} must be positive multiples of "
                             "16")
        if self.tokens.ndim != 2 or self.tokens.shape[0] != (h // 16) * (w // 16):
            raise InputError(f"Mast3rFeatures: tokens {tuple(self.tokens.shape)} do not fit a "
                             f"{h}x{w} image (expected ({(h // 16) * (w // 16)}, C))")
        if not self.tokens.is_floating_point():
            raise InputError("Mast3rFeatures: tokens must be floating point, got "
                             f"{self.tokens.dtype}")

    @property
    def nbytes(self) -> int:
        """Bytes held by the tokens."""
        return int(self.tokens.numel() * self.tokens.element_size())

    def to(self, device: torch.device, dtype: torch.dtype = torch.float32) -> Mast3rFeatures:
        """Copy (when needed) to ``device`` / ``dtype``."""
        return Mast3rFeatures(self.tokens.to(device=device, dtype=dtype), self.true_shape)

    def to_arrays(self) -> dict[str, np.ndarray]:
        """Persisted form: ``tokens`` (N, C) float16, ``true_shape`` (2,) int64."""
        t = self.tokens.detach().to("cpu", torch.float16).numpy()
        return {"tokens": t, "true_shape": np.asarray(self.true_shape, dtype=np.int64)}

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray]) -> Mast3rFeatures:
        """Inverse of :meth:`to_arrays` (tokens stay float16 on the CPU); InputError on a schema
        mismatch or non-finite tokens."""
        tok, shape = _arrays("Mast3rFeatures", arrays,
                             (("tokens", np.float16, 2), ("true_shape", np.int64, 1)))
        if shape.shape != (2,):
            raise InputError(f"Mast3rFeatures: true_shape must have 2 entries, got {shape.shape}")
        if not np.all(np.isfinite(tok)):
            raise InputError("Mast3rFeatures: non-finite encoder tokens")
        return cls(torch.from_numpy(np.ascontiguousarray(tok)), (int(shape[0]), int(shape[1])))


#: the typed local features a backend may produce
Features = Union[SiftFeatures, Mast3rFeatures]

#: :attr:`KIND` -> features class (an immutable registry; a new backend adds one line)
FEATURE_KINDS: dict[str, type[SiftFeatures] | type[Mast3rFeatures]] = {
    SiftFeatures.KIND: SiftFeatures,
    Mast3rFeatures.KIND: Mast3rFeatures,
}


def features_from_arrays(kind: str, arrays: dict[str, np.ndarray]) -> Features:
    """Rebuild the typed features of kind ``kind`` from their persisted arrays.

    Raises:
        InputError: unknown kind, or arrays that do not follow the kind's schema.
    """
    cls = FEATURE_KINDS.get(kind)
    if cls is None:
        raise InputError(f"unknown features kind {kind!r}; known: {sorted(FEATURE_KINDS)}")
    return cls.from_arrays(arrays)
