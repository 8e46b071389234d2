"""The mast3r-ros CLI: subcommand registry, map-from-rgbd -> localize -> eval, error exit codes."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from cli_helpers import json_lines as _json_lines

from mast3r_ros.cli import SUBCOMMANDS, build_parser, main

REPO = Path(__file__).resolve().parents[2]


def test_registry_and_module_entry() -> None:
    names = {a.dest for a in build_parser()._subparsers._group_actions}
    assert names == {"command"} and len(SUBCOMMANDS) >= 4
    out = subprocess.run([sys.executable, "-m", "mast3r_ros.cli", "--help"], cwd=REPO,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0
    for sub in ("map-from-rgbd", "localize", "eval", "match"):
        assert sub in out.stdout


def test_localize_prints_json(sift_map, data_dir, capsys) -> None:
    root = data_dir / "sevenscenes_redkitchen_rgbd"
    capsys.readouterr()
    rc = main(["localize", str(sift_map), str(root / "query" / "frame-000170.color.jpg"),
               "--intrinsics", str(root / "color-intrinsics.txt"), "--backend", "sift"])
    lines = _json_lines(capsys.readouterr().out)
    assert rc == 0 and len(lines) == 1
    r = lines[0]
    assert r["success"] and len(r["T_map_cam"]) == 4 and r["num_inliers"] >= 30
    assert r["keyframe_ids"][0] in (160, 240, 80)  # stride 4 -> keyframes every 80 frames


def test_localize_without_K_with_sift_fails_cleanly(sift_map, data_dir, capsys) -> None:
    root = data_dir / "sevenscenes_redkitchen_rgbd"
    rc = main(["localize", str(sift_map), str(root / "query" / "frame-000170.color.jpg"),
               "--backend", "sift"])
    r = _json_lines(capsys.readouterr().out)[0]
    assert rc == 1 and not r["success"] and "no intrinsics" in r["reason"]


def test_eval_absolute_writes_summary_and_plot(sift_map, data_dir, tmp_path, capsys) -> None:
    out = tmp_path / "ev"
    rc = main(["eval", "absolute", str(data_dir / "sevenscenes_redkitchen_rgbd"), "--map",
               str(sift_map), "--backend", "sift", "--every", "11", "--out", str(out)])
    s = _json_lines(capsys.readouterr().out)[-1]
    assert rc == 0 and s["num_queries"] == 3 and s["median_position_cm"] < 5.0
    assert (out / "positions.png").stat().st_size > 1000
    assert json.loads((out / "summary.json").read_text())["num_queries"] == 3
    assert len(json.loads((out / "per_item.json").read_text())) == 3
    assert "pose" in s["median_timings_ms"]


def test_eval_retrieval(sift_map, data_dir, capsys) -> None:
    rc = main(["eval", "retrieval", str(data_dir / "sevenscenes_redkitchen_rgbd"), "--map",
               str(sift_map), "--backend", "sift", "--every", "4"])
    s = _json_lines(capsys.readouterr().out)[-1]
    assert rc == 0 and s["recall@2"] >= 0.8 and s["recall@8"] == 1.0


def test_eval_relative_one_pair(data_dir, capsys) -> None:
    rc = main(["eval", "relative", str(data_dir / "strecha_mvs"), "--backend", "sift",
               "--limit", "1", "--max-size", "768"])
    s = _json_lines(capsys.readouterr().out)[-1]
    assert rc == 0 and s["num_pairs"] == 1 and s["num_estimated"] == 1
    assert s["median_rotation_deg"] < 1.0


def test_typed_errors_exit_2(tmp_path, capsys) -> None:
    assert main(["localize", str(tmp_path / "nomap"), str(tmp_path), "--backend", "sift"]) == 2
    assert main(["match", str(tmp_path / "a.png"), str(tmp_path / "b.png"),
                 "--checkpoint", str(tmp_path / "none.pth")]) == 2


def test_match_with_tiny_checkpoint(tiny_checkpoint, golden_dir, capsys) -> None:
    tiny = golden_dir / "tiny"
    rc = main(["match", str(tiny / "tiny_pair_view1.png"), str(tiny / "tiny_pair_view2.png"),
               "--checkpoint", str(tiny_checkpoint), "--device", "cpu", "--image-size", "64"])
    r = _json_lines(capsys.readouterr().out)[-1]
    assert rc == 0 and r["num_matches"] > 0 and r["device"] == "cpu"


def test_encode_map_stores_encodings_in_place(tmp_path, data_dir) -> None:
    """A map saved without encodings gets the backend's encodings stored (then loads encoded)."""
    from mast3r_ros.cli import main
    from mast3r_ros.core.map import build_map_from_rgbd, load_map, save_map

    path = tmp_path / "m"
    save_map(build_map_from_rgbd(data_dir / "sevenscenes_redkitchen_rgbd", max_frames=3), path)
    assert load_map(path).missing_encodings()
    assert main(["encode-map", str(path), "--backend", "sift"]) == 0
    kmap = load_map(path)
    assert not kmap.missing_encodings() and kmap.encoder.backend == "sift"
    assert main(["encode-map", str(tmp_path / "nothing")]) == 2
