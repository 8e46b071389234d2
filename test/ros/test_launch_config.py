"""Launch files, their arguments, the README's launch lines, the params YAML files, the rviz config
and the CMake registration stay consistent with the nodes. Checked statically here (``launch`` is
not installable from our registries); the launch_testing tests in ``test/launch`` run the launch
files for real where ``launch`` exists (``-m launch``)."""

from __future__ import annotations

import ast
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from mast3r_ros.core.config import LocalizerConfig
from mast3r_ros.core.errors import ConfigError
from mast3r_ros.ros.common.graph_procs import MODULES
from mast3r_ros.ros.common.launch_args import (
    LOCALIZE_ODOMETRY_ARGS,
    LOCALIZER_ARGS,
    MAPPER_ARGS,
    ODOMETRY_ARGS,
    SLAM_ARGS,
    SLAM_ODOMETRY_ARGS,
    LaunchArg,
    parameter_overrides,
)
from mast3r_ros.ros.common.node_config import LocalizerNodeConfig
from mast3r_ros.ros.common.params import iter_param_specs

REPO = Path(__file__).resolve().parents[2]
LAUNCH = {"localizer": ("localize.launch.py", LOCALIZER_ARGS + LOCALIZE_ODOMETRY_ARGS),
          "mapper": ("mapping.launch.py", MAPPER_ARGS),
          "odometry": ("odometry.launch.py", ODOMETRY_ARGS),
          "slam": ("slam.launch.py", SLAM_ARGS + SLAM_ODOMETRY_ARGS)}
NODES = ["localizer", "mapper", "odometry", "slam"]
CAMERA_NODES = ["localizer", "mapper", "odometry"]  # the slam node reads the keyframe stream
ARG_TABLES = {"localizer": "LOCALIZER_ARGS", "mapper": "MAPPER_ARGS",
              "odometry": "ODOMETRY_ARGS", "slam": "SLAM_ARGS"}


def _specs(node: str) -> dict:
    if node == "localizer":
        sections: tuple = (("", LocalizerNodeConfig), ("", LocalizerConfig))
    elif node == "odometry":
        from mast3r_ros.ros.odometry.node import param_specs

        return {s.name: s for _, s in param_specs()}
    elif node == "slam":
        from mast3r_ros.ros.slam.node import SECTIONS as sections
    else:
        from mast3r_ros.ros.mapper.node import SECTIONS as sections
    return {s.name: s for prefix, cls in sections for s in iter_param_specs(cls, prefix)}


@pytest.mark.parametrize("node", NODES)
def test_launch_arguments_set_existing_parameters(node: str) -> None:
    _, args = LAUNCH[node]
    specs = _specs(node)
    params = [a.parameter for a in args if a.parameter is not None]
    assert ("map_path" in params or node == "odometry") and "model.checkpoint" in params
    unknown = [p for p in params if p not in specs and p != "use_sim_time"]
    assert not unknown, unknown
    names = [a.name for a in args]
    assert len(names) == len(set(names))
    for a in args:  # unset parameter arguments leave the params file alone
        assert a.parameter is None or a.default == "", a
        if a.parameter in specs and a.kind != "str":
            assert isinstance(specs[a.parameter].default, bool if a.kind == "bool" else float), a


@pytest.mark.parametrize("node", NODES)
def test_launch_file_uses_the_argument_table(node: str) -> None:
    file, _ = LAUNCH[node]
    tree = ast.parse((REPO / "launch" / file).read_text())
    names = {n.id for n in ast.walk(tree) if isinstance(n, ast.Name)}
    assert {ARG_TABLES[node], "lifecycle_node"} <= names
    executables = [kw.value.value for n in ast.walk(tree) if isinstance(n, ast.keyword)
                   and n.arg == "executable" and isinstance(kw := n, ast.keyword)
                   and isinstance(n.value, ast.Constant)]
    assert node in executables
    cmake = (REPO / "CMakeLists.txt").read_text()
    assert f'"{node}:{MODULES[node]}"' in cmake  # the executable runs the module graph tests run
    assert f"add_launch_test(test/launch/test_{file.split('.')[0]}_launch.py" in cmake
    assert (REPO / "test" / "launch" / f"test_{file.split('.')[0]}_launch.py").is_file()


def test_parameter_overrides_only_for_arguments_given() -> None:
    args = LOCALIZER_ARGS
    unset = {a.name: "" for a in args}
    assert parameter_overrides(args, unset) == {}
    given = dict(unset, map="/maps/k", publish_tf="false", transform_tolerance="0.25",
                 camera_frame="cam", image_topic="/x")
    assert parameter_overrides(args, given) == {"map_path": "/maps/k", "publish_tf": False,
                                                "transform_tolerance": 0.25,
                                                "camera_frame": "cam"}
    with pytest.raises(ConfigError, match="true or false"):
        parameter_overrides(args, dict(unset, publish_tf="yes"))
    with pytest.raises(ConfigError, match="number"):
        parameter_overrides([LaunchArg("t", "", "", "t", "float")], {"t": "soon"})


def _readme_launch_lines() -> list[str]:
    text = (REPO / "README.md").read_text().replace("\\\n", " ")
    return [line.strip() for line in text.splitlines() if "ros2 launch mast3r_ros" in line]


def test_readme_launch_lines_use_declared_arguments() -> None:
    lines = _readme_launch_lines()
    assert len(lines) >= 3
    files = {file: {a.name for a in args} for file, args in LAUNCH.values()}
    for line in lines:
        words = shlex.split(line[line.index("ros2 launch"):].split("#")[0])
        i = words.index("launch")
        file = words[i + 2]
        assert file in files, line
        given = [w.split(":=")[0] for w in words[i + 3:] if ":=" in w]
        unknown = [g for g in given if g not in files[file]]
        assert not unknown, f"{line}: {unknown} are not arguments of {file}"


def test_readme_documents_every_launch_argument() -> None:
    readme = (REPO / "README.md").read_text()
    for file, args in LAUNCH.values():
        for a in args:
            assert re.search(rf"\|\s*`{a.name}`\s*\|", readme), (file, a.name)
    assert "## Frames and TF" in readme
    assert "map → odom → base_link → camera_optical_frame" in readme


@pytest.mark.parametrize("node", NODES)
def test_params_yaml_documents_every_parameter(node: str) -> None:
    data = yaml.safe_load((REPO / "config" / f"{node}.yaml").read_text())
    params = data["/**"]["ros__parameters"]
    specs = _specs(node)
    missing, unknown = set(specs) - set(params), set(params) - set(specs)
    assert not missing and not unknown, f"run tools/gen_params_yaml.py: missing {missing}, " \
                                        f"unknown {unknown}"
    for name, value in params.items():
        default = specs[name].default
        same_kind = isinstance(default, list) and isinstance(value, list)
        assert type(value) is type(default) or same_kind, name


def test_params_yaml_files_are_up_to_date() -> None:
    proc = subprocess.run([sys.executable, str(REPO / "tools" / "gen_params_yaml.py"), "--check"],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, "config/*.yaml are stale: run tools/gen_params_yaml.py"


@pytest.mark.parametrize("node", CAMERA_NODES)
def test_node_reads_the_remapped_topics(node: str) -> None:
    src = "".join(p.read_text() for p in (REPO / "mast3r_ros" / "ros" / node).glob("*.py"))
    for topic in ("image", "image/compressed", "camera_info"):
        assert f'"{topic}"' in src


def test_rviz_config_shows_the_localizer_outputs() -> None:
    cfg = yaml.safe_load((REPO / "config" / "mast3r_ros.rviz").read_text())
    vm = cfg["Visualization Manager"]
    assert vm["Global Options"]["Fixed Frame"] == "map"
    shown = {d["Class"].split("/")[-1]: d for d in vm["Displays"]}
    topics = {d["Topic"]["Value"] for d in vm["Displays"] if "Topic" in d}
    assert topics == {"/map_cloud", "/keyframes", "/pose", "/inliers"}
    assert {"PointCloud2", "MarkerArray", "PoseWithCovariance", "TF"} <= set(shown)
    latched = [d for d in vm["Displays"] if d.get("Topic", {}).get("Value") in ("/map_cloud",
                                                                                 "/keyframes")]
    assert all(d["Topic"]["Durability Policy"] == "Transient Local" for d in latched)
    tools = [t for t in vm["Tools"] if t["Class"].endswith("SetInitialPose")]
    assert tools and tools[0]["Topic"]["Value"] == "/initialpose"


def test_example_launch_yaml_passes_declared_arguments() -> None:
    data = yaml.safe_load((REPO / "config" / "localizer.launch.yaml").read_text())
    include = [e["include"] for e in data["launch"] if "include" in e][0]
    assert include["file"].endswith("/launch/localize.launch.py")
    names = {a.name for a in LOCALIZER_ARGS}
    given = {a["name"] for a in include["arg"]}
    assert given <= names, given - names
    assert "camera_frame" not in given  # the image frame_id is the camera frame (from the URDF)


def test_slam_launch_wires_the_stream_and_names_the_mapper() -> None:
    tree = ast.parse((REPO / "launch" / "slam.launch.py").read_text())
    consts = {n.value for n in ast.walk(tree) if isinstance(n, ast.Constant)}
    assert {"odometry", "slam", "mapper", "odometry/keyframes", "odometry/graph"} <= consts
    src = "".join(p.read_text() for p in (REPO / "mast3r_ros" / "ros" / "slam").glob("*.py"))
    for topic in ('"keyframes"', '"graph"', '"~/save_map"', '"~/optimize"'):
        assert topic in src
