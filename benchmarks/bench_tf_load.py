"""Does TF input cost the localizer anything? (issue 11 §4)

The localizer runs as its own process (SIFT backend, the 33-keyframe demo map), fed 640x480 demo
queries at ``--image-hz`` (30, free running: the node drops what it cannot process) while this
process alternates runs WITHOUT and WITH ``odom -> base_link`` on ``/tf`` at ``--tf-hz`` (100)
plus a static camera mounting. Per processed frame it reads, from the node's status:

* ``core``: ``latency_core_total`` (time inside ``Localizer.localize``);
* ``overhead``: image publish -> status received, minus core and minus ``latency_queue`` (the wait
  behind the previous frame): transport, conversion, TF lookups, output publishing.

After a warm-up run, ``--runs`` pairs of runs (no TF, TF) of ``--run-s`` seconds each; per run the
median, per condition the median of the runs, and the ratio TF / no TF measured in the same
session (also the median of the per-pair ratios, which cancels slow changes of the machine's
load; the 1-minute load average is reported). Prints one JSON line. Never run in CI.

Usage (``source tools/ros_env.sh`` first): ``.venv/bin/python -m benchmarks.bench_tf_load``
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
IMAGE, INFO = "/camera/color/image_raw", "/camera/color/camera_info"
K = [525.0, 0.0, 320.0, 0.0, 525.0, 240.0, 0.0, 0.0, 1.0]


class Feeder:
    """Images at a fixed rate (always) and odometry on /tf (when ``tf_on`` is set)."""

    def __init__(self, node: Any, images: list[np.ndarray], image_hz: float,
                 tf_hz: float) -> None:
        from rclpy.qos import qos_profile_sensor_data
        from sensor_msgs.msg import CameraInfo, Image
        from tf2_msgs.msg import TFMessage

        from mast3r_ros.msg import LocalizationStatus
        from mast3r_ros.ros.common.tf_io import TF_QOS, TF_STATIC_QOS

        self.node, self.images = node, images
        self.image_period, self.tf_period = 1.0 / image_hz, 1.0 / tf_hz
        self.clock = node.get_clock()
        self.image_pub = node.create_publisher(Image, IMAGE, qos_profile_sensor_data)
        self.info_pub = node.create_publisher(CameraInfo, INFO, qos_profile_sensor_data)
        self.tf_pub = node.create_publisher(TFMessage, "/tf", TF_QOS)
        self.static_pub = node.create_publisher(TFMessage, "/tf_static", TF_STATIC_QOS)
        self.published: dict[tuple[int, int], float] = {}
        self.received: list[tuple[float, Any]] = []
        node.create_subscription(LocalizationStatus, "/localization_status",
                                 lambda m: self.received.append((time.monotonic(), m)), 100)
        self.tf_on, self.stop = threading.Event(), threading.Event()

    def start(self) -> None:
        from tf2_msgs.msg import TFMessage

        from mast3r_ros.ros.common.outputs import transform_msg
        from mast3r_ros.ros.common.transforms import xyzquat_to_matrix

        mount = xyzquat_to_matrix([0.2, 0.05, 0.4, -0.5, 0.5, -0.5, 0.5])
        self.static_pub.publish(TFMessage(transforms=[transform_msg(
            self.clock.now().to_msg(), "base_link", "camera_optical_frame", mount)]))
        for fn in (self._images, self._odometry):
            threading.Thread(target=fn, daemon=True).start()

    def _images(self) -> None:
        from sensor_msgs.msg import CameraInfo

        from mast3r_ros.ros.common.conversions import rgb_to_image

        info = CameraInfo(width=640, height=480, distortion_model="plumb_bob", k=K)
        i, next_t = 0, time.monotonic()
        while not self.stop.is_set():
            stamp = self.clock.now().to_msg()
            msg = rgb_to_image(self.images[i % len(self.images)], stamp, "camera_optical_frame")
            info.header.stamp = stamp
            self.info_pub.publish(info)
            self.published[(stamp.sec, stamp.nanosec)] = time.monotonic()
            self.image_pub.publish(msg)
            i, next_t = i + 1, next_t + self.image_period
            self.stop.wait(max(0.0, next_t - time.monotonic()))

    def _odometry(self) -> None:
        from tf2_msgs.msg import TFMessage

        from mast3r_ros.ros.common.outputs import transform_msg

        next_t, x = time.monotonic(), 0.0
        while not self.stop.is_set():
            if self.tf_on.is_set():
                T = np.eye(4)
                T[0, 3] = x = x + 0.001
                self.tf_pub.publish(TFMessage(transforms=[transform_msg(
                    self.clock.now().to_msg(), "odom", "base_link", T)]))
            next_t += self.tf_period
            self.stop.wait(max(0.0, next_t - time.monotonic()))

    def run(self, seconds: float, tf: bool) -> dict[str, float]:
        """One run; median core and overhead (ms) of the frames processed in it."""
        (self.tf_on.set if tf else self.tf_on.clear)()
        time.sleep(1.0)  # let the previous condition's frames drain
        n0, t0 = len(self.received), time.monotonic()
        time.sleep(seconds)
        core, overhead = [], []
        for t_recv, s in self.received[n0:]:
            t_pub = self.published.get((s.header.stamp.sec, s.header.stamp.nanosec))
            if t_pub is None or t_pub < t0 or not s.success:
                continue
            core.append(1e3 * s.latency_core_total)
            overhead.append(1e3 * (t_recv - t_pub - s.latency_core_total - s.latency_queue))
        return {"frames": len(core), "core_ms": float(np.median(core)) if core else float("nan"),
                "overhead_ms": float(np.median(overhead)) if overhead else float("nan")}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--run-s", type=float, default=10.0)
    ap.add_argument("--image-hz", type=float, default=30.0)
    ap.add_argument("--tf-hz", type=float, default=100.0)
    args = ap.parse_args()
    import rclpy
    from rclpy.executors import SingleThreadedExecutor

    from mast3r_ros.core.map import build_map_from_rgbd, read_rgb, save_map
    from mast3r_ros.ros.common.graph_procs import package_share, ros_env, start_node, stop_process

    data = package_share() / "demo_data" / "sevenscenes_redkitchen"
    tmp = Path(tempfile.mkdtemp(prefix="bench_tf_"))
    save_map(build_map_from_rgbd(data), tmp / "map")
    domain = int(os.environ.get("ROS_DOMAIN_ID", "42"))
    log = open(tmp / "localizer.log", "w")
    proc = start_node("localizer", {"map_path": str(tmp / "map"), "backend": "sift"},
                      ros_env(domain), log, remaps=[("image", IMAGE), ("camera_info", INFO)],
                      params_file=package_share() / "config" / "localizer.yaml")
    rclpy.init(domain_id=domain)
    node = rclpy.create_node("bench_tf_feeder")
    executor = SingleThreadedExecutor()
    executor.add_node(node)
    threading.Thread(target=executor.spin, daemon=True).start()
    images = [read_rgb(p) for p in sorted((data / "query").glob("*.color.jpg"))]
    feeder = Feeder(node, images, args.image_hz, args.tf_hz)
    try:
        time.sleep(5.0)  # node configured and discovered
        feeder.start()
        warmup = feeder.run(args.run_s, tf=False)
        runs = {"no_tf": [], "tf": []}
        for _ in range(args.runs):
            runs["no_tf"].append(feeder.run(args.run_s, tf=False))
            runs["tf"].append(feeder.run(args.run_s, tf=True))
    finally:
        feeder.stop.set()
        code = stop_process(proc)
        executor.shutdown()
        node.destroy_node()
        rclpy.try_shutdown()
    med = {c: {k: float(np.median([r[k] for r in rs])) for k in ("core_ms", "overhead_ms")}
           for c, rs in runs.items()}
    import torch

    out = {"bench": "tf_load", "image_hz": args.image_hz, "tf_hz": args.tf_hz,
           "backend": "sift", "image": "640x480", "runs": args.runs, "run_s": args.run_s,
           "warmup": warmup, "per_run": runs,
           "core_ms_no_tf": med["no_tf"]["core_ms"], "core_ms_tf": med["tf"]["core_ms"],
           "core_ratio_tf_vs_no_tf": med["tf"]["core_ms"] / med["no_tf"]["core_ms"],
           "core_ratio_paired_median": float(np.median([t["core_ms"] / n["core_ms"] for n, t in
                                                        zip(runs["no_tf"], runs["tf"])])),
           "load_average_1min": os.getloadavg()[0],
           "overhead_ms_no_tf": med["no_tf"]["overhead_ms"],
           "overhead_ms_tf": med["tf"]["overhead_ms"],
           "localizer_exit_code": code, "device": "cpu", "cpus": os.cpu_count(),
           "cpu": platform.processor() or platform.machine(), "python": sys.version.split()[0],
           "torch": torch.__version__,
           "git": subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"],
                                 capture_output=True, text=True).stdout.strip() or "unknown"}
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
