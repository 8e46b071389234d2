"""``mast3r-ros eval slam DATA``: front end + back end on ``DATA/sequence``, then relocalization.

Prints one JSON line ``{"task": "slam", frames, keyframes, loops_accepted, loops_rejected,
false_loops, ate_cm_odometry, ate_cm_slam, optimize_ms}`` (+ ``reloc_*`` with ``--relocalize``).
With ``--out DIR`` it also writes ``summary.json``, ``trajectories.png`` (GT, front end and
optimised keyframes after their SE(3) alignments, accepted loops) and, with ``--relocalize``, the
saved SLAM map under ``DIR/map``.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mast3r_ros.cli.common import dump_json, sequence_options, to_jsonable
from mast3r_ros.cli.eval_odometry import pipeline_config
from mast3r_ros.cli.options import add_config_options, config_from_args
from mast3r_ros.core.backends import MatcherBackend, create_backend
from mast3r_ros.core.config import LocalizerConfig, SlamConfig, TrackingConfig, opt, validate_fields
from mast3r_ros.core.localizer import Localizer
from mast3r_ros.core.map import load_map
from mast3r_ros.core.slam import PoseGraphMapper
from mast3r_ros.core.slam.evaluation import (
    SequenceFrame,
    StreamItem,
    align_trajectory,
    false_loop_edges,
    interleave_edges,
    read_sequence,
    relocalize_queries,
    summarize_slam,
)
from mast3r_ros.core.tracking import Tracker
from mast3r_ros.core.tracking.stream import EdgeType, KeyframeEvent
from mast3r_ros.core.types import Frame

__all__ = ["SlamEvalOptions", "add_arguments", "run"]


@dataclass(frozen=True)
class SlamEvalOptions:
    """Options of the slam task (the shared eval options stay in ``cli/eval.py``)."""

    relocalize: bool = opt(False, "slam task: save the map, then localize DATA/query in it")
    inject_false_loops: int = opt(0, "slam task, robustness test hook: add N wrong, confident "
                                     "loop edges to the front end's stream", range=(0, 1000))

    def __post_init__(self) -> None:
        validate_fields(self)


def add_arguments(p: argparse.ArgumentParser) -> None:
    """Add the options of :class:`SlamEvalOptions`."""
    add_config_options(p, SlamEvalOptions, title="slam evaluation")


def front_end_stream(frames: list[SequenceFrame], config: LocalizerConfig,
                     backend: MatcherBackend) -> tuple[list[StreamItem], dict[int, np.ndarray]]:
    """The tracker's keyframe / edge stream for the frames, and GT per keyframe id.

    The frames get playback stamps (frame-number spacing, never going back), so an out-and-back
    playback is one forward stream, as a robot would record it.
    """
    tracker = Tracker(TrackingConfig(), config, backend)
    items: list[StreamItem] = []
    gt: dict[int, np.ndarray] = {}
    stamp, by_stamp = 0.0, {}
    for k, f in enumerate(frames):
        if k:
            stamp += max(abs(f.number - frames[k - 1].number) / 30.0, 1e-3)
        by_stamp[stamp] = f
        r = tracker.process(Frame(f.rgb, f.K, stamp), f.depth)
        for ev in r.keyframes:
            gt[ev.id] = by_stamp[ev.stamp].T_world_cam
        items += [*r.keyframes, *r.edges]
    return items, gt


def run_back_end(items: list[StreamItem], config: LocalizerConfig, backend: MatcherBackend
                 ) -> tuple[PoseGraphMapper, float]:
    """Feed the stream to a new mapper, batch-optimise; the mapper and the batch seconds."""
    mapper = PoseGraphMapper(SlamConfig(), config, backend)
    for it in items:
        if isinstance(it, KeyframeEvent):
            mapper.add_keyframe(it)
        else:
            mapper.add_edge(it)
    t0 = time.perf_counter()
    mapper.optimize()
    return mapper, time.perf_counter() - t0


def plot_trajectories(mapper: PoseGraphMapper, gt: dict[int, np.ndarray], path: Path) -> None:
    """x-y and x-z views of GT, the front end and the optimised keyframes (each SE(3)-aligned)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ids = [i for i in mapper.graph.ids if i in gt]
    G = np.stack([gt[i] for i in ids])
    runs = {}
    for name, P in (("front end", np.stack([mapper.map.record(i).T_map_cam for i in ids])),
                    ("optimised", np.stack([mapper.graph.pose(i) for i in ids]))):
        S, ate = align_trajectory(P, G)
        runs[f"{name} (ATE {ate * 100:.1f} cm)"] = (S @ P)[:, :3, 3]
    row = {i: k for k, i in enumerate(ids)}
    fig, axes = plt.subplots(1, 2, figsize=(12, 5))
    for ax, (a, b) in zip(axes, ((0, 1), (0, 2))):
        ax.plot(G[:, a, 3], G[:, b, 3], "g-", lw=1, label="GT")
        for (label, C), style in zip(runs.items(), ("r--", "b-")):
            ax.plot(C[:, a], C[:, b], style, lw=1, label=label)
        C = list(runs.values())[-1]
        for e in mapper.graph.edges:
            if e.type is EdgeType.LOOP and e.from_id in row and e.to_id in row:
                p, q = C[row[e.from_id]], C[row[e.to_id]]
                ax.plot([p[a], q[a]], [p[b], q[b]], "m-", lw=0.5)
        ax.set_xlabel("xyz"[a] + " (m)")
        ax.set_ylabel("xyz"[b] + " (m)")
        ax.axis("equal")
        ax.legend(fontsize=8)
    fig.suptitle("keyframes before (front end) and after optimisation; magenta: loops")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def run(args: argparse.Namespace) -> int:
    """The ``slam`` task (see the module docstring)."""
    opts: SlamEvalOptions = config_from_args(SlamEvalOptions, args)
    seq = sequence_options(args)  # --stride / --frames, shared with the odometry task
    config = pipeline_config(args)  # the front end's preset (tracking_pipeline) under the options
    backend = create_backend(config)
    frames = read_sequence(args.data, seq.stride, seq.frames or None)
    items, gt = front_end_stream(frames, config, backend)
    if opts.inject_false_loops:
        extra = false_loop_edges(gt, opts.inject_false_loops, np.random.default_rng(0))
        items = interleave_edges(items, extra)
    mapper, batch_s = run_back_end(items, config, backend)
    summary, S = summarize_slam(mapper, gt, len(frames), batch_s)
    summary = {"task": "slam", "data": str(args.data), "backend": backend.name, **summary}
    if args.out is not None:
        args.out.mkdir(parents=True, exist_ok=True)
        plot_trajectories(mapper, gt, args.out / "trajectories.png")
    if opts.relocalize:
        base = args.out if args.out is not None else Path(tempfile.mkdtemp(prefix="slam-map-"))
        saved = mapper.save(base / "map")
        loc = Localizer(config, load_map(saved), backend)
        summary |= relocalize_queries(loc, args.data, S, {f.number for f in frames})
    print(dump_json(summary), flush=True)
    if args.out is not None:
        (args.out / "summary.json").write_text(json.dumps(to_jsonable(summary), indent=2))
    return 0
