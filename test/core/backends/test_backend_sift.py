"""SIFT baseline backend: matching on a known warp, typed encodings, empty images, the baseline
warning, and matching settings read per call."""

from __future__ import annotations

import logging

import cv2
import numpy as np
import pytest

from mast3r_ros.core.backends import encode_map
from mast3r_ros.core.backends.sift import SiftBackend, match_descriptors
from mast3r_ros.core.config import MatchingConfig, SiftConfig
from mast3r_ros.core.errors import InputError
from mast3r_ros.core.features import SiftFeatures
from mast3r_ros.core.map import Keyframe, KeyframeMap
from mast3r_ros.core.types import KeyframeEncoding


def _textured(rng, h=240, w=320) -> np.ndarray:
    img = cv2.resize(rng.integers(0, 255, (h // 8, w // 8, 3), dtype=np.uint8), (w, h),
                     interpolation=cv2.INTER_CUBIC)
    return cv2.GaussianBlur(img, (3, 3), 0)


def _ref(be: SiftBackend, kid: int, rgb: np.ndarray) -> KeyframeEncoding:
    return KeyframeEncoding(kid, be.encode(rgb))


def test_matches_follow_known_homography(rng, caplog) -> None:
    ref = _textured(rng)
    Hm = np.array([[0.95, 0.05, 12.0], [-0.04, 0.97, 6.0], [1e-5, 2e-5, 1.0]])
    query = cv2.warpPerspective(ref, Hm, (320, 240))
    with caplog.at_level(logging.WARNING):
        be = SiftBackend(SiftConfig(n_features=2000))
    assert "BASELINE" in caplog.text
    q = be.encode(query)
    assert isinstance(q.features, SiftFeatures) and q.timings.encode > 0
    res = be.match(q, [_ref(be, 3, ref)], MatchingConfig())
    m = res.pairs[0]
    assert len(m) > 100 and m.ref_id == 3 and res.geometry is None
    proj = cv2.perspectiveTransform(m.xy_ref.reshape(-1, 1, 2), Hm).reshape(-1, 2)
    err = np.linalg.norm(proj - m.xy_query, axis=1)
    assert np.median(err) < 0.5 and np.mean(err < 2.0) > 0.9  # pixel-centre convention kept
    # the ratio is read per call: a stricter ratio keeps fewer matches
    strict = be.match(q, [_ref(be, 3, ref)], MatchingConfig(ratio=0.5)).pairs[0]
    assert 0 < len(strict) < len(m)


def test_encode_map_and_identity(rng) -> None:
    be = SiftBackend(SiftConfig(n_features=500))
    a, b = _textured(rng), _textured(rng)
    kmap = KeyframeMap(None, [Keyframe(0, a, np.eye(3), np.eye(4)),
                              Keyframe(1, b, np.eye(3), np.eye(4))])
    assert encode_map(kmap, be) == 2 and kmap.encoder == be.encoder_id
    assert kmap.index is not None and len(kmap.index) == 2
    # the stored features are exactly what a store persists (uint8 descriptors, float32 xy)
    f = kmap.features(0)
    assert isinstance(f, SiftFeatures) and np.array_equal(f.desc, np.rint(f.desc))
    res = be.match(be.encode(a), [kmap.keyframe_encoding(i) for i in (0, 1)], MatchingConfig())
    assert len(res.pairs[0]) > 5 * max(len(res.pairs[1]), 1)
    # another feature count is another encoder: the map is re-encoded, not mixed
    other = SiftBackend(SiftConfig(n_features=300))
    assert other.encoder_id != be.encoder_id and encode_map(kmap, other) == 2
    with pytest.raises(InputError, match="another encoder"):
        be.match(be.encode(a), [kmap.keyframe_encoding(0)], MatchingConfig())


def test_blank_images_and_ratio(rng) -> None:
    be = SiftBackend(SiftConfig(n_features=500))
    blank = np.zeros((100, 100, 3), np.uint8)
    m = be.match(be.encode(blank), [_ref(be, 0, blank)], MatchingConfig()).pairs[0]
    assert len(m) == 0 and m.xy_query.shape == (0, 2)
    d = rng.normal(size=(50, 16)).astype(np.float32)
    i1, i2 = match_descriptors(d, d + 1e-3)
    assert np.array_equal(i1, i2) and len(i1) == 50
    i1, _ = match_descriptors(d, np.concatenate([d, d]))  # every match ambiguous -> ratio rejects
    assert len(i1) == 0
