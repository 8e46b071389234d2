"""launch_testing test of ``localize.launch.py``: the installed launch file started as the README
starts it (``map:=... backend:=sift image_topic:=... camera_info_topic:=...``), fed the demo queries
by a robot with odometry (30 Hz) and a non-identity camera mounting on TF, read back through tf2
(``tf2_ros`` where it imports, else our buffer): poses arrive, ``map -> base_link`` agrees with the
published pose, ``map -> camera_optical_frame`` with ground truth, ``map -> odom`` resolves at now
and stays fresh after the last image; SIGINT at the end exits every process with 0.

Run: ``launch_test test/launch/test_localize_launch.py`` or ``pytest -m launch`` (needs
``launch_testing``; ``colcon test`` runs it through CMakeLists.txt).
"""

from __future__ import annotations

import sys
import tempfile
import unittest
from pathlib import Path

import launch_testing
import launch_testing.actions
import launch_testing.asserts
import pytest
from launch.actions import IncludeLaunchDescription
from launch.launch_description_sources import PythonLaunchDescriptionSource

from launch import LaunchDescription

sys.path[:0] = [str(Path(__file__).resolve().parent),  # launch_helpers
               str(Path(__file__).resolve().parents[1] / "ros")]  # ros_graph_helpers

from launch_helpers import IMAGE, INFO, launch_file
from ros_graph_helpers import DEMO, K_DEMO, camera_mount, queries, standalone_node
from tf_scenario import TfScenario




@pytest.mark.launch
@pytest.mark.launch_test
def generate_test_description() -> tuple[LaunchDescription, dict]:
    from mast3r_ros.core.map import build_map_from_rgbd, save_map

    map_dir = Path(tempfile.mkdtemp(prefix="mast3r_launch_test_")) / "map"
    save_map(build_map_from_rgbd(DEMO), map_dir)
    include = IncludeLaunchDescription(
        PythonLaunchDescriptionSource(launch_file("localize.launch.py")),
        launch_arguments={"map": str(map_dir), "backend": "sift", "image_topic": IMAGE,
                          "camera_info_topic": INFO}.items())
    return LaunchDescription([include, launch_testing.actions.ReadyToTest()]), {}


class TestLocalizeLaunch(unittest.TestCase):
    def test_tf_figures(self) -> None:
        with standalone_node("launch_test_robot") as node:
            figures = TfScenario(node, queries(), K_DEMO, camera_mount(), image_topic=IMAGE,
                                 camera_info_topic=INFO).run()
        print(figures.json())
        self.assertEqual(figures.failures(), [], figures.notes)


@launch_testing.post_shutdown_test()
class TestShutdown(unittest.TestCase):
    def test_sigint_exits_cleanly(self, proc_info) -> None:
        launch_testing.asserts.assertExitCodes(proc_info)
