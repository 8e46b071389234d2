"""Opt-in (``-m weights``): the MASt3R backend with the real checkpoint on the 7-Scenes sample."""

from __future__ import annotations

import os

import numpy as np
import pytest

from mast3r_ros.core.config import LocalizerConfig, ModelConfig
from mast3r_ros.core.evaluation import read_queries, summarize_absolute
from mast3r_ros.core.geometry.se3 import pose_errors
from mast3r_ros.core.localizer import Localizer
from mast3r_ros.core.map import build_map_from_rgbd, read_matrix, read_rgb
from mast3r_ros.core.types import Frame


@pytest.mark.weights
def test_mast3r_sevenscenes(data_dir) -> None:
    ckpt = os.environ.get("MAST3R_CHECKPOINT", "")
    assert ckpt, "set MAST3R_CHECKPOINT to the release checkpoint to run -m weights tests"
    root = data_dir / "sevenscenes_redkitchen_rgbd"
    cfg = LocalizerConfig(backend="mast3r", model=ModelConfig(checkpoint=ckpt))
    loc = Localizer(cfg, build_map_from_rgbd(root))
    K = read_matrix(root / "color-intrinsics.txt", (3, 3))
    perr, rerr = [], []
    for q in read_queries(root / "queries_with_gt.txt")[::3]:
        r = loc.localize(Frame(read_rgb(root / q.name), K))
        dp, dr = pose_errors(r.T_map_cam, q.T_world_cam) if r.success else (np.inf, np.inf)
        perr.append(dp)
        rerr.append(dr)
    s = summarize_absolute(perr, rerr)
    assert s["median_position_cm"] < 2.0 and s["recall_5cm_5deg"] >= 0.9, s
