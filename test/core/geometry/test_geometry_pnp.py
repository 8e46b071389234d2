"""PnP + RANSAC + refinement + covariance on synthetic scenes with exact GT."""

from __future__ import annotations

import numpy as np

from mast3r_ros.core.geometry.pnp import estimate_pose_pnp
from mast3r_ros.core.geometry.se3 import pose_errors


def test_noise_free_exact(scene) -> None:
    res = estimate_pose_pnp(scene.xy, scene.X_map, scene.K, min_inliers=30)
    assert res.success, res.reason
    dt, dr = pose_errors(res.T_map_cam, scene.T_map_cam)
    assert dt < 1e-6 and dr < 1e-6
    assert res.num_inliers == len(scene.xy)
    assert res.reprojection_error < 1e-4


def test_noise_and_outliers_within_bounds(scene, rng) -> None:
    xy = scene.xy + rng.normal(0, 1.0, scene.xy.shape)
    n_out = int(0.4 * len(xy))
    xy[:n_out] = rng.uniform([0, 0], [640, 480], (n_out, 2))  # 40 % gross outliers
    res = estimate_pose_pnp(xy, scene.X_map, scene.K, reproj_threshold=4.0)
    assert res.success, res.reason
    dt, dr = pose_errors(res.T_map_cam, scene.T_map_cam)
    assert dt < 0.03 and dr < 0.3          # 1 px noise, points 2-6 m away: ~cm accuracy
    assert res.inliers[n_out:].mean() > 0.9 and res.inliers[:n_out].mean() < 0.05
    assert 0.5 < res.reprojection_error < 2.0


def test_covariance_matches_monte_carlo(scene, rng) -> None:
    sigma = 1.0
    idx = np.arange(60)
    deltas, covs = [], []
    for _ in range(60):
        xy = scene.xy[idx] + rng.normal(0, sigma, (idx.size, 2))
        res = estimate_pose_pnp(xy, scene.X_map[idx], scene.K, reproj_threshold=10.0)
        assert res.success and res.covariance is not None
        covs.append(res.covariance)
        deltas.append(res.T_map_cam[:3, 3] - scene.T_map_cam[:3, 3])
    emp = np.cov(np.array(deltas).T)
    pred = np.mean(covs, axis=0)[:3, :3]
    ratio = np.trace(emp) / np.trace(pred)
    assert 0.5 < ratio < 2.0, ratio
    # full matrix (anisotropic: depth direction dominates), so a frame mix-up would show
    assert np.linalg.norm(emp - pred) / np.linalg.norm(pred) < 0.45
    assert np.all(np.linalg.eigvalsh(pred) > 0)


def test_covariance_rotation_block_in_map_frame(scene, rng) -> None:
    """The rotation block measures a left (map-frame) perturbation: check against Monte Carlo."""
    from mast3r_ros.core.geometry.se3 import so3_log

    rots, covs = [], []
    for _ in range(60):
        xy = scene.xy + rng.normal(0, 1.0, scene.xy.shape)
        res = estimate_pose_pnp(xy, scene.X_map, scene.K, reproj_threshold=10.0)
        covs.append(res.covariance)
        rots.append(so3_log(res.T_map_cam[:3, :3] @ scene.T_map_cam[:3, :3].T))
    emp = np.cov(np.array(rots).T)
    pred = np.mean(covs, axis=0)[3:, 3:]
    assert 0.5 < np.trace(emp) / np.trace(pred) < 2.0
    assert np.linalg.norm(emp - pred) / np.linalg.norm(pred) < 0.45


def test_fewer_than_four_points(scene) -> None:
    res = estimate_pose_pnp(scene.xy[:3], scene.X_map[:3], scene.K)
    assert not res.success and "fewer than 4" in res.reason


def test_collinear_points(scene) -> None:
    s = np.linspace(0, 1, 50)[:, None]
    X = scene.X_map[0] + s * (scene.X_map[1] - scene.X_map[0])
    from mast3r_ros.core.geometry.camera import project
    from mast3r_ros.core.geometry.se3 import invert_pose, transform_points

    xy = project(transform_points(invert_pose(scene.T_map_cam), X), scene.K)
    res = estimate_pose_pnp(xy, X, scene.K)
    assert not res.success and "collinear" in res.reason


def test_bad_intrinsics(scene) -> None:
    for K in (np.zeros((3, 3)), np.full((3, 3), np.nan), np.eye(2)):
        res = estimate_pose_pnp(scene.xy, scene.X_map, K)
        assert not res.success and "intrinsics" in res.reason


def test_gates(scene, rng) -> None:
    res = estimate_pose_pnp(scene.xy[:20], scene.X_map[:20], scene.K, min_inliers=30)
    assert not res.success and "too few inliers" in res.reason
    assert res.T_map_cam is not None  # the pose is still reported for diagnostics
    xy = scene.xy + rng.normal(0, 3.0, scene.xy.shape)
    res = estimate_pose_pnp(xy, scene.X_map, scene.K, reproj_threshold=20.0,
                            max_median_reproj_error=1.0)
    assert not res.success and "median reprojection error" in res.reason


def test_all_methods_agree(scene) -> None:
    for method in ("magsac", "ransac_sqpnp", "ransac_epnp"):
        res = estimate_pose_pnp(scene.xy, scene.X_map, scene.K, method=method)
        assert res.success, (method, res.reason)
        assert pose_errors(res.T_map_cam, scene.T_map_cam)[0] < 1e-6


def test_repeated_query_pixels_count_once_in_the_covariance(scene, rng) -> None:
    """The same pixel matched to k keyframes (k 3D points) is one measurement: listing every
    correspondence twice must not shrink the covariance (it would halve with naive J^T J)."""
    from mast3r_ros.core.geometry.covariance import pose_covariance

    xy = scene.xy[:80] + rng.normal(0, 1.0, (80, 2))
    X = scene.X_map[:80]
    once = pose_covariance(scene.T_map_cam, X, xy, scene.K)
    X2 = np.concatenate([X, X + rng.normal(0, 1e-3, X.shape)])  # second keyframe's 3D points
    twice = pose_covariance(scene.T_map_cam, X2, np.concatenate([xy, xy]), scene.K)
    assert once is not None and twice is not None
    assert np.allclose(np.diag(twice), np.diag(once), rtol=0.05)
