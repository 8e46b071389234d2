#!/usr/bin/env python3
"""Issue 11's figures with the real ``ros2 launch`` (by hand, where launch and tf2_ros exist).

Starts the README's launch line as a user would (a subprocess in its own session)::

    ros2 launch mast3r_ros localize.launch.py map:=<demo map> backend:=sift \\
        image_topic:=/camera/color/image_raw camera_info_topic:=/camera/color/camera_info

runs the robot of ``test/ros/tf_scenario.py`` against it (odometry at 30 Hz, a non-identity
camera mounting on TF, read back through ``tf2_ros`` when it imports), stops the launch with
SIGINT and prints one JSON line: the figures, ``ros2 launch``'s exit code and the failures.

Usage (``source tools/ros_env.sh`` first): ``python tools/check_tf_integration.py [--after 10]``
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "test" / "ros"))  # the scenario and the demo helpers

from ros_graph_helpers import DEMO, K_DEMO, camera_mount, queries, standalone_node  # noqa: E402
from tf_scenario import TfScenario  # noqa: E402

IMAGE, INFO = "/camera/color/image_raw", "/camera/color/camera_info"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--after", type=float, default=10.0, help="seconds after the last image")
    args = ap.parse_args()
    from mast3r_ros.core.map import build_map_from_rgbd, save_map

    map_dir = Path(tempfile.mkdtemp(prefix="mast3r_tf_check_")) / "map"
    save_map(build_map_from_rgbd(DEMO), map_dir)
    ros2 = str(Path(sys.executable).with_name("ros2"))
    cmd = [ros2, "launch", "mast3r_ros", "localize.launch.py", f"map:={map_dir}",
           "backend:=sift", f"image_topic:={IMAGE}", f"camera_info_topic:={INFO}"]
    log = open(map_dir.parent / "launch.log", "w")
    launch = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                              env=dict(os.environ))
    try:
        with standalone_node("tf_check_robot") as node:
            figures = TfScenario(node, queries(), K_DEMO, camera_mount(), image_topic=IMAGE,
                                 camera_info_topic=INFO, after_s=args.after).run()
    finally:
        launch.send_signal(signal.SIGINT)
        try:
            code = launch.wait(30)
        except subprocess.TimeoutExpired:
            launch.kill()
            code = launch.wait()
    out = json.loads(figures.json())
    out.update(command=" ".join(cmd), launch_exit_code=code, failures=figures.failures(),
               log=str(map_dir.parent / "launch.log"))
    print(json.dumps(out))
    return 0 if code == 0 and not figures.failures() else 1


if __name__ == "__main__":
    sys.exit(main())
