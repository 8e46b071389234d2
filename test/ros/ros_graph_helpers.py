"""Helpers of the ROS graph tests: isolated rclpy contexts, a spinning executor, a probe node, the
demo data and TF publishing (fixtures live in conftest.py; this module has a unique name so that
test modules can import it whatever other conftest.py files the suite holds).

Every test gets its own ``rclpy.Context`` on its own ROS domain id, with the loopback-only Fast DDS
profile of ``config/`` (set before the first DDS participant exists), so tests never see each
other, other runs, or the network. Localizer nodes run the REAL core (SIFT backend on a real
7-Scenes map); the only stand-in is :class:`SlowLocalizer`, which delays the real core for the
threading tests.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import threading
import time
from pathlib import Path
from typing import Any, Callable, Iterator, Optional

import numpy as np

REPO = Path(__file__).resolve().parents[2]
os.environ.setdefault("FASTDDS_DEFAULT_PROFILES_FILE",
                      str(REPO / "config" / "fastdds_localhost.xml"))
os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")

import rclpy  # noqa: E402  (not importable: run tools/setup.sh)
from rclpy.executors import MultiThreadedExecutor  # noqa: E402
from rclpy.lifecycle import TransitionCallbackReturn  # noqa: E402
from rclpy.parameter import Parameter  # noqa: E402

from mast3r_ros.core.map import read_rgb  # noqa: E402
from mast3r_ros.ros.common.conversions import rgb_to_image, sec_to_stamp  # noqa: E402
from mast3r_ros.ros.common.transforms import xyzquat_to_matrix  # noqa: E402
from mast3r_ros.ros.localizer.node import LocalizerNode, _real_factory  # noqa: E402

SUCCESS = TransitionCallbackReturn.SUCCESS
DEMO = REPO / "demo_data" / "sevenscenes_redkitchen"
K_DEMO = np.array([[525.0, 0.0, 320.0], [0.0, 525.0, 240.0], [0.0, 0.0, 1.0]])
_COUNTER = itertools.count()


def camera_mount() -> np.ndarray:
    """A realistic, non-identity ``T_base_cam``: optical frame (z forward) on a base (x forward,
    z up), 20 cm forward, 5 cm left, 40 cm up, tilted 10 deg down."""
    T = xyzquat_to_matrix([0.2, 0.05, 0.4, -0.5, 0.5, -0.5, 0.5])
    tilt = xyzquat_to_matrix([0, 0, 0, np.sin(np.radians(5.0)), 0, 0, np.cos(np.radians(5.0))])
    return T @ tilt


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
        self.spin_error: Optional[BaseException] = None
        self._thread = threading.Thread(target=self._spin, daemon=True)
        self._thread.start()

    def _spin(self) -> None:
        try:
            self.executor.spin()
        except Exception as exc:  # noqa: BLE001 - recorded: a callback raised (tests check it)
            self.spin_error = exc

    @property
    def spinning(self) -> bool:
        """False once a callback exception has ended the executor (a node "process death")."""
        return self._thread.is_alive()

    def add(self, node: Any) -> Any:
        self.executor.add_node(node)
        return node

    def close(self) -> None:
        self.executor.shutdown(timeout_sec=2.0)
        for node in list(self.executor.get_nodes()):
            node.destroy_node()
        rclpy.try_shutdown(context=self.context)
        self._thread.join(timeout=5.0)


@contextlib.contextmanager
def standalone_node(name: str) -> Iterator[Any]:
    """A node in its own rclpy context, spun in a background thread (for tests that run beside
    processes started by launch, not in a RosGraph)."""
    from rclpy.executors import SingleThreadedExecutor

    context = rclpy.Context()
    rclpy.init(context=context)
    node = rclpy.create_node(name, context=context)
    executor = SingleThreadedExecutor(context=context)
    executor.add_node(node)
    threading.Thread(target=executor.spin, daemon=True).start()
    try:
        yield node
    finally:
        executor.shutdown()
        node.destroy_node()
        rclpy.try_shutdown(context=context)


def queries() -> list[tuple[Path, np.ndarray]]:
    """(image path, 4x4 T_world_cam) of every demo query, in file order."""
    rows = [ln.split() for ln in (DEMO / "queries_with_gt.txt").read_text().splitlines()
            if ln.strip() and not ln.startswith("#")]
    return [(DEMO / r[0], np.array([float(v) for v in r[5:21]]).reshape(4, 4)) for r in rows]


def query_gt(index: int = 0) -> tuple[Path, np.ndarray]:
    """Path and 4x4 T_world_cam of the ``index``-th demo query."""
    return queries()[index]


def query_image(index: int, stamp: float, frame_id: str = "camera_optical_frame") -> Any:
    """The ``index``-th demo query as a ``sensor_msgs/Image`` (rgb8, 640x480)."""
    return rgb_to_image(read_rgb(query_gt(index)[0]), sec_to_stamp(stamp), frame_id)


def noise_image(stamp: float, w: int = 640, h: int = 480, seed: int = 0) -> Any:
    """A random-noise image (valid input, never localizes)."""
    rgb = np.random.default_rng(seed).integers(0, 255, (h, w, 3), dtype=np.uint8)
    return rgb_to_image(rgb, sec_to_stamp(stamp), "camera_optical_frame")


class SlowLocalizer:
    """The REAL core Localizer with an artificial delay per frame, for the tests about the node's
    threading (backpressure, services while a frame runs). Not a stand-in for the pipeline."""

    def __init__(self, config: Any, map_path: str, delay: float) -> None:
        self.inner, self.delay = _real_factory(config, map_path), delay

    @property
    def map(self) -> Any:
        return self.inner.map

    @property
    def config(self) -> Any:
        return self.inner.config

    @config.setter
    def config(self, value: Any) -> None:
        self.inner.config = value

    @property
    def backend(self) -> Any:
        return self.inner.backend

    def set_map(self, kmap: Any) -> None:
        self.inner.set_map(kmap)

    def localize(self, frame: Any) -> Any:
        time.sleep(self.delay)
        return self.inner.localize(frame)


def make_node(graph: RosGraph, map_dir: Path, delay: float = 0.0, name: str = "localizer",
              map_loader: Any = None, **params: Any) -> LocalizerNode:
    """A LocalizerNode on the real SIFT core (``delay`` > 0: :class:`SlowLocalizer`)."""
    factory = None
    if delay:
        factory = lambda cfg, path: SlowLocalizer(cfg, path, delay)  # noqa: E731
    values = {"map_path": str(map_dir), "backend": "sift", **params}
    node = LocalizerNode(name, localizer_factory=factory, map_loader=map_loader,
                         context=graph.context,
                         parameter_overrides=[Parameter(k, value=v) for k, v in values.items()])
    return graph.add(node)


def active_node(graph: RosGraph, map_dir: Path, **kw: Any) -> tuple[LocalizerNode, "Probe"]:
    node = make_node(graph, map_dir, **kw)
    probe = Probe(graph)
    assert node.trigger_configure() == SUCCESS, node.counters.last_reason
    assert node.trigger_activate() == SUCCESS
    return node, probe


def send_and_wait(node: Any, probe: "Probe", msg: Any, info: Any = None, timeout: float = 20.0,
                  period: float = 1.0) -> Any:
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


class Probe:
    """A plain rclpy node that plays camera, TF source and listener around the node under test."""

    def __init__(self, graph: RosGraph, ns: str = "") -> None:
        from diagnostic_msgs.msg import DiagnosticArray
        from geometry_msgs.msg import PoseWithCovarianceStamped
        from rclpy.qos import (
            DurabilityPolicy,
            QoSProfile,
            ReliabilityPolicy,
            qos_profile_sensor_data,
        )
        from sensor_msgs.msg import CameraInfo, CompressedImage, Image, PointCloud2
        from tf2_msgs.msg import TFMessage
        from visualization_msgs.msg import MarkerArray

        from mast3r_ros.msg import LocalizationStatus
        from mast3r_ros.ros.common.tf_io import TF_QOS, TF_STATIC_QOS

        self.node = graph.add(rclpy.create_node("probe", context=graph.context))
        latched = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE,
                             durability=DurabilityPolicy.TRANSIENT_LOCAL)
        pre = f"{ns}/" if ns else ""
        self.image_pub = self.node.create_publisher(Image, f"{pre}image", qos_profile_sensor_data)
        self.compressed_pub = self.node.create_publisher(CompressedImage, f"{pre}image/compressed",
                                                         qos_profile_sensor_data)
        self.info_pub = self.node.create_publisher(CameraInfo, f"{pre}camera_info",
                                                   qos_profile_sensor_data)
        self.tf_pub = self.node.create_publisher(TFMessage, "/tf", TF_QOS)
        self.tf_static_pub = self.node.create_publisher(TFMessage, "/tf_static", TF_STATIC_QOS)
        self._static: list[Any] = []
        self.got: dict[str, list] = {k: [] for k in
                                     ("pose", "status", "inliers", "map_cloud", "keyframes",
                                      "diag", "tf")}
        for key, typ, topic, qos in [
                ("pose", PoseWithCovarianceStamped, f"{pre}pose", 10),
                ("status", LocalizationStatus, f"{pre}localization_status", 10),
                ("inliers", PointCloud2, f"{pre}inliers", 10),
                ("map_cloud", PointCloud2, f"{pre}map_cloud", latched),
                ("keyframes", MarkerArray, f"{pre}keyframes", latched),
                ("diag", DiagnosticArray, "/diagnostics", 10),
                ("tf", TFMessage, "/tf", TF_QOS)]:
            self.node.create_subscription(typ, topic, self._store(key), qos)

    def _store(self, key: str) -> Callable[[Any], None]:
        return lambda msg: self.got[key].append(msg)

    def camera_info(self, K: np.ndarray, width: int, height: int) -> Any:
        from sensor_msgs.msg import CameraInfo

        info = CameraInfo(width=width, height=height, distortion_model="plumb_bob")
        info.k = [float(v) for v in np.asarray(K).reshape(-1)]
        info.header.frame_id = "camera_optical_frame"
        return info

    def publish(self, msg: Any, info: Any = None) -> None:
        if info is not None:
            info.header.stamp = msg.header.stamp
            self.info_pub.publish(info)
        (self.compressed_pub if hasattr(msg, "format") else self.image_pub).publish(msg)

    def send_tf(self, parent: str, child: str, T: np.ndarray, stamp: float,
                static: bool = False) -> None:
        """Publish ``T_parent_child`` on /tf (or latched on /tf_static, accumulated)."""
        from tf2_msgs.msg import TFMessage

        from mast3r_ros.ros.common.outputs import transform_msg

        t = transform_msg(sec_to_stamp(stamp), parent, child, T)
        if static:
            self._static.append(t)
            self.tf_static_pub.publish(TFMessage(transforms=list(self._static)))
        else:
            self.tf_pub.publish(TFMessage(transforms=[t]))

    def call(self, srv_type: Any, name: str, request: Any, timeout: float = 10.0) -> Any:
        client = self.node.create_client(srv_type, name)
        try:
            assert client.wait_for_service(timeout_sec=timeout), f"service {name} not available"
            fut = client.call_async(request)
            assert wait_for(fut.done, timeout), f"service {name} did not answer in {timeout} s"
            return fut.result()
        finally:
            self.node.destroy_client(client)

    def statuses(self, pred: Callable[[Any], bool] = lambda s: True) -> list:
        return [s for s in list(self.got["status"]) if pred(s)]

    def tf_of(self, parent: str, child: str) -> list:
        """Every received /tf TransformStamped parent -> child, in arrival order."""
        return [t for m in list(self.got["tf"]) for t in m.transforms
                if t.header.frame_id == parent and t.child_frame_id == child]


class OdomStreamer:
    """Publishes ``parent -> child`` (default odom -> base_link) on /tf at ``rate`` Hz from a
    thread, stamped with the probe's clock, like a robot's odometry.

    Args:
        probe: publishes through its ``tf_pub``.
        pose: ``t (s) -> (4, 4) T_parent_child`` at that time.
    """

    def __init__(self, probe: Probe, pose: Callable[[float], np.ndarray], rate: float = 30.0,
                 parent: str = "odom", child: str = "base_link") -> None:
        self.probe, self.pose, self.period = probe, pose, 1.0 / rate
        self.parent, self.child = parent, child
        self.sent = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        from tf2_msgs.msg import TFMessage

        from mast3r_ros.ros.common.outputs import transform_msg

        clock = self.probe.node.get_clock()
        next_t = time.monotonic()
        while not self._stop.is_set():
            now = clock.now()
            t = transform_msg(now.to_msg(), self.parent, self.child,
                              self.pose(now.nanoseconds * 1e-9))
            self.probe.tf_pub.publish(TFMessage(transforms=[t]))
            self.sent += 1
            next_t += self.period
            self._stop.wait(max(0.0, next_t - time.monotonic()))

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=2.0)
