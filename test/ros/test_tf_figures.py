"""Issue 11's figures from CI: the localizer process started as ``localize.launch.py`` starts it
(params file + the README line's arguments + remappings), odometry at 30 Hz and a non-identity
camera mounting on TF, read back through our internal TF buffer (the ``tf2_msgs`` of
``tools/setup.sh``). See ``tf_scenario.py`` for the robot and the figures."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Iterator

import pytest
from ros_graph_helpers import K_DEMO, REPO, RosGraph, camera_mount, queries
from tf_scenario import TfScenario

from mast3r_ros.ros.common.graph_procs import ros_env, start_node, stop_process

IMAGE, INFO = "/camera/color/image_raw", "/camera/color/camera_info"


@pytest.fixture()
def localizer(graph: RosGraph, demo_map_dir: Path, tmp_path: Path) -> Iterator[subprocess.Popen]:
    log = open(tmp_path / "localizer.log", "w")
    # = ros2 launch mast3r_ros localize.launch.py map:=<map> backend:=sift \
    #       image_topic:=/camera/color/image_raw camera_info_topic:=/camera/color/camera_info
    proc = start_node("localizer", {"map_path": str(demo_map_dir), "backend": "sift"},
                      ros_env(graph.domain_id), log, params_file=REPO / "config" / "localizer.yaml",
                      remaps=[("image", IMAGE), ("image/compressed", IMAGE + "/compressed"),
                              ("camera_info", INFO)])
    try:
        yield proc
    finally:
        stop_process(proc)
        log.close()


@pytest.mark.slow
def test_tf_figures_with_odometry_and_camera_mount(graph: RosGraph,
                                                   localizer: subprocess.Popen,
                                                   tmp_path: Path) -> None:
    import rclpy

    node = graph.add(rclpy.create_node("tf_scenario", context=graph.context))
    figures = TfScenario(node, queries(), K_DEMO, camera_mount(), image_topic=IMAGE,
                         camera_info_topic=INFO).run()
    print(figures.json())
    log = (tmp_path / "localizer.log").read_text()[-3000:]
    assert figures.tf_channel.startswith("in: internal buffer on /tf and /tf_static"), \
        figures.tf_channel
    assert not figures.failures(), (figures.failures(), figures.notes, log)
    assert figures.probes_after >= 90 and figures.probes_images >= 90  # 10 Hz, >= 9 s each
    assert stop_process(localizer) == 0, log  # SIGINT: clean exit
