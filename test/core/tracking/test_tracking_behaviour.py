"""Tracker behaviour on the first frames of the real sequence (SIFT): start, determinism, reset,
bounded memory, bad input, lost and relocalization."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest

from mast3r_ros.core.backends import create_backend
from mast3r_ros.core.config import KeyframeRuleConfig, TrackingConfig, tracking_pipeline
from mast3r_ros.core.geometry.se3 import make_pose, so3_exp
from mast3r_ros.core.map.rgbd import list_rgbd_frames, read_rgbd_frame, rgbd_intrinsics
from mast3r_ros.core.tracking import EdgeType, Tracker, TrackingState
from mast3r_ros.core.types import Frame

PIPELINE = dataclasses.replace(tracking_pipeline(), backend="sift")


@pytest.fixture(scope="module")
def frames(data_dir: Path) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """(rgb, registered depth, K) of the first 8 sequence frames (0.33 s apart)."""
    root = data_dir / "sevenscenes_redkitchen_rgbd"
    K, K_depth = rgbd_intrinsics(root)
    out = []
    for _, path in list_rgbd_frames(root / "sequence")[:8]:
        rgb, depth, _ = read_rgbd_frame(path, K, K_depth)
        out.append((rgb, depth, K))
    return out


@pytest.fixture(scope="module")
def backend():
    return create_backend(PIPELINE)


def _tracker(backend, **changes) -> Tracker:
    return Tracker(dataclasses.replace(TrackingConfig(), **changes), PIPELINE, backend)


def _feed(tracker: Tracker, frames, idx, t0: float = 0.0):
    return [tracker.process(Frame(frames[i][0], frames[i][2], t0 + i / 3), frames[i][1])
            for i in idx]


def test_first_frame_starts_the_track(frames, backend) -> None:
    t = _tracker(backend)
    assert t.state is TrackingState.INIT
    r0, r1 = _feed(t, frames, [0, 1])
    assert r0.state is TrackingState.TRACKING and r0.is_keyframe and r0.keyframe_id == 0
    np.testing.assert_array_equal(r0.T_track_cam, np.eye(4))
    assert [k.id for k in r0.keyframes] == [0] and r0.edges == ()
    assert r1.has_pose and not r1.is_keyframe and r1.keyframe_id == 0 and r1.num_inliers >= 100
    assert r1.match_fraction == 1.0 and r1.motion is not None
    assert r1.timings.encode > 0 and r1.timings.matching > 0 and r1.timings.pose > 0
    assert np.linalg.norm(r1.T_track_cam[:3, 3]) > 0.01  # the camera moved


def test_deterministic(frames, backend) -> None:
    a = _feed(_tracker(backend), frames, range(6))
    b = _feed(_tracker(backend), frames, range(6))
    for ra, rb in zip(a, b):
        np.testing.assert_array_equal(ra.T_track_cam, rb.T_track_cam)
        np.testing.assert_array_equal(ra.covariance, rb.covariance)


def test_sift_needs_depth_to_start(frames, backend) -> None:
    t = _tracker(backend)
    r = t.process(Frame(frames[0][0], frames[0][2], 0.0))
    assert r.state is TrackingState.INIT and not r.has_pose and "depth" in r.reason
    assert t.state is TrackingState.INIT


def test_reset_and_reset_to_pose(frames, backend) -> None:
    t = _tracker(backend)
    first = _feed(t, frames, range(3))
    t.reset()
    assert t.state is TrackingState.INIT and len(t.window) == 0
    r = _feed(t, frames, [3], t0=5.0)[0]
    np.testing.assert_array_equal(r.T_track_cam, np.eye(4))
    assert r.keyframes[0].id > max(k.id for x in first for k in x.keyframes)  # ids stay unique
    T = make_pose(so3_exp([0.1, -0.2, 0.3]), [1.0, 2.0, 3.0])
    cov = np.diag([1e-4] * 3 + [1e-5] * 3)
    t.reset_to_pose(T, cov)
    r = _feed(t, frames, [4], t0=10.0)[0]
    np.testing.assert_allclose(r.T_track_cam, T)
    np.testing.assert_allclose(r.T_odom_cam, T)
    np.testing.assert_allclose(r.covariance, cov, atol=1e-15)
    with pytest.raises(Exception, match="rigid"):
        t.reset_to_pose(np.diag([2.0, 1, 1, 1]))


def test_memory_is_bounded(frames, backend) -> None:
    """Every frame a keyframe, a window of 2: older keyframes are dropped (after being handed
    on in the stream)."""
    t = _tracker(backend, max_keyframes=2, keyframe=KeyframeRuleConfig(max_translation=0.001))
    res = _feed(t, frames, range(8))
    made = [k.id for r in res for k in r.keyframes]
    dropped = [i for r in res for i in r.dropped_keyframes]
    assert len(made) >= 6 and len(t.window) == 2 and len(t.window.map) == 2
    assert dropped == made[:-2] and set(t.window.map.ids) == set(made[-2:])
    assert all(r.has_pose for r in res)


def test_bad_input_is_a_reason_and_changes_nothing(frames, backend) -> None:
    t = _tracker(backend)
    rgb, depth, K = frames[0]
    _feed(t, frames, [0, 1])
    bad = [Frame(rgb, K, 1.0), Frame(rgb, np.full((3, 3), np.nan), 1.0),
           Frame(rgb[:8, :8], K, 1.0), Frame(rgb, K, 0.1)]
    depths = [depth[:100], depth, None, depth]
    for f, d in zip(bad, depths):
        r = t.process(f, d)
        assert r.reason.startswith("invalid input") and not r.has_pose, r.reason
        assert t.state is TrackingState.TRACKING
    nan_depth = depth.copy()
    nan_depth[::2] = np.nan
    r = t.process(Frame(frames[2][0], K, 2 / 3), nan_depth)
    assert r.has_pose and r.keyframe_id == 0


def test_lost_then_relocalized_without_odometry_jump(frames, backend) -> None:
    t = _tracker(backend)
    res = _feed(t, frames, range(4))
    grey = np.full_like(frames[0][0], 128)
    lost = t.process(Frame(grey, frames[0][2], 4 / 3), frames[0][1])
    assert lost.state is TrackingState.LOST and not lost.has_pose and lost.T_odom_cam is None
    assert "relocalization failed" in lost.reason
    back = _feed(t, frames, [5])[0]
    assert back.state is TrackingState.TRACKING and back.relocalized and back.is_keyframe
    assert [e.type for e in back.edges] == [EdgeType.RELOCALIZATION]
    np.testing.assert_allclose(back.T_odom_cam, res[-1].T_odom_cam, atol=1e-9)
    assert np.linalg.norm(back.T_track_cam[:3, 3] - res[-1].T_track_cam[:3, 3]) > 0.02
    nxt = _feed(t, frames, [6])[0]
    assert nxt.has_pose and not nxt.relocalized and nxt.motion is not None
