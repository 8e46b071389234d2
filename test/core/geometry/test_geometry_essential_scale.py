"""Essential matrix + recoverPose, triangulation scale and focal from a pointmap (exact GT)."""

from __future__ import annotations

import numpy as np
import pytest

from mast3r_ros.core.evaluation import relative_pose_errors
from mast3r_ros.core.geometry.camera import project
from mast3r_ros.core.geometry.essential import estimate_relative_pose, triangulate_depths
from mast3r_ros.core.geometry.scale import estimate_focal, estimate_scale, intrinsics_from_focal
from mast3r_ros.core.geometry.se3 import make_pose, so3_exp, transform_points


def _pair(rng, n=300):
    K0 = np.array([[500.0, 0, 320.0], [0, 500.0, 240.0], [0, 0, 1]])
    K1 = np.array([[450.0, 0, 300.0], [0, 455.0, 250.0], [0, 0, 1]])
    T10 = make_pose(so3_exp(np.radians([3.0, -12.0, 4.0])), [0.6, 0.05, 0.1])
    X0 = np.stack([rng.uniform(-2, 2, n), rng.uniform(-1.5, 1.5, n), rng.uniform(3, 8, n)], 1)
    return K0, K1, T10, X0, project(X0, K0), project(transform_points(T10, X0), K1)


def test_relative_pose_noise_free(rng) -> None:
    K0, K1, T10, X0, x0, x1 = _pair(rng)
    res = estimate_relative_pose(x0, x1, K0, K1, threshold_px=0.5)
    assert res.success, res.reason
    er, et = relative_pose_errors(T10, res.R, res.t)
    assert er < 1e-6 and et < 1e-6
    assert np.dot(res.t, T10[:3, 3]) > 0  # sign fixed by cheirality, direction cam0 -> cam1


def test_relative_pose_noise_outliers(rng) -> None:
    K0, K1, T10, X0, x0, x1 = _pair(rng)
    x0 = x0 + rng.normal(0, 0.5, x0.shape)
    x1 = x1 + rng.normal(0, 0.5, x1.shape)
    x1[:90] = rng.uniform([0, 0], [640, 480], (90, 2))  # 30 % outliers
    res = estimate_relative_pose(x0, x1, K0, K1, threshold_px=1.0)
    er, et = relative_pose_errors(T10, res.R, res.t)
    assert er < 0.5 and et < 3.0
    assert res.inliers[:90].mean() < 0.1


def test_relative_pose_too_few(rng) -> None:
    K0, K1, _, _, x0, x1 = _pair(rng)
    assert not estimate_relative_pose(x0[:4], x1[:4], K0, K1).success
    assert "intrinsics" in estimate_relative_pose(x0, x1, np.zeros((3, 3)), K1).reason


def test_metric_scale_from_depths(rng) -> None:
    K0, K1, T10, X0, x0, x1 = _pair(rng)
    res = estimate_relative_pose(x0, x1, K0, K1, threshold_px=0.5)
    z_unit = triangulate_depths(x0, x1, K0, K1, res.T_1_0)
    s = estimate_scale(X0[:, 2], z_unit)
    assert s == pytest.approx(np.linalg.norm(T10[:3, 3]), rel=1e-6)
    noisy = X0[:, 2] * rng.lognormal(0, 0.05, X0.shape[0])
    noisy[:60] *= 3.0  # 20 % wrong depths
    assert estimate_scale(noisy, z_unit) == pytest.approx(np.linalg.norm(T10[:3, 3]), rel=0.05)
    assert np.isnan(estimate_scale(np.zeros(3), np.ones(3)))


def _pointmap(f, w=64, h=48, rng=None):
    K = intrinsics_from_focal(f, w, h)
    rows, cols = np.mgrid[0:h, 0:w]
    z = 2.0 + np.sin(cols / 7.0) + 0.3 * rows / h
    rays = np.stack([(cols - K[0, 2]) / f, (rows - K[1, 2]) / f, np.ones_like(z)], -1)
    return rays * z[..., None]


def test_focal_from_pointmap_exact_and_robust(rng) -> None:
    pts = _pointmap(57.3)
    centre = (31.5, 23.5)  # the 64 x 48 image centre, pixel-centre convention
    assert estimate_focal(pts, centre) == pytest.approx(57.3, rel=1e-6)
    noisy = pts * rng.lognormal(0, 0.002, pts.shape)
    flat = noisy.reshape(-1, 3)
    bad = rng.choice(flat.shape[0], flat.shape[0] // 5, replace=False)
    flat[bad, :2] *= 1.5  # 20 % outliers
    assert estimate_focal(noisy, centre) == pytest.approx(57.3, rel=0.02)
    mask = np.zeros(pts.shape[:2], dtype=bool)
    assert np.isnan(estimate_focal(pts, centre, mask=mask))
