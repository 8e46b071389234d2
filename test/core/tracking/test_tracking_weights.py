"""Opt-in (``-m weights``): the tracker with the real MASt3R checkpoint on wide baselines, where
the SIFT baseline loses track (2 s and 2.67 s between frames)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from mast3r_ros.core.config import LocalizerConfig, ModelConfig, TrackingConfig
from mast3r_ros.core.tracking import Tracker
from mast3r_ros.core.tracking.sequence import plan_sequence, run_sequence, summarize_odometry


@pytest.mark.weights
@pytest.mark.parametrize("stride", [6, 8])
def test_mast3r_wide_baselines(data_dir: Path, stride: int) -> None:
    ckpt = os.environ.get("MAST3R_CHECKPOINT", "")
    assert ckpt, "set MAST3R_CHECKPOINT to the release checkpoint to run -m weights tests"
    root = data_dir / "sevenscenes_redkitchen_rgbd"
    tracker = Tracker(TrackingConfig(),
                      LocalizerConfig(backend="mast3r", model=ModelConfig(checkpoint=ckpt)))
    run = run_sequence(tracker, root, plan_sequence(root / "sequence", stride))
    s = summarize_odometry(run)
    assert s["lost"] == 0 and s["ate_cm"] <= 6.0, s
