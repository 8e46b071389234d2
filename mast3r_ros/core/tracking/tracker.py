"""Frame-to-keyframe tracking: the SLAM front end's state machine (``INIT -> TRACKING -> LOST``).

Per frame (see DESIGN.md, "Tracking"): encode once -> match against the CURRENT keyframe only
(its encoding is cached, so MASt3R costs one encoder and one decoder pass) -> 2D-3D with the
keyframe's depth (sensor, or MASt3R's metric pointmap) -> PnP + RANSAC + LM -> pose and right
covariance, propagated along the keyframe chain.

* **Keyframes.** When a frame trips the keyframe rule (match fraction below 1/3 of the keyframe's
  reference count, or the translation / rotation / age gates) or can no longer be tracked, the
  PREVIOUS frame (the last one that still passed the rule, so its pose came from a well
  overlapping match) becomes the keyframe and the frame is re-tracked against it; when the
  previous frame already is the keyframe, the frame itself becomes one.
* **Lost.** Below ``lost.min_inliers`` or a match fraction of ``lost.min_match_fraction``, or when
  the pose implies an impossible speed (a kidnap, never tracked as motion), the frame is
  relocalized against the window's keyframes with the localizer's retrieval + PnP (top-k); if that
  fails the state is LOST and every later frame tries again.
* **Odometry.** ``T_odom_cam = T_odom_track @ T_track_cam``; a relocalization moves
  ``T_track_cam`` and re-anchors ``T_odom_track`` so that the odometry holds still across it; the
  jump is a ``relocalization`` edge of the stream.
* **Memory.** The window keeps ``max_keyframes`` keyframes plus the last tracked frame.

Deterministic on CPU (SIFT, exact faiss search, OpenCV's USAC with its fixed seed).
"""

from __future__ import annotations

import dataclasses
import logging
from typing import Optional

import numpy as np

from mast3r_ros.core.backends import MatcherBackend, create_backend
from mast3r_ros.core.config import LocalizerConfig, TrackingConfig
from mast3r_ros.core.errors import InputError
from mast3r_ros.core.geometry.se3 import invert_pose
from mast3r_ros.core.localizer import Localizer, frame_problem
from mast3r_ros.core.tracking.frames import FrameWork, Tracked, relocalizer_config
from mast3r_ros.core.tracking.measure import Measurement, depth_image, measure
from mast3r_ros.core.tracking.policy import (
    jump_reason,
    keyframe_reason,
    lost_reason,
    match_fraction,
)
from mast3r_ros.core.tracking.result import TrackingState, TrackResult
from mast3r_ros.core.tracking.stream import EdgeType, KeyframeEvent
from mast3r_ros.core.tracking.uncertainty import NoiseModel, compose_covariance, world_to_right
from mast3r_ros.core.tracking.window import KeyframeWindow, WindowEntry
from mast3r_ros.core.types import Frame, KeyframeEncoding

__all__ = ["Tracker"]

logger = logging.getLogger(__name__)


class Tracker:
    """The SLAM front end (see the module docstring).

    Args:
        config: tracking settings.
        pipeline: matcher, PnP and retrieval settings (the localizer's).
        backend: matcher backend; default: created from ``pipeline.backend``.
    """

    def __init__(self, config: TrackingConfig, pipeline: LocalizerConfig,
                 backend: Optional[MatcherBackend] = None) -> None:
        self.config = config
        self.pipeline = pipeline
        self.backend = backend if backend is not None else create_backend(pipeline)
        self._pose_cfg = dataclasses.replace(pipeline.pose, min_inliers=config.lost.min_inliers)
        self._noise = NoiseModel.from_config(config)
        self._window = KeyframeWindow(config.max_keyframes)
        self._relocalizer = Localizer(relocalizer_config(config, pipeline), self._window.map,
                                      self.backend)
        self._next_id = 0
        self._state = TrackingState.INIT
        self._init: tuple[np.ndarray, np.ndarray] = (np.eye(4), np.zeros((6, 6)))
        self._T_odom_track = np.eye(4)
        self._last: Optional[Tracked] = None
        self._last_stamp: Optional[float] = None

    # ------------------------------------------------------------------ public API
    @property
    def state(self) -> TrackingState:
        """The current state."""
        return self._state

    @property
    def window(self) -> KeyframeWindow:
        """The keyframe window (read it, do not modify it)."""
        return self._window

    def reset(self) -> None:
        """Forget every keyframe; the next frame starts a new track at the identity."""
        self._start(np.eye(4), np.zeros((6, 6)))

    def reset_to_pose(self, T_cam: np.ndarray, covariance: Optional[np.ndarray] = None) -> None:
        """Forget every keyframe; the next frame starts at ``T_cam`` (track and odom frames).

        Args:
            T_cam: (4, 4) camera pose of the next frame.
            covariance: optional (6, 6) world-axes covariance of that pose.

        Raises:
            InputError: a non-finite or non-rigid pose, or a covariance of the wrong shape.
        """
        T = np.asarray(T_cam, dtype=np.float64)
        if T.shape != (4, 4) or not np.all(np.isfinite(T)) \
                or not np.allclose(T[:3, :3].T @ T[:3, :3], np.eye(3), atol=1e-5) \
                or not np.allclose(T[3], [0, 0, 0, 1]):
            raise InputError("reset_to_pose needs a finite rigid 4x4 pose")
        cov = np.zeros((6, 6)) if covariance is None else np.asarray(covariance, dtype=float)
        if cov.shape != (6, 6) or not np.all(np.isfinite(cov)):
            raise InputError("reset_to_pose covariance must be a finite 6x6 matrix")
        self._start(T, world_to_right(T, cov))

    def process(self, frame: Frame, depth: Optional[np.ndarray] = None) -> TrackResult:
        """Track one frame.

        Args:
            frame: image, K (None: the backend's estimate, MASt3R only) and stamp.
            depth: optional (H, W) float depth in metres registered to the image (0/NaN =
                invalid); overrides ``frame.depth``.

        Returns:
            The :class:`TrackResult` (never raises for data it cannot track: LOST, or a reason).
        """
        work = FrameWork(frame if depth is None else dataclasses.replace(frame, depth=depth))
        problem = frame_problem(work.frame)
        if problem is None and self._last_stamp is not None \
                and work.frame.stamp < self._last_stamp:
            problem = f"stamp {work.frame.stamp:.3f} s is older than the previous frame's"
        if problem is not None:
            return work.result(self._state, f"invalid input: {problem}")
        try:
            work.query = self.backend.encode(work.frame.rgb)
            work.timer.add(work.query.timings)
            self._last_stamp = work.frame.stamp
            if self._state is TrackingState.INIT:
                return self._initialize(work)
            if self._state is TrackingState.TRACKING:
                result = self._track(work)
                if result is not None:
                    return result
            return self._relocalize(work)
        except InputError as exc:  # e.g. an image the network preprocessing cannot crop
            return work.result(self._state, f"invalid input: {exc}")

    # ------------------------------------------------------------------ states
    def _start(self, T_init: np.ndarray, cov_init: np.ndarray) -> None:
        self._window.clear()
        self._state = TrackingState.INIT
        self._init = (T_init, cov_init)
        self._T_odom_track = np.eye(4)
        self._last = None
        self._last_stamp = None

    def _initialize(self, work: FrameWork) -> TrackResult:
        T, cov = self._init
        depth, K = work.frame.depth, work.frame.K
        if depth is None or K is None:  # MASt3R: the image against itself gives its pointmap
            assert work.query is not None
            own = KeyframeEncoding(-1, work.query, lambda: work.frame.rgb)
            geo = self.backend.match(work.query, [own], self.pipeline.matching, geometry=True,
                                     query_image=work.frame.rgb).geometry
            K = K if K is not None or geo is None else geo.K
            if geo is None or K is None:
                return work.result(TrackingState.INIT, "the first keyframe needs depth and K "
                                   f"(the '{self.backend.name}' backend predicts neither)")
            depth = depth if depth is not None else depth_image(geo, *work.frame.rgb.shape[:2])
        tracked = self._add_keyframe(work, work.tracked(K, T, cov, self._T_odom_track,
                                                        depth=depth))
        self._last = tracked
        self._state = TrackingState.TRACKING
        return work.pose_result(tracked, tracked.own_keyframe)

    def _track(self, work: FrameWork) -> Optional[TrackResult]:
        """Track against the current keyframe (None: relocalize this frame)."""
        cur = self._window.current
        assert cur is not None
        m, why = self._measure(work, cur)
        fraction = match_fraction(m.num_inliers, cur.reference_count)
        kf_why = None
        if why is None:
            assert m.T_kf_cam is not None
            kf_why = keyframe_reason(fraction, m.T_kf_cam,
                                     work.frame.stamp - cur.keyframe.stamp, self.config.keyframe)
        if (why or kf_why) and self._promotable(cur):
            assert self._last is not None
            self._last = self._add_keyframe(work, self._last)
            promoted = self._window.entry(self._last.own_keyframe)
            m2, why2 = self._measure(work, promoted)
            if why2 is None:
                cur, m, fraction, why = promoted, m2, 1.0, None
            kf_why = None
        if why is not None:
            work.track_reason = why
            return None
        assert m.T_kf_cam is not None and m.T_track_cam is not None and m.covariance is not None
        if cur.reference_count is None:
            cur.reference_count = m.num_inliers
        motion = self._motion(m)
        tracked = work.tracked(m.K, m.T_track_cam,
                               compose_covariance(m.T_kf_cam, cur.covariance, m.covariance),
                               self._T_odom_track, m)
        if kf_why is not None and tracked.has_3d:
            logger.debug("new keyframe: %s", kf_why)
            tracked = self._add_keyframe(work, tracked)
        self._last = tracked
        return work.pose_result(tracked, m.keyframe_id, fraction=fraction, motion=motion)

    def _relocalize(self, work: FrameWork) -> TrackResult:
        res = self._relocalizer.localize(dataclasses.replace(work.frame, T_map_cam_prior=None),
                                         query=work.query)
        work.timer.add(res.timings)
        if not res.success or res.T_map_cam is None or res.covariance is None \
                or not res.cluster_ids or res.cluster_ids[0] not in self._window.map:
            self._state = TrackingState.LOST
            tracking = f"tracking failed ({work.track_reason}); " if work.track_reason else ""
            return work.result(TrackingState.LOST,
                               f"lost: {tracking}relocalization failed ({res.reason})")
        ref = self._window.entry(res.cluster_ids[0])
        T = res.T_map_cam
        T_ref_cam = invert_pose(ref.keyframe.T_map_cam) @ T
        pnp = self._noise.scale * world_to_right(T, res.covariance)
        cov_rel = pnp + self._noise.floor(T_ref_cam)
        m = Measurement(True, "ok", ref.keyframe.id, T_ref_cam, T, cov_rel, pnp, res.num_matches,
                        res.num_inliers, K=work.frame.K)
        if self._last is not None:  # hold the odometry still across the jump
            self._T_odom_track = self._last.T_odom_cam @ invert_pose(T)
        if work.frame.depth is None:  # MASt3R: the frame's predicted depth, against ``ref``
            m = dataclasses.replace(m, geometry=self._measure(work, ref)[0].geometry)
        tracked = work.tracked(work.frame.K, T,
                               compose_covariance(T_ref_cam, ref.covariance, cov_rel),
                               self._T_odom_track, m)
        self._state = TrackingState.TRACKING
        if tracked.has_3d:
            tracked = self._add_keyframe(work, tracked, EdgeType.RELOCALIZATION)
        else:  # no 3D for a new keyframe: continue from the relocalized one
            self._window.current_id = ref.keyframe.id
        self._last = tracked
        return work.pose_result(tracked, ref.keyframe.id, relocalized=True)

    # ------------------------------------------------------------------ helpers
    def _measure(self, work: FrameWork, ref: WindowEntry) -> tuple[Measurement, Optional[str]]:
        """Measure against a keyframe and say why the result is unusable (None = usable)."""
        assert work.query is not None
        m = measure(self.backend, ref.keyframe, ref.encoding, work.query, work.frame.rgb,
                    work.frame.K, matching=self.pipeline.matching, pose=self._pose_cfg,
                    noise=self._noise, geometry=work.frame.depth is None, timer=work.timer)
        if not m.success or m.T_track_cam is None:
            return m, m.reason
        why = lost_reason(m.num_inliers, match_fraction(m.num_inliers, ref.reference_count),
                          self.config.lost)
        if why is None and self._last is not None:
            why = jump_reason(self._last.T_track_cam, m.T_track_cam,
                              work.frame.stamp - self._last.stamp, self.config)
        return m, why

    def _promotable(self, cur: WindowEntry) -> bool:
        """The last frame can become the keyframe (tracked against ``cur``, not a keyframe)."""
        last = self._last
        return (last is not None and not last.is_keyframe and last.has_3d
                and last.keyframe_id == cur.keyframe.id)

    def _motion(self, m: Measurement) -> Optional[tuple[np.ndarray, np.ndarray]]:
        """Motion since the last tracked frame and its right covariance, within one chain."""
        last = self._last
        assert m.T_kf_cam is not None and m.covariance is not None
        if last is None or last.measurement is None and not last.is_keyframe:
            return None
        if last.own_keyframe == m.keyframe_id:  # the last frame is this frame's keyframe
            return m.T_kf_cam, m.covariance
        prev = last.measurement
        if prev is None or prev.keyframe_id != m.keyframe_id or prev.T_kf_cam is None \
                or prev.pnp_covariance is None or m.pnp_covariance is None:
            return None
        S = invert_pose(prev.T_kf_cam) @ m.T_kf_cam
        return S, compose_covariance(S, prev.pnp_covariance, m.pnp_covariance) \
            + self._noise.floor(S)

    def _add_keyframe(self, work: FrameWork, tracked: Tracked,
                      edge_type: EdgeType = EdgeType.ODOMETRY) -> Tracked:
        """Make a frame with a pose a keyframe of the window and of the stream (with its edge).

        Returns:
            The frame marked as that keyframe.
        """
        kid, self._next_id = self._next_id, self._next_id + 1
        entry = tracked.window_entry(kid)
        dropped = self._window.add(entry)
        work.add_keyframe(KeyframeEvent(entry.keyframe, entry.T_odom_cam, entry.encoding),
                          tracked.edge(kid, edge_type), dropped)
        return dataclasses.replace(tracked, own_keyframe=kid)
