#!/usr/bin/env python3
"""Latency of the localizer node per frame, split into transport, queue, conversion, core stages
and output publishing, at 640x480 (real rclpy + DDS, node and camera in one process).

``--core null`` uses a localizer that returns a fixed pose instantly, so everything measured is the
node's own overhead; ``--core sift`` uses the real SIFT-baseline core on a 4-keyframe 7-Scenes map
(``--core mast3r --checkpoint PATH`` the MASt3R core). Prints one JSON line (medians in ms).

Usage: python tools/bench_node_latency.py [--core null|sift|mast3r] [--frames 30] [--rate 5]
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

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
os.environ.setdefault("FASTDDS_DEFAULT_PROFILES_FILE",
                      str(ROOT / "config" / "fastdds_localhost.xml"))
os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
sys.path.insert(0, str(ROOT))

import rclpy  # noqa: E402
from rclpy.executors import MultiThreadedExecutor  # noqa: E402
from rclpy.parameter import Parameter  # noqa: E402
from rclpy.qos import qos_profile_sensor_data  # noqa: E402
from sensor_msgs.msg import CameraInfo, Image  # noqa: E402

from mast3r_ros.core.map import build_map_from_rgbd, read_rgb, save_map  # noqa: E402
from mast3r_ros.core.types import LocalizationResult, Timings  # noqa: E402
from mast3r_ros.msg import LocalizationStatus  # noqa: E402
from mast3r_ros.ros.common.conversions import rgb_to_image  # noqa: E402
from mast3r_ros.ros.localizer.node import LocalizerNode, _real_factory  # noqa: E402

DEMO = ROOT / "demo_data" / "sevenscenes_redkitchen"


class NullLocalizer:
    """Returns a fixed pose with 500 inlier points immediately (isolates the node's overhead)."""

    def __init__(self, config: object, map_path: str) -> None:
        from mast3r_ros.core.map import load_map

        self.config, self.map = config, load_map(map_path)
        self.backend = type("B", (), {"name": "null"})()

    def set_map(self, kmap: object) -> None:
        self.map = kmap

    def localize(self, frame: object) -> LocalizationResult:
        pts = np.zeros((500, 3))
        return LocalizationResult(True, "ok", np.eye(4), np.eye(6) * 1e-4, 600, 500, 0.5, pts,
                                  np.zeros((500, 2)), "pnp", keyframe_ids=[0],
                                  retrieval_scores=[1.0], timings=Timings(total=0.0),
                                  backend="null")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--core", choices=("null", "sift", "mast3r"), default="null")
    ap.add_argument("--checkpoint", default=os.environ.get("MAST3R_CHECKPOINT", ""))
    ap.add_argument("--frames", type=int, default=30)
    ap.add_argument("--rate", type=float, default=5.0)
    ap.add_argument("--warmup", type=int, default=3, help="frames excluded from the figures")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp())
    save_map(build_map_from_rgbd(DEMO, max_frames=4), tmp / "map")
    rclpy.init(domain_id=int(os.environ.get("ROS_DOMAIN_ID", "42")))
    params = [Parameter("map_path", value=str(tmp / "map")),
              Parameter("backend", value="mast3r" if args.core == "mast3r" else "sift")]
    if args.core == "mast3r":
        params.append(Parameter("model.checkpoint", value=args.checkpoint))
    factory = NullLocalizer if args.core == "null" else _real_factory
    node = LocalizerNode(localizer_factory=factory, parameter_overrides=params)
    cam = rclpy.create_node("bench_camera")
    img_pub = cam.create_publisher(Image, "image", qos_profile_sensor_data)
    info_pub = cam.create_publisher(CameraInfo, "camera_info", qos_profile_sensor_data)
    statuses: list = []
    cam.create_subscription(LocalizationStatus, "localization_status",
                            lambda m: statuses.append((time.time(), m)), 50)
    ex = MultiThreadedExecutor(num_threads=4)
    ex.add_node(node)
    ex.add_node(cam)
    threading.Thread(target=ex.spin, daemon=True).start()
    assert node.trigger_configure().name == "SUCCESS" and node.trigger_activate().name == "SUCCESS"
    rgb = read_rgb(next(iter(sorted((DEMO / "query").glob("*.jpg")))))
    info = CameraInfo(width=640, height=480)
    info.k = [525.0, 0, 320, 0, 525.0, 240, 0, 0, 1]
    time.sleep(1.0)
    for _ in range(args.frames + args.warmup):
        stamp = cam.get_clock().now().to_msg()
        info.header.stamp = stamp
        info_pub.publish(info)
        img_pub.publish(rgb_to_image(rgb, stamp, "camera"))
        time.sleep(1.0 / args.rate)
    time.sleep(min(2.0 / args.rate, 60.0))
    hist = node.times_history[args.warmup:]  # skip warm-up frames
    ms = lambda vals: round(1e3 * float(np.median(vals)), 3)  # noqa: E731
    st = [m for _, m in statuses][args.warmup:]
    rev = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True,
                         text=True).stdout.strip()
    out = {"bench": "node_latency_640x480", "core": args.core, "frames": len(hist),
           "device": "cpu", "cpu": platform.processor() or platform.machine(),
           "torch": __import__("torch").__version__, "git": rev,
           "transport_ms": ms([t.transport for t in hist]), "queue_ms": ms([t.queue for t in hist]),
           "conversion_ms": ms([t.conversion for t in hist]), "core_ms": ms([t.core for t in hist]),
           "publish_ms": ms([t.publish for t in hist]),
           "node_overhead_ms": ms([t.conversion + t.publish for t in hist]),
           "image_stamp_to_outputs_ms": ms([t.total for t in hist]),
           "dropped": node.counters.dropped, "processed": node.counters.processed}
    if st and args.core != "null":
        for k in ("retrieval", "encode", "matching", "pose"):
            out[f"core_{k}_ms"] = ms([getattr(m, f"latency_{k}") for m in st])
    print(json.dumps(out))
    ex.shutdown()
    node.destroy_node()
    cam.destroy_node()
    rclpy.try_shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
