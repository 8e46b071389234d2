"""``mast3r-ros eval odometry``: the JSON line, the files of --out, the frame ranges, bad input."""

from __future__ import annotations

import json

from cli_helpers import json_lines

from mast3r_ros.cli import main

KEYS = {"task", "frames", "lost", "keyframes", "ate_cm", "rpe_step_cm", "rpe_step_deg",
        "max_step_cm", "max_gt_step_cm", "nees_in_band", "max_err_cm", "median_ms_per_frame",
        "relocalized_within"}


def test_eval_odometry_json_and_outputs(data_dir, tmp_path, capsys) -> None:
    root = data_dir / "sevenscenes_redkitchen_rgbd"
    capsys.readouterr()
    rc = main(["eval", "odometry", str(root), "--backend", "sift", "--frames", "0:6,2:5",
               "--tracking.max-keyframes", "4", "--out", str(tmp_path)])
    out = capsys.readouterr().out
    assert rc == 0
    line = next(ln for ln in out.splitlines() if ln.startswith("{"))
    assert line.startswith('{"task": "odometry"')
    s = json_lines(out)[0]
    assert KEYS <= set(s) and s["frames"] == 9 and s["backend"] == "sift"
    assert s["lost"] == 0 and s["relocalized_within"] == 0 and s["ate_cm"] < 5
    assert json.loads((tmp_path / "summary.json").read_text())["frames"] == 9
    items = json.loads((tmp_path / "per_item.json").read_text())
    assert [i["frame"] for i in items] == [0, 10, 20, 30, 40, 50, 20, 30, 40]
    assert items[6]["jump"] and items[6]["state"] == "tracking"
    assert "jumps_tracked_as_motion" in s  # a 0.4 m jump in 0.33 s is a plausible motion
    for name in ("track", "odom", "groundtruth"):
        rows = (tmp_path / f"{name}.tum").read_text().split("\n")
        assert len([r for r in rows if r.strip()]) == 9 and len(rows[0].split()) == 8
    assert (tmp_path / "trajectory.png").stat().st_size > 1000


def test_eval_odometry_bad_ranges_and_data(data_dir, tmp_path, caplog) -> None:
    root = data_dir / "sevenscenes_redkitchen_rgbd"
    assert main(["eval", "odometry", str(root), "--backend", "sift", "--frames", "5:x"]) == 2
    assert main(["eval", "odometry", str(root), "--backend", "sift", "--frames", "70:80"]) == 2
    assert main(["eval", "odometry", str(tmp_path), "--backend", "sift"]) == 2
    err = caplog.text
    assert "START:END" in err and "selects no frame" in err and "sequence/" in err
