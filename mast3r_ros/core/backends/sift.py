"""Classical baseline backend: OpenCV SIFT + ratio test + mutual nearest neighbour.

It exists so that the whole pipeline runs (and is measured) where no MASt3R checkpoint is present.
It is a baseline, never a silent substitute: constructing it logs a WARNING.
"""

from __future__ import annotations

import logging
import time
from typing import Optional, Sequence

import cv2
import faiss
import numpy as np

from mast3r_ros.core.cache import ByteLRU
from mast3r_ros.core.config import MatchingConfig, SiftConfig
from mast3r_ros.core.errors import ImageError, InputError
from mast3r_ros.core.features import EncoderId, SiftFeatures
from mast3r_ros.core.omp import one_omp_thread
from mast3r_ros.core.retrieval.descriptors import TINY_DESCRIPTOR, tiny_image_descriptor
from mast3r_ros.core.types import (
    Encoding,
    KeyframeEncoding,
    MatchResult,
    PairMatches,
    StageTimer,
    Timings,
)

__all__ = ["SiftBackend", "extract_sift", "match_descriptors"]

logger = logging.getLogger(__name__)


def extract_sift(rgb: np.ndarray, n_features: int = SiftConfig.n_features,
                 root_sift: bool = SiftConfig.root_sift,
                 contrast_threshold: float = SiftConfig.contrast_threshold) -> SiftFeatures:
    """SIFT keypoints and descriptors of an RGB image (optionally RootSIFT-normalised).

    Args:
        rgb: (H, W, 3) uint8 image.
        n_features: OpenCV ``nfeatures``.
        root_sift: Hellinger-normalise the descriptors (then they are no longer integers).
        contrast_threshold: OpenCV ``contrastThreshold`` (lower keeps weaker features).

    Raises:
        ImageError: not an (H, W, 3) uint8 image.
    """
    if not isinstance(rgb, np.ndarray) or rgb.ndim != 3 or rgb.shape[2] != 3 \
            or rgb.dtype != np.uint8:
        raise ImageError(f"SIFT needs an (H, W, 3) uint8 image, got {getattr(rgb, 'shape', rgb)}")
    grey = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
    sift = cv2.SIFT.create(nfeatures=int(n_features), contrastThreshold=float(contrast_threshold))
    kps, desc = sift.detectAndCompute(grey, None)
    if desc is None or not kps:
        return SiftFeatures(np.zeros((0, 2)), np.zeros((0, 128), dtype=np.float32))
    xy = np.array([kp.pt for kp in kps], dtype=np.float64)
    desc = desc.astype(np.float32)
    if root_sift:
        desc = np.sqrt(desc / np.maximum(desc.sum(axis=1, keepdims=True), 1e-6))
    return SiftFeatures(xy, desc)


def _knn(a: np.ndarray, b: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    index = faiss.IndexFlatL2(a.shape[1])
    index.add(np.ascontiguousarray(b))
    with one_omp_thread():
        d2, idx = index.search(np.ascontiguousarray(a), k)
    return d2, idx


def match_descriptors(d1: np.ndarray, d2: np.ndarray, ratio: float = MatchingConfig.ratio,
                      mutual: bool = MatchingConfig.mutual) -> tuple[np.ndarray, np.ndarray]:
    """Nearest-neighbour matches with Lowe's ratio test and an optional mutual check.

    Args:
        d1: (N1, D) float32 descriptors.
        d2: (N2, D) float32 descriptors.
        ratio: keep a match when dist(best) < ratio * dist(second best).
        mutual: also require the match to be the nearest neighbour in the reverse direction.

    Returns:
        ``(idx1 (M,), idx2 (M,))`` int64 indices and implicitly the pairing.
    """
    if d1.shape[0] == 0 or d2.shape[0] < 2:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    d2s, nn = _knn(d1, d2, 2)
    dist = np.sqrt(np.maximum(d2s, 0.0))
    keep = dist[:, 0] < ratio * dist[:, 1]
    idx1 = np.nonzero(keep)[0]
    idx2 = nn[keep, 0].astype(np.int64)
    if mutual and idx1.size:
        _, back = _knn(d2, d1, 1)
        ok = back[idx2, 0] == idx1
        idx1, idx2 = idx1[ok], idx2[ok]
    return idx1.astype(np.int64), idx2


class SiftBackend:
    """OpenCV SIFT features, ratio test and mutual check; tiny-image retrieval descriptor.

    Args:
        config: feature settings (they define the encoder identity).
    """

    name = "sift"

    def __init__(self, config: SiftConfig = SiftConfig()) -> None:
        logger.warning("matcher backend 'sift' is the CLASSICAL BASELINE (OpenCV SIFT, %d "
                       "features), not MASt3R; use backend 'mast3r' with a checkpoint for the "
                       "product", config.n_features)
        self.config = config
        tag = f"opencv-sift-n{config.n_features}{'-root' if config.root_sift else ''}"
        if config.contrast_threshold != 0.04:  # OpenCV's default: earlier tags stay valid
            tag += f"-c{config.contrast_threshold:g}"
        self.encoder_id = EncoderId(self.name, tag, 0, "", TINY_DESCRIPTOR, SiftFeatures.KIND)

    def encode(self, rgb: np.ndarray) -> Encoding:
        """SIFT features (``encode`` time) and the tiny-image descriptor of one image."""
        t0 = time.perf_counter()
        feats = extract_sift(rgb, self.config.n_features, self.config.root_sift,
                             self.config.contrast_threshold)
        desc = tiny_image_descriptor(rgb)
        return Encoding(self.encoder_id, int(rgb.shape[1]), int(rgb.shape[0]), desc, feats,
                        Timings(encode=time.perf_counter() - t0))

    def match(self, query: Encoding, refs: Sequence[KeyframeEncoding], config: MatchingConfig, *,
              geometry: bool = False, query_image: Optional[np.ndarray] = None,
              cache: Optional[ByteLRU] = None) -> MatchResult:
        """Ratio-test (+ mutual) nearest neighbours; every match scores 1. No geometry; nothing
        derived from the references is worth caching (``cache`` unused)."""
        timer = StageTimer()
        q = _features(query, self.encoder_id)
        out = []
        with timer.stage("matching"):
            for ref in refs:
                r = _features(ref.encoding, self.encoder_id)
                i1, i2 = match_descriptors(q.desc, r.desc, config.ratio, config.mutual)
                out.append(PairMatches(ref.keyframe_id, q.xy[i1], r.xy[i2], np.ones(i1.size)))
        return MatchResult(out, None, timer.timings(total=False))


def _features(enc: Encoding, encoder_id: EncoderId) -> SiftFeatures:
    if enc.encoder != encoder_id or not isinstance(enc.features, SiftFeatures):
        raise InputError(f"SIFT backend got an encoding of another encoder "
                         f"({enc.encoder.mismatch(encoder_id)})")
    return enc.features
