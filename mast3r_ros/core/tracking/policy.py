"""The tracker's decisions as pure functions: is a measurement good enough, is a keyframe due, is
a motion physically plausible."""

from __future__ import annotations

from typing import Optional

import numpy as np

from mast3r_ros.core.config import KeyframeRuleConfig, LostConfig, TrackingConfig
from mast3r_ros.core.geometry.se3 import invert_pose, so3_log

__all__ = ["match_fraction", "lost_reason", "keyframe_reason", "jump_reason"]


def match_fraction(num_inliers: int, reference_count: Optional[int]) -> float:
    """Inliers relative to the keyframe's reference count (1.0 before it has one)."""
    if reference_count is None or reference_count <= 0:
        return 1.0
    return float(num_inliers) / float(reference_count)


def lost_reason(num_inliers: int, fraction: float, cfg: LostConfig) -> Optional[str]:
    """Why a measurement counts as lost (too few inliers or too small a fraction), or None."""
    if num_inliers < cfg.min_inliers:
        return f"too few inliers ({num_inliers} < {cfg.min_inliers})"
    if fraction < cfg.min_match_fraction:
        return f"match fraction {fraction:.3f} < {cfg.min_match_fraction}"
    return None


def _motion(T_a_b: np.ndarray) -> tuple[float, float]:
    """(translation in m, rotation in deg) of a relative pose."""
    return (float(np.linalg.norm(T_a_b[:3, 3])),
            float(np.degrees(np.linalg.norm(so3_log(T_a_b[:3, :3])))))


def keyframe_reason(fraction: float, T_kf_cam: np.ndarray, dt: float,
                    cfg: KeyframeRuleConfig) -> Optional[str]:
    """Which keyframe test trips for a frame tracked against the current keyframe, or None.

    Args:
        fraction: match fraction against the keyframe.
        T_kf_cam: (4, 4) frame pose relative to the keyframe.
        dt: seconds since the keyframe's stamp.
        cfg: the keyframe rule.
    """
    if fraction < cfg.min_match_fraction:
        return f"match fraction {fraction:.2f} < {cfg.min_match_fraction:.2f}"
    trans, rot = _motion(T_kf_cam)
    if cfg.max_translation > 0 and trans > cfg.max_translation:
        return f"translation {trans:.2f} m > {cfg.max_translation} m"
    if cfg.max_rotation_deg > 0 and rot > cfg.max_rotation_deg:
        return f"rotation {rot:.1f} deg > {cfg.max_rotation_deg} deg"
    if cfg.max_interval > 0 and dt > cfg.max_interval:
        return f"keyframe age {dt:.1f} s > {cfg.max_interval} s"
    return None


def jump_reason(T_prev_cam: np.ndarray, T_cam: np.ndarray, dt: float,
                cfg: TrackingConfig) -> Optional[str]:
    """Why a motion between two poses is not a camera motion (too fast for ``dt``), or None.

    Without a positive ``dt`` (stamps unknown or equal) there is no gate.

    Args:
        T_prev_cam: (4, 4) previous pose.
        T_cam: (4, 4) new pose (same parent frame).
        dt: seconds between the two frames.
        cfg: the speed limits.
    """
    if not dt > 0:
        return None
    trans, rot = _motion(invert_pose(T_prev_cam) @ T_cam)
    if cfg.max_speed > 0 and trans > cfg.max_speed * dt:
        return f"jump: {trans:.2f} m in {dt:.2f} s exceeds {cfg.max_speed} m/s"
    if cfg.max_angular_speed_deg > 0 and rot > cfg.max_angular_speed_deg * dt:
        return f"jump: {rot:.0f} deg in {dt:.2f} s exceeds {cfg.max_angular_speed_deg} deg/s"
    return None
