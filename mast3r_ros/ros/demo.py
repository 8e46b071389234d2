"""End-to-end demo: map the bundled 7-Scenes frames, localize the queries through real ROS 2.

Steps: build a keyframe map from ``demo_data`` (RGB-D + poses) with the core; start the localizer
node and the replay node as separate processes (loopback-only Fast DDS profile); the replay
publishes each query image + camera_info like a camera and waits for the localizer's status
(lockstep, so no frame is dropped on a slow CPU); this process listens to ``pose`` and
``localization_status``, then prints per-frame and summary errors against the ground truth and
writes a trajectory plot and a JSON summary.

Backend: MASt3R when a checkpoint is given (``--checkpoint`` or ``$MAST3R_CHECKPOINT``), otherwise
the classical SIFT baseline, and it says so.

Usage: python -m mast3r_ros.ros.demo [--out out/demo] [--backend auto|sift|mast3r]
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import random
import threading
import time
from pathlib import Path
from typing import Any, Optional

import numpy as np

from mast3r_ros.ros.common.graph_procs import package_share, ros_env, start_node, stop_process

__all__ = ["main", "run_demo", "evaluate", "demo_data"]

logger = logging.getLogger("mast3r_ros.demo")


def demo_data() -> Path:
    """The bundled 7-Scenes sample (``demo_data/`` of the package share or source tree)."""
    return package_share() / "demo_data" / "sevenscenes_redkitchen"


def _choose_backend(requested: str, checkpoint: str) -> tuple[str, str]:
    if requested == "sift" or (requested == "auto" and not checkpoint):
        logger.warning("no MASt3R checkpoint configured ($MAST3R_CHECKPOINT / --checkpoint): "
                       "running the classical SIFT BASELINE, not MASt3R")
        return "sift", ""
    if not Path(checkpoint).exists():
        raise SystemExit(f"MASt3R checkpoint {checkpoint!r} does not exist; fix the path or run "
                         "with --backend sift")
    logger.info("backend: MASt3R with checkpoint %s", checkpoint)
    return "mast3r", checkpoint


def build_map(data: Path, out: Path, rebuild: bool) -> Path:
    """Build (once) the keyframe map of the demo data under ``out/map``."""
    from mast3r_ros.core.map import build_map_from_rgbd, save_map

    map_dir = out / "map"
    if map_dir.exists() and not rebuild:
        logger.info("reusing map %s (--rebuild to rebuild)", map_dir)
        return map_dir
    t0 = time.monotonic()
    kmap = build_map_from_rgbd(data)
    save_map(kmap, map_dir)
    logger.info("built map of %d keyframes in %.1f s -> %s", len(kmap), time.monotonic() - t0,
                map_dir)
    return map_dir


class Collector:
    """In-process rclpy listener of the localizer's pose and status topics."""

    def __init__(self, namespace: str, domain_id: int) -> None:
        import rclpy
        from geometry_msgs.msg import PoseWithCovarianceStamped
        from rclpy.executors import SingleThreadedExecutor

        from mast3r_ros.msg import LocalizationStatus

        self.context = rclpy.Context()
        rclpy.init(context=self.context, domain_id=domain_id)
        self.node = rclpy.create_node("demo_collector", context=self.context)
        self.poses: dict[tuple[int, int], Any] = {}
        self.statuses: dict[tuple[int, int], Any] = {}
        key = lambda m: (m.header.stamp.sec, m.header.stamp.nanosec)  # noqa: E731
        self.node.create_subscription(PoseWithCovarianceStamped, f"{namespace}/pose",
                                      lambda m: self.poses.__setitem__(key(m), m), 50)
        self.node.create_subscription(LocalizationStatus, f"{namespace}/localization_status",
                                      lambda m: self.statuses.__setitem__(key(m), m), 50)
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)
        self._thread = threading.Thread(target=self.executor.spin, daemon=True)
        self._thread.start()

    def close(self) -> None:
        import rclpy

        self.executor.shutdown()
        self.node.destroy_node()
        rclpy.try_shutdown(context=self.context)


def run_demo(out: Path, backend: str, checkpoint: str, timeout: float,
             domain_id: int) -> tuple[list[dict], dict[tuple[int, int], Any], dict]:
    """Start localizer + replay, collect outputs; returns (index rows, poses, statuses)."""
    data = demo_data()
    map_dir = build_map(data, out, rebuild=False)
    env, ns = ros_env(domain_id), "/demo"
    index = out / "published.jsonl"
    index.unlink(missing_ok=True)
    loc_params = {"map_path": str(map_dir), "backend": backend, "autostart": True}
    if checkpoint:
        loc_params["model.checkpoint"] = checkpoint
    K = np.loadtxt(data / "color-intrinsics.txt").reshape(-1).tolist()
    replay_params = {"source": str(data / "query"), "glob": "*.color.jpg", "K": K, "rate": 30.0,
                     "frame_id": "camera_optical_frame", "lockstep_topic": "localization_status",
                     "lockstep_timeout": 20.0, "wait_for_subscribers": 1, "start_delay": 1.0,
                     "index_out": str(index)}
    collector = Collector(ns, domain_id)
    with open(out / "localizer.log", "w") as loc_log, open(out / "replay.log", "w") as rep_log:
        loc = start_node("localizer", loc_params, env, loc_log, namespace=ns,
                         params_file=package_share() / "config" / "localizer.yaml")
        rep = start_node("replay", replay_params, env, rep_log, namespace=ns)
        try:
            rep.wait(timeout)
        except Exception:  # noqa: BLE001 - subprocess.TimeoutExpired: report what we have
            logger.error("replay did not finish within %.0f s", timeout)
        time.sleep(1.0)
        stop_process(rep)
        stop_process(loc)
    collector.close()
    rows = [json.loads(line) for line in index.read_text().splitlines()] if index.exists() else []
    return rows, collector.poses, collector.statuses


def _ground_truth() -> dict[str, np.ndarray]:
    from mast3r_ros.core.evaluation import read_queries

    return {Path(q.name).name: q.T_world_cam
            for q in read_queries(demo_data() / "queries_with_gt.txt")}


def evaluate(rows: list[dict], poses: dict, statuses: dict) -> tuple[list[dict], dict]:
    """Per-frame errors vs GT and a summary (:func:`mast3r_ros.core.evaluation.
    summarize_absolute`; failures count as infinite error)."""
    from mast3r_ros.core.evaluation import summarize_absolute
    from mast3r_ros.core.geometry.se3 import pose_errors
    from mast3r_ros.ros.common.conversions import pose_to_matrix

    gt = _ground_truth()
    frames = []
    for row in rows:
        key = (int(row["sec"]), int(row["nanosec"]))  # exact: float seconds lose nanoseconds
        status, pose = statuses.get(key), poses.get(key)
        T_gt = gt.get(row["source"])
        rec: dict[str, Any] = {"frame": row["source"], "success": pose is not None,
                               "reason": status.reason if status else "no status received",
                               "pos_err_cm": float("inf"), "rot_err_deg": float("inf")}
        if pose is not None and T_gt is not None:
            T = pose_to_matrix(pose.pose.pose)
            dt, dr = pose_errors(T, T_gt)
            rec.update(pos_err_cm=100 * dt, rot_err_deg=dr, T_est=T.tolist())
        if status is not None:
            rec.update(inliers=int(status.num_inliers), core_ms=1e3 * status.latency_core_total,
                       conversion_ms=1e3 * status.latency_conversion,
                       total_ms=1e3 * status.latency_total)
        rec["T_gt"] = T_gt.tolist() if T_gt is not None else None
        frames.append(rec)

    def med(key: str) -> float:
        vals = [f[key] for f in frames if key in f and np.isfinite(f[key])]
        return float(np.median(vals)) if vals else float("nan")

    acc = summarize_absolute([f["pos_err_cm"] / 100 for f in frames],
                             [f["rot_err_deg"] for f in frames])
    summary = {"queries": len(gt), "published": len(frames),
               "localized": int(sum(f["success"] for f in frames)), **acc,
               "median_core_ms": med("core_ms"), "median_conversion_ms": med("conversion_ms"),
               "median_image_to_status_ms": med("total_ms")}
    return frames, summary


def plot(frames: list[dict], map_dir: Path, path: Path, title: str) -> None:
    """Top view (x, z) of GT and estimated camera positions plus the map keyframes."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from mast3r_ros.core.map import load_map

    kf = load_map(map_dir).poses()[:, :3, 3]
    gt = np.array([f["T_gt"] for f in frames if f["T_gt"] is not None]).reshape(-1, 4, 4)[:, :3, 3]
    est = np.array([f["T_est"] for f in frames if "T_est" in f]).reshape(-1, 4, 4)[:, :3, 3]
    fig, ax = plt.subplots(figsize=(7, 6))
    ax.plot(kf[:, 0], kf[:, 2], "s", color="0.6", ms=5, label="map keyframes")
    ax.plot(gt[:, 0], gt[:, 2], "-o", color="tab:green", ms=3, label="query GT")
    ax.plot(est[:, 0], est[:, 2], "x", color="tab:red", ms=7, label="localized")
    ax.set_xlabel("x (m)")
    ax.set_ylabel("z (m)")
    ax.set_aspect("equal")
    ax.legend()
    ax.set_title(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(description="mast3r_ros end-to-end demo on 7-Scenes")
    parser.add_argument("--out", type=Path, default=Path("out") / "demo",
                        help="output folder (relative to the current directory)")
    parser.add_argument("--backend", choices=("auto", "sift", "mast3r"), default="auto")
    parser.add_argument("--checkpoint", default=os.environ.get("MAST3R_CHECKPOINT", ""))
    parser.add_argument("--timeout", type=float, default=300.0, help="seconds for the replay")
    parser.add_argument("--rebuild-map", action="store_true")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="[%(levelname)s] [%(name)s]: %(message)s")
    args.out.mkdir(parents=True, exist_ok=True)
    backend, checkpoint = _choose_backend(args.backend, args.checkpoint)
    if args.rebuild_map:
        build_map(demo_data(), args.out, rebuild=True)
    domain_id = int(os.environ.get("ROS_DOMAIN_ID", random.randint(10, 99)))
    t0 = time.monotonic()
    rows, poses, statuses = run_demo(args.out, backend, checkpoint, args.timeout, domain_id)
    frames, summary = evaluate(rows, poses, statuses)
    summary.update(backend=backend, wall_s=time.monotonic() - t0, domain_id=domain_id)
    print(f"{'frame':28s} {'ok':>3s} {'pos cm':>8s} {'rot deg':>8s} {'inl':>5s} "
          f"{'core ms':>8s}  reason")
    for f in frames:
        print(f"{f['frame']:28s} {'yes' if f['success'] else 'no':>3s} {f['pos_err_cm']:8.2f} "
              f"{f['rot_err_deg']:8.2f} {f.get('inliers', 0):5d} "
              f"{f.get('core_ms', float('nan')):8.1f}"
              f"  {f['reason']}")
    plot_path = args.out / "trajectory.png"
    if frames:
        plot(frames, args.out / "map", plot_path, f"7-Scenes redkitchen, backend={backend}")
    (args.out / "summary.json").write_text(json.dumps({"summary": summary, "frames": frames},
                                                      indent=1, default=float))
    label = "MASt3R" if backend == "mast3r" else "SIFT baseline (no MASt3R checkpoint configured)"
    print(f"\nbackend: {label}")
    print(f"localized {summary['localized']}/{summary['queries']} queries; median error "
          f"{summary['median_position_cm']:.2f} cm / {summary['median_rotation_deg']:.2f} deg; "
          f"recall (5 cm, 5 deg) {100 * summary['recall_5cm_5deg']:.0f}%; "
          f"median core {summary['median_core_ms']:.0f} ms, conversion "
          f"{summary['median_conversion_ms']:.1f} ms; wall {summary['wall_s']:.0f} s")
    print(f"plot: {plot_path}\nsummary: {args.out / 'summary.json'}")
    return 0 if summary["localized"] > 0 else 1


if __name__ == "__main__":
    raise SystemExit(main())
