"""Graph tests of the mapper node in-process (real rclpy, real DDS, the tiny MASt3R checkpoint).

7-Scenes frames (downscaled to 160x120) + camera_info go in; keyframes are selected, the
``build_map`` service runs the sparse global alignment, ``save_map`` writes a map that the core
``load_map`` reads back with the localizer backend's compatibility check.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterator

import cv2
import numpy as np
import pytest
from nav_msgs.msg import Odometry
from nav_msgs.msg import Path as PathMsg
from rclpy.lifecycle import TransitionCallbackReturn
from rclpy.parameter import Parameter
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
from ros_graph_helpers import K_DEMO, Probe, RosGraph, camera_mount, wait_for
from sensor_msgs.msg import CompressedImage
from std_srvs.srv import Trigger

from mast3r_ros.core.config import LocalizerConfig, MatchingConfig
from mast3r_ros.core.geometry.camera import scale_intrinsics
from mast3r_ros.core.localizer import Localizer
from mast3r_ros.core.map import load_map
from mast3r_ros.core.types import Frame
from mast3r_ros.ros.common.conversions import (
    cloud_to_points,
    matrix_to_pose,
    pose_to_matrix,
    rgb_to_image,
    sec_to_stamp,
)
from mast3r_ros.ros.common.tf_io import TransformUnavailable
from mast3r_ros.ros.mapper.node import MapperNode
from mast3r_ros.srv import LoadMap

SUCCESS = TransitionCallbackReturn.SUCCESS
FAILURE = TransitionCallbackReturn.FAILURE


def _params(tiny_checkpoint: Path, **extra: Any) -> list[Parameter]:
    values = {"model.checkpoint": str(tiny_checkpoint), "model.image_size": 64,
              "model.device": "cpu", "mapping.device": "cpu", "mapping.scene_graph": "swin-1",
              "mapping.niter1": 30, "mapping.niter2": 10, "keyframes.min_features": 20, **extra}
    return [Parameter(k, value=v) for k, v in values.items()]


@pytest.fixture(scope="module")
def frames(data_dir: Path) -> list[np.ndarray]:
    files = sorted((data_dir / "sevenscenes_redkitchen_rgbd" / "map").glob("*.color.jpg"))
    assert len(files) >= 10, f"7-Scenes sample missing under {data_dir}"
    return [cv2.cvtColor(cv2.resize(cv2.imread(str(f)), (160, 120), interpolation=cv2.INTER_AREA),
                         cv2.COLOR_BGR2RGB) for f in files[:10]]


@pytest.fixture(scope="module")
def rig(tied_checkpoint: Path, tmp_path_factory: pytest.TempPathFactory
        ) -> Iterator[tuple[RosGraph, MapperNode, Probe]]:
    """The mapper with the tied tiny checkpoint (identical images match pixel for pixel, so a
    keyframe's own image must localize at its saved pose)."""
    graph = RosGraph()
    cache = str(tmp_path_factory.mktemp("mapper_pair_cache"))  # both builds share their pairs
    try:
        node = graph.add(MapperNode(context=graph.context, parameter_overrides=_params(
            tied_checkpoint, **{"mapping.cache_dir": cache})))
        probe = Probe(graph)
        latched = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE,
                             durability=DurabilityPolicy.TRANSIENT_LOCAL)
        probe.got["path"] = []
        probe.node.create_subscription(PathMsg, "keyframe_path", probe.got["path"].append, latched)
        probe.odom_pub = probe.node.create_publisher(Odometry, "odom", 50)
        assert node.trigger_configure() == SUCCESS, node.counters.last_reason
        assert node.trigger_activate() == SUCCESS
        yield graph, node, probe
    finally:
        graph.close()


def _send(node: MapperNode, probe: Probe, msg: Any, info: Any = None) -> None:
    """Publish until the node has handled one more frame (discovery can lose the first ones)."""
    c = node.counters
    before = c.processed + c.rejected + c.errors
    for _ in range(10):  # a generous period: a late first copy would be counted twice
        probe.publish(msg, info)
        if wait_for(lambda: c.processed + c.rejected + c.errors > before, 2.0):
            return
    raise AssertionError(f"frame not handled; last: {c.last_reason}")


def _reset(probe: Probe, node: MapperNode) -> None:
    assert wait_for(node.pairs_idle, 120.0)  # no pair of a previous test lands in the cache later
    assert probe.call(Trigger, "clear_keyframes", Trigger.Request()).success


def _cached(node: MapperNode) -> set[Path]:
    """The pair files of the node's pairwise cache."""
    return set(Path(node.cache_dir()).rglob("*.npz"))


def _img(rgb: np.ndarray, t: float) -> Any:
    return rgb_to_image(rgb, sec_to_stamp(t), "camera_optical", encoding="bgr8")


def test_configure_fails_cleanly(rig: Any, tiny_checkpoint: Path,
                                 monkeypatch: pytest.MonkeyPatch) -> None:
    graph, _, _ = rig
    monkeypatch.delenv("MAST3R_CHECKPOINT", raising=False)
    for i, (ckpt, expect) in enumerate([("/no/such/checkpoint.pth", "cannot load the MASt3R"),
                                        ("", "needs a checkpoint")]):
        node = graph.add(MapperNode(f"mapper_bad{i}", context=graph.context,
                                    parameter_overrides=_params(tiny_checkpoint,
                                                                **{"model.checkpoint": ckpt})))
        assert node.trigger_configure() == FAILURE
        assert node._state_machine.current_state[1] == "unconfigured"
        assert expect in node.counters.last_reason, node.counters.last_reason
        resp = node.build()
        assert resp[0] is False and "not configured" in resp[1]
        graph.executor.remove_node(node)  # its services share the names of the node under test
        node.destroy_node()


def test_bad_input_params_and_early_build(rig: Any, frames: list[np.ndarray]) -> None:
    _, node, probe = rig
    _reset(probe, node)
    info = probe.camera_info(K_DEMO, 640, 480)
    bad = _img(frames[0], 1.0)
    bad.encoding = "yuv422_weird"
    truncated = _img(frames[0], 1.1)
    truncated.data = bytes(truncated.data[:100])
    rejected = node.counters.rejected
    for msg in (bad, truncated):
        _send(node, probe, msg, info)
    assert node.counters.rejected == rejected + 2 and "truncated" in node.counters.last_reason
    corrupt = CompressedImage(format="jpeg", data=b"\xff\xd8 not a jpeg")
    corrupt.header.stamp = sec_to_stamp(1.15)
    _send(node, probe, corrupt, info)
    assert node.counters.rejected == rejected + 3 and "decode" in node.counters.last_reason
    jpeg = cv2.imencode(".jpg", frames[0][..., ::-1])[1].tobytes()
    good = CompressedImage(format="jpeg", data=jpeg)
    good.header.stamp = sec_to_stamp(1.2)
    _send(node, probe, good, info)  # the next good frame is served
    assert len(node.keyframes) == 1 and node.keyframes[0].K is not None
    assert node.keyframes[0].rgb.shape == (120, 160, 3)
    np.testing.assert_allclose(node.keyframes[0].K[0, 0], 525.0 / 4)  # camera_info rescaled
    resp = probe.call(Trigger, "build_map", Trigger.Request())
    assert not resp.success and "at least 2 keyframes" in resp.message
    save = probe.call(LoadMap, "save_map", LoadMap.Request(path="/tmp/never_written_map"))
    assert not save.success and "build_map first" in save.message
    bad_set = node.set_parameters([Parameter("keyframes.max_overlap", value=1.5)])[0]
    assert not bad_set.successful and "max_overlap" in bad_set.reason
    assert node.set_parameters([Parameter("keyframes.max_overlap", value=0.6)])[0].successful
    assert node.selector.config.max_overlap == 0.6
    assert node.set_parameters([Parameter("keyframes.max_overlap", value=0.5)])[0].successful
    assert node._state_machine.current_state[1] == "active"


def _odom_known(node: MapperNode, t: float) -> bool:
    try:
        node._tf.lookup("odom", "base_link", sec_to_stamp(t))
    except TransformUnavailable:
        return False
    return True


def test_odometry_topic_motion_selects_keyframes(rig: Any, frames: list[np.ndarray]) -> None:
    """Odometry from a nav_msgs/Odometry topic (parameter odom_topic, bound at run time) and no
    camera mounting on TF: the fallback parameter base_T_camera (identity) is used, and said."""
    _, node, probe = rig
    _reset(probe, node)
    assert node.set_parameters([Parameter("odom_topic", value="odom")])[0].successful
    try:
        stamps, xs = [500.0, 501.0, 502.0], [0.0, 0.03, 0.4]
        for t, x in zip(stamps, xs):
            T = np.eye(4)
            T[0, 3] = x
            odom = Odometry()
            odom.header.stamp = sec_to_stamp(t)
            odom.pose.pose = matrix_to_pose(T)
            sent = lambda o=odom, t=t: (probe.odom_pub.publish(o), _odom_known(node, t))[1]  # noqa: E731
            assert wait_for(sent, 5.0)
        info = probe.camera_info(K_DEMO, 640, 480)
        for t in stamps:  # the same view each time: only odometry motion can make keyframes
            _send(node, probe, _img(frames[1], t), info)
    finally:
        node.set_parameters([Parameter("odom_topic", value="")])
    assert node.last_decision is not None and node.last_decision.test == "motion"
    assert len(node.keyframes) == 2
    assert node.keyframes[1].T_world_cam[0, 3] == pytest.approx(0.4)
    assert "FALLBACK parameter base_T_camera" in node.odometry_note, node.odometry_note
    _reset(probe, node)
    assert not node.keyframes


def _gt_pose(data_dir: Path, index: int) -> np.ndarray:
    files = sorted((data_dir / "sevenscenes_redkitchen_rgbd" / "map").glob("*.pose.txt"))
    return np.loadtxt(files[index]).reshape(4, 4)


def test_build_with_odometry_poses_in_odom_frame(rig: Any, frames: list[np.ndarray],
                                                 data_dir: Path) -> None:
    """Odometry and the camera mounting from TF (odom -> base_link -> camera_optical)."""
    _, node, probe = rig
    _reset(probe, node)
    T_base_cam = camera_mount()
    probe.send_tf("base_link", "camera_optical", T_base_cam, 0.0, static=True)
    idx, stamps = [0, 4, 8], [600.0, 601.0, 602.0]
    gt = [_gt_pose(data_dir, i) for i in idx]
    cached_before = _cached(node)
    for t, T_odom_cam in zip(stamps, gt):
        probe.send_tf("odom", "base_link", T_odom_cam @ np.linalg.inv(T_base_cam), t)
    assert wait_for(lambda: _odom_known(node, 600.0) and _odom_known(node, 602.0), 5.0)
    info = probe.camera_info(K_DEMO, 640, 480)
    for t, i in zip(stamps, idx):
        _send(node, probe, _img(frames[i], t), info)
    assert len(node.keyframes) == 3, node.counters.last_reason
    # the background pairwise stage caches every pair of the scene graph (3 views: 3 pairs)
    assert wait_for(node.pairs_idle, 120.0)
    new = _cached(node) - cached_before
    assert len(new) == 3
    # 7-Scenes rotations are not exactly orthonormal: the quaternion round trip moves them
    np.testing.assert_allclose(node.keyframes[2].T_world_cam, gt[2], atol=2e-4)
    assert node.odometry_note == "odometry ok; camera extrinsic: tf (static)"
    ok, message = node.build()
    assert ok, message
    assert _cached(node) == cached_before | new  # the alignment needed no other pair
    poses = node.kmap.poses()  # similarity onto the odometry: first camera exact, same spread
    np.testing.assert_allclose(poses[0], gt[0], atol=2e-4)
    rms = lambda c: np.sqrt(np.mean(np.sum((c - c[0]) ** 2, axis=1)))  # noqa: E731
    gt_c = np.stack(gt)[:, :3, 3]
    assert rms(poses[:, :3, 3]) == pytest.approx(rms(gt_c), rel=1e-4)


def test_build_and_save_map(rig: Any, frames: list[np.ndarray], tmp_path: Path) -> None:
    _, node, probe = rig
    _reset(probe, node)
    info = probe.camera_info(K_DEMO, 640, 480)
    for k, idx in enumerate([0, 0, 4, 8]):  # the repeated view is no new keyframe
        _send(node, probe, _img(frames[idx], 10.0 + k), info)
    assert len(node.keyframes) == 3, node.counters.last_reason
    assert wait_for(node.pairs_idle, 120.0)  # background pairwise stage done
    before = _cached(node)
    resp = probe.call(Trigger, "build_map", Trigger.Request(), timeout=120.0)
    assert resp.success, resp.message
    assert _cached(node) == before  # every pair came from the cache
    assert wait_for(lambda: probe.got["path"] and probe.got["map_cloud"], 10.0)
    path = probe.got["path"][-1]
    assert path.header.frame_id == "map" and len(path.poses) == 3
    assert [p.header.stamp.sec for p in path.poses] == [10, 12, 13]
    cloud = cloud_to_points(probe.got["map_cloud"][-1])
    assert len(cloud) > 100 and np.all(np.isfinite(cloud))
    out = tmp_path / "mapper_map"
    save = probe.call(LoadMap, "save_map", LoadMap.Request(path=str(out)))
    assert save.success and save.num_keyframes == 3, save.message
    kmap = load_map(out)
    assert len(kmap) == 3 and kmap.encoder == node._backend.encoder_id
    assert kmap.encoder.image_size == 64 and kmap.meta.frame_id == "map"
    poses = kmap.poses()
    assert np.all(np.isfinite(poses))
    for T, p in zip(poses, path.poses):
        np.testing.assert_allclose(pose_to_matrix(p.pose), T, atol=1e-5)
    assert all(kf.has_3d for kf in kmap.keyframes())
    assert [kf.stamp for kf in kmap.keyframes()] == [10.0, 12.0, 13.0]
    # the localizer loads it with its stored encodings, and they belong to the stored images: the
    # second keyframe's own camera image (frame 4) matches it pixel for pixel (tied network)
    loc = Localizer.from_paths(LocalizerConfig(backend="mast3r", model=node.model_cfg), str(out))
    assert len(loc.map) == 3 and not loc.map.missing_encodings()
    kf = loc.map.keyframe(loc.map.ids[1])
    sx = frames[4].shape[1] / kf.width
    dense = MatchingConfig(subsample=2, desc_conf_threshold=0.0)
    pair = loc.backend.match(loc.backend.encode(frames[4]), [loc.map.keyframe_encoding(kf.id)],
                             dense).pairs[0]
    assert len(pair) > 0.9 * (kf.width // 2) * (kf.height // 2)  # every seed of the 2-px grid
    np.testing.assert_allclose(pair.xy_query, (pair.xy_ref + 0.5) * sx - 0.5, atol=1e-6)
    K_q = scale_intrinsics(kf.K, sx, frames[4].shape[0] / kf.height)
    result = loc.localize(Frame(rgb=frames[4], K=K_q, stamp=20.0))
    assert result.backend == "mast3r" and result.timings.decode > 0 and result.reason
    diag = [d for d in probe.got["diag"] if d.status[0].name.endswith("mapping")]
    assert diag and {kv.key for kv in diag[-1].status[0].values} >= {"keyframes", "builds"}
