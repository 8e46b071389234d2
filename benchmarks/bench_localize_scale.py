"""Benchmark: localizing in a 10,000-keyframe map vs the 33-keyframe demo map (issue 15 targets).

Maps (SIFT backend, the product's store): the 33 demo keyframes (7-Scenes redkitchen) at
``--scale`` of their resolution, encoded once; the large map replicates them to ``--size``
keyframes with poses perturbed by ~2 cm / 0.5 deg (revisits of one kitchen: one retrieval place),
built by incremental saves of 1,000 keyframes and opened lazily like any saved map.

1. Core latency: ``Localizer.localize`` of every demo query (also scaled) against each map,
   interleaved query by query (paired, alternating which map goes first) over ``--rounds`` passes
   after a warm-up pass; median ms per map and the median of the per-query ratios large / demo
   (target <= 1.3).
2. Node memory: the real ``localizer`` node process (``backend:=sift``) on each map, fed every
   query through the replay node in lockstep; its peak and final RSS from ``/proc`` (target for the
   large map: <= 1.2 GB at the default cache budgets), against the demo map's as a baseline.

Usage: ``python -m benchmarks.bench_localize_scale [--size 10000] [--scale 0.5] [--workdir DIR]
[--rounds 5] [--no-node]``; prints one JSON line. Needs ~0.5 MB of disk per keyframe at scale 0.5.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from benchmarks.common import report
from mast3r_ros.core.backends import encode_map
from mast3r_ros.core.backends.sift import SiftBackend
from mast3r_ros.core.config import LocalizerConfig
from mast3r_ros.core.evaluation import read_queries
from mast3r_ros.core.geometry.se3 import make_pose, pose_errors, random_rotation
from mast3r_ros.core.localizer import Localizer
from mast3r_ros.core.map import Keyframe, KeyframeMap, build_map_from_rgbd, load_map, save_map
from mast3r_ros.core.map.rgbd import read_matrix, read_rgb
from mast3r_ros.core.types import Frame

ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT / "demo_data" / "sevenscenes_redkitchen"


def _scaled(kf: Keyframe, scale: float, kid: int, T: np.ndarray) -> Keyframe:
    w, h = int(kf.width * scale), int(kf.height * scale)
    S = np.diag([w / kf.width, h / kf.height, 1.0])
    assert kf.depth is not None
    return Keyframe(kid, cv2.resize(kf.rgb, (w, h), interpolation=cv2.INTER_AREA), S @ kf.K, T,
                    kid / 30.0, cv2.resize(kf.depth, (w, h), interpolation=cv2.INTER_NEAREST))


def build_maps(work: Path, size: int, scale: float) -> tuple[Path, Path, float]:
    """The scaled demo map and its ``size``-keyframe replication; seconds to write the large one."""
    backend = SiftBackend()
    base = KeyframeMap()
    for kf in build_map_from_rgbd(DEMO).keyframes():
        base.add(_scaled(kf, scale, kf.id, kf.T_map_cam))
    encode_map(base, backend)
    demo, big = work / "demo_map", work / f"map_{size}"
    save_map(base, demo)
    rng = np.random.default_rng(0)
    ids = base.ids
    t0 = time.perf_counter()
    kmap = KeyframeMap()
    save_map(kmap, big)
    for start in range(0, size, 1000):
        for kid in range(start, min(size, start + 1000)):
            src = base.keyframe(ids[kid % len(ids)])
            T = src.T_map_cam @ make_pose(random_rotation(rng, 0.5), rng.normal(0, 0.02, 3))
            enc = base.encoding(src.id)
            kmap.add(Keyframe(kid, src.rgb, src.K, T, kid / 30.0, src.depth), enc)
        save_map(kmap, big)
    return demo, big, time.perf_counter() - t0


def _queries(scale: float) -> tuple[np.ndarray, list[tuple[np.ndarray, np.ndarray]]]:
    """The scaled K and the demo queries ``(rgb, T_world_cam GT)`` at ``scale``."""
    K = read_matrix(DEMO / "color-intrinsics.txt", (3, 3))
    frames = []
    for q in read_queries(DEMO / "queries_with_gt.txt"):
        rgb = read_rgb(DEMO / q.name)
        frames.append((cv2.resize(rgb, (int(rgb.shape[1] * scale), int(rgb.shape[0] * scale)),
                                  interpolation=cv2.INTER_AREA), q.T_world_cam))
    return np.diag([scale, scale, 1.0]) @ K, frames


def core_latency(maps: dict[str, Path], scale: float, rounds: int) -> dict[str, Any]:
    """Localize every demo query against each map, interleaved (paired) so that a change of
    machine load hits both maps alike: per map the median ms over ``rounds`` passes (after one
    warm-up pass) and the accuracy; and the median of the per-query ratios large / demo."""
    locs = {name: Localizer(LocalizerConfig(backend="sift"), load_map(path))
            for name, path in maps.items()}
    Ks, frames = _queries(scale)
    ms: dict[str, list[float]] = {name: [] for name in locs}
    err: dict[str, list[float]] = {name: [] for name in locs}
    ratios = []
    for r in range(rounds + 1):
        for j, (rgb, T_gt) in enumerate(frames):
            order = list(locs) if (r + j) % 2 == 0 else list(reversed(locs))
            t: dict[str, float] = {}
            for name in order:
                t0 = time.perf_counter()
                res = locs[name].localize(Frame(rgb, Ks))
                t[name] = 1000 * (time.perf_counter() - t0)
                if r == 0 and res.success and res.T_map_cam is not None:
                    err[name].append(pose_errors(res.T_map_cam, T_gt)[0])
            if r > 0:  # round 0 is the warm-up (and the accuracy pass)
                for name in locs:
                    ms[name].append(t[name])
                ratios.append(t["large"] / t["demo"])
    out: dict[str, Any] = {name: {"keyframes": len(locs[name].map),
                                  "median_ms": statistics.median(ms[name]),
                                  "localized": len(err[name]), "queries": len(frames),
                                  "median_position_cm": 100 * float(np.median(err[name]))}
                           for name in locs}
    out["latency_ratio"] = statistics.median(ratios)
    return out


def node_memory(map_dir: Path, work: Path, timeout: float) -> dict[str, Any]:
    """Peak / final RSS (MB) of the localizer node process serving every demo query."""
    from mast3r_ros.ros.common.graph_procs import package_share, ros_env, start_node, stop_process

    env = ros_env()
    loc_params = {"map_path": str(map_dir), "backend": "sift", "autostart": True}
    K = np.loadtxt(DEMO / "color-intrinsics.txt").reshape(-1).tolist()
    index = work / f"{map_dir.name}.jsonl"
    replay_params = {"source": str(DEMO / "query"), "glob": "*.color.jpg", "K": K, "rate": 30.0,
                     "lockstep_topic": "localization_status", "lockstep_timeout": 60.0,
                     "wait_for_subscribers": 1, "subscriber_timeout": timeout,
                     "start_delay": 1.0, "index_out": str(index)}
    with open(work / f"{map_dir.name}.node.log", "w") as log:
        loc = start_node("localizer", loc_params, env, log, namespace="/bench",
                         params_file=package_share() / "config" / "localizer.yaml")
        rep = start_node("replay", replay_params, env, log, namespace="/bench")
        try:
            rep.wait(timeout)
            status = Path(f"/proc/{loc.pid}/status").read_text()
        finally:
            stop_process(rep)
            stop_process(loc)
    field = {ln.split(":")[0]: int(ln.split()[1]) / 1024 for ln in status.splitlines()
             if ln.startswith(("VmHWM", "VmRSS"))}
    frames = len(index.read_text().splitlines()) if index.exists() else 0
    return {"peak_rss_mb": field.get("VmHWM"), "final_rss_mb": field.get("VmRSS"),
            "frames_published": frames}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=10_000)
    ap.add_argument("--scale", type=float, default=0.5)
    ap.add_argument("--workdir", type=Path, default=None)
    ap.add_argument("--node-timeout", type=float, default=600.0)
    ap.add_argument("--rounds", type=int, default=5, help="timed passes over the queries")
    ap.add_argument("--no-node", action="store_true", help="skip the node memory measurement")
    args = ap.parse_args()
    work = args.workdir or Path(tempfile.mkdtemp(prefix="bench_scale_"))
    try:
        demo, big, build_s = build_maps(work, args.size, args.scale)
        lat = core_latency({"demo": demo, "large": big}, args.scale, args.rounds)
        out: dict[str, Any] = {"size": args.size, "scale": args.scale, "build_s": build_s,
                               "rounds": args.rounds, **lat}
        if not args.no_node:
            out["node_demo"] = node_memory(demo, work, args.node_timeout)
            out["node_large"] = node_memory(big, work, args.node_timeout)
        report("bench_localize_scale", out)
    finally:
        if args.workdir is None:
            shutil.rmtree(work, ignore_errors=True)
    print(json.dumps({"workdir": str(work)}), flush=True)


if __name__ == "__main__":
    main()
