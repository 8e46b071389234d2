"""Launch files and params YAML files stay consistent with the nodes (launch is not installable
here, so their parameter names and remappings are checked statically against the nodes')."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
import yaml

from mast3r_ros.core.config import LocalizerConfig, LocalizerNodeConfig
from mast3r_ros.ros.params import iter_param_specs

REPO = Path(__file__).resolve().parents[2]


def _specs(node: str) -> dict:
    if node == "localizer":
        sections = (("", LocalizerNodeConfig), ("", LocalizerConfig))
    else:
        from mast3r_ros.ros.mapper_node import SECTIONS as sections
    return {s.name: s for prefix, cls in sections for s in iter_param_specs(cls, prefix)}


LAUNCH = {"localizer": "localize.launch.py", "mapper": "mapping.launch.py"}
NODES = ["localizer", "mapper"]


def _launch_tree(node: str) -> ast.Module:
    return ast.parse((REPO / "launch" / LAUNCH[node]).read_text())


@pytest.mark.parametrize("node", NODES)
def test_launch_parameters_are_node_parameters(node: str) -> None:
    keys = [k.value for n in ast.walk(_launch_tree(node)) if isinstance(n, ast.Dict)
            for k in n.keys if isinstance(k, ast.Constant)]
    assert "map_path" in keys and "model.checkpoint" in keys
    specs = _specs(node)
    unknown = [k for k in keys if k not in specs and k != "use_sim_time"]
    assert not unknown, unknown


@pytest.mark.parametrize("node", NODES)
def test_launch_remaps_node_topics(node: str) -> None:
    src = (REPO / "mast3r_ros" / "ros" / f"{node}_node.py").read_text()
    tuples = [n for n in ast.walk(_launch_tree(node)) if isinstance(n, ast.Tuple) and n.elts
              and isinstance(n.elts[0], ast.Constant) and len(n.elts) == 2]
    remapped = [t.elts[0].value for t in tuples if not isinstance(t.elts[1], ast.Constant)]
    assert set(remapped) == {"image", "image/compressed", "camera_info"}
    for topic in remapped:
        assert f'"{topic}"' in src


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
