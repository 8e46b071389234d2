"""Unit tests of the ROS <-> numpy conversions, parameter derivation and frame maths."""

from __future__ import annotations

import dataclasses

import cv2
import numpy as np
import pytest
from sensor_msgs.msg import CameraInfo, CompressedImage, Image
from std_msgs.msg import Header

from mast3r_ros.core.config import LocalizerConfig
from mast3r_ros.core.errors import ConfigError, ImageError, InputError, IntrinsicsError
from mast3r_ros.ros.common import conversions as cv
from mast3r_ros.ros.common.node_config import LocalizerNodeConfig
from mast3r_ros.ros.common.params import (
    config_from_values,
    config_to_values,
    descriptor_for,
    iter_param_specs,
)
from mast3r_ros.ros.common.transforms import (
    base_pose_from_camera,
    camera_prior_from_base,
    compute_map_to_odom,
    xyzquat_to_matrix,
)


def _img(arr: np.ndarray, encoding: str, pad: int = 0, bigendian: bool = False) -> Image:
    h, w = arr.shape[:2]
    rows = arr.reshape(h, -1).view(np.uint8).reshape(h, -1)
    data = np.concatenate([rows, np.full((h, pad), 7, np.uint8)], axis=1)
    return Image(height=h, width=w, encoding=encoding, is_bigendian=bigendian,
                 step=data.shape[1], data=data.tobytes())


@pytest.fixture()
def rgb(rng: np.random.Generator) -> np.ndarray:
    return rng.integers(0, 256, (5, 7, 3), dtype=np.uint8)


@pytest.mark.parametrize("pad", [0, 3])
def test_image_encodings_with_padding(rgb: np.ndarray, pad: int) -> None:
    np.testing.assert_array_equal(cv.image_to_rgb(_img(rgb, "rgb8", pad)), rgb)
    np.testing.assert_array_equal(cv.image_to_rgb(_img(rgb[..., ::-1].copy(), "bgr8", pad)), rgb)
    alpha = np.full(rgb.shape[:2] + (1,), 9, np.uint8)
    rgba = np.concatenate([rgb, alpha], axis=2)
    np.testing.assert_array_equal(cv.image_to_rgb(_img(rgba, "rgba8", pad)), rgb)
    bgra = np.concatenate([rgb[..., ::-1], alpha], axis=2)
    np.testing.assert_array_equal(cv.image_to_rgb(_img(bgra, "bgra8", pad)), rgb)
    gray = rgb[..., 0].copy()
    out = cv.image_to_rgb(_img(gray, "mono8", pad))
    assert out.shape == rgb.shape and np.all(out == gray[..., None])


def test_mono16_both_byte_orders(rng: np.random.Generator) -> None:
    g16 = rng.integers(0, 65536, (4, 6), dtype=np.uint16)
    little = cv.image_to_rgb(_img(g16.astype("<u2"), "mono16"))
    big = cv.image_to_rgb(_img(g16.astype(">u2"), "mono16", bigendian=True))
    np.testing.assert_array_equal(little[..., 0], (g16 >> 8).astype(np.uint8))
    np.testing.assert_array_equal(big, little)


def test_last_row_without_padding(rgb: np.ndarray) -> None:
    msg = _img(rgb, "rgb8", pad=5)
    msg.data = bytes(msg.data)[:-5]  # some drivers omit the last row's padding
    np.testing.assert_array_equal(cv.image_to_rgb(msg), rgb)


@pytest.mark.parametrize("mutate, expect", [
    (lambda m: setattr(m, "encoding", "yuv422"), "unsupported image encoding"),
    (lambda m: setattr(m, "step", 20), "step 20 <"),
    (lambda m: setattr(m, "data", bytes(m.data)[:30]), "truncated"),
    (lambda m: (setattr(m, "width", 0), setattr(m, "step", 0)), "zero size"),
    (lambda m: (setattr(m, "width", 9000), setattr(m, "height", 9000)), "exceeds the limit"),
])
def test_bad_images_raise_image_error(rgb: np.ndarray, mutate, expect: str) -> None:
    msg = _img(rgb, "rgb8")
    mutate(msg)
    with pytest.raises(ImageError, match=expect):
        cv.image_to_rgb(msg, max_pixels=4096 * 4096)


def test_d4_huge_step_rejected_before_any_allocation() -> None:
    """D4: height 1, step 2^32-1, 1920 bytes of data used to be padded to step*height (4 GB)."""
    import tracemalloc

    msg = Image(height=1, width=640, encoding="rgb8", step=2**32 - 1, data=bytes(1920))
    tracemalloc.start()
    try:
        with pytest.raises(ImageError, match="step 4294967295"):
            cv.image_to_rgb(msg)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 1_000_000, peak
    for step, n in ((2**31, 2**31 + 10), (1921, 1920 * 2)):  # two rows: step vs data size
        bad = Image(height=2, width=640, encoding="rgb8", step=step, data=bytes(min(n, 4000)))
        with pytest.raises(ImageError, match="step|truncated"):
            cv.image_to_rgb(bad)


def test_compressed_roundtrip_and_corrupt(rng: np.random.Generator) -> None:
    rgb = rng.integers(0, 256, (20, 30, 3), dtype=np.uint8)
    png = cv2.imencode(".png", rgb[..., ::-1])[1].tobytes()
    out = cv.compressed_to_rgb(CompressedImage(format="png", data=png))
    np.testing.assert_array_equal(out, rgb)
    with pytest.raises(ImageError, match="cannot decode"):
        cv.compressed_to_rgb(CompressedImage(format="png", data=png[:40]))
    with pytest.raises(ImageError, match="empty"):
        cv.compressed_to_rgb(CompressedImage(format="jpeg", data=b""))
    with pytest.raises(ImageError, match="exceeds"):
        cv.compressed_to_rgb(CompressedImage(format="png", data=png), max_pixels=100)


def test_rgb_to_image_roundtrip(rgb: np.ndarray) -> None:
    for enc in ("rgb8", "bgr8"):
        msg = cv.rgb_to_image(rgb, cv.sec_to_stamp(1.5), "cam", enc)
        assert msg.header.frame_id == "cam" and msg.step == rgb.shape[1] * 3
        np.testing.assert_array_equal(cv.image_to_rgb(msg), rgb)


def test_camera_info_K_and_rescale() -> None:
    info = CameraInfo(width=640, height=480)
    info.k = [525.0, 0, 319.5, 0, 525.0, 239.5, 0, 0, 1]
    K = cv.camera_info_to_K(info)
    K2 = cv.K_for_image(K, (640, 480), (320, 240))
    np.testing.assert_allclose(K2, [[262.5, 0, 159.5], [0, 262.5, 119.5], [0, 0, 1]])
    assert cv.K_for_image(K, (0, 0), (320, 240)) is K
    for bad in ([float("nan")] * 9, [0.0] * 9):
        info.k = bad
        with pytest.raises(IntrinsicsError):
            cv.camera_info_to_K(info)


def test_stamps_poses_clouds(rng: np.random.Generator) -> None:
    for t in (0.0, 1.25, 1e9 + 0.999999999):
        assert cv.stamp_to_sec(cv.sec_to_stamp(t)) == pytest.approx(t, abs=1e-9)
    T = xyzquat_to_matrix([1, 2, 3, 0.1, -0.2, 0.3, 0.9])
    np.testing.assert_allclose(cv.pose_to_matrix(cv.matrix_to_pose(T)), T, atol=1e-12)
    pts = rng.normal(size=(11, 3)).astype(np.float32)
    cloud = cv.points_to_cloud(pts, Header(frame_id="map"))
    np.testing.assert_array_equal(cv.cloud_to_points(cloud), pts)
    coloured = cv.points_to_cloud(pts, Header(frame_id="map"), np.full((11, 3), 200, np.uint8))
    assert coloured.point_step == 16 and [f.name for f in coloured.fields] == ["x", "y", "z", "rgb"]
    np.testing.assert_array_equal(cv.cloud_to_points(coloured), pts)
    assert len(cv.covariance_to_ros(None, (0.1, 0.2))) == 36


def test_map_to_odom_rep105(rng: np.random.Generator) -> None:
    T_map_base = xyzquat_to_matrix([*rng.normal(size=3), *rng.normal(size=4)])
    T_odom_base = xyzquat_to_matrix([*rng.normal(size=3), *rng.normal(size=4)])
    T_map_odom = compute_map_to_odom(T_map_base, T_odom_base)
    np.testing.assert_allclose(T_map_odom @ T_odom_base, T_map_base, atol=1e-12)
    T_base_cam = xyzquat_to_matrix([0.1, 0, 0.3, -0.5, 0.5, -0.5, 0.5])
    T_map_cam = T_map_base @ T_base_cam
    np.testing.assert_allclose(base_pose_from_camera(T_map_cam, T_base_cam), T_map_base, atol=1e-12)
    prior = camera_prior_from_base(T_map_base, T_base_cam)
    np.testing.assert_allclose(prior, T_map_cam, atol=1e-12)
    with pytest.raises(InputError):
        compute_map_to_odom(np.full((4, 4), np.nan), T_odom_base)
    with pytest.raises(InputError):
        xyzquat_to_matrix([0, 0, 0, 0, 0, 0, 0])


def test_parameters_derived_from_dataclasses() -> None:
    specs = {s.name: s for c in (LocalizerNodeConfig, LocalizerConfig) for s in iter_param_specs(c)}
    n_leaves = 1 + sum(len(dataclasses.fields(getattr(LocalizerConfig(), f.name)))
                       for f in dataclasses.fields(LocalizerConfig) if f.name != "backend")
    assert len(list(iter_param_specs(LocalizerConfig))) == n_leaves
    for name in ("backend", "model.checkpoint", "model.device", "matching.subsample",
                 "retrieval.top_k", "pose.min_inliers", "map_path", "map_frame", "base_T_camera"):
        assert name in specs
    d = descriptor_for(specs["pose.ransac_confidence"])
    assert d.floating_point_range[0].from_value == 0.5 and d.description
    assert descriptor_for(specs["model.device"]).read_only
    assert "fp16" in descriptor_for(specs["model.precision"]).additional_constraints
    values = config_to_values(LocalizerConfig())
    assert config_from_values(LocalizerConfig, values) == LocalizerConfig()
    values["retrieval.top_k"] = 9
    assert config_from_values(LocalizerConfig, values).retrieval.top_k == 9
    with pytest.raises(ConfigError):
        config_from_values(LocalizerConfig, {"pose.min_inliers": 1})
    with pytest.raises(ConfigError):
        config_from_values(LocalizerConfig, {"backend": "orb"})
    with pytest.raises(ConfigError):
        config_from_values(LocalizerNodeConfig, {"base_T_camera": [0.0, 1.0]})


@pytest.mark.parametrize("changes, expect", [
    ({"map_frame": ""}, "map_frame must not be empty"),
    ({"base_frame": "/base_link"}, "must not start with '/'"),
    ({"odom_frame": "odom frame"}, "whitespace"),
    ({"camera_frame": " "}, "whitespace"),
    ({"odom_topic": "bad topic"}, "not a valid topic name"),
    ({"odom_topic": "odom/"}, "not a valid topic name"),
    ({"base_T_camera": (0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0)}, "quaternion is zero"),
    ({"tf_publish_rate": 0.0}, "tf_publish_rate"),
])
def test_node_config_rejects_bad_frames_topics_and_values(changes: dict, expect: str) -> None:
    with pytest.raises(ConfigError, match=expect):
        LocalizerNodeConfig(**changes)


def test_node_config_accepts_valid_names() -> None:
    cfg = LocalizerNodeConfig(camera_frame="", odom_topic="/wheel/odom", map_frame="world")
    assert cfg.camera_frame == "" and cfg.map_frame == "world"
    assert LocalizerNodeConfig(odom_topic="~/odom").odom_topic == "~/odom"
