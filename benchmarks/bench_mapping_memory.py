"""Peak memory of build-map versus the number of images and pairs (tiny checkpoint, 512x384).

Images: ``--distinct`` 7-Scenes frames (640x480, network size 512x384) repeated to N images by
symbolic links, so N images need only ``distinct * (distinct - 1) / 2`` distinct pairs of network
outputs: the pairs are computed once into a warm cache (their per-pair time is the measured
per-pair cost), and every build then runs plan -> compute (cache hits) -> gather -> alignment on
N images and all their ``swin-W-noncyclic`` pairs, each pair read from the cache file of its
content. A fresh subprocess per build gives clean peak-RSS figures (``ru_maxrss``), recorded
after each step so the step that sets the peak is visible; ``base`` is the RSS after imports and
model loading. Slopes: per pair from builds with the smallest N and different windows, per image
from builds with the largest window and different N (each row is also printed to stderr as soon
as it is measured). The alignment runs ``--niter`` iterations per stage:
its memory per iteration is constant (one autograd graph at a time), so the peak does not depend
on the iteration count (checked by ``--check-iters``). Prints one JSON line.

    python benchmarks/bench_mapping_memory.py [--sizes 50 200 1000] [--windows 2 5]
        [--distinct 6] [--niter 2] [--cache-dir DIR] [--threads 2]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SEQ = Path(os.environ.get("MAST3R_ROS_SHARED", ROOT.parent / "shared")) / "data" / \
    "sevenscenes_redkitchen_rgbd" / "sequence"
CKPT = Path(os.environ.get("MAST3R_ROS_SHARED", ROOT.parent / "shared")) / "golden" / "tiny" / \
    "tiny_mast3r.pth"


def _git_rev() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT,
                              capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _folder(root: Path, n: int, distinct: int) -> list[Path]:
    """n symbolic links cycling over ``distinct`` frames spread along the sequence."""
    frames = sorted(SEQ.glob("*.color.jpg"))
    picks = [frames[k * len(frames) // distinct] for k in range(distinct)]
    d = root / f"images_{n}_{distinct}"
    d.mkdir(parents=True, exist_ok=True)
    out = []
    for k in range(n):
        link = d / f"{k:05d}.jpg"
        if not link.exists():
            link.symlink_to(picks[k % distinct])
        out.append(link)
    return out


def _engine(threads: int):
    import torch

    from mast3r_ros.core.config import ModelConfig
    from mast3r_ros.core.model.factory import make_engine

    torch.set_num_threads(threads)
    return make_engine(ModelConfig(checkpoint=str(CKPT), device="cpu", image_size=512))


def warm(args: argparse.Namespace) -> dict:
    """Compute the distinct pairs into the cache; per-pair seconds (median over pairs)."""
    from mast3r_ros.core.config import MappingConfig
    from mast3r_ros.core.mapping.build import compute_pairs
    from mast3r_ros.core.mapping.images import ImageFiles

    eng = _engine(args.threads)
    files = _folder(Path(args.cache_dir), args.distinct, args.distinct)
    stamps: list[float] = []
    cfg = MappingConfig(scene_graph="complete", cache_dir=args.cache_dir)
    t0 = time.perf_counter()
    _, stats = compute_pairs(ImageFiles(files), eng, cfg,
                             progress=lambda s, d, n: stamps.append(time.perf_counter()))
    dts = sorted(b - a for a, b in zip([t0] + stamps[:-1], stamps))
    return {"pairs_computed": stats.computed, "pairs_cached": stats.cached,
            "per_pair_s_median": round(dts[len(dts) // 2], 2) if stats.computed else None,
            "per_pair_s_all": [round(x, 1) for x in dts]}


def build(args: argparse.Namespace, n: int, window: int, niter: int) -> dict:
    """One build in this process; peak RSS after each step (MB)."""
    from mast3r_ros.core.config import MappingConfig
    from mast3r_ros.core.mapping.build import build_map
    from mast3r_ros.core.mapping.images import ImageFiles

    eng = _engine(args.threads)
    files = _folder(Path(args.cache_dir), n, args.distinct)
    steps = {"base": round(_peak_mb(), 1)}
    cfg = MappingConfig(scene_graph=f"swin-{window}-noncyclic", cache_dir=args.cache_dir,
                        niter1=niter, niter2=niter, matching_conf_thr=args.conf_thr, device="cpu")
    seen: set[str] = set()

    def progress(stage: str, done: int, total: int) -> None:
        if stage not in seen:  # the peak before each stage starts
            seen.add(stage)
            steps[f"before_{stage}"] = round(_peak_mb(), 1)

    res = build_map(ImageFiles(files), eng, cfg, progress=progress)
    steps["after_alignment"] = round(_peak_mb(), 1)
    for kf in res.kmap.keyframes():  # what save_map does: one keyframe's pixels at a time
        assert kf.depth is not None
    steps["after_keyframes"] = round(_peak_mb(), 1)
    pts = sum(len(p) for p in res.alignment.pts3d)
    return {"n_images": n, "window": window, "n_pairs": len(res.pairs), "niter": niter,
            "pairs_computed": res.compute.computed, "n_points": pts, "n_matches": pts // 2,
            "peak_rss_mb": steps["after_keyframes"], "steps_peak_rss_mb": steps,
            "timings_s": {k: round(v, 1) for k, v in res.timings.items()}}


def _sub(args: argparse.Namespace, *extra: str) -> dict:
    cmd = [sys.executable, __file__, "--cache-dir", args.cache_dir, "--distinct",
           str(args.distinct), "--threads", str(args.threads), "--conf-thr", str(args.conf_thr),
           *extra]
    out = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, check=True,
                         env=dict(os.environ, PYTHONPATH=str(ROOT)))
    return json.loads(out.stdout.strip().splitlines()[-1])


def _slope(rows: list[dict], x: str) -> float:
    a, b = rows[0], rows[-1]
    return round((b["peak_rss_mb"] - a["peak_rss_mb"]) / max(b[x] - a[x], 1), 4)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[50, 200, 1000])
    ap.add_argument("--windows", type=int, nargs="+", default=[2, 5])
    ap.add_argument("--distinct", type=int, default=6)
    ap.add_argument("--niter", type=int, default=2)
    ap.add_argument("--check-iters", type=int, default=6)
    ap.add_argument("--conf-thr", type=float, default=0.0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--cache-dir", default="/tmp/mast3r_ros_bench_mapping")
    ap.add_argument("--single", nargs=3, type=int, default=None, help=argparse.SUPPRESS)
    ap.add_argument("--warm", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.warm:
        print(json.dumps(warm(args)))
        return
    if args.single:
        print(json.dumps(build(args, *args.single)))
        return
    if max(args.windows) >= args.distinct:
        ap.error("every window must be below --distinct (no pair of identical images)")
    w = _sub(args, "--warm")
    wmax, n0 = max(args.windows), min(args.sizes)
    rows = []

    def run(n: int, win: int, niter: int) -> dict:
        row = _sub(args, "--single", str(n), str(win), str(niter))
        rows.append(row)
        print(json.dumps({"partial": row}), file=sys.stderr, flush=True)  # survives a long run
        return row

    by_w = [run(n0, win, args.niter) for win in sorted(args.windows)]  # cheapest first
    by_n = [by_w[-1]] + [run(n, wmax, args.niter) for n in sorted(args.sizes)[1:]]
    it = run(n0, wmax, args.check_iters)
    import torch

    per_pair = _slope(by_w, "n_pairs")
    per_image_total = _slope(by_n, "n_images")
    print(json.dumps({
        "bench": "mapping_memory", "device": "cpu", "threads": args.threads,
        "torch": torch.__version__, "git_rev": _git_rev(), "image_size": "512x384",
        "model": "tiny golden checkpoint", "distinct_images": args.distinct,
        "matching_conf_thr": args.conf_thr, "warm_cache": w, "by_images": by_n,
        "by_window": by_w, "iteration_check": {"n_images": n0, "niter": args.check_iters,
                                               "peak_rss_mb": it["peak_rss_mb"],
                                               "vs_niter": by_w[-1]["peak_rss_mb"]},
        "slope_mb_per_pair": per_pair,
        "slope_mb_per_image_at_fixed_window": per_image_total,
        "slope_mb_per_image_net_of_pairs": round(
            per_image_total - per_pair * (by_n[-1]["n_pairs"] - by_n[0]["n_pairs"])
            / max(by_n[-1]["n_images"] - by_n[0]["n_images"], 1), 4),
        "dense_pair_output_mb": 12.63}))


if __name__ == "__main__":
    main()
