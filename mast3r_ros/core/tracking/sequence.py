"""Run the tracker on a posed RGB-D sequence (``DATA/sequence/`` of the 7-Scenes layout) and
measure it: what ``mast3r-ros eval odometry`` prints and the tests assert.

Playback: ``stride`` takes every n-th file, ``ranges`` (``"0:40,15:66"``) are Python slices into
that list played one after the other; the first frame of every range after the first is a *jump*
(a kidnap). Stamps are playback stamps: file numbers / fps within a range, and one nominal step
across a jump, so time never goes back (as on a robot that was carried elsewhere).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional, Union

import numpy as np

from mast3r_ros.core.errors import InputError
from mast3r_ros.core.evaluation import (
    nees_in_band,
    parse_frame_ranges,
    trajectory_errors,
)
from mast3r_ros.core.geometry.se3 import invert_pose, orthonormalize_pose
from mast3r_ros.core.map.rgbd import list_rgbd_frames, read_rgbd_frame, rgbd_intrinsics
from mast3r_ros.core.tracking.result import TrackingState, TrackResult
from mast3r_ros.core.tracking.tracker import Tracker
from mast3r_ros.core.types import Frame

__all__ = ["SequencePlan", "SequenceRun", "plan_sequence", "run_sequence", "summarize_odometry"]


@dataclass(frozen=True)
class SequencePlan:
    """Which files are played, in order.

    Attributes:
        paths: colour image paths, in playback order.
        numbers: their frame numbers.
        jumps: True for the first frame of each range after the first.
        stamps: (N,) increasing playback stamps in seconds.
    """

    paths: list[Path]
    numbers: list[int]
    jumps: list[bool]
    stamps: np.ndarray


def plan_sequence(folder: Union[str, Path], stride: int = 1, ranges: Optional[str] = None,
                  fps: float = 30.0) -> SequencePlan:
    """The playback of a sequence folder (see the module docstring).

    Raises:
        InputError: no frames, a bad stride or range.
    """
    if stride < 1:
        raise InputError(f"stride must be >= 1, got {stride}")
    files = list_rgbd_frames(Path(folder))[::stride]
    if len(files) < 2:
        raise InputError(f"fewer than 2 frames in {folder} at stride {stride}")
    groups = parse_frame_ranges(ranges, len(files)) if ranges else [list(range(len(files)))]
    order = [i for g in groups for i in g]
    jumps = [k > 0 and j == 0 for k, g in enumerate(groups) for j in range(len(g))]
    nominal = abs(files[1][0] - files[0][0]) / fps
    stamps = [files[order[0]][0] / fps]
    for k in range(1, len(order)):
        step = nominal if jumps[k] else abs(files[order[k]][0] - files[order[k - 1]][0]) / fps
        stamps.append(stamps[-1] + max(step, 1e-3))
    return SequencePlan([files[i][1] for i in order], [files[i][0] for i in order], jumps,
                        np.array(stamps))


@dataclass
class SequenceRun:
    """The tracker's results on a plan, with the GT.

    Attributes:
        plan: the playback.
        results: one :class:`TrackResult` per played frame.
        T_gt: (N, 4, 4) GT camera-to-world poses (rotations projected onto SO(3)).
    """

    plan: SequencePlan
    results: list[TrackResult]
    T_gt: np.ndarray


def run_sequence(tracker: Tracker, data: Union[str, Path], plan: SequencePlan,
                 progress: Optional[Callable[[int, TrackResult], None]] = None) -> SequenceRun:
    """Feed the plan's frames (colour K of ``data``, registered depth) to the tracker.

    Args:
        tracker: a fresh tracker.
        data: the data set folder (intrinsics files; the plan's paths are in its sequence/).
        plan: what to play.
        progress: called with (index, result) after each frame.
    """
    K_color, K_depth = rgbd_intrinsics(Path(data))
    results, gts = [], []
    for i, (path, stamp) in enumerate(zip(plan.paths, plan.stamps)):
        rgb, depth, T = read_rgbd_frame(path, K_color, K_depth)
        results.append(tracker.process(Frame(rgb, K_color, float(stamp)), depth))
        gts.append(orthonormalize_pose(T))
        if progress is not None:
            progress(i, results[-1])
    return SequenceRun(plan, results, np.array(gts))


def _posed(run: SequenceRun) -> list[int]:
    return [i for i, r in enumerate(run.results) if r.has_pose]


def _steps(run: SequenceRun) -> tuple[float, float]:
    """(largest odom step, largest GT step without the jumps) in metres."""
    centres = [r.T_odom_cam[:3, 3] for r in run.results if r.has_pose and r.T_odom_cam is not None]
    odom = [np.linalg.norm(b - a) for a, b in zip(centres, centres[1:])]
    C = run.T_gt[:, :3, 3]
    gt = [np.linalg.norm(C[k] - C[k - 1]) for k in range(1, len(C)) if not run.plan.jumps[k]]
    return float(max(odom, default=0.0)), float(max(gt, default=0.0))


def _nees(run: SequenceRun) -> tuple[float, np.ndarray]:
    """Relative-pose NEES of every step that carries a motion covariance."""
    motions, covs, gts = [], [], []
    prev = None
    for i, r in enumerate(run.results):
        if r.has_pose:
            if prev is not None and r.motion is not None and r.motion_covariance is not None:
                motions.append(r.motion)
                covs.append(r.motion_covariance)
                gts.append(invert_pose(run.T_gt[prev]) @ run.T_gt[i])
            prev = i
    return nees_in_band(motions, covs, gts)


def _relocalized_within(run: SequenceRun) -> tuple[Optional[int], int]:
    """(frames from each jump to the first posed frame, worst case; jumps tracked as motion)."""
    worst: Optional[int] = None
    as_motion = 0
    for k in [k for k, j in enumerate(run.plan.jumps) if j]:
        after = [i for i in range(k, len(run.results)) if run.results[i].has_pose]
        if not after:
            return None, as_motion
        first = after[0]
        as_motion += int(not run.results[first].relocalized)
        worst = max(worst or 0, first - k)
    return worst, as_motion


def summarize_odometry(run: SequenceRun) -> dict:
    """The ``eval odometry`` summary (keys of the SLAM front-end issue, lengths in cm)."""
    posed = _posed(run)
    res = run.results
    summary: dict = {"frames": len(res),
                     "lost": sum(r.state is TrackingState.LOST for r in res),
                     "keyframes": sum(len(r.keyframes) for r in res),
                     "relocalizations": sum(r.relocalized for r in res)}
    if len(posed) >= 3:
        err = trajectory_errors(np.array([res[i].T_track_cam for i in posed]), run.T_gt[posed],
                                run.plan.stamps[posed])
        summary.update(ate_cm=100 * err.ate, rpe_step_cm=100 * err.rpe_translation,
                       rpe_step_deg=err.rpe_rotation_deg, max_err_cm=100 * err.max_error)
    else:
        summary.update(ate_cm=None, rpe_step_cm=None, rpe_step_deg=None, max_err_cm=None)
    max_step, max_gt_step = _steps(run)
    band, nees = _nees(run)
    within, as_motion = _relocalized_within(run)
    totals = [r.timings.total for r in res if np.isfinite(r.timings.total)]
    summary.update(max_step_cm=100 * max_step, max_gt_step_cm=100 * max_gt_step,
                   nees_in_band=band, nees_median=float(np.median(nees)) if nees.size else None,
                   median_ms_per_frame=1000 * float(np.median(totals)) if totals else None,
                   relocalized_within=within, jumps_tracked_as_motion=as_motion)
    return summary
