"""``mast3r-ros eval``: absolute pose (7-Scenes), relative pose (pairs files), retrieval recall.

Prints one JSON summary line; with ``--out DIR`` also writes ``summary.json``, ``per_item.json``
and (absolute task) ``positions.png``, a plot of estimated vs GT camera positions.
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np
from tqdm import tqdm

from mast3r_ros.cli import eval_odometry, eval_slam
from mast3r_ros.cli.common import (
    add_input_options,
    add_localizer_options,
    add_sequence_options,
    dump_json,
    input_config,
    localizer_config,
    os_errors_as,
    read_intrinsics,
    to_jsonable,
)
from mast3r_ros.cli.options import add_config_options, config_from_args
from mast3r_ros.core.backends import MatcherBackend, create_backend
from mast3r_ros.core.config import MatchingConfig, opt, validate_fields
from mast3r_ros.core.errors import InputError
from mast3r_ros.core.evaluation import (
    read_pairs,
    read_queries,
    relative_pose_errors,
    retrieval_recall,
    summarize_absolute,
    summarize_relative,
)
from mast3r_ros.core.geometry.camera import scale_intrinsics
from mast3r_ros.core.geometry.essential import estimate_relative_pose
from mast3r_ros.core.geometry.se3 import pose_errors
from mast3r_ros.core.io import check_regular_file, read_image_file
from mast3r_ros.core.localizer import Localizer
from mast3r_ros.core.map import KeyframeMap, build_map_from_rgbd, load_map
from mast3r_ros.core.types import Frame, KeyframeEncoding, Timings

NAME = "eval"
HELP = ("evaluate on shared/data sets: absolute (7-Scenes), relative (pairs), retrieval, "
        "slam, odometry (the SLAM front end on DATA/sequence)")


@dataclass(frozen=True)
class EvalOptions:
    """Which items to evaluate and the settings of the relative and retrieval tasks."""

    limit: int = opt(0, "evaluate only the first N items (0 = all)", range=(0, None))
    every: int = opt(1, "evaluate every N-th item", range=(1, None))
    max_size: int = opt(0, "relative task: downscale images to this long side (0 = original)",
                        range=(0, 100_000))
    threshold: float = opt(1.0, "relative task: essential-matrix RANSAC threshold (px at the "
                                "evaluation size)", range=(0.01, 1000.0))
    oracle: bool = opt(False, "absolute task: match against the README's reference frames "
                              "instead of our retrieval")
    relevant: int = opt(2, "retrieval task: a query's relevant keyframes = the N nearest by "
                           "position", range=(1, 10_000))

    def __post_init__(self) -> None:
        validate_fields(self)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("task", choices=("absolute", "relative", "retrieval", "slam", "odometry"))
    p.add_argument("data", type=Path, help="data set folder (README layout)")
    p.add_argument("--map", type=Path,
                   help="map directory (absolute/retrieval; default: built from DATA/map)")
    p.add_argument("--out", type=Path, help="folder for JSON files and the plot")
    add_config_options(p, EvalOptions, title="evaluation")
    add_localizer_options(p)
    add_input_options(p)
    add_sequence_options(p)
    eval_slam.add_arguments(p)
    eval_odometry.add_arguments(p)


def _options(args: argparse.Namespace) -> EvalOptions:
    opts: EvalOptions = config_from_args(EvalOptions, args)
    return opts


def _select(items: list, opts: EvalOptions) -> list:
    return items[::opts.every][:opts.limit or None]


def _data_file(args: argparse.Namespace, name: str) -> Path:
    """``DATA/name``, refused unless it is a regular file (a FIFO would block the reader)."""
    check_regular_file(args.data / name, InputError)
    return args.data / name


def _read(path: Path, args: argparse.Namespace) -> np.ndarray:
    return read_image_file(path, input_config(args).max_image_pixels)


def _load_or_build_map(args: argparse.Namespace) -> KeyframeMap:
    if args.map is not None:
        return load_map(args.map)
    with os_errors_as(InputError, f"cannot read the map frames in {args.data}"):
        return build_map_from_rgbd(args.data)


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
        with os_errors_as(InputError, f"cannot write the results to {args.out}"):
            args.out.mkdir(parents=True, exist_ok=True)
            (args.out / "summary.json").write_text(json.dumps(to_jsonable(summary), indent=2))
            (args.out / "per_item.json").write_text(json.dumps(to_jsonable(items), indent=1))


def run_absolute(args: argparse.Namespace) -> int:
    opts = _options(args)
    queries = _select(read_queries(_data_file(args, "queries_with_gt.txt")), opts)
    K = read_intrinsics(args.data / "color-intrinsics.txt")
    t0 = time.perf_counter()
    cfg = localizer_config(args)
    loc = Localizer(cfg, _load_or_build_map(args))
    prep = time.perf_counter() - t0
    items, perr, rerr, timings, est, gt = [], [], [], [], [], []
    for q in tqdm(queries, desc="localize", unit="query"):
        refs = ([int(Path(n).name.split("-")[1].split(".")[0]) for n in q.refs]
                if opts.oracle else None)
        r = loc.localize(Frame(_read(args.data / q.name, args), K), refs)
        T = r.T_map_cam if r.success else None
        dp, dr = pose_errors(T, q.T_world_cam) if T is not None else (np.inf, np.inf)
        perr.append(dp)
        rerr.append(dr)
        timings.append(r.timings)
        est.append(T[:3, 3] if T is not None else np.full(3, np.nan))
        gt.append(q.T_world_cam[:3, 3])
        items.append({"query": q.name, "success": r.success, "reason": r.reason,
                      "position_error_cm": dp * 100, "rotation_error_deg": dr,
                      "num_matches": r.num_matches, "num_inliers": r.num_inliers,
                      "reprojection_error_px": r.reprojection_error,
                      "keyframe_ids": r.keyframe_ids, "timings_s": r.timings.as_dict(),
                      "position_std_cm": (np.sqrt(np.diag(r.covariance)[:3]) * 100
                                          if r.covariance is not None else None)})
    summary = {"task": "absolute", "data": str(args.data), "backend": loc.backend.name,
               "top_k": cfg.retrieval.top_k, "oracle_refs": opts.oracle,
               **summarize_absolute(perr, rerr),
               "map_prepare_s": prep, "median_timings_ms": _median_timings(timings)}
    if args.out is not None:
        with os_errors_as(InputError, f"cannot write the plot to {args.out}"):
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


def _load_resized(path: Path, K: np.ndarray, max_size: int,
                  max_pixels: int) -> tuple[np.ndarray, np.ndarray]:
    import cv2

    rgb = read_image_file(path, max_pixels)
    h, w = rgb.shape[:2]
    if max_size and max(h, w) > max_size:
        s = max_size / max(h, w)
        nw, nh = int(round(w * s)), int(round(h * s))
        rgb = cv2.resize(rgb, (nw, nh), interpolation=cv2.INTER_AREA)
        K = scale_intrinsics(K, nw / w, nh / h)
    return rgb, K


def run_relative(args: argparse.Namespace) -> int:
    opts = _options(args)
    pairs = _select(read_pairs(_data_file(args, "pairs_with_gt.txt")), opts)
    img_root = args.data / "images" if (args.data / "images").is_dir() else args.data
    cfg = localizer_config(args)
    backend = create_backend(cfg)
    max_pixels = input_config(args).max_image_pixels
    items, er, et, times = [], [], [], []
    for p in tqdm(pairs, desc="pairs", unit="pair"):
        rgb0, K0 = _load_resized(img_root / p.name0, p.K0, opts.max_size, max_pixels)
        rgb1, K1 = _load_resized(img_root / p.name1, p.K1, opts.max_size, max_pixels)
        t = time.perf_counter()
        R, tvec, n = estimate_pair(backend, rgb0, K0, rgb1, K1, opts.threshold, cfg.matching)
        times.append(time.perf_counter() - t)
        e_r, e_t = (relative_pose_errors(p.T_0to1, R, tvec) if R is not None and tvec is not None
                    else (np.inf, np.inf))
        er.append(e_r)
        et.append(e_t)
        items.append({"pair": [p.name0, p.name1], "num_matches": n, "rotation_error_deg": e_r,
                      "translation_error_deg": e_t})
    summary = {"task": "relative", "data": str(args.data), "backend": backend.name,
               "max_size": opts.max_size, "threshold_px": opts.threshold,
               **summarize_relative(er, et), "median_pair_time_ms": float(np.median(times)) * 1000}
    _write(args, summary, items)
    return 0


def run_retrieval(args: argparse.Namespace) -> int:
    """Recall@k; a query's relevant keyframes are the ``--relevant`` nearest by camera position."""
    opts = _options(args)
    n_relevant = opts.relevant
    queries = _select(read_queries(_data_file(args, "queries_with_gt.txt")), opts)
    loc = Localizer(localizer_config(args), _load_or_build_map(args))
    C = loc.map.poses()[:, :3, 3]
    ids = np.array(loc.map.ids)
    retrieved, relevant, items = [], [], []
    for q in tqdm(queries, desc="retrieve", unit="query"):
        enc = loc.backend.encode(_read(args.data / q.name, args))
        assert loc.map.index is not None
        got_ids, got_scores = loc.map.index.search(enc.global_desc, loc.config.retrieval.top_k)
        got, scores = [int(i) for i in got_ids], [float(s) for s in got_scores]
        near = set(ids[np.argsort(np.linalg.norm(C - q.T_world_cam[:3, 3], axis=1))[:n_relevant]]
                   .tolist())
        retrieved.append(got)
        relevant.append(near)
        items.append({"query": q.name, "retrieved": got, "scores": scores,
                      "relevant": sorted(near)})
    summary = {"task": "retrieval", "backend": loc.backend.name, "relevant_per_query": n_relevant,
               **retrieval_recall(retrieved, relevant, (1, 2, 4, 8))}
    _write(args, summary, items)
    return 0


def run(args: argparse.Namespace) -> int:
    _options(args), localizer_config(args), input_config(args)  # every option checked first
    return {"absolute": run_absolute, "relative": run_relative, "retrieval": run_retrieval,
            "slam": eval_slam.run, "odometry": eval_odometry.run}[args.task](args)
