"""The launch file and the params YAML stay consistent with the node (launch is not installable
here, so its parameter names and remappings are checked statically against the node's)."""

from __future__ import annotations

import ast
from pathlib import Path

import yaml

from mast3r_ros.core.config import LocalizerConfig, LocalizerNodeConfig
from mast3r_ros.ros.params import iter_param_specs

REPO = Path(__file__).resolve().parents[2]
SPECS = {s.name: s for c in (LocalizerNodeConfig, LocalizerConfig) for s in iter_param_specs(c)}


def _launch_tree() -> ast.Module:
    return ast.parse((REPO / "launch" / "localize.launch.py").read_text())


def test_launch_parameters_are_node_parameters() -> None:
    keys = [k.value for node in ast.walk(_launch_tree()) if isinstance(node, ast.Dict)
            for k in node.keys if isinstance(k, ast.Constant)]
    assert "map_path" in keys and "model.checkpoint" in keys
    unknown = [k for k in keys if k not in SPECS and k != "use_sim_time"]
    assert not unknown, unknown


def test_launch_remaps_node_topics() -> None:
    src = (REPO / "mast3r_ros" / "ros" / "localizer_node.py").read_text()
    tuples = [n for n in ast.walk(_launch_tree()) if isinstance(n, ast.Tuple) and n.elts
              and isinstance(n.elts[0], ast.Constant) and len(n.elts) == 2]
    remapped = [t.elts[0].value for t in tuples if not isinstance(t.elts[1], ast.Constant)]
    assert set(remapped) == {"image", "image/compressed", "camera_info"}
    for topic in remapped:
        assert f'"{topic}"' in src


def test_params_yaml_documents_every_parameter() -> None:
    data = yaml.safe_load((REPO / "config" / "localizer.yaml").read_text())
    params = data["/**"]["ros__parameters"]
    missing, unknown = set(SPECS) - set(params), set(params) - set(SPECS)
    assert not missing and not unknown, f"run tools/gen_params_yaml.py: missing {missing}, " \
                                        f"unknown {unknown}"
    for name, value in params.items():
        default = SPECS[name].default
        same_kind = isinstance(default, list) and isinstance(value, list)
        assert type(value) is type(default) or same_kind, name
