"""Benchmark of the localization pipeline on the 7-Scenes sample (SIFT baseline backend).

1. End-to-end ``Localizer.localize`` per-stage timings (median over queries, after a warm-up).
2. PnP solvers on IDENTICAL 2D-3D correspondences (pooled over our top-k retrieval):
   OpenCV USAC MAGSAC++ (the default), classic RANSAC with SQPnP / EPnP, and PoseLib when it is
   importable (``pip install poselib``; not a dependency). Accuracy + median solver time, ratio vs
   MAGSAC++ measured in the same run.

Usage: ``python benchmarks/bench_localize.py [--data PATH] [--repeats 3]``; prints one JSON line.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import time
from pathlib import Path

import numpy as np
import torch

from mast3r_ros.core.backends.sift import SiftBackend
from mast3r_ros.core.config import LocalizerConfig
from mast3r_ros.core.evaluation import read_queries, summarize_absolute
from mast3r_ros.core.geometry.pnp import estimate_pose_pnp
from mast3r_ros.core.geometry.se3 import invert_pose, make_pose, pose_errors
from mast3r_ros.core.localizer import Localizer
from mast3r_ros.core.pose import gather_correspondences
from mast3r_ros.core.map import build_map_from_rgbd, read_matrix, read_rgb
from mast3r_ros.core.types import Frame

ROOT = Path(__file__).resolve().parents[1]


def _git_rev() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True,
                              text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def _poselib_solver():
    try:
        import poselib
    except ImportError:
        return None

    def solve(xy, X, K, thr):
        cam = {"model": "PINHOLE", "width": 640, "height": 480,
               "params": [K[0, 0], K[1, 1], K[0, 2], K[1, 2]]}
        pose, info = poselib.estimate_absolute_pose(xy, X, cam, {"max_reproj_error": thr}, {})
        return invert_pose(make_pose(pose.R, pose.t)), int(np.sum(info["inliers"]))

    return solve


def _opencv_solver(method):
    def solve(xy, X, K, thr):
        r = estimate_pose_pnp(xy, X, K, reproj_threshold=thr, method=method, min_inliers=4,
                              max_median_reproj_error=100.0)
        return r.T_map_cam, r.num_inliers

    return solve


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", type=Path,
                    default=ROOT.parent / "shared" / "data" / "sevenscenes_redkitchen_rgbd")
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    K = read_matrix(args.data / "color-intrinsics.txt", (3, 3))
    queries = read_queries(args.data / "queries_with_gt.txt")
    cfg = LocalizerConfig(backend="sift")
    loc = Localizer(cfg, build_map_from_rgbd(args.data), SiftBackend())
    frames = [Frame(read_rgb(args.data / q.name), K) for q in queries]
    loc.localize(frames[0])  # warm-up
    stage, corr = [], []
    for f in frames:
        r = loc.localize(f)
        stage.append(r.timings.as_dict())
        kfs = [loc.map.keyframe(i) for i in r.cluster_ids]
        refs = [loc.map.keyframe_encoding(i) for i in r.cluster_ids]
        matched = loc.backend.match(loc.backend.encode(f.rgb), refs, cfg.matching)
        c = gather_correspondences(kfs, matched.pairs)
        corr.append((c.xy, c.X_map))
    solvers = {m: _opencv_solver(m) for m in ("magsac", "ransac_sqpnp", "ransac_epnp")}
    if _poselib_solver() is not None:
        solvers["poselib"] = _poselib_solver()
    thr = cfg.pose.ransac_reproj_threshold
    results = {}
    for name, solve in solvers.items():
        solve(*corr[0], K, thr)  # warm-up
        times, perr, rerr = [], [], []
        for (xy, X), q in zip(corr, queries):
            ts = []
            for _ in range(args.repeats):
                t0 = time.perf_counter()
                T, _ = solve(xy, X, K, thr)
                ts.append(time.perf_counter() - t0)
            times.append(np.median(ts))
            dp, dr = pose_errors(T, q.T_world_cam) if T is not None else (np.inf, np.inf)
            perr.append(dp)
            rerr.append(dr)
        s = summarize_absolute(perr, rerr)
        results[name] = {"median_position_cm": s["median_position_cm"],
                         "median_rotation_deg": s["median_rotation_deg"],
                         "recall_5cm_5deg": s["recall_5cm_5deg"],
                         "recall_2cm_2deg": s["recall_2cm_2deg"],
                         "median_solver_ms": float(np.median(times)) * 1000}
    base = results["magsac"]["median_solver_ms"]
    for v in results.values():
        v["time_ratio_vs_magsac"] = v["median_solver_ms"] / base
    keys = sorted({k for t in stage for k in t})
    print(json.dumps({
        "benchmark": "bench_localize", "device": "cpu", "torch": torch.__version__,
        "git_rev": _git_rev(), "queries": len(queries), "backend": "sift", "top_k": cfg.retrieval.top_k,
        "stage_median_ms": {k: float(np.median([t[k] for t in stage if k in t])) * 1000 for k in keys},
        "pnp_solvers": results}))


if __name__ == "__main__":
    main()
