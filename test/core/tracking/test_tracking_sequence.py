"""The SLAM front end's targets on the real 7-Scenes sequence (SIFT backend, CPU).

Each run plays ``shared/data/sevenscenes_redkitchen_rgbd/sequence`` through a fresh tracker with
the shipped defaults (``TrackingConfig()``, ``tracking_pipeline()``) and is shared by the tests of
its module-scoped fixture. The targets are the issue's; the stride-2 run on the odd files is a
subsample the parameters were not chosen on more than the others (see README "SLAM front end").
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Optional

import numpy as np
import pytest

from mast3r_ros.core.config import TrackingConfig, tracking_pipeline
from mast3r_ros.core.evaluation import trajectory_errors
from mast3r_ros.core.geometry.se3 import invert_pose
from mast3r_ros.core.tracking import EdgeType, Tracker, TrackingState
from mast3r_ros.core.tracking.sequence import (
    SequenceRun,
    plan_sequence,
    run_sequence,
    summarize_odometry,
)


def _play(data: Path, stride: int = 1, frames: Optional[str] = None
          ) -> tuple[SequenceRun, dict]:
    tracker = Tracker(TrackingConfig(), dataclasses.replace(tracking_pipeline(), backend="sift"))
    run = run_sequence(tracker, data, plan_sequence(data / "sequence", stride, frames))
    return run, summarize_odometry(run)


@pytest.fixture(scope="module")
def seven(data_dir: Path) -> Path:
    return data_dir / "sevenscenes_redkitchen_rgbd"


@pytest.fixture(scope="module")
def stride1(seven: Path) -> tuple[SequenceRun, dict]:
    return _play(seven, 1)


@pytest.fixture(scope="module")
def stride4(seven: Path) -> tuple[SequenceRun, dict]:
    return _play(seven, 4)


@pytest.fixture(scope="module")
def kidnap(seven: Path) -> tuple[SequenceRun, dict]:
    return _play(seven, 1, "0:40,15:66")


# ---------------------------------------------------------------------------------- stride 1
def test_stride1_accuracy(stride1) -> None:
    _, s = stride1
    assert s["frames"] == 66 and s["lost"] == 0, s
    assert s["ate_cm"] <= 5.0, s
    assert s["rpe_step_cm"] <= 2.0 and s["rpe_step_deg"] <= 0.7, s


def test_stride1_keyframes_and_covariance(stride1) -> None:
    _, s = stride1
    assert 10 <= s["keyframes"] <= 30, s
    assert s["nees_in_band"] >= 0.8, s
    assert s["max_step_cm"] <= 2 * s["max_gt_step_cm"], s


def test_stride1_stream_is_consistent(stride1) -> None:
    """Keyframes arrive once each in order, odometry edges chain them with the poses the
    keyframes carry, informations are SPD, and odom equals track without relocalization."""
    run, _ = stride1
    events = [k for r in run.results for k in r.keyframes]
    edges = [e for r in run.results for e in r.edges]
    ids = [k.id for k in events]
    assert ids == sorted(set(ids)) and len(edges) == len(events) - 1
    pose = {k.id: k.keyframe.T_map_cam for k in events}
    for e in edges:
        assert e.type is EdgeType.ODOMETRY and e.to_id > e.from_id
        np.testing.assert_allclose(invert_pose(pose[e.from_id]) @ pose[e.to_id], e.T_from_to,
                                   atol=1e-9)
        assert np.all(np.linalg.eigvalsh(e.information) > 0)
    for r in run.results:
        np.testing.assert_allclose(r.T_odom_cam, r.T_track_cam, atol=1e-12)
        assert r.covariance is not None and np.all(np.linalg.eigvalsh(r.covariance) >= 0)


def test_covariance_grows_along_the_chain(stride1) -> None:
    run, _ = stride1
    std = [np.sqrt(np.trace(r.covariance[:3, :3])) for r in run.results]
    assert std[0] == 0.0 and std[-1] > std[len(std) // 2] > std[1] > 0


# ---------------------------------------------------------------------------------- stride 2
@pytest.mark.parametrize("frames", [None, "1:66:2"], ids=["even", "odd"])
def test_stride2(seven: Path, frames: Optional[str]) -> None:
    """0.67 s between frames: every frame tracked, ATE <= 6 cm (even and odd files)."""
    _, s = _play(seven, 2 if frames is None else 1, frames)
    assert s["frames"] == 33 and s["lost"] == 0, s
    assert s["ate_cm"] <= 6.0, s
    assert s["nees_in_band"] >= 0.8, s


# ---------------------------------------------------------------------------------- stride 4
def test_stride4_no_wrong_pose(stride4) -> None:
    """1.33 s: a frame may be LOST, but every frame with a pose lies within 10 cm of GT."""
    run, s = stride4
    assert all(r.state in (TrackingState.TRACKING, TrackingState.LOST) for r in run.results)
    assert all(r.has_pose == (r.state is TrackingState.TRACKING) for r in run.results)
    posed = [i for i, r in enumerate(run.results) if r.has_pose]
    assert len(posed) >= len(run.results) // 2, s
    err = trajectory_errors(np.array([run.results[i].T_track_cam for i in posed]),
                            run.T_gt[posed])
    assert err.max_error <= 0.10 and s["max_err_cm"] <= 10.0, s


# ---------------------------------------------------------------------------------- kidnap
def test_kidnap_relocalizes_without_an_odometry_jump(kidnap) -> None:
    run, s = kidnap
    k = run.plan.jumps.index(True)
    assert run.plan.numbers[k - 1] == 390 and run.plan.numbers[k] == 150
    assert s["relocalized_within"] is not None and s["relocalized_within"] <= 3, s
    first = next(i for i in range(k, len(run.results)) if run.results[i].has_pose)
    r = run.results[first]
    assert r.relocalized and r.motion is None  # the jump is never tracked as motion
    assert any(e.type is EdgeType.RELOCALIZATION for e in r.edges)
    assert s["jumps_tracked_as_motion"] == 0
    assert s["max_step_cm"] <= 2 * s["max_gt_step_cm"], s
    prev = next(i for i in range(k - 1, -1, -1) if run.results[i].has_pose)
    step = np.linalg.norm(r.T_odom_cam[:3, 3] - run.results[prev].T_odom_cam[:3, 3])
    assert step < 0.05  # the odometry holds still across the jump ...
    gt_jump = np.linalg.norm(run.T_gt[first, :3, 3] - run.T_gt[prev, :3, 3])
    track_jump = np.linalg.norm(r.T_track_cam[:3, 3] - run.results[prev].T_track_cam[:3, 3])
    assert abs(track_jump - gt_jump) < 0.1  # ... while the track pose is restored


def test_kidnap_accuracy(kidnap) -> None:
    _, s = kidnap
    assert s["ate_cm"] <= 6.0, s
    assert s["lost"] <= 3, s
