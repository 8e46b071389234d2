"""``mast3r-ros eval``: absolute pose (7-Scenes), relative pose (pairs files), retrieval recall.

Prints one JSON summary line; with ``--out DIR`` also writes ``summary.json``, ``per_item.json``
and (absolute task) ``positions.png``, a plot of estimated vs GT camera positions.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Optional

import numpy as np
from tqdm import tqdm

from mast3r_ros.cli.common import add_localizer_args, config_from_args, dump_json, to_jsonable
from mast3r_ros.core.backends import MatcherBackend, create_backend
from mast3r_ros.core.evaluation import (read_pairs, read_queries, relative_pose_errors,
                                        retrieval_recall, summarize_absolute, summarize_relative)
from mast3r_ros.core.geometry.camera import scale_intrinsics
from mast3r_ros.core.geometry.essential import estimate_relative_pose
from mast3r_ros.core.geometry.se3 import pose_errors
from mast3r_ros.core.localizer import Localizer
from mast3r_ros.core.config import MatchingConfig
from mast3r_ros.core.map import build_map_from_rgbd, load_map, read_matrix, read_rgb
from mast3r_ros.core.types import Frame, KeyframeEncoding, Timings

NAME = "eval"
HELP = "evaluate on shared/data sets: absolute (7-Scenes), relative (pairs), retrieval"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("task", choices=("absolute", "relative", "retrieval"))
    p.add_argument("data", type=Path, help="data set folder (README layout)")
    p.add_argument("--map", type=Path, default=None,
                   help="map directory (absolute/retrieval; default: built from DATA/map)")
    p.add_argument("--limit", type=int, default=None, help="evaluate only the first N items")
    p.add_argument("--every", type=int, default=1, help="evaluate every N-th item")
    p.add_argument("--max-size", type=int, default=0,
                   help="relative task: downscale images to this long side (0 = original)")
    p.add_argument("--threshold", type=float, default=1.0,
                   help="relative task: essential-matrix RANSAC threshold (px at eval size)")
    p.add_argument("--oracle", action="store_true",
                   help="absolute task: match against the README's reference frames instead of "
                        "our retrieval")
    p.add_argument("--relevant", type=int, default=2,
                   help="retrieval task: a query's relevant keyframes = the N nearest by position")
    p.add_argument("--out", type=Path, default=None, help="folder for JSON files and the plot")
    add_localizer_args(p)


def _select(items: list, args: argparse.Namespace) -> list:
    return items[::max(args.every, 1)][:args.limit]


def _load_or_build_map(args: argparse.Namespace):
    return load_map(args.map) if args.map is not None else build_map_from_rgbd(args.data)


def _median_timings(timings: list[Timings]) -> dict[str, float]:
    dicts = [t.as_dict() for t in timings]
    keys = sorted({k for t in dicts for k in t})
    return {k: float(np.median([t[k] for t in dicts if k in t])) * 1000 for k in keys}


def plot_positions(est: np.ndarray, gt: np.ndarray, path: Path) -> None:
    """Save a two-view plot (x-y, x-z) of estimated vs GT camera centres (Agg backend)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 5))
    for ax, (i, j) in zip(axes, ((0, 1), (0, 2))):
        ax.plot(gt[:, i], gt[:, j], "g.-", label="ground truth", lw=0.8)
        ok = np.all(np.isfinite(est), axis=1)
        ax.plot(est[ok, i], est[ok, j], "rx", label="estimated")
        for a, b in zip(est[ok], gt[ok]):
            ax.plot([a[i], b[i]], [a[j], b[j]], "k-", lw=0.5)
        ax.set_xlabel("xyz"[i] + " (m)")
        ax.set_ylabel("xyz"[j] + " (m)")
        ax.axis("equal")
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _write(args: argparse.Namespace, summary: dict, items: list[dict]) -> None:
    print(dump_json(summary), flush=True)
    if args.out is not None:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "summary.json").write_text(json.dumps(to_jsonable(summary), indent=2))
        (args.out / "per_item.json").write_text(json.dumps(to_jsonable(items), indent=1))


def run_absolute(args: argparse.Namespace) -> int:
    queries = _select(read_queries(args.data / "queries_with_gt.txt"), args)
    K = read_matrix(args.data / "color-intrinsics.txt", (3, 3))
    t0 = time.perf_counter()
    loc = Localizer(config_from_args(args), _load_or_build_map(args))
    prep = time.perf_counter() - t0
    items, perr, rerr, timings, est, gt = [], [], [], [], [], []
    for q in tqdm(queries, desc="localize", unit="query"):
        refs = [int(Path(n).name.split("-")[1].split(".")[0]) for n in q.refs] if args.oracle else None
        r = loc.localize(Frame(read_rgb(args.data / q.name), K), refs)
        dp, dr = pose_errors(r.T_map_cam, q.T_world_cam) if r.success else (np.inf, np.inf)
        perr.append(dp)
        rerr.append(dr)
        timings.append(r.timings)
        est.append(r.T_map_cam[:3, 3] if r.success else np.full(3, np.nan))
        gt.append(q.T_world_cam[:3, 3])
        items.append({"query": q.name, "success": r.success, "reason": r.reason,
                      "position_error_cm": dp * 100, "rotation_error_deg": dr,
                      "num_matches": r.num_matches, "num_inliers": r.num_inliers,
                      "reprojection_error_px": r.reprojection_error,
                      "keyframe_ids": r.keyframe_ids, "timings_s": r.timings.as_dict(),
                      "position_std_cm": (np.sqrt(np.diag(r.covariance)[:3]) * 100
                                          if r.covariance is not None else None)})
    summary = {"task": "absolute", "data": str(args.data), "backend": loc.backend.name,
               "top_k": args.top_k, "oracle_refs": args.oracle, **summarize_absolute(perr, rerr),
               "map_prepare_s": prep, "median_timings_ms": _median_timings(timings)}
    if args.out is not None:
        args.out.mkdir(parents=True, exist_ok=True)
        plot_positions(np.array(est), np.array(gt), args.out / "positions.png")
    _write(args, summary, items)
    return 0


def estimate_pair(backend: MatcherBackend, rgb0: np.ndarray, K0: np.ndarray, rgb1: np.ndarray,
                  K1: np.ndarray, threshold: float, matching: MatchingConfig
                  ) -> tuple[Optional[np.ndarray], Optional[np.ndarray], int]:
    """Relative pose cam0 -> cam1 of two images with a backend: (R, t, num_matches)."""
    ref = KeyframeEncoding(0, backend.encode(rgb1), lambda: rgb1)
    m = backend.match(backend.encode(rgb0), [ref], matching, query_image=rgb0).pairs[0]
    rel = estimate_relative_pose(m.xy_query, m.xy_ref, K0, K1, threshold_px=threshold)
    return (rel.R, rel.t, len(m)) if rel.success else (None, None, len(m))


def _load_resized(path: Path, K: np.ndarray, max_size: int) -> tuple[np.ndarray, np.ndarray]:
    import cv2

    rgb = read_rgb(path)
    h, w = rgb.shape[:2]
    if max_size and max(h, w) > max_size:
        s = max_size / max(h, w)
        nw, nh = int(round(w * s)), int(round(h * s))
        rgb = cv2.resize(rgb, (nw, nh), interpolation=cv2.INTER_AREA)
        K = scale_intrinsics(K, nw / w, nh / h)
    return rgb, K


def run_relative(args: argparse.Namespace) -> int:
    pairs = _select(read_pairs(args.data / "pairs_with_gt.txt"), args)
    img_root = args.data / "images" if (args.data / "images").is_dir() else args.data
    cfg = config_from_args(args)
    backend = create_backend(cfg)
    items, er, et, times = [], [], [], []
    for p in tqdm(pairs, desc="pairs", unit="pair"):
        rgb0, K0 = _load_resized(img_root / p.name0, p.K0, args.max_size)
        rgb1, K1 = _load_resized(img_root / p.name1, p.K1, args.max_size)
        t = time.perf_counter()
        R, tvec, n = estimate_pair(backend, rgb0, K0, rgb1, K1, args.threshold, cfg.matching)
        times.append(time.perf_counter() - t)
        e_r, e_t = relative_pose_errors(p.T_0to1, R, tvec) if R is not None else (np.inf, np.inf)
        er.append(e_r)
        et.append(e_t)
        items.append({"pair": [p.name0, p.name1], "num_matches": n, "rotation_error_deg": e_r,
                      "translation_error_deg": e_t})
    summary = {"task": "relative", "data": str(args.data), "backend": backend.name,
               "max_size": args.max_size, "threshold_px": args.threshold,
               **summarize_relative(er, et), "median_pair_time_ms": float(np.median(times)) * 1000}
    _write(args, summary, items)
    return 0


def run_retrieval(args: argparse.Namespace) -> int:
    """Recall@k; a query's relevant keyframes are the ``--relevant`` nearest by camera position."""
    n_relevant = args.relevant
    queries = _select(read_queries(args.data / "queries_with_gt.txt"), args)
    loc = Localizer(config_from_args(args), _load_or_build_map(args))
    C = loc.map.poses()[:, :3, 3]
    ids = np.array(loc.map.ids)
    retrieved, relevant, items = [], [], []
    for q in tqdm(queries, desc="retrieve", unit="query"):
        enc = loc.backend.encode(read_rgb(args.data / q.name))
        assert loc.map.index is not None
        got_ids, got_scores = loc.map.index.search(enc.global_desc, loc.config.retrieval.top_k)
        got, scores = [int(i) for i in got_ids], [float(s) for s in got_scores]
        near = set(ids[np.argsort(np.linalg.norm(C - q.T_world_cam[:3, 3], axis=1))[:n_relevant]]
                   .tolist())
        retrieved.append(got)
        relevant.append(near)
        items.append({"query": q.name, "retrieved": got, "scores": scores, "relevant": sorted(near)})
    summary = {"task": "retrieval", "backend": loc.backend.name, "relevant_per_query": n_relevant,
               **retrieval_recall(retrieved, relevant, (1, 2, 4, 8))}
    _write(args, summary, items)
    return 0


def run(args: argparse.Namespace) -> int:
    return {"absolute": run_absolute, "relative": run_relative,
            "retrieval": run_retrieval}[args.task](args)
