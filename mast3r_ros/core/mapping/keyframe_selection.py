"""Keyframe selection for incremental mapping: does a new camera frame become a keyframe?

Two tests, chosen per frame by :class:`~mast3r_ros.core.config.KeyframeSelectionConfig`:

* **motion** (when the frame and the last keyframe have camera poses, e.g. from odometry): the
  frame becomes a keyframe once the camera moved ``min_translation`` metres or turned
  ``min_rotation_deg`` degrees since the last keyframe;
* **overlap** (no pose): ORB features of a downscaled grey image are matched against the last
  keyframe's (Lowe ratio test, then an epipolar RANSAC check); the frame becomes a keyframe when
  the fraction of the keyframe's features it still sees drops below ``max_overlap``.

The first usable frame is always a keyframe. Pure numpy/OpenCV, no ROS.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Optional

import cv2
import numpy as np

from mast3r_ros.core.config import KeyframeSelectionConfig
from mast3r_ros.core.errors import ImageError, InputError

__all__ = ["KeyframeDecision", "KeyframeSelector", "relative_motion", "overlap_fraction"]

logger = logging.getLogger(__name__)
_NAN = float("nan")


@dataclass(frozen=True)
class KeyframeDecision:
    """Outcome of :meth:`KeyframeSelector.consider`.

    Attributes:
        is_keyframe: the frame was accepted as a keyframe.
        reason: short human-readable explanation.
        test: ``first``, ``motion``, ``overlap`` or ``interval`` (the test that decided).
        translation: camera translation since the last keyframe (m), NaN when unknown.
        rotation_deg: camera rotation since the last keyframe (deg), NaN when unknown.
        overlap: fraction of the last keyframe's features matched in this frame, NaN when unused.
        num_features: ORB features found in the frame (0 when the overlap test did not run).
    """

    is_keyframe: bool
    reason: str
    test: str
    translation: float = _NAN
    rotation_deg: float = _NAN
    overlap: float = _NAN
    num_features: int = 0


@dataclass
class _Features:
    keypoints: np.ndarray      # (N, 2) float32 pixel coordinates of the downscaled image
    descriptors: Optional[np.ndarray]  # (N, 32) uint8 ORB descriptors, None when N == 0


def _check_pose(T: Optional[np.ndarray], name: str) -> Optional[np.ndarray]:
    if T is None:
        return None
    T = np.asarray(T, dtype=np.float64)
    if T.shape != (4, 4) or not np.all(np.isfinite(T)):
        raise InputError(f"{name} must be a finite (4, 4) camera-to-world pose, "
                         f"got shape {T.shape}")
    return T


def relative_motion(T_world_a: np.ndarray, T_world_b: np.ndarray) -> tuple[float, float]:
    """Translation (m) and rotation angle (deg) between two camera-to-world poses (4, 4)."""
    T_ab = np.linalg.inv(T_world_a) @ T_world_b
    cos = np.clip((np.trace(T_ab[:3, :3]) - 1.0) / 2.0, -1.0, 1.0)
    return float(np.linalg.norm(T_ab[:3, 3])), float(math.degrees(math.acos(cos)))


def _grey_small(rgb: np.ndarray, long_side: int) -> np.ndarray:
    img = np.asarray(rgb)
    if img.ndim not in (2, 3) or img.size == 0 or img.dtype != np.uint8:
        raise ImageError(f"keyframe selection needs an (H, W[, 3]) uint8 image, got {img.shape} "
                         f"{img.dtype}")
    grey = cv2.cvtColor(img, cv2.COLOR_RGB2GRAY) if img.ndim == 3 else img
    scale = long_side / max(grey.shape[:2])
    if scale < 1.0:
        size = (max(1, round(grey.shape[1] * scale)), max(1, round(grey.shape[0] * scale)))
        grey = cv2.resize(grey, size, interpolation=cv2.INTER_AREA)
    return np.ascontiguousarray(grey)


def overlap_fraction(a: _Features, b: _Features, ratio: float, ransac_threshold: float) -> float:
    """Fraction of ``a``'s features matched in ``b`` (ratio test + fundamental-matrix RANSAC).

    Returns:
        A value in [0, 1]; 0 when either side has fewer than two features.
    """
    if a.descriptors is None or b.descriptors is None or len(a.keypoints) < 1 \
            or len(b.keypoints) < 2:
        return 0.0
    matcher = cv2.BFMatcher(cv2.NORM_HAMMING)
    pairs = matcher.knnMatch(a.descriptors, b.descriptors, k=2)
    good = [p[0] for p in pairs if len(p) == 2 and p[0].distance < ratio * p[1].distance]
    if len(good) < 8:
        return len(good) / len(a.keypoints)
    pa = a.keypoints[[m.queryIdx for m in good]]
    pb = b.keypoints[[m.trainIdx for m in good]]
    moved = np.linalg.norm(pa - pb, axis=1)
    if np.median(moved) < ransac_threshold:  # (nearly) the same view: F is degenerate, keep all
        return len(good) / len(a.keypoints)
    F, mask = cv2.findFundamentalMat(pa, pb, cv2.FM_RANSAC, ransac_threshold, 0.99)
    if F is None or mask is None:  # no consistent geometry (the mask is then undefined)
        return 0.0
    inliers = int(np.count_nonzero(mask.ravel()[:len(good)]))
    return min(1.0, inliers / len(a.keypoints))


class KeyframeSelector:
    """Stateful keyframe decision (keeps the last keyframe's pose, stamp and features).

    Args:
        config: thresholds and feature settings.
    """

    def __init__(self, config: Optional[KeyframeSelectionConfig] = None) -> None:
        self.config = config or KeyframeSelectionConfig()
        self.reset()

    @property
    def config(self) -> KeyframeSelectionConfig:
        """Thresholds (may be replaced between frames; the reference keyframe is kept)."""
        return self._config

    @config.setter
    def config(self, value: KeyframeSelectionConfig) -> None:
        self._config = value
        self._orb = cv2.ORB_create(nfeatures=value.num_features)  # type: ignore[attr-defined]

    def reset(self) -> None:
        """Forget the last keyframe (the next usable frame becomes a keyframe)."""
        self._last_T: Optional[np.ndarray] = None
        self._last_stamp: Optional[float] = None
        self._last_feats: Optional[_Features] = None
        self.num_keyframes = 0

    def features(self, rgb: np.ndarray) -> _Features:
        """ORB keypoints (downscaled pixels) and descriptors of an (H, W, 3) uint8 RGB image."""
        grey = _grey_small(rgb, self.config.image_long_side)
        kps, desc = self._orb.detectAndCompute(grey, None)
        pts = np.array([k.pt for k in kps], dtype=np.float32).reshape(-1, 2)
        return _Features(pts, desc if len(kps) else None)

    def _needs_overlap(self, T: Optional[np.ndarray]) -> bool:
        mode = self.config.mode
        return mode == "overlap" or (mode == "auto" and (T is None or self._last_T is None))

    def consider(self, rgb: np.ndarray, T_world_cam: Optional[np.ndarray] = None,
                 stamp: Optional[float] = None, commit: bool = True) -> KeyframeDecision:
        """Decide whether a frame becomes a keyframe; on acceptance it becomes the reference.

        Args:
            rgb: (H, W, 3) uint8 RGB image.
            T_world_cam: (4, 4) camera-to-world pose (any metric world frame) or None.
            stamp: capture time (s) for ``min_interval``; None skips that check.
            commit: when False, decide without updating the reference keyframe.

        Returns:
            The decision with the measured motion / overlap.

        Raises:
            ImageError: ``rgb`` is not a uint8 image.
            InputError: the pose is not a finite (4, 4) matrix, or mode ``motion`` without a pose.
        """
        cfg = self.config
        T = _check_pose(T_world_cam, "T_world_cam")
        if cfg.mode == "motion" and T is None:
            raise InputError("keyframe selection mode 'motion' needs a camera pose (odometry/TF); "
                             "use mode 'auto' or 'overlap' without one")
        feats = self.features(rgb) if self._needs_overlap(T) else None
        n_feat = 0 if feats is None else len(feats.keypoints)
        decision = self._decide(T, stamp, feats, n_feat)
        if decision.is_keyframe and commit:
            self._last_T, self._last_stamp = T, stamp
            self._last_feats = feats if feats is not None else self.features(rgb)
            self.num_keyframes += 1
        return decision

    def _decide(self, T: Optional[np.ndarray], stamp: Optional[float],
                feats: Optional[_Features], n_feat: int) -> KeyframeDecision:
        cfg = self.config
        if feats is not None and n_feat < cfg.min_features:
            return KeyframeDecision(False, f"only {n_feat} ORB features (< min_features="
                                    f"{cfg.min_features}): blank or blurred frame", "overlap",
                                    num_features=n_feat)
        if self._last_feats is None:
            return KeyframeDecision(True, "first keyframe", "first", num_features=n_feat)
        if (stamp is not None and self._last_stamp is not None
                and stamp - self._last_stamp < cfg.min_interval):
            return KeyframeDecision(False, f"{stamp - self._last_stamp:.3f} s since the last "
                                    f"keyframe (< min_interval={cfg.min_interval})", "interval",
                                    num_features=n_feat)
        if feats is None:
            assert T is not None and self._last_T is not None
            trans, rot = relative_motion(self._last_T, T)
            moved = trans >= cfg.min_translation or rot >= cfg.min_rotation_deg
            why = (f"moved {trans:.3f} m / {rot:.1f} deg "
                   f"({'>=' if moved else '<'} {cfg.min_translation} m or "
                   f"{cfg.min_rotation_deg} deg)")
            return KeyframeDecision(moved, why, "motion", trans, rot)
        frac = overlap_fraction(self._last_feats, feats, cfg.ratio, cfg.ransac_threshold)
        is_kf = frac < cfg.max_overlap
        why = f"overlap {frac:.2f} {'<' if is_kf else '>='} max_overlap={cfg.max_overlap}"
        trans, rot = (relative_motion(self._last_T, T) if T is not None and self._last_T is not None
                      else (_NAN, _NAN))
        return KeyframeDecision(is_kf, why, "overlap", trans, rot, frac, n_feat)
