"""Benchmark: fast_reciprocal_nn vs a straightforward reference implementation of the same algorithm.

Both run in the same process on the same 512x384 (default) unit-norm descriptor maps, D=24, with
``dist='dot'`` and the default seed grid (subsample 8, up to 10 iterations); their outputs are
asserted identical. The reference (:mod:`mast3r_ros.core.matching.reference`) keeps the official
structure: numpy book-keeping per iteration, blocked brute-force distances (block 8192), no cache.

Prints one JSON line: device, torch version, git revision, medians, ratio, match and search counts.

Usage::

    python benchmarks/bench_matching.py [--threads 2] [--runs 5] [--ref-runs 2] [--data smooth|random]
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
import subprocess
import time
from pathlib import Path

import numpy as np
import torch

from mast3r_ros.core.matching import fast_reciprocal_nn
from mast3r_ros.core.matching.frm import _CachedNN
from mast3r_ros.core.matching.reference import reference_frm, smooth_descriptor_maps


def _git_rev() -> str:
    try:
        root = Path(__file__).resolve().parents[1]
        return subprocess.run(["git", "-C", str(root), "rev-parse", "--short", "HEAD"],
                              capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def _maps(data: str, h: int, w: int, dim: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    if data == "smooth":
        a, b = smooth_descriptor_maps(h, w, h, w, dim=dim, seed=seed)
    else:
        rng = np.random.default_rng(seed)
        a, b = (rng.normal(size=(h, w, dim)).astype(np.float32) for _ in range(2))
        a, b = (x / np.linalg.norm(x, axis=-1, keepdims=True) for x in (a, b))
    return torch.from_numpy(a), torch.from_numpy(b)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _time(fn, runs: int, device: torch.device) -> tuple[list[float], list[float], object]:
    walls, cpus, out = [], [], None
    for _ in range(runs):
        _sync(device)
        t0, c0 = time.perf_counter(), time.process_time()
        out = fn()
        _sync(device)
        walls.append(time.perf_counter() - t0)
        cpus.append(time.process_time() - c0)
    return walls, cpus, out


def _count_searches(d1: torch.Tensor, d2: torch.Tensor) -> int:
    """Number of NN searches ours performs (instrumented copy of the cache class)."""
    counts = []
    orig_call = _CachedNN.__call__

    def counting(self, idx):
        before = self.searched
        res = orig_call(self, idx)
        counts.append(self.searched - before)
        return res

    _CachedNN.__call__ = counting
    try:
        fast_reciprocal_nn(d1, d2)
    finally:
        _CachedNN.__call__ = orig_call
    return int(sum(counts))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--height", type=int, default=384)
    ap.add_argument("--width", type=int, default=512)
    ap.add_argument("--dim", type=int, default=24)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--ref-runs", type=int, default=2)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--data", choices=("smooth", "random"), default="smooth")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    d1, d2 = (d.to(device) for d in _maps(args.data, args.height, args.width, args.dim, args.seed))

    _time(lambda: fast_reciprocal_nn(d1, d2, dist="dot"), args.warmup, device)
    _time(lambda: reference_frm(d1[:64, :64], d2[:64, :64], dist="dot"), 1, device)  # warm-up
    walls, cpus, ours = _time(lambda: fast_reciprocal_nn(d1, d2, dist="dot"), args.runs, device)
    rwalls, rcpus, ref = _time(lambda: reference_frm(d1, d2, dist="dot", block_size=8192),
                               args.ref_runs, device)
    identical = bool(np.array_equal(ours[0].cpu().numpy(), ref[0])
                     and np.array_equal(ours[1].cpu().numpy(), ref[1]))
    if not identical:
        raise SystemExit("outputs differ between fast_reciprocal_nn and the reference")
    result = {
        "bench": "fast_reciprocal_nn", "device": str(device), "torch": torch.__version__,
        "git": _git_rev(), "threads": args.threads, "data": args.data,
        "shape": [args.height, args.width, args.dim], "n_matches": int(ours[0].shape[0]),
        "nn_searches_ours": _count_searches(d1, d2), "identical": identical,
        "ours_median_s": round(statistics.median(walls), 4), "ours_runs_s": [round(t, 4) for t in walls],
        "ours_cpu_median_s": round(statistics.median(cpus), 4),
        "reference_median_s": round(statistics.median(rwalls), 4),
        "reference_cpu_median_s": round(statistics.median(rcpus), 4),
        "speedup": round(statistics.median(rwalls) / statistics.median(walls), 2),
    }
    print(json.dumps(result))  # the benchmark's one output line


if __name__ == "__main__":
    main()
