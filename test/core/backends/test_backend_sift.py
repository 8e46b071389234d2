"""SIFT baseline backend: matching on a known warp, caching, empty images, baseline warning."""

from __future__ import annotations

import logging

import cv2
import numpy as np

from mast3r_ros.core.backends.sift import SiftBackend, match_descriptors
from mast3r_ros.core.map import Keyframe, KeyframeMap, MapMeta
from mast3r_ros.core.types import Frame


def _textured(rng, h=240, w=320) -> np.ndarray:
    img = cv2.resize(rng.integers(0, 255, (h // 8, w // 8, 3), dtype=np.uint8), (w, h),
                     interpolation=cv2.INTER_CUBIC)
    return cv2.GaussianBlur(img, (3, 3), 0)


def test_matches_follow_known_homography(rng, caplog) -> None:
    ref = _textured(rng)
    Hm = np.array([[0.95, 0.05, 12.0], [-0.04, 0.97, 6.0], [1e-5, 2e-5, 1.0]])
    query = cv2.warpPerspective(ref, Hm, (320, 240))
    with caplog.at_level(logging.WARNING):
        be = SiftBackend(n_features=2000)
    assert "BASELINE" in caplog.text
    kf = Keyframe(3, ref, np.eye(3), np.eye(4))
    m = be.match(Frame(query, None), [kf])[0]
    assert len(m) > 100 and m.ref_id == 3
    proj = cv2.perspectiveTransform(m.xy_ref.reshape(-1, 1, 2), Hm).reshape(-1, 2)
    err = np.linalg.norm(proj - m.xy_query, axis=1)
    assert np.median(err) < 0.5 and np.mean(err < 2.0) > 0.9  # pixel-centre convention kept


def test_prepare_map_and_cache_identity(rng) -> None:
    be = SiftBackend(n_features=500)
    a, b = _textured(rng), _textured(rng)
    kmap = KeyframeMap(MapMeta(), [Keyframe(0, a, np.eye(3), np.eye(4))])
    be.prepare_map(kmap)
    assert kmap.global_desc.shape[0] == 1 and kmap.meta.descriptor == be.descriptor_name
    # another keyframe reusing id 0 must not get the cached features of the first one
    m1 = be.match(Frame(a, None), [Keyframe(0, a, np.eye(3), np.eye(4))])[0]
    m2 = be.match(Frame(a, None), [Keyframe(0, b, np.eye(3), np.eye(4))])[0]
    assert len(m1) > 5 * max(len(m2), 1)


def test_blank_images_and_ratio(rng) -> None:
    be = SiftBackend(n_features=500)
    blank = np.zeros((100, 100, 3), np.uint8)
    m = be.match(Frame(blank, None), [Keyframe(0, blank, np.eye(3), np.eye(4))])[0]
    assert len(m) == 0 and m.xy_query.shape == (0, 2)
    d = rng.normal(size=(50, 16)).astype(np.float32)
    i1, i2 = match_descriptors(d, d + 1e-3)
    assert np.array_equal(i1, i2) and len(i1) == 50
    i1, _ = match_descriptors(d, np.concatenate([d, d]))  # every match ambiguous -> ratio rejects
    assert len(i1) == 0
