"""Fixtures of the ROS graph tests (helpers: ros_graph_helpers.py). Every test that uses ``graph``
gets its own rclpy context on its own ROS domain id with the loopback-only Fast DDS profile."""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

import pytest
from ros_graph_helpers import DEMO, Probe, RosGraph


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    for item in items:
        if here in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.ros)


@pytest.fixture()
def graph() -> Iterator[RosGraph]:
    g = RosGraph()
    try:
        yield g
    finally:
        g.close()


@pytest.fixture(scope="session")
def small_map_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real 4-keyframe map of the 7-Scenes demo data (frames 0, 20, 40, 60); queries 0-2 and
    30-32 localize within 2 cm with the SIFT backend."""
    from mast3r_ros.core.map import build_map_from_rgbd, save_map

    out = tmp_path_factory.mktemp("maps") / "redkitchen4"
    save_map(build_map_from_rgbd(DEMO, max_frames=4), out)
    return out


@pytest.fixture(scope="session")
def demo_map_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The real 33-keyframe map of the 7-Scenes demo data (what the demo localizes in)."""
    from mast3r_ros.core.map import build_map_from_rgbd, save_map

    out = tmp_path_factory.mktemp("maps") / "redkitchen33"
    save_map(build_map_from_rgbd(DEMO), out)
    return out


@pytest.fixture()
def probe(graph: RosGraph) -> Probe:
    return Probe(graph)
