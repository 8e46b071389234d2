"""Keyframe selection: motion thresholds with poses, ORB overlap without, guards and config."""

from __future__ import annotations

import math

import cv2
import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from mast3r_ros.core.config import KeyframeSelectionConfig
from mast3r_ros.core.errors import ConfigError, ImageError, InputError
from mast3r_ros.core.mapping.keyframe_selection import KeyframeSelector, relative_motion


def _texture(rng: np.random.Generator, h: int = 360, w: int = 960) -> np.ndarray:
    """A wide image of random filled shapes (many ORB corners), (h, w, 3) uint8."""
    img = np.full((h, w, 3), 128, np.uint8)
    for _ in range(400):
        x, y = int(rng.integers(0, w)), int(rng.integers(0, h))
        colour = tuple(int(v) for v in rng.integers(0, 256, 3))
        if rng.random() < 0.5:
            cv2.circle(img, (x, y), int(rng.integers(3, 15)), colour, -1)
        else:
            cv2.rectangle(img, (x, y), (x + int(rng.integers(4, 25)), y + int(rng.integers(4, 25))),
                          colour, -1)
    return img


def _view(scene: np.ndarray, x0: int, w: int = 320) -> np.ndarray:
    """A (H, w) crop of the scene starting at column x0 (a camera panning sideways)."""
    return np.ascontiguousarray(scene[:, x0:x0 + w])


def _pose(tx: float = 0.0, yaw_deg: float = 0.0) -> np.ndarray:
    T = np.eye(4)
    T[:3, :3] = Rotation.from_euler("y", yaw_deg, degrees=True).as_matrix()
    T[0, 3] = tx
    return T


def test_relative_motion_of_known_poses() -> None:
    t, r = relative_motion(_pose(0.2, 5.0), _pose(0.5, 35.0))
    assert r == pytest.approx(30.0, abs=1e-6)
    assert t == pytest.approx(0.3, abs=1e-9)  # both translations are along x in the world
    assert relative_motion(_pose(1.0, 10.0), _pose(1.0, 10.0)) == pytest.approx((0.0, 0.0),
                                                                                   abs=1e-6)


def test_motion_thresholds_with_poses(rng: np.random.Generator) -> None:
    sel = KeyframeSelector(KeyframeSelectionConfig(min_translation=0.1, min_rotation_deg=10.0))
    img = _view(_texture(rng), 0)
    first = sel.consider(img, _pose(), 0.0)
    assert first.is_keyframe and first.test == "first"
    small = sel.consider(img, _pose(0.05, 4.0), 1.0)
    assert not small.is_keyframe and small.test == "motion"
    assert small.translation == pytest.approx(0.05) and small.rotation_deg == pytest.approx(4.0)
    assert sel.consider(img, _pose(0.12), 2.0).is_keyframe  # translation triggers
    assert not sel.consider(img, _pose(0.15), 3.0).is_keyframe  # 0.03 m from the new reference
    turned = sel.consider(img, _pose(0.12, 11.0), 4.0)
    assert turned.is_keyframe and turned.rotation_deg == pytest.approx(11.0)
    assert sel.num_keyframes == 3


def test_overlap_without_poses_follows_panning(rng: np.random.Generator) -> None:
    scene = _texture(rng)
    sel = KeyframeSelector(KeyframeSelectionConfig(max_overlap=0.5))
    assert sel.consider(_view(scene, 0)).is_keyframe
    same = sel.consider(_view(scene, 0))
    assert not same.is_keyframe and same.overlap > 0.9 and same.test == "overlap"
    near = sel.consider(_view(scene, 40))  # 7/8 of the view still visible
    assert not near.is_keyframe and near.overlap > 0.5
    far = sel.consider(_view(scene, 260))  # 60 of 320 columns still shared
    assert far.is_keyframe and far.overlap < 0.5
    # the reference moved: a small step from the new keyframe is not a keyframe
    assert not sel.consider(_view(scene, 280)).is_keyframe
    assert sel.consider(_view(scene, 640)).is_keyframe  # no overlap at all


def test_overlap_decreases_with_distance(rng: np.random.Generator) -> None:
    scene = _texture(rng)
    sel = KeyframeSelector()
    ref = sel.features(_view(scene, 0))
    from mast3r_ros.core.mapping.keyframe_selection import overlap_fraction

    fr = [overlap_fraction(ref, sel.features(_view(scene, x)), 0.8, 3.0) for x in (0, 80, 160, 480)]
    assert fr[0] > fr[1] > fr[2] > fr[3]
    assert fr[3] < 0.05 and all(0.0 <= f <= 1.0 for f in fr)


def test_blank_frames_and_min_interval(rng: np.random.Generator) -> None:
    sel = KeyframeSelector(KeyframeSelectionConfig(min_interval=0.5, min_features=30))
    blank = sel.consider(np.full((120, 160, 3), 90, np.uint8), None, 0.0)
    assert not blank.is_keyframe and "ORB features" in blank.reason and sel.num_keyframes == 0
    scene = _texture(rng)
    assert sel.consider(_view(scene, 0), None, 1.0).is_keyframe
    early = sel.consider(_view(scene, 640), None, 1.2)
    assert not early.is_keyframe and early.test == "interval"
    assert sel.consider(_view(scene, 640), None, 1.6).is_keyframe


def test_auto_uses_overlap_until_poses_exist_and_commit_false(rng: np.random.Generator) -> None:
    scene = _texture(rng)
    sel = KeyframeSelector()
    assert sel.consider(_view(scene, 0), None).is_keyframe  # reference has no pose
    d = sel.consider(_view(scene, 0), _pose(5.0))  # big motion, but reference pose unknown
    assert d.test == "overlap" and not d.is_keyframe
    d = sel.consider(_view(scene, 640), _pose(5.0), commit=False)
    assert d.is_keyframe and sel.num_keyframes == 1  # not committed
    assert sel.consider(_view(scene, 640), _pose(5.0)).is_keyframe
    assert sel.consider(_view(scene, 0), _pose(5.01)).test == "motion"
    sel.reset()
    assert sel.consider(_view(scene, 0), _pose()).test == "first"


def test_bad_inputs_raise_typed_errors(rng: np.random.Generator) -> None:
    sel = KeyframeSelector(KeyframeSelectionConfig(mode="motion"))
    img = _view(_texture(rng), 0)
    with pytest.raises(InputError, match="needs a camera pose"):
        sel.consider(img, None)
    with pytest.raises(InputError, match="finite"):
        sel.consider(img, np.full((4, 4), math.nan))
    with pytest.raises(ImageError):
        KeyframeSelector().consider(img.astype(np.float32))
    with pytest.raises(ConfigError):
        KeyframeSelectionConfig(max_overlap=1.5)
    with pytest.raises(ConfigError):
        KeyframeSelectionConfig(mode="sometimes")
