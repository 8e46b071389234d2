"""Building a map from the 7-Scenes RGB-D layout; depth registration to the colour camera."""

from __future__ import annotations

import numpy as np
import pytest

from mast3r_ros.core.errors import InputError
from mast3r_ros.core.geometry.camera import backproject
from mast3r_ros.core.map import build_map_from_rgbd, register_depth


def test_register_depth_preserves_3d_points() -> None:
    K_d = np.array([[585.0, 0, 320], [0, 585.0, 240], [0, 0, 1]])
    K_c = np.array([[525.0, 0, 320], [0, 525.0, 240], [0, 0, 1]])
    rows, cols = np.mgrid[0:480, 0:640]
    depth_d = (1.0 + 0.001 * cols + 0.002 * rows).astype(np.float32)
    reg = register_depth(depth_d, K_d, K_c, (480, 640))
    # colour pixel (400, 300) sees the depth pixel 320 + 80 * 585/525 (nearest)
    ud = 320 + (400 - 320) * 585 / 525
    vd = 240 + (300 - 240) * 585 / 525
    z = depth_d[int(round(vd)), int(round(ud))]
    assert reg[300, 400] == z
    X_c = backproject(np.array([[400.0, 300.0]]), np.array([z]), K_c)
    X_d = backproject(np.array([[ud, vd]]), np.array([z]), K_d)
    assert np.allclose(X_c, X_d)
    assert reg[0, 0] == 0.0  # outside the depth image's field of view -> invalid


def test_build_from_sevenscenes(data_dir) -> None:
    m = build_map_from_rgbd(data_dir / "sevenscenes_redkitchen_rgbd", stride=8)
    assert len(m) == 5 and m.ids[:2] == [0, 160]
    kf = list(m.keyframes())[1]
    assert kf.K[0, 0] == 525.0 and kf.depth.shape == (480, 640)
    assert kf.stamp == pytest.approx(160 / 30.0)
    valid = kf.depth[kf.depth > 0]
    assert valid.size > 0.5 * kf.depth.size and 0.3 < np.median(valid) < 5.0


def test_build_errors(tmp_path) -> None:
    with pytest.raises(InputError):
        build_map_from_rgbd(tmp_path)
