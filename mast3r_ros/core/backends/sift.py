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

from mast3r_ros.core.map.keyframe import Keyframe, KeyframeMap
from mast3r_ros.core.retrieval.descriptors import TINY_DESCRIPTOR, tiny_image_descriptor
from mast3r_ros.core.types import Frame, Matches

__all__ = ["SiftBackend", "SiftFeatures", "extract_sift", "match_descriptors"]

logger = logging.getLogger(__name__)


class SiftFeatures:
    """Keypoints (N, 2) float64 pixels (pixel-centre convention) and (N, 128) float32 descriptors."""

    def __init__(self, xy: np.ndarray, desc: np.ndarray) -> None:
        self.xy = xy
        self.desc = desc

    def __len__(self) -> int:
        return int(self.xy.shape[0])


def extract_sift(rgb: np.ndarray, n_features: int = 8000, root_sift: bool = False) -> SiftFeatures:
    """SIFT keypoints and descriptors of an RGB image (optionally RootSIFT-normalised)."""
    grey = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
    sift = cv2.SIFT_create(nfeatures=int(n_features))
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
    d2, idx = index.search(np.ascontiguousarray(a), k)
    return d2, idx


def match_descriptors(d1: np.ndarray, d2: np.ndarray, ratio: float = 0.8,
                      mutual: bool = True) -> tuple[np.ndarray, np.ndarray]:
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
    """OpenCV SIFT (``n_features`` per image), ratio test and mutual check; tiny-image retrieval.

    Args:
        n_features: SIFT features per image (8000 as in the data READMEs' baseline).
        ratio: Lowe ratio threshold.
        mutual: require mutual nearest neighbours.
        root_sift: use RootSIFT descriptors.
    """

    name = "sift"
    descriptor_name = TINY_DESCRIPTOR

    def __init__(self, n_features: int = 8000, ratio: float = 0.8, mutual: bool = True,
                 root_sift: bool = False) -> None:
        logger.warning("matcher backend 'sift' is the CLASSICAL BASELINE (OpenCV SIFT, %d "
                       "features), not MASt3R; use backend 'mast3r' with a checkpoint for the "
                       "product", n_features)
        self.n_features, self.ratio, self.mutual, self.root_sift = n_features, ratio, mutual, root_sift
        self.timings: dict[str, float] = {}
        # keyframe id -> (the image the features belong to, features); the image identity guards
        # against a different keyframe reusing an id
        self._kf_features: dict[int, tuple[np.ndarray, SiftFeatures]] = {}
        self._query: Optional[tuple[Frame, SiftFeatures]] = None

    def prepare_map(self, kmap: KeyframeMap) -> None:
        """Extract SIFT on every keyframe (in memory) and the map's global descriptors."""
        self._kf_features = {}
        for kf in kmap.keyframes:
            self._keyframe_features(kf)
        if (kmap.global_desc is None or kmap.meta.descriptor != self.descriptor_name) and len(kmap):
            kmap.global_desc = np.stack([tiny_image_descriptor(kf.rgb) for kf in kmap.keyframes])
            kmap.meta = kmap.meta.replace(descriptor=self.descriptor_name)

    def _keyframe_features(self, kf: Keyframe) -> SiftFeatures:
        cached = self._kf_features.get(kf.id)
        if cached is None or cached[0] is not kf.rgb:
            cached = (kf.rgb, extract_sift(kf.rgb, self.n_features, self.root_sift))
            self._kf_features[kf.id] = cached
        return cached[1]

    def _query_features(self, frame: Frame) -> SiftFeatures:
        if self._query is None or self._query[0] is not frame:
            t0 = time.perf_counter()
            self._query = (frame, extract_sift(frame.rgb, self.n_features, self.root_sift))
            self.timings["features"] = time.perf_counter() - t0
        return self._query[1]

    def global_descriptor(self, frame: Frame) -> np.ndarray:
        self.timings = {}
        return tiny_image_descriptor(frame.rgb)

    def match(self, frame: Frame, keyframes: Sequence[Keyframe]) -> list[Matches]:
        q = self._query_features(frame)
        t0 = time.perf_counter()
        out = []
        for kf in keyframes:
            r = self._keyframe_features(kf)
            i1, i2 = match_descriptors(q.desc, r.desc, self.ratio, self.mutual)
            out.append(Matches(q.xy[i1], r.xy[i2], np.ones(i1.size), kf.id))
        self.timings["matching"] = time.perf_counter() - t0
        return out

    def estimate_intrinsics(self, frame: Frame) -> Optional[np.ndarray]:
        return None

    def query_depth(self, frame: Frame, xy: np.ndarray) -> Optional[np.ndarray]:
        return None
