"""Localization workload: 1 query vs k references, naive pairwise inference vs the engine.

* naive: for each reference, ``model.forward_pair(query, ref)`` (both images encoded for every
  pair, all heads: what the official pipeline does);
* engine: the query is encoded once, the references' encodings come from a cache (as a map stores
  them, not timed), and one batched ``decode`` runs all k pairs, with ``heads=("desc",)`` (3D from
  the map) and with ``heads=("pts3d", "desc")``.

Full-size release architecture with random weights, float32. Prints one JSON line.

Usage: ``python benchmarks/bench_model.py [--k 4] [--runs 3] [--height 384] [--width 512]``
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable

import torch

from mast3r_ros.core.model import (RELEASE_ARGS, EncodedImages, HeadOutput, InferenceEngine,
                                   Mast3rModel, ModelArgs, parse_model_args)


def _git_rev() -> str:
    try:
        return subprocess.check_output(["git", "rev-parse", "--short", "HEAD"],
                                       cwd=Path(__file__).parent, text=True).strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def _timed_interleaved(workloads: dict[str, Callable[[], object]], runs: int,
                       warmup: int) -> tuple[dict[str, list[float]], dict[str, object]]:
    """Warm up each workload, then time them in turns (fair under varying machine load)."""
    for name, fn in workloads.items():
        for _ in range(warmup):
            fn()
        print(f"warm-up {name} done", file=sys.stderr, flush=True)
    times: dict[str, list[float]] = {n: [] for n in workloads}
    results: dict[str, object] = {}
    for r in range(runs):
        for name, fn in workloads.items():
            t0 = time.perf_counter()
            results[name] = fn()
            times[name].append(time.perf_counter() - t0)
            print(f"run {r} {name}: {times[name][-1]:.2f} s", file=sys.stderr, flush=True)
    return times, results


def _max_rel_diff(ours: HeadOutput, ref: HeadOutput, names: tuple[str, ...]) -> float:
    worst = 0.0
    for n in names:
        a, b = getattr(ours, n), getattr(ref, n)
        worst = max(worst, float(((a - b).abs() / (1 + b.abs())).max()))
    return worst


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--k", type=int, default=4, help="number of references")
    ap.add_argument("--runs", type=int, default=3, help="timed runs (median)")
    ap.add_argument("--warmup", type=int, default=1, help="untimed warm-up runs")
    ap.add_argument("--height", type=int, default=384)
    ap.add_argument("--width", type=int, default=512)
    ap.add_argument("--threads", type=int, default=2)
    opts = ap.parse_args()
    torch.set_num_threads(opts.threads)
    torch.manual_seed(0)

    model = Mast3rModel(ModelArgs.from_kwargs(parse_model_args(RELEASE_ARGS))).eval()
    model.requires_grad_(False)
    engine = InferenceEngine(model, device="cpu")
    shape = (1, 3, opts.height, opts.width)
    query = torch.rand(shape) * 2 - 1
    refs = [torch.rand(shape) * 2 - 1 for _ in range(opts.k)]
    cache = [engine.encode(r) for r in refs]  # what the map stores per keyframe (not timed)

    def naive() -> list[tuple[HeadOutput, HeadOutput]]:
        with torch.inference_mode():
            return [model.forward_pair(query, r) for r in refs]

    def engine_run(heads: tuple[str, ...]) -> Callable[[], tuple[HeadOutput, HeadOutput]]:
        def run() -> tuple[HeadOutput, HeadOutput]:
            enc_q = engine.encode(query)
            return engine.decode(enc_q, EncodedImages.concat(cache), heads=heads)
        return run

    times, outs = _timed_interleaved(
        {"naive": naive, "engine_desc": engine_run(("desc",)),
         "engine_full": engine_run(("pts3d", "desc"))}, opts.runs, opts.warmup)
    ts_naive, ts_desc, ts_full = times["naive"], times["engine_desc"], times["engine_full"]
    t_naive, t_desc, t_full = (statistics.median(t) for t in (ts_naive, ts_desc, ts_full))
    out_naive, out_desc, out_full = outs["naive"], outs["engine_desc"], outs["engine_full"]

    diff_desc, diff_full = 0.0, 0.0
    for i, (n1, n2) in enumerate(out_naive):
        sel = slice(i, i + 1)
        for ours, ref in ((out_desc[0], n1), (out_desc[1], n2)):
            diff_desc = max(diff_desc, _max_rel_diff(
                HeadOutput(desc=ours.desc[sel], desc_conf=ours.desc_conf[sel]), ref,
                ("desc", "desc_conf")))
        for ours, ref in ((out_full[0], n1), (out_full[1], n2)):
            sliced = HeadOutput(*(getattr(ours, n)[sel] for n in ("pts3d", "conf", "desc",
                                                                  "desc_conf")))
            diff_full = max(diff_full, _max_rel_diff(sliced, ref,
                                                     ("pts3d", "conf", "desc", "desc_conf")))
    tol = 1e-4
    print(json.dumps({
        "bench": "model_localization_workload",
        "device": "cpu", "threads": opts.threads, "torch": torch.__version__, "git": _git_rev(),
        "image_hw": [opts.height, opts.width], "k": opts.k, "runs": opts.runs,
        "naive_median_s": round(t_naive, 3), "naive_per_pair_s": round(t_naive / opts.k, 3),
        "engine_desc_median_s": round(t_desc, 3), "engine_full_median_s": round(t_full, 3),
        "ratio_desc": round(t_naive / t_desc, 3), "ratio_full": round(t_naive / t_full, 3),
        "naive_times_s": [round(t, 3) for t in ts_naive],
        "engine_desc_times_s": [round(t, 3) for t in ts_desc],
        "engine_full_times_s": [round(t, 3) for t in ts_full],
        "max_rel_diff_desc": diff_desc, "max_rel_diff_full": diff_full,
        "outputs_match": bool(diff_desc <= tol and diff_full <= tol),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    }))


if __name__ == "__main__":
    main()
