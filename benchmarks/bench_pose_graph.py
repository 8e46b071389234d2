"""Benchmark of the SLAM back end's pose graph (GTSAM) on synthetic keyframes with loops.

1. Incremental: keyframes on laps of a circle (odometry with noise and a yaw bias, a loop to the
   previous lap every ``--loop-every`` keyframes), fed one by one like the mapper does
   (``add_node`` + ``add_edge`` + iSAM2 ``update``; a loop adds the chi-square test and a batch).
   Reported: the median per-keyframe update at keyframes 90-100 (target <= 20 ms at 100), the
   median cost of a loop acceptance there, and, as the baseline measured in the same run, a batch
   Levenberg-Marquardt re-solve of the same 100-keyframe graph.
2. Batch: 1,000 keyframes with loops, Levenberg-Marquardt from dead reckoning (target <= 2 s),
   against the same graph without the robust kernel (plain least squares) as the baseline.

Usage: ``python -m benchmarks.bench_pose_graph [--runs 5]``; prints one JSON line.
"""

from __future__ import annotations

import argparse
import time
from importlib.metadata import version

import numpy as np

from benchmarks.common import report
from mast3r_ros.core.config import PoseGraphConfig
from mast3r_ros.core.geometry.se3 import invert_pose, make_pose, so3_exp
from mast3r_ros.core.slam.graph import PoseGraph
from mast3r_ros.core.tracking.stream import EdgeType, GraphEdge

INFO = np.diag([1.0 / 0.02**2] * 3 + [1.0 / np.radians(1.0)**2] * 3)


def laps(n: int, per_lap: int = 50, radius: float = 3.0) -> list[np.ndarray]:
    """GT camera poses on laps of a circle, looking along the path."""
    out = []
    for i in range(n):
        a = 2 * np.pi * i / per_lap
        out.append(make_pose(so3_exp(np.array([0.0, 0.0, a])),
                             np.array([radius * np.cos(a), radius * np.sin(a), 0.01 * i])))
    return out


def stream(gt: list[np.ndarray], rng: np.random.Generator, per_lap: int, loop_every: int
           ) -> list[tuple[int, np.ndarray, list[GraphEdge]]]:
    """(node id, dead-reckoned initial pose, edges to add with it) per keyframe."""
    bias = make_pose(so3_exp(np.array([0.0, 0.0, np.radians(0.3)])), np.array([0.005, 0, 0]))
    T, out = gt[0].copy(), []
    for i in range(len(gt)):
        edges = []
        if i > 0:
            noise = make_pose(so3_exp(rng.normal(0, np.radians(0.2), 3)), rng.normal(0, 0.005, 3))
            meas = invert_pose(gt[i - 1]) @ gt[i] @ bias @ noise
            T = T @ meas
            edges.append(GraphEdge(i - 1, i, EdgeType.ODOMETRY, meas, INFO))
        if i >= per_lap and i % loop_every == 0:
            j = i - per_lap
            edges.append(GraphEdge(j, i, EdgeType.LOOP, invert_pose(gt[j]) @ gt[i], INFO))
        out.append((i, T.copy(), edges))
    return out


def incremental(items: list, upto: int) -> tuple[list[float], list[float], float]:
    """Per-keyframe update times and loop times at keyframes upto-10..upto, and a batch re-solve."""
    g = PoseGraph()
    kf_times, loop_times = [], []
    for i, T, edges in items[:upto]:
        t0 = time.perf_counter()
        g.add_node(i, T)
        for e in edges:
            if e.type is EdgeType.LOOP:
                t1 = time.perf_counter()
                g.chi2(e)
                g.add_edge(e)
                g.optimize()
                if i >= upto - 10:
                    loop_times.append(time.perf_counter() - t1)
            else:
                g.add_edge(e)
                g.update()
        if i >= upto - 10 and not any(e.type is EdgeType.LOOP for e in edges):
            kf_times.append(time.perf_counter() - t0)
    t0 = time.perf_counter()
    g.optimize()
    return kf_times, loop_times, time.perf_counter() - t0


def batch(items: list, kernel: str) -> float:
    """Seconds of one Levenberg-Marquardt solve of the whole graph from dead reckoning."""
    g = PoseGraph(PoseGraphConfig(robust_kernel=kernel))
    for i, T, edges in items:
        g.add_node(i, T)
        for e in edges:
            g.add_edge(e)
    return g.optimize().seconds


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--keyframes", type=int, default=1000)
    ap.add_argument("--loop-every", type=int, default=10)
    args = ap.parse_args()
    per_lap = 50
    items = stream(laps(args.keyframes, per_lap), np.random.default_rng(0), per_lap,
                   args.loop_every)
    incremental(items, 100)  # warm-up
    batch(items, "cauchy")
    kf, loops, rebatch, b_robust, b_plain = [], [], [], [], []
    for _ in range(args.runs):
        k, lp, rb = incremental(items, 100)
        kf += k
        loops += lp
        rebatch.append(rb)
        b_robust.append(batch(items, "cauchy"))
        b_plain.append(batch(items, "none"))
    ms = 1000.0
    report("pose_graph", {
        "gtsam": version("gtsam"), "numpy": np.__version__, "runs": args.runs,
        "incremental_keyframes": 100, "median_update_ms_at_100": float(np.median(kf)) * ms,
        "median_loop_accept_ms_at_100": float(np.median(loops)) * ms if loops else None,
        "baseline_batch_resolve_ms_at_100": float(np.median(rebatch)) * ms,
        "update_vs_resolve_ratio": float(np.median(kf) / np.median(rebatch)),
        "batch_keyframes": args.keyframes,
        "batch_loops": sum(e.type is EdgeType.LOOP for _, _, es in items for e in es),
        "median_batch_s": float(np.median(b_robust)),
        "baseline_batch_plain_s": float(np.median(b_plain)),
        "robust_vs_plain_ratio": float(np.median(b_robust) / np.median(b_plain)),
    })


if __name__ == "__main__":
    main()
