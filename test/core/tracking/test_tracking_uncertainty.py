"""Covariance conventions and propagation of the tracker, against sampling and the PnP solver."""

from __future__ import annotations

import numpy as np
import pytest

from mast3r_ros.core.config import TrackingConfig
from mast3r_ros.core.geometry.camera import project
from mast3r_ros.core.geometry.pnp import estimate_pose_pnp
from mast3r_ros.core.geometry.se3 import invert_pose, make_pose, random_rotation, so3_exp, so3_log
from mast3r_ros.core.tracking.uncertainty import (
    NoiseModel,
    adjoint,
    compose_covariance,
    information_of,
    right_to_world,
    world_to_right,
)


def _exp(xi: np.ndarray) -> np.ndarray:
    """First-order SE(3) exponential (small perturbations, (rho, phi) order)."""
    return make_pose(so3_exp(xi[3:]), xi[:3])


def _log(T: np.ndarray) -> np.ndarray:
    return np.concatenate([T[:3, 3], so3_log(T[:3, :3])])


def _random_pose(rng: np.random.Generator) -> np.ndarray:
    return make_pose(random_rotation(rng, 90.0), rng.normal(size=3))


def _random_cov(rng: np.random.Generator, scale: float = 1e-4) -> np.ndarray:
    A = rng.normal(size=(6, 6))
    return scale * (A @ A.T + 0.5 * np.eye(6))


def test_adjoint_moves_a_perturbation_across_a_pose(rng) -> None:
    T = _random_pose(rng)
    xi = 1e-6 * rng.normal(size=6)
    lhs = T @ _exp(xi) @ invert_pose(T)
    np.testing.assert_allclose(_log(lhs), adjoint(T) @ xi, atol=1e-11)
    assert np.abs(_log(lhs) - xi).max() > 1e-7  # the pose matters


def test_world_and_right_are_inverse_and_match_the_definitions(rng) -> None:
    T = _random_pose(rng)
    cov = _random_cov(rng)
    np.testing.assert_allclose(right_to_world(T, world_to_right(T, cov)), cov, atol=1e-15)
    xi = 1e-5 * rng.normal(size=6)  # right perturbation -> centre and rotation moves in the parent
    T2 = T @ _exp(xi)
    dp = T2[:3, 3] - T[:3, 3]
    dtheta = so3_log(T2[:3, :3] @ T[:3, :3].T)
    B = right_to_world(T, np.outer(xi, xi))
    np.testing.assert_allclose(B, np.outer(np.r_[dp, dtheta], np.r_[dp, dtheta]), atol=1e-14)


def test_compose_covariance_matches_sampling(rng) -> None:
    """cov of T_a_b exp(x) T_b_c exp(y) from 20k samples vs the first-order formula."""
    T_bc = _random_pose(rng)
    cb, cbc = _random_cov(rng, 1e-6), _random_cov(rng, 1e-6)
    n = 20000
    xs = rng.multivariate_normal(np.zeros(6), cb, n)
    ys = rng.multivariate_normal(np.zeros(6), cbc, n)
    errs = np.array([_log(invert_pose(T_bc) @ _exp(x) @ T_bc @ _exp(y)) for x, y in zip(xs, ys)])
    emp = errs.T @ errs / n
    pred = compose_covariance(T_bc, cb, cbc)
    assert np.abs(emp - pred).max() < 0.05 * np.abs(pred).max()


def test_information_is_spd_even_for_a_degenerate_covariance() -> None:
    cov = np.diag([1e-4, 1e-4, 0.0, 1e-6, 1e-6, 1e-6])
    info = information_of(cov)
    assert np.allclose(info, info.T) and np.linalg.eigvalsh(info).min() > 0
    np.testing.assert_allclose(info[0, 0], 1e4)


def test_noise_model_floor_grows_with_the_motion() -> None:
    nm = NoiseModel.from_config(TrackingConfig(motion_noise=0.1, position_noise=0.002,
                                               rotation_noise_deg=0.0))
    assert nm.scale == TrackingConfig().covariance_scale
    T = make_pose(so3_exp(np.radians([0, 10, 0])), [0.3, 0, 0.4])
    F = nm.floor(T)
    np.testing.assert_allclose(np.sqrt(np.diag(F)),
                               [0.052] * 3 + [0.1 * np.radians(10)] * 3, rtol=1e-9)
    np.testing.assert_allclose(np.sqrt(np.diag(nm.floor(np.eye(4)))), [0.002] * 3 + [0] * 3)


@pytest.mark.parametrize("noise_px", [0.5, 2.0])
def test_pnp_covariance_in_right_form_is_calibrated(rng, noise_px: float) -> None:
    """With independent Gaussian pixel noise, the right covariance of PnP predicts the spread of
    the right-perturbation errors of repeated solves (NEES mean ~ 6)."""
    K = np.array([[500.0, 0, 320], [0, 500, 240], [0, 0, 1]])
    T_map_cam = make_pose(random_rotation(rng, 20.0), [0.1, -0.2, 0.0])
    X_cam = np.c_[rng.uniform(-2, 2, (300, 2)), rng.uniform(2, 6, 300)]
    X_map = X_cam @ T_map_cam[:3, :3].T + T_map_cam[:3, 3]
    xy0 = project(X_cam, K)
    nees = []
    for _ in range(60):
        res = estimate_pose_pnp(xy0 + rng.normal(0, noise_px, xy0.shape), X_map, K,
                                reproj_threshold=10 * noise_px)
        assert res.success and res.covariance is not None
        e = _log(invert_pose(res.T_map_cam) @ T_map_cam)
        cov = world_to_right(res.T_map_cam, res.covariance)
        nees.append(e @ np.linalg.solve(cov, e))
    assert 4.5 < np.mean(nees) < 8.0
