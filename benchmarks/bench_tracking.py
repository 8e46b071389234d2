"""SLAM front-end cost per frame.

* ``sift``: the :class:`Tracker` (``tracking_pipeline()``, SIFT backend) on the first ``--frames``
  640x480 frames of the 7-Scenes sequence with registered depth: median milliseconds per frame
  over ``--runs`` passes after a warm-up pass (one fresh tracker per pass), the per-stage
  medians, and the ratio to the baseline measured in the same run: SIFT extraction alone on the
  same frames (the part of a frame no tracker can skip).
* ``mast3r``: the full release architecture (``RELEASE_ARGS``, random weights built here, float32,
  CPU) at 512x384: what tracking costs per frame with a cached keyframe encoding (encode the
  frame, one decoder pass against the keyframe, FRM matching; the PnP is the SIFT path's), against
  the naive baseline of the official pipeline (``forward_pair``: both images encoded, all heads).
  Plus the network's FLOPs per frame and, clearly labelled as an ESTIMATE (no GPU here), the
  time those FLOPs take on a GPU at an assumed sustained throughput.

Prints one JSON line. Usage::

    .venv/bin/python -m benchmarks.bench_tracking [--frames 30] [--runs 3] [--mast3r-runs 3]
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

from benchmarks.common import median_seconds, report
from mast3r_ros.core.backends.mast3r import Mast3rBackend
from mast3r_ros.core.backends.sift import extract_sift
from mast3r_ros.core.config import MatchingConfig, TrackingConfig, tracking_pipeline
from mast3r_ros.core.map.rgbd import list_rgbd_frames, read_rgbd_frame, rgbd_intrinsics
from mast3r_ros.core.model import (
    RELEASE_ARGS,
    InferenceEngine,
    Mast3rModel,
    ModelArgs,
    parse_model_args,
)
from mast3r_ros.core.tracking import Tracker
from mast3r_ros.core.types import Frame, KeyframeEncoding

DATA = (Path(os.environ.get("MAST3R_ROS_SHARED", Path(__file__).resolve().parents[2] / "shared"))
        / "data" / "sevenscenes_redkitchen_rgbd")
#: assumed sustained fp16 throughput (FLOP/s) of the GPU estimate: ~25 % of an RTX 4090's dense
#: fp16 tensor peak (165 TFLOP/s), what ViT inference at batch 1 typically reaches
GPU_ASSUMED_FLOPS = 40e12


def _frames(data: Path, n: int) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    K, K_depth = rgbd_intrinsics(data)
    return [(*read_rgbd_frame(p, K, K_depth)[:2], K)
            for _, p in list_rgbd_frames(data / "sequence")[:n]]


def bench_sift(frames: list, runs: int) -> dict:
    """Median ms per tracked frame and the SIFT-extraction baseline of the same run."""
    pipeline = dataclasses.replace(tracking_pipeline(), backend="sift")
    totals: list[float] = []
    stages: dict[str, list[float]] = {}
    for run in range(runs + 1):  # pass 0 is the warm-up
        tracker = Tracker(TrackingConfig(), pipeline)
        for i, (rgb, depth, K) in enumerate(frames):
            r = tracker.process(Frame(rgb, K, i / 3), depth)
            if run and i:  # the first frame only makes the first keyframe
                totals.append(r.timings.total)
                for k, v in r.timings.as_dict().items():
                    stages.setdefault(k, []).append(v)
    sift = pipeline.sift

    def extract_all() -> None:
        for rgb, _, _ in frames:
            extract_sift(rgb, sift.n_features, sift.root_sift, sift.contrast_threshold)

    t_extract, _ = median_seconds(extract_all, runs)
    per_frame = statistics.median(totals)
    return {"sift_frames": len(frames), "sift_median_ms_per_frame": round(1000 * per_frame, 1),
            "sift_p90_ms_per_frame": round(1000 * float(np.percentile(totals, 90)), 1),
            "sift_stage_median_ms": {k: round(1000 * statistics.median(v), 1)
                                     for k, v in stages.items() if k != "total"},
            "sift_extraction_ms_per_frame": round(1000 * t_extract / len(frames), 1),
            "sift_ratio_to_extraction": round(per_frame / (t_extract / len(frames)), 2)}


def _flops(fn) -> float:
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:
        fn()
    return float(counter.get_total_flops())


def bench_mast3r(frames: list, runs: int) -> dict:
    """Full architecture per-frame tracking cost on CPU (random weights) vs forward_pair."""
    torch.manual_seed(0)
    model = Mast3rModel(ModelArgs.from_kwargs(parse_model_args(RELEASE_ARGS))).eval()
    model.requires_grad_(False)
    backend = Mast3rBackend(InferenceEngine(model, "cpu", model_id="random-release",
                                            image_size=512))
    rgb_kf, rgb_q = frames[0][0], frames[1][0]
    kf = KeyframeEncoding(0, backend.encode(rgb_kf), lambda: rgb_kf)  # cached, not timed
    matching = MatchingConfig(desc_conf_threshold=0.0)  # random weights: keep every FRM match

    def track_frame() -> None:
        backend.match(backend.encode(rgb_q), [kf], matching, geometry=True, query_image=rgb_q)

    def naive_pair() -> None:
        from mast3r_ros.core.model.preprocess import preprocess_image

        a, b = (preprocess_image(x, 512).tensor for x in (rgb_q, rgb_kf))
        with torch.inference_mode():
            model.forward_pair(a, b)

    t_track, ts = median_seconds(track_frame, runs)
    t_naive, _ = median_seconds(naive_pair, runs)
    engine = backend.engine

    def network_only() -> None:
        with torch.inference_mode():
            enc = engine.encode(torch.zeros(1, 3, 384, 512))
            engine.decode(enc, backend._tokens([kf.encoding]), heads=("pts3d", "desc"))

    flops = _flops(network_only)
    return {"mast3r_input_hw": [384, 512], "mast3r_cpu_s_per_frame": round(t_track, 2),
            "mast3r_cpu_times_s": [round(t, 2) for t in ts],
            "mast3r_naive_pair_s": round(t_naive, 2),
            "mast3r_ratio_naive_to_tracking": round(t_naive / t_track, 2),
            "mast3r_network_gflop_per_frame": round(flops / 1e9, 1),
            "gpu_ESTIMATE_ms_per_frame_network": round(1000 * flops / GPU_ASSUMED_FLOPS, 1),
            "gpu_ESTIMATE_assumed_tflops": GPU_ASSUMED_FLOPS / 1e12}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=DATA, help="7-Scenes folder with sequence/")
    ap.add_argument("--frames", type=int, default=30, help="sequence frames per SIFT pass")
    ap.add_argument("--runs", type=int, default=3, help="timed SIFT passes (median)")
    ap.add_argument("--mast3r-runs", type=int, default=3, help="timed MASt3R frames (0 = skip)")
    ap.add_argument("--threads", type=int, default=2)
    opts = ap.parse_args()
    torch.set_num_threads(opts.threads)
    import cv2

    cv2.setNumThreads(opts.threads)
    frames = _frames(opts.data, max(opts.frames, 2))
    t0 = time.perf_counter()
    results = bench_sift(frames, opts.runs)
    print(f"sift done in {time.perf_counter() - t0:.0f} s", file=sys.stderr, flush=True)
    if opts.mast3r_runs > 0:
        results.update(bench_mast3r(frames, opts.mast3r_runs))
    report("tracking", {"runs": opts.runs, **results})


if __name__ == "__main__":
    main()
