"""The tracker's decisions (pure functions): lost, keyframe and jump rules."""

from __future__ import annotations

import numpy as np

from mast3r_ros.core.config import KeyframeRuleConfig, LostConfig, TrackingConfig
from mast3r_ros.core.geometry.se3 import make_pose, so3_exp
from mast3r_ros.core.tracking.policy import (
    jump_reason,
    keyframe_reason,
    lost_reason,
    match_fraction,
)


def _T(t=(0.0, 0.0, 0.0), deg=0.0) -> np.ndarray:
    return make_pose(so3_exp(np.radians([0.0, deg, 0.0])), t)


def test_match_fraction_and_lost() -> None:
    assert match_fraction(50, None) == 1.0 and match_fraction(50, 200) == 0.25
    cfg = LostConfig()
    assert lost_reason(29, 1.0, cfg) is not None and lost_reason(30, 1.0, cfg) is None
    assert "fraction" in lost_reason(300, 0.04, cfg)


def test_keyframe_rule_each_test_trips_alone() -> None:
    cfg = KeyframeRuleConfig()
    assert keyframe_reason(0.5, _T(), 1.0, cfg) is None
    assert "fraction" in keyframe_reason(0.3, _T(), 1.0, cfg)
    assert "translation" in keyframe_reason(0.9, _T((0.31, 0, 0)), 1.0, cfg)
    assert "rotation" in keyframe_reason(0.9, _T(deg=21), 1.0, cfg)
    assert "age" in keyframe_reason(0.9, _T(), 10.5, cfg)
    off = KeyframeRuleConfig(max_translation=0, max_rotation_deg=0, max_interval=0)
    assert keyframe_reason(0.9, _T((5, 0, 0), 90), 100.0, off) is None


def test_jump_gate_scales_with_time_and_needs_stamps() -> None:
    cfg = TrackingConfig()  # 2 m/s, 360 deg/s
    assert jump_reason(_T(), _T((0.5, 0, 0)), 1 / 3, cfg) is None
    assert "m/s" in jump_reason(_T(), _T((1.65, 0, 0)), 1 / 3, cfg)  # the sequence's kidnap
    assert jump_reason(_T(), _T((1.65, 0, 0)), 1.0, cfg) is None
    assert "deg/s" in jump_reason(_T(), _T(deg=130), 1 / 3, cfg)
    assert jump_reason(_T(), _T((9, 0, 0)), 0.0, cfg) is None  # no stamps, no gate
