"""Sparse global alignment cost versus the number of images (synthetic inputs, no network).

For each N (default 10, 30, 100) a fresh subprocess builds a synthetic scene (``swin-3`` pairs,
128x96 images, matches every 4th pixel) and measures: canonical-view / problem building time,
the median time per iteration of each stage (coarse 3D matching, refinement 2D reprojection; warm-up
iterations excluded, median over ``--runs`` runs) and the peak resident-memory increase during the
alignment. Ratios are against the smallest N of the same run. Prints one JSON line.

    python benchmarks/bench_mapping.py [--sizes 10 30 100] [--iters 30] [--runs 3] [--device cpu]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _git_rev() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT,
                              capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def _stage_time(opt, stage: str, iters: int, runs: int, sync) -> float:
    """Median seconds per iteration of one stage (fresh optimiser state each run)."""
    from mast3r_ros.core.mapping.sparse_ga import gamma_loss

    fine = stage == "fine"
    times = []
    for _ in range(runs):
        opt._set_trainable(fine)
        lossf = opt.loss_2d if fine else opt.loss_3d
        fn = gamma_loss(opt.cfg.gamma2 if fine else opt.cfg.gamma1)
        opt._loop(stage, lossf, 1e-3, 3, fn, None)  # warm-up
        sync()
        t = time.perf_counter()
        opt._loop(stage, lossf, 1e-3, iters, fn, None)
        sync()
        times.append((time.perf_counter() - t) / iters)
    return sorted(times)[len(times) // 2]


def measure(n: int, iters: int, runs: int, device: str, threads: int) -> dict:
    import numpy as np
    import torch

    from mast3r_ros.core.config import MappingConfig
    from mast3r_ros.core.mapping.problem import build_problem
    from mast3r_ros.core.mapping.kinematic import spanning_tree
    from mast3r_ros.core.mapping.scene_graph import make_pairs
    from mast3r_ros.core.mapping.sparse_ga import SparseSceneOptimizer
    from mast3r_ros.core.mapping.synthetic import make_scene

    torch.set_num_threads(threads)
    scene = make_scene(n, make_pairs(n, "swin-3"), np.random.default_rng(0), H=96, W=128,
                       focal=100.0, stride=4)
    t = time.perf_counter()
    problem = build_problem(n, scene.pairs)
    tree = spanning_tree(problem.num_matches.numpy(), "hclust-ward", problem.n_anchors)
    t_build = time.perf_counter() - t
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    cuda = device.startswith("cuda")
    if cuda:
        torch.cuda.reset_peak_memory_stats()

    def sync() -> None:
        if cuda:
            torch.cuda.synchronize()

    opt = SparseSceneOptimizer(problem, tree, MappingConfig(), device=device)
    coarse = _stage_time(opt, "coarse", iters, runs, sync)
    fine = _stage_time(opt, "fine", iters, runs, sync)
    rss1 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    out = {"n_images": n, "n_pairs": len(scene.pairs), "n_points": int(problem.pt_img.numel()),
           "n_matches": int(problem.m_conf.numel()), "n_anchors": int(problem.core_depth.numel()),
           "build_s": round(t_build, 3), "coarse_ms_per_iter": round(1e3 * coarse, 3),
           "fine_ms_per_iter": round(1e3 * fine, 3),
           "alignment_peak_rss_increase_mb": round((rss1 - rss0) / 1024, 1),
           "estimated_300_300_s": round(300 * (coarse + fine), 2)}
    if cuda:
        out["cuda_peak_mb"] = round(torch.cuda.max_memory_allocated() / 2 ** 20, 1)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[10, 30, 100])
    ap.add_argument("--iters", type=int, default=30)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--single", type=int, default=0, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.single:
        print(json.dumps(measure(args.single, args.iters, args.runs, args.device, args.threads)))
        return
    rows = []
    for n in args.sizes:  # one process per size: clean peak-memory figures
        cmd = [sys.executable, __file__, "--single", str(n), "--iters", str(args.iters), "--runs",
               str(args.runs), "--device", args.device, "--threads", str(args.threads)]
        res = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, check=True)
        rows.append(json.loads(res.stdout.strip().splitlines()[-1]))
    base = rows[0]
    for r in rows:
        for k in ("coarse_ms_per_iter", "fine_ms_per_iter"):
            r[k.replace("_ms_per_iter", "_ratio_vs_first")] = round(r[k] / base[k], 2)
        r["images_ratio_vs_first"] = round(r["n_images"] / base["n_images"], 2)
    import torch

    print(json.dumps({"bench": "mapping_sparse_ga", "device": args.device, "threads": args.threads,
                      "torch": torch.__version__, "git_rev": _git_rev(), "iters": args.iters,
                      "runs": args.runs, "results": rows}))


if __name__ == "__main__":
    main()
