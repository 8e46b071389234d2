"""CLI settings come from the config dataclasses (issue 10 §5): generated options, defaults that
cannot drift, old short flags as aliases, validation by the dataclasses."""

from __future__ import annotations

import ast
import dataclasses
import re
from pathlib import Path

import pytest

from mast3r_ros.cli import build_parser
from mast3r_ros.cli.build_map import BuildMapOptions
from mast3r_ros.cli.common import input_config, localizer_config
from mast3r_ros.cli.eval import EvalOptions
from mast3r_ros.cli.map_from_rgbd import RgbdImportOptions
from mast3r_ros.cli.options import config_from_args, iter_options
from mast3r_ros.core.config import InputConfig, LocalizerConfig, MappingConfig
from mast3r_ros.core.errors import ConfigError

CLI_DIR = Path(__file__).resolve().parents[2] / "mast3r_ros" / "cli"
MINIMAL = {
    "localize": ["localize", "m", "i.png"],
    "eval": ["eval", "absolute", "d"],
    "match": ["match", "a.png", "b.png"],
    "map-from-rgbd": ["map-from-rgbd", "d", "o"],
    "build-map": ["build-map", "s", "o"],
}


def _parse(*argv: str):
    return build_parser().parse_args(list(argv))


@pytest.mark.parametrize("cmd", sorted(MINIMAL))
def test_defaults_are_the_dataclass_defaults(cmd: str) -> None:
    """Without options, every config the command builds equals its dataclass default."""
    args = _parse(*MINIMAL[cmd])
    assert localizer_config(args) == LocalizerConfig()
    if cmd != "map-from-rgbd":
        assert input_config(args) == InputConfig()
    local = {"eval": EvalOptions, "map-from-rgbd": RgbdImportOptions,
             "build-map": BuildMapOptions}.get(cmd)
    if local is not None:
        assert config_from_args(local, args) == local()
    if cmd == "build-map":
        assert config_from_args(MappingConfig, args, prefix="mapping.") == MappingConfig()


def _options_of(cmd: str) -> dict[str, str]:
    """``{option string: help}`` of a subcommand's parser."""
    sub = build_parser()._subparsers._group_actions[0].choices[cmd]
    return {s: a.help or "" for a in sub._actions for s in a.option_strings}


@pytest.mark.parametrize("cmd, cls, prefix", [
    ("localize", LocalizerConfig, ""), ("eval", LocalizerConfig, ""),
    ("localize", InputConfig, "input."), ("build-map", MappingConfig, "mapping."),
    ("eval", EvalOptions, ""), ("map-from-rgbd", RgbdImportOptions, ""),
])
def test_every_field_is_an_option_with_its_default_in_the_help(cmd: str, cls: type,
                                                               prefix: str) -> None:
    opts = _options_of(cmd)
    for o in iter_options(cls, prefix):
        dashed = "--" + o.name.replace("_", "-")
        assert dashed in opts and "--" + o.name in opts, o.name
        assert f"default {o.default!r}" in opts[dashed], (o.name, opts[dashed])
        assert o.field.metadata["help"][:30] in opts[dashed]


def test_old_short_flags_are_aliases() -> None:
    old = _parse("localize", "m", "i.png", "--backend", "sift", "--checkpoint", "c.pth",
                 "--device", "cpu", "--precision", "bf16", "--image-size", "64", "--top-k", "7",
                 "--reproj-threshold", "3.5", "--min-inliers", "50", "--max-image-pixels", "1000")
    new = _parse("localize", "m", "i.png", "--backend", "sift", "--model.checkpoint", "c.pth",
                 "--model.device", "cpu", "--model.precision", "bf16", "--model.image_size", "64",
                 "--retrieval.top-k", "7", "--pose.ransac-reproj-threshold", "3.5",
                 "--pose.min_inliers", "50", "--input.max-image-pixels", "1000")
    cfg = localizer_config(old)
    assert cfg == localizer_config(new)
    assert (cfg.model.checkpoint, cfg.model.device, cfg.model.precision, cfg.model.image_size,
            cfg.retrieval.top_k, cfg.pose.ransac_reproj_threshold, cfg.pose.min_inliers) == \
        ("c.pth", "cpu", "bf16", 64, 7, 3.5, 50)
    assert input_config(old).max_image_pixels == 1000 == input_config(new).max_image_pixels


def test_build_map_aliases_and_shared_device() -> None:
    args = _parse("build-map", "s", "o", "--device", "cpu", "--scene-graph", "complete",
                  "--niter1", "10", "--niter2", "0", "--shared-intrinsics", "--cache-dir", "c",
                  "--stride", "2", "--max-images", "5", "--topic", "/cam")
    m = config_from_args(MappingConfig, args, prefix="mapping.")
    assert localizer_config(args).model.device == "cpu" == m.device  # one flag, both devices
    assert (m.scene_graph, m.niter1, m.niter2, m.shared_intrinsics, m.cache_dir) == \
        ("complete", 10, 0, True, "c")
    assert config_from_args(BuildMapOptions, args) == BuildMapOptions("/cam", 2, 5)
    off = _parse("build-map", "s", "o", "--mapping.no-opt-pp")
    assert config_from_args(MappingConfig, off, prefix="mapping.").opt_pp is False


@pytest.mark.parametrize("argv, match", [
    (["localize", "m", "i", "--pose.min-inliers", "2"], r"PoseConfig.min_inliers=2 is outside"),
    (["localize", "m", "i", "--backend", "orb"], r"backend='orb' is not one of"),
    (["localize", "m", "i", "--image-size", "100"], r"must be a multiple of 16"),
    (["localize", "m", "i", "--max-image-pixels", "10"], r"max_image_pixels=10 is outside"),
    (["map-from-rgbd", "d", "o", "--depth-scale", "0"], r"depth_scale=0.0 is outside"),
    (["map-from-rgbd", "d", "o", "--stride", "0"], r"stride=0 is outside"),
    (["eval", "absolute", "d", "--every", "0"], r"every=0 is outside"),
    (["build-map", "s", "o", "--mapping.niter1", "-1"], r"niter1=-1 is outside"),
])
def test_values_validated_by_the_dataclass(argv: list[str], match: str) -> None:
    args = _parse(*argv)
    builders = [localizer_config, input_config,
                lambda a: config_from_args(RgbdImportOptions, a),
                lambda a: config_from_args(EvalOptions, a),
                lambda a: config_from_args(MappingConfig, a, prefix="mapping.")]
    errors = []
    for build in builders:
        try:
            build(args)
        except ConfigError as exc:
            errors.append(str(exc))
    assert any(re.search(match, e) for e in errors), errors


@pytest.mark.parametrize("value", ["nan", "inf", "-inf", "1e999", "x"])
def test_non_finite_or_non_numbers_refused_on_the_command_line(value: str, capsys) -> None:
    with pytest.raises(SystemExit) as exc:
        _parse("map-from-rgbd", "d", "o", "--depth-scale", value)
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "--depth-scale" in err


def _add_argument_calls() -> list[tuple[str, ast.Call]]:
    calls = []
    for path in sorted(CLI_DIR.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                    and node.func.attr == "add_argument"):
                calls.append((path.name, node))
    return calls


def test_no_hand_written_defaults_or_choices_in_the_cli() -> None:
    """Defaults and choices live in the dataclasses; only the generator passes ``default=None``."""
    calls = _add_argument_calls()
    assert len(calls) > 5
    for name, call in calls:
        for kw in call.keywords:
            if kw.arg == "default":
                assert name == "options.py" and isinstance(kw.value, ast.Constant) \
                    and kw.value.value is None, (name, ast.unparse(call))
            if kw.arg == "choices":
                assert name == "eval.py" and "task" in ast.unparse(call), ast.unparse(call)


def test_config_dataclasses_of_the_cli_are_frozen_and_documented() -> None:
    for cls in (RgbdImportOptions, EvalOptions, BuildMapOptions):
        assert cls.__dataclass_params__.frozen  # type: ignore[attr-defined]
        for f in dataclasses.fields(cls):
            assert f.metadata.get("help"), (cls.__name__, f.name)
