"""Helpers of the ROS graph tests: isolated rclpy contexts, a spinning executor, a probe node and a
fake localizer (fixtures live in conftest.py; this module has a unique name so that test modules
can import it whatever other conftest.py files the suite holds).

Every test gets its own ``rclpy.Context`` on its own ROS domain id, with the loopback-only Fast DDS
profile of ``config/`` (set before the first DDS participant exists), so tests never see each
other, other runs, or the network.
"""

from __future__ import annotations

import itertools
import os
import threading
import time
from pathlib import Path
from typing import Any, Callable, Optional

import numpy as np

REPO = Path(__file__).resolve().parents[2]
os.environ.setdefault("FASTDDS_DEFAULT_PROFILES_FILE",
                      str(REPO / "config" / "fastdds_localhost.xml"))
os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")

import rclpy  # noqa: E402  (not importable: run tools/setup.sh)
from rclpy.executors import MultiThreadedExecutor  # noqa: E402

from rclpy.lifecycle import TransitionCallbackReturn  # noqa: E402
from rclpy.parameter import Parameter  # noqa: E402

from mast3r_ros.core.map import Keyframe, KeyframeMap, MapMeta  # noqa: E402
from mast3r_ros.core.types import Timings, Frame, LocalizationResult  # noqa: E402
from mast3r_ros.ros.conversions import rgb_to_image, sec_to_stamp  # noqa: E402
from mast3r_ros.ros.localizer_node import LocalizerNode  # noqa: E402

SUCCESS = TransitionCallbackReturn.SUCCESS

DEMO = REPO / "demo_data" / "sevenscenes_redkitchen"
_COUNTER = itertools.count()


def domain_id() -> int:
    """A ROS domain id unlikely to be used by a concurrent run (10..99)."""
    base = int(os.environ.get("ROS_DOMAIN_ID", os.getpid() % 90))
    return 10 + (base * 13 + next(_COUNTER)) % 90


def wait_for(pred: Callable[[], bool], timeout: float = 10.0, period: float = 0.02) -> bool:
    """Poll ``pred`` until true or timeout; returns its last value."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if pred():
            return True
        time.sleep(period)
    return bool(pred())


class RosGraph:
    """One rclpy context + a MultiThreadedExecutor spinning in a background thread."""

    def __init__(self) -> None:
        self.domain_id = domain_id()
        self.context = rclpy.Context()
        rclpy.init(context=self.context, domain_id=self.domain_id)
        self.executor = MultiThreadedExecutor(num_threads=4, context=self.context)
        self._thread = threading.Thread(target=self._spin, daemon=True)
        self._thread.start()

    def _spin(self) -> None:
        try:
            self.executor.spin()
        except Exception:  # noqa: BLE001 - shutdown races end the thread
            pass

    def add(self, node: Any) -> Any:
        self.executor.add_node(node)
        return node

    def close(self) -> None:
        self.executor.shutdown(timeout_sec=2.0)
        for node in list(self.executor.get_nodes()):
            node.destroy_node()
        rclpy.try_shutdown(context=self.context)
        self._thread.join(timeout=5.0)


def synthetic_map(n: int = 3) -> KeyframeMap:
    """A tiny map of flat-wall keyframes (depth 2 m) with known poses."""
    rng = np.random.default_rng(0)
    K = np.array([[100.0, 0, 31.5], [0, 100.0, 23.5], [0, 0, 1]])
    kfs = []
    for i in range(n):
        T = np.eye(4)
        T[0, 3] = 0.5 * i
        kfs.append(Keyframe(i, rng.integers(0, 255, (48, 64, 3), dtype=np.uint8), K, T,
                            float(i), np.full((48, 64), 2.0, np.float32)))
    return KeyframeMap(MapMeta(source="synthetic"), kfs)


class FakeBackend:
    name = "fake"


class FakeLocalizer:
    """Stands in for the core Localizer: fixed pose, optional delay, records the frames it saw."""

    def __init__(self, config: Any, map_path: str, delay: float = 0.0,
                 T_map_cam: Optional[np.ndarray] = None) -> None:
        self.config, self.map_path, self.delay = config, map_path, delay
        self.map = synthetic_map()
        self.backend = FakeBackend()
        self.frames: list[Frame] = []
        self.T = np.eye(4) if T_map_cam is None else T_map_cam
        self.fail_next = False

    def set_map(self, kmap: KeyframeMap) -> None:
        self.map = kmap

    def update_config(self, config: Any) -> None:
        self.config = config

    def localize(self, frame: Frame) -> LocalizationResult:
        t0 = time.perf_counter()
        self.frames.append(Frame(np.empty((frame.height, frame.width, 0), np.uint8), frame.K,
                                 frame.stamp, frame.frame_id, None, frame.T_map_cam_prior))
        if self.delay:
            time.sleep(self.delay)
        if self.fail_next:
            self.fail_next = False
            return LocalizationResult(False, "too few inliers (3 < 30)", num_matches=10,
                                      num_inliers=3, backend="fake")
        pts = np.random.default_rng(1).normal(size=(50, 3))
        return LocalizationResult(True, "ok", self.T.copy(), np.eye(6) * 1e-4, 200, 150, 0.7,
                                  pts, np.zeros((50, 2)), [0, 1], [0.9, 0.5],
                                  Timings(retrieval=0.001, matching=0.002, pose=0.001,
                                          total=time.perf_counter() - t0), "pnp", "fake")


def query_gt(index: int = 0) -> tuple[Path, np.ndarray]:
    """Path and 4x4 T_world_cam of the ``index``-th demo query."""
    lines = [ln.split() for ln in (DEMO / "queries_with_gt.txt").read_text().splitlines()
             if ln.strip() and not ln.startswith("#")]
    row = lines[index]
    return DEMO / row[0], np.array([float(v) for v in row[5:21]]).reshape(4, 4)


# ---- localizer node helpers

def make_node(graph: RosGraph, delay: float = 0.0, factory: Any = None, **params: Any) -> Any:
    """A LocalizerNode on a FakeLocalizer (unless ``factory``), parameters as overrides."""
    holder: dict[str, FakeLocalizer] = {}

    def fake_factory(cfg: Any, path: str) -> FakeLocalizer:
        holder["loc"] = FakeLocalizer(cfg, path, delay=delay, T_map_cam=T_fake())
        return holder["loc"]

    values = {"map_path": "/fake/map", "backend": "sift", **params}
    node = LocalizerNode(localizer_factory=factory or fake_factory, context=graph.context,
                         parameter_overrides=[Parameter(k, value=v) for k, v in values.items()])
    node.holder = holder
    return graph.add(node)


def T_fake() -> np.ndarray:
    T = np.eye(4)
    T[:3, 3] = [1.0, -2.0, 0.5]
    return T


def image(stamp: float, w: int = 640, h: int = 480, seed: int = 0) -> Any:
    rgb = np.random.default_rng(seed).integers(0, 255, (h, w, 3), dtype=np.uint8)
    return rgb_to_image(rgb, sec_to_stamp(stamp), "camera_optical")


K = np.array([[500.0, 0, 319.5], [0, 500.0, 239.5], [0, 0, 1]])


def active_node(graph: RosGraph, **kw: Any) -> tuple[Any, Probe]:
    node = make_node(graph, **kw)
    probe = Probe(graph)
    assert node.trigger_configure() == SUCCESS
    assert node.trigger_activate() == SUCCESS
    return node, probe


def send_and_wait(node: Any, probe: Probe, msg: Any, info: Any = None, timeout: float = 10.0,
                   period: float = 0.5) -> Any:
    """Publish until the node reports a status for this stamp (discovery can lose the first).

    ``info`` (CameraInfo) is delivered first: the node must hold exactly it before the image goes
    out, so the outcome never depends on which of the two topics arrives first.
    """
    stamp = msg.header.stamp
    key = (stamp.sec, stamp.nanosec)
    match = lambda s: (s.header.stamp.sec, s.header.stamp.nanosec) == key  # noqa: E731
    if info is not None:
        info.header.stamp = stamp
        held = lambda: (node._camera_info is not None  # noqa: E731
                        and np.array_equal(np.asarray(node._camera_info.k), np.asarray(info.k),
                                           equal_nan=True)
                        and node._camera_info.width == info.width)
        assert wait_for(lambda: (probe.info_pub.publish(info), held())[1], timeout, 0.05), \
            "camera_info never reached the node"
    for _ in range(max(1, int(timeout / period))):
        probe.publish(msg)
        if wait_for(lambda: probe.statuses(match), period):
            return probe.statuses(match)[-1]
    raise AssertionError(f"no status for stamp {stamp}; last: {probe.statuses()[-1:]}")


K_DEMO = np.array([[525.0, 0.0, 320.0], [0.0, 525.0, 240.0], [0.0, 0.0, 1.0]])


class Probe:
    """A plain rclpy node that plays camera and listener around the localizer under test."""

    def __init__(self, graph: RosGraph, ns: str = "") -> None:
        from diagnostic_msgs.msg import DiagnosticArray
        from geometry_msgs.msg import PoseWithCovarianceStamped
        from rclpy.qos import (DurabilityPolicy, QoSProfile, ReliabilityPolicy,
                               qos_profile_sensor_data)
        from sensor_msgs.msg import CameraInfo, CompressedImage, Image, PointCloud2
        from visualization_msgs.msg import MarkerArray

        from mast3r_ros.msg import LocalizationStatus

        self.node = graph.add(rclpy.create_node("probe", context=graph.context))
        latched = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE,
                             durability=DurabilityPolicy.TRANSIENT_LOCAL)
        pre = f"{ns}/" if ns else ""
        self.image_pub = self.node.create_publisher(Image, f"{pre}image", qos_profile_sensor_data)
        self.compressed_pub = self.node.create_publisher(CompressedImage, f"{pre}image/compressed",
                                                         qos_profile_sensor_data)
        self.info_pub = self.node.create_publisher(CameraInfo, f"{pre}camera_info",
                                                   qos_profile_sensor_data)
        self.got: dict[str, list] = {k: [] for k in
                                     ("pose", "status", "inliers", "map_cloud", "keyframes",
                                      "diag")}
        for key, typ, topic, qos in [
                ("pose", PoseWithCovarianceStamped, f"{pre}pose", 10),
                ("status", LocalizationStatus, f"{pre}localization_status", 10),
                ("inliers", PointCloud2, f"{pre}inliers", 10),
                ("map_cloud", PointCloud2, f"{pre}map_cloud", latched),
                ("keyframes", MarkerArray, f"{pre}keyframes", latched),
                ("diag", DiagnosticArray, "/diagnostics", 10)]:
            self.node.create_subscription(typ, topic, self._store(key), qos)

    def _store(self, key: str) -> Callable[[Any], None]:
        return lambda msg: self.got[key].append(msg)

    def camera_info(self, K: np.ndarray, width: int, height: int) -> Any:
        from sensor_msgs.msg import CameraInfo

        info = CameraInfo(width=width, height=height, distortion_model="plumb_bob")
        info.k = [float(v) for v in np.asarray(K).reshape(-1)]
        info.header.frame_id = "camera_optical"
        return info

    def publish(self, msg: Any, info: Any = None) -> None:
        if info is not None:
            info.header.stamp = msg.header.stamp
            self.info_pub.publish(info)
        (self.compressed_pub if hasattr(msg, "format") else self.image_pub).publish(msg)

    def call(self, srv_type: Any, name: str, request: Any, timeout: float = 10.0) -> Any:
        client = self.node.create_client(srv_type, name)
        try:
            assert client.wait_for_service(timeout_sec=timeout), f"service {name} not available"
            fut = client.call_async(request)
            assert wait_for(fut.done, timeout), f"service {name} did not answer"
            return fut.result()
        finally:
            self.node.destroy_client(client)

    def statuses(self, pred: Callable[[Any], bool] = lambda s: True) -> list:
        return [s for s in list(self.got["status"]) if pred(s)]
