"""Pixel convention, intrinsics checks, depth sampling and SE(3) helpers."""

from __future__ import annotations

import numpy as np
import pytest

from mast3r_ros.core.errors import IntrinsicsError
from mast3r_ros.core.geometry.camera import (backproject, depth_to_points, intrinsics_problem,
                                             project, sample_depth, scale_intrinsics,
                                             validate_intrinsics)
from mast3r_ros.core.geometry.se3 import (invert_pose, make_pose, pose_errors, random_rotation,
                                          so3_exp, so3_log, transform_points)


def test_scale_intrinsics_pixel_centre_convention() -> None:
    K = np.array([[500.0, 0, 319.5], [0, 500.0, 239.5], [0, 0, 1]])
    K2 = scale_intrinsics(K, 0.5, 0.5)
    # the image centre stays the image centre: (W-1)/2 of a 320-wide image is 159.5
    assert K2[0, 2] == pytest.approx(159.5) and K2[1, 2] == pytest.approx(119.5)
    assert K2[0, 0] == pytest.approx(250.0)
    X = np.array([[0.3, -0.2, 2.0]])
    x1, x2 = project(X, K)[0], project(X, K2)[0]
    assert np.allclose((x1 + 0.5) * 0.5 - 0.5, x2)


def test_project_backproject_roundtrip(rng) -> None:
    K = np.array([[400.0, 0.5, 300.0], [0, 410.0, 200.0], [0, 0, 1]])
    X = np.stack([rng.uniform(-1, 1, 20), rng.uniform(-1, 1, 20), rng.uniform(1, 5, 20)], 1)
    assert np.allclose(backproject(project(X, K), X[:, 2], K), X)


@pytest.mark.parametrize("K,fragment", [
    (None, "missing"), (np.zeros((3, 3)), "focal"), (np.full((3, 3), np.nan), "NaN"),
    (np.eye(2), "3x3"), (np.array([[1.0, 0, 0], [0, 1, 0], [1, 0, 1]]), "last row")])
def test_intrinsics_problems(K, fragment) -> None:
    assert fragment in intrinsics_problem(K)
    with pytest.raises(IntrinsicsError):
        validate_intrinsics(K)


def test_sample_depth_holes_edges_and_bounds() -> None:
    depth = np.full((10, 10), 2.0, dtype=np.float32)
    depth[2, 3] = 0.0
    depth[5, 5] = np.nan
    depth[:, 8:] = 5.0  # a depth edge between columns 7 and 8
    xy = np.array([[3, 2], [5, 5], [1, 1], [-1, 0], [10.6, 0], [7, 4], [4.4, 4.4]], dtype=float)
    d = sample_depth(depth, xy)
    assert np.isnan(d[:2]).all() and d[2] == 2.0 and np.isnan(d[3:5]).all()
    assert d[5] == 2.0 and d[6] == 2.0
    d_edge = sample_depth(depth, xy, max_rel_jump=0.05)
    assert np.isnan(d_edge[5]) and d_edge[2] == 2.0
    X, pix = depth_to_points(depth, np.array([[10.0, 0, 4.5], [0, 10.0, 4.5], [0, 0, 1]]))
    assert X.shape[0] == 98 and pix.shape == (98, 2) and np.all(X[:, 2] > 0)


def test_so3_exp_log_roundtrip(rng) -> None:
    for angle in (0.0, 1e-9, 0.3, 2.0, np.pi - 1e-6):
        axis = rng.normal(size=3)
        w = axis / np.linalg.norm(axis) * angle
        R = so3_exp(w)
        assert np.allclose(R @ R.T, np.eye(3), atol=1e-12)
        assert np.allclose(so3_log(R), w, atol=1e-6)


def test_pose_inverse_and_errors(rng) -> None:
    T = make_pose(random_rotation(rng), rng.normal(size=3))
    X = rng.normal(size=(5, 3))
    assert np.allclose(transform_points(invert_pose(T), transform_points(T, X)), X)
    T2 = T.copy()
    T2[:3, 3] += [0.03, 0.0, 0.04]
    T2[:3, :3] = so3_exp(np.radians([0, 0, 2.0])) @ T[:3, :3]
    dt, dr = pose_errors(T2, T)
    assert dt == pytest.approx(0.05) and dr == pytest.approx(2.0)
