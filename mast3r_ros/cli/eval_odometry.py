"""``mast3r-ros eval odometry DATA``: the SLAM front end on ``DATA/sequence/``, measured with evo.

Prints one JSON line ``{"task": "odometry", ...}`` (keys of :func:`summarize_odometry`: frames,
lost, keyframes, ate_cm, rpe_step_cm, rpe_step_deg, max_step_cm, max_gt_step_cm, nees_in_band,
max_err_cm, median_ms_per_frame, relocalized_within ...). With ``--out DIR`` it also writes
``summary.json``, ``per_item.json`` (one row per played frame), the TUM trajectories
``track.tum`` (causal ``T_track_cam``), ``odom.tum`` and ``groundtruth.tum``, and
``trajectory.png`` (the SE(3)-aligned estimate against GT).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from tqdm import tqdm

from mast3r_ros.cli.common import dump_json, os_errors_as, sequence_options, to_jsonable
from mast3r_ros.cli.options import add_config_options, config_from_args, iter_options
from mast3r_ros.core.config import (
    LocalizerConfig,
    TrackingConfig,
    config_from_flat,
    flat_values,
    tracking_pipeline,
)
from mast3r_ros.core.errors import InputError
from mast3r_ros.core.evaluation import trajectory_errors
from mast3r_ros.core.tracking import Tracker
from mast3r_ros.core.tracking.sequence import (
    SequenceRun,
    plan_sequence,
    run_sequence,
    summarize_odometry,
)

__all__ = ["add_arguments", "pipeline_config", "run"]


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The odometry task's own options (``--tracking.*``; ``--stride`` and ``--frames`` are the
    shared :class:`~mast3r_ros.cli.common.SequenceOptions`)."""
    add_config_options(p, TrackingConfig, prefix="tracking.", title="tracking (odometry task)")


def _items(run: SequenceRun) -> list[dict]:
    rows = []
    for number, jump, r in zip(run.plan.numbers, run.plan.jumps, run.results):
        rows.append({"frame": number, "jump": jump, "state": r.state.value, "reason": r.reason,
                     "inliers": r.num_inliers, "match_fraction": r.match_fraction,
                     "keyframe_id": r.keyframe_id, "is_keyframe": r.is_keyframe,
                     "relocalized": r.relocalized, "new_keyframes": [k.id for k in r.keyframes],
                     "edges": [[e.from_id, e.to_id, e.type.value] for e in r.edges],
                     "timings_ms": {k: 1000 * v for k, v in r.timings.as_dict().items()}})
    return rows


def _write_outputs(out: Path, run: SequenceRun, summary: dict) -> None:
    """JSON, TUM trajectories and the plot under ``out``."""
    from evo.core.trajectory import PoseTrajectory3D
    from evo.tools import file_interface

    from mast3r_ros.cli.eval import plot_positions

    posed = [i for i, r in enumerate(run.results) if r.has_pose]
    stamps = run.plan.stamps
    out.mkdir(parents=True, exist_ok=True)
    (out / "summary.json").write_text(json.dumps(to_jsonable(summary), indent=2))
    (out / "per_item.json").write_text(json.dumps(to_jsonable(_items(run)), indent=1))
    trajectories = {"groundtruth": (list(run.T_gt), stamps)}
    if posed:
        trajectories["track"] = ([run.results[i].T_track_cam for i in posed], stamps[posed])
        trajectories["odom"] = ([run.results[i].T_odom_cam for i in posed], stamps[posed])
    for name, (poses, ts) in trajectories.items():
        file_interface.write_tum_trajectory_file(
            str(out / f"{name}.tum"), PoseTrajectory3D(poses_se3=poses, timestamps=ts))
    est = np.full((len(run.results), 3), np.nan)
    if len(posed) >= 3:
        err = trajectory_errors(np.array([run.results[i].T_track_cam for i in posed]),
                                run.T_gt[posed], stamps[posed])
        est[posed] = err.aligned[:, :3, 3]
    plot_positions(est, run.T_gt[:, :3, 3], out / "trajectory.png")


def pipeline_config(args: argparse.Namespace) -> LocalizerConfig:
    """The pipeline options of the command line over the :func:`tracking_pipeline` preset."""
    values = flat_values(tracking_pipeline())
    values.update({o.name: getattr(args, o.dest) for o in iter_options(LocalizerConfig)
                   if getattr(args, o.dest, None) is not None})
    cfg: LocalizerConfig = config_from_flat(
        LocalizerConfig, values, convert=lambda d, v: tuple(v) if isinstance(d, tuple) else v)
    return cfg


def run(args: argparse.Namespace) -> int:
    """Run the odometry task (see the module docstring)."""
    opts = sequence_options(args)
    tracking: TrackingConfig = config_from_args(TrackingConfig, args, prefix="tracking.")
    pipeline = pipeline_config(args)
    folder = args.data / "sequence"
    if not folder.is_dir():
        raise InputError(f"{args.data} has no sequence/ folder (see the data set README)")
    plan = plan_sequence(folder, opts.stride, opts.frames or None)
    tracker = Tracker(tracking, pipeline)
    bar = tqdm(total=len(plan.paths), desc="track", unit="frame")
    run_ = run_sequence(tracker, args.data, plan, lambda i, r: bar.update(1))
    bar.close()
    summary = {"task": "odometry", **summarize_odometry(run_), "data": str(args.data),
               "backend": tracker.backend.name, "stride": opts.stride,
               "frame_ranges": opts.frames or None}
    print(dump_json(summary), flush=True)
    if args.out is not None:
        with os_errors_as(InputError, f"cannot write the results to {args.out}"):
            _write_outputs(args.out, run_, summary)
    return 0
