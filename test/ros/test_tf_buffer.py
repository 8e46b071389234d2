"""Unit tests of the frame maths: our tf2-semantics buffer and the covariance moved through the
camera extrinsic (pure numpy, no DDS)."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from mast3r_ros.core.geometry.se3 import invert_pose, so3_exp, so3_log
from mast3r_ros.ros.common.tf_buffer import TransformBuffer, TransformUnavailable
from mast3r_ros.ros.common.transforms import (
    covariance_to_base,
    interpolate_pose,
    matrix_to_xyzquat,
    xyzquat_to_matrix,
)

S = 1_000_000_000  # ns per second


def _random_T(rng: np.random.Generator) -> np.ndarray:
    return xyzquat_to_matrix([*rng.normal(size=3), *rng.normal(size=4)])


def _xyzq(T: np.ndarray) -> np.ndarray:
    return matrix_to_xyzquat(T)


@pytest.fixture()
def tree(rng: np.random.Generator) -> tuple[TransformBuffer, dict[str, np.ndarray]]:
    """map -> odom (dynamic, 1 Hz) -> base_link (dynamic, 10 Hz) -> camera (static), plus a
    static sibling base_link -> lidar."""
    buf = TransformBuffer(cache_time=10.0)
    truth = {"base_cam": _random_T(rng), "base_lidar": _random_T(rng)}
    buf.set_transform("base_link", "camera", 0, _xyzq(truth["base_cam"]), static=True)
    buf.set_transform("base_link", "lidar", 0, _xyzq(truth["base_lidar"]), static=True)
    for i in range(5):
        buf.set_transform("map", "odom", i * S, _xyzq(_random_T(rng)))
    for i in range(41):
        buf.set_transform("odom", "base_link", i * S // 10, _xyzq(_random_T(rng)))
    return buf, truth


def test_static_and_chain_through_common_ancestor(tree) -> None:
    buf, truth = tree
    T, stamp = buf.lookup("camera", "lidar")  # siblings: through base_link, all static
    np.testing.assert_allclose(T, invert_pose(truth["base_cam"]) @ truth["base_lidar"], atol=1e-9)
    assert stamp == 0  # an all-static chain is valid at any time (tf2: time 0)
    T_at, _ = buf.lookup("camera", "lidar", 123 * S)
    np.testing.assert_allclose(T_at, T, atol=1e-12)


def test_lookup_at_stamp_composes_interpolated_links(tree) -> None:
    buf, truth = tree
    t = int(2.25 * S)
    T_map_odom, _ = buf.lookup("map", "odom", t)
    T_odom_base, _ = buf.lookup("odom", "base_link", t)
    T, stamp = buf.lookup("map", "camera", t)
    assert stamp == t
    np.testing.assert_allclose(T, T_map_odom @ T_odom_base @ truth["base_cam"], atol=1e-9)
    T_inv, _ = buf.lookup("camera", "map", t)  # the other direction is the inverse
    np.testing.assert_allclose(T_inv @ T, np.eye(4), atol=1e-9)


def test_interpolation_is_lerp_and_slerp(rng: np.random.Generator) -> None:
    buf = TransformBuffer()
    a, b = _random_T(rng), _random_T(rng)
    buf.set_transform("odom", "base", 10 * S, _xyzq(a))
    buf.set_transform("odom", "base", 11 * S, _xyzq(b))
    T, _ = buf.lookup("odom", "base", int(10.3 * S))
    np.testing.assert_allclose(T[:3, 3], 0.7 * a[:3, 3] + 0.3 * b[:3, 3], atol=1e-12)
    # slerp: the rotation moves 30% of the way along the geodesic from a to b
    step = so3_log(b[:3, :3] @ a[:3, :3].T)
    np.testing.assert_allclose(T[:3, :3], so3_exp(0.3 * step) @ a[:3, :3], atol=1e-9)
    np.testing.assert_allclose(buf.lookup("odom", "base", 10 * S)[0], a, atol=1e-12)  # exact ends
    np.testing.assert_allclose(buf.lookup("odom", "base", 11 * S)[0], b, atol=1e-12)


def test_interpolate_pose_takes_the_short_arc() -> None:
    qa = Rotation.from_euler("z", 170, degrees=True).as_quat()
    qb = -Rotation.from_euler("z", -170, degrees=True).as_quat()  # same rotation, other sign
    mid = interpolate_pose(np.r_[0, 0, 0, qa], np.r_[2, 0, 0, qb], 0.5)
    assert mid[0] == pytest.approx(1.0)
    yaw = Rotation.from_quat(mid[3:]).as_euler("xyz", degrees=True)[2]
    assert abs(abs(yaw) - 180.0) < 1e-6  # through 180, not through 0


def test_latest_common_time_is_the_oldest_newest_link(tree) -> None:
    buf, _ = tree
    _, stamp = buf.lookup("map", "camera")  # map->odom newest 4 s, odom->base newest 4 s
    assert stamp == 4 * S
    buf.set_transform("odom", "base_link", int(4.1 * S), [0, 0, 0, 0, 0, 0, 1])
    assert buf.lookup("map", "camera")[1] == 4 * S  # still limited by map -> odom
    assert buf.lookup("odom", "camera")[1] == int(4.1 * S)  # a shorter chain is fresher
    assert buf.lookup("base_link", "base_link")[1] == int(4.1 * S)


def test_extrapolation_and_unknown_frames_raise(tree) -> None:
    buf, _ = tree
    with pytest.raises(TransformUnavailable, match="into the future"):
        buf.lookup("map", "camera", int(4.5 * S))
    with pytest.raises(TransformUnavailable, match="into the past"):
        buf.lookup("map", "camera", -1)
    with pytest.raises(TransformUnavailable, match="does not exist"):
        buf.lookup("map", "nowhere")
    buf.set_transform("world", "other", 0, [0, 0, 0, 0, 0, 0, 1], static=True)
    with pytest.raises(TransformUnavailable, match="not part of the same tree"):
        buf.lookup("map", "other")
    single = TransformBuffer()
    single.set_transform("a", "b", 5 * S, [1, 0, 0, 0, 0, 0, 1])
    assert single.lookup("a", "b", 5 * S)[1] == 5 * S  # one sample answers its own stamp only
    with pytest.raises(TransformUnavailable):
        single.lookup("a", "b", 6 * S)


def test_bounded_history_and_invalid_input() -> None:
    buf = TransformBuffer(cache_time=2.0)
    for i in range(100):
        assert buf.set_transform("odom", "base", i * S // 10, [i, 0, 0, 0, 0, 0, 1])
    with pytest.raises(TransformUnavailable, match="past"):
        buf.lookup("odom", "base", int(7.8 * S))  # more than 2 s behind the newest (9.9 s)
    assert buf.lookup("odom", "base", 8 * S)[0][0, 3] == pytest.approx(80.0)
    assert not buf.set_transform("odom", "base", 9 * S, [np.nan, 0, 0, 0, 0, 0, 1])
    assert not buf.set_transform("odom", "base", 9 * S, [0, 0, 0, 0, 0, 0, 0])
    assert not buf.set_transform("", "base", 9 * S, [0, 0, 0, 0, 0, 0, 1])
    assert not buf.set_transform("base", "base", 9 * S, [0, 0, 0, 0, 0, 0, 1])
    buf.set_transform("odom", "base", 2 * S, [5, 0, 0, 0, 0, 0, 1])  # older than kept: dropped
    assert buf.lookup("odom", "base", 8 * S)[0][0, 3] == pytest.approx(80.0)


def test_lookup_waits_for_data_up_to_the_timeout() -> None:
    buf = TransformBuffer()
    buf.set_transform("odom", "base", 1 * S, [0, 0, 0, 0, 0, 0, 1])
    late = threading.Timer(0.2, lambda: buf.set_transform("odom", "base", 2 * S,
                                                          [2, 0, 0, 0, 0, 0, 1]))
    late.start()
    T, stamp = buf.lookup("odom", "base", int(1.5 * S), timeout=5.0)
    late.join()
    assert stamp == int(1.5 * S) and T[0, 3] == pytest.approx(1.0)
    t0 = time.monotonic()
    with pytest.raises(TransformUnavailable):
        buf.lookup("odom", "base", 3 * S, timeout=0.1)
    assert time.monotonic() - t0 >= 0.1  # it did wait (the bound that matters is the raise)


# ---------------------------------------------------------------- covariance through the extrinsic
def _perturb(T: np.ndarray, d: np.ndarray) -> np.ndarray:
    """The ROS / core convention: position + d[:3] in the map, rotation Exp(d[3:]) about the
    map axes."""
    out = T.copy()
    out[:3, :3] = so3_exp(d[3:]) @ T[:3, :3]
    out[:3, 3] = T[:3, 3] + d[:3]
    return out


def _delta(T: np.ndarray, T0: np.ndarray) -> np.ndarray:
    return np.r_[T[:3, 3] - T0[:3, 3], so3_log(T[:3, :3] @ T0[:3, :3].T)]


def test_covariance_to_base_matches_monte_carlo(rng: np.random.Generator) -> None:
    T_map_cam, T_base_cam = _random_T(rng), _random_T(rng)
    T_base_cam[:3, 3] *= 0.5  # a lever arm of ~0.5-1 m
    A = rng.normal(size=(6, 6)) * np.r_[0.01, 0.01, 0.01, 0.005, 0.005, 0.005][:, None]
    cov_cam = A @ A.T + np.diag([1e-6] * 3 + [1e-7] * 3)
    cov_base = covariance_to_base(cov_cam, T_map_cam, T_base_cam)
    T_map_base = T_map_cam @ invert_pose(T_base_cam)
    samples = rng.multivariate_normal(np.zeros(6), cov_cam, size=40_000)
    deltas = np.array([_delta(_perturb(T_map_cam, d) @ invert_pose(T_base_cam), T_map_base)
                       for d in samples])
    empirical = np.cov(deltas.T)
    scale = np.sqrt(np.outer(np.diag(cov_base), np.diag(cov_base)))
    np.testing.assert_allclose(empirical / scale, cov_base / scale, atol=0.03)
    # the lever arm matters: the base covariance is not the camera's
    assert np.abs(cov_base[:3, :3] - cov_cam[:3, :3]).max() > 0.1 * np.abs(cov_cam[:3, :3]).max()


def test_covariance_to_base_jacobian_by_finite_differences(rng: np.random.Generator) -> None:
    T_map_cam, T_base_cam = _random_T(rng), _random_T(rng)
    T_map_base = T_map_cam @ invert_pose(T_base_cam)
    eps = 1e-6
    J = np.stack([(_delta(_perturb(T_map_cam, eps * e) @ invert_pose(T_base_cam), T_map_base)
                   - _delta(_perturb(T_map_cam, -eps * e) @ invert_pose(T_base_cam), T_map_base))
                  / (2 * eps) for e in np.eye(6)], axis=1)
    for i in range(6):  # the propagation of each unit direction is the Jacobian's column
        cov = np.zeros((6, 6))
        cov[i, i] = 1.0
        np.testing.assert_allclose(covariance_to_base(cov, T_map_cam, T_base_cam),
                                   np.outer(J[:, i], J[:, i]), atol=1e-6)
    identity_mount = covariance_to_base(np.eye(6), T_map_cam, np.eye(4))
    np.testing.assert_allclose(identity_mount, np.eye(6), atol=1e-12)
