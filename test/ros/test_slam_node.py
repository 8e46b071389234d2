"""The mapper in SLAM mode across processes: the real odometry node (SIFT, real 7-Scenes RGB-D
frames) and the real SLAM node started as ``slam.launch.py`` starts them (same namespace, the
mapper reading ``odometry/keyframes`` and ``odometry/graph``), driven and observed by a probe in
the test process. One pair of processes serves the whole module (tests run in file order: the
stream first, then bad input on top of it, then saving)."""

from __future__ import annotations

import copy
import subprocess
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import pytest
from nav_msgs.msg import Odometry
from nav_msgs.msg import Path as PathMsg
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
from ros_graph_helpers import Probe, RosGraph, camera_mount, make_node, wait_for
from sensor_msgs.msg import Image, PointCloud2
from std_srvs.srv import Trigger
from visualization_msgs.msg import MarkerArray

from mast3r_ros.core.geometry.se3 import invert_pose
from mast3r_ros.core.map import load_map
from mast3r_ros.core.map.rgbd import list_rgbd_frames, read_rgbd_frame, rgbd_intrinsics
from mast3r_ros.msg import GraphEdge, Keyframe, SlamStatus
from mast3r_ros.ros.common.conversions import pose_to_matrix, rgb_to_image, sec_to_stamp
from mast3r_ros.ros.common.frame_node import KEYFRAME_STREAM_QOS, LATCHED_QOS
from mast3r_ros.ros.common.graph_procs import ros_env, start_node, stop_process
from mast3r_ros.ros.common.transforms import xyzquat_to_matrix
from mast3r_ros.srv import LoadMap

NS = "/s"
FRAMES = [*range(0, 31, 3), *range(31, 0, -3)]  # out and back: the way back closes loops
_RELIABLE = QoSProfile(depth=200, reliability=ReliabilityPolicy.RELIABLE)
_LATCHED_ALL = QoSProfile(depth=200, reliability=ReliabilityPolicy.RELIABLE,
                          durability=DurabilityPolicy.TRANSIENT_LOCAL)


def _sec(stamp: Any) -> float:
    return round(stamp.sec + stamp.nanosec * 1e-9, 6)


def _transform_matrix(t: Any) -> np.ndarray:
    return xyzquat_to_matrix([t.translation.x, t.translation.y, t.translation.z, t.rotation.x,
                              t.rotation.y, t.rotation.z, t.rotation.w])


class SlamProbe(Probe):
    """Camera, TF and listener of the odometry + SLAM pair; also a keyframe publisher."""

    def __init__(self, graph: RosGraph) -> None:
        super().__init__(graph, ns=NS)
        self.depth_pub = self.node.create_publisher(Image, f"{NS}/depth", qos_profile_sensor_data)
        self.kf_pub = self.node.create_publisher(Keyframe, f"{NS}/odometry/keyframes",
                                                 KEYFRAME_STREAM_QOS)
        for key, typ, topic, qos in [
                ("odom", Odometry, f"{NS}/odom", _RELIABLE),
                ("kf", Keyframe, f"{NS}/odometry/keyframes", _RELIABLE),
                ("slam", SlamStatus, f"{NS}/mapper/status", _LATCHED_ALL),
                ("opath", PathMsg, f"{NS}/mapper/optimized_path", _RELIABLE),
                ("cloud", PointCloud2, f"{NS}/mapper/map_cloud", LATCHED_QOS),
                ("kfm", MarkerArray, f"{NS}/mapper/keyframe_markers", LATCHED_QOS),
                ("loopm", MarkerArray, f"{NS}/mapper/loop_markers", LATCHED_QOS)]:
            self.got[key] = []
            self.node.create_subscription(typ, topic, self._store(key), qos)

    def frame(self, rgb: np.ndarray, depth: np.ndarray, K: np.ndarray, stamp: float) -> bool:
        """Publish one RGB-D frame until the odometry node answers on ``odom``."""
        def seen() -> bool:
            return any(_sec(m.header.stamp) == round(stamp, 6) for m in self.got["odom"])
        mm = np.round(depth * 1000).astype(np.uint16)
        d = Image(height=mm.shape[0], width=mm.shape[1], encoding="16UC1", step=2 * mm.shape[1],
                  data=mm.tobytes())
        d.header.stamp, d.header.frame_id = sec_to_stamp(stamp), "camera_optical"
        for _ in range(30):
            self.depth_pub.publish(d)
            self.publish(rgb_to_image(rgb, sec_to_stamp(stamp), "camera_optical"),
                         self.camera_info(K, rgb.shape[1], rgb.shape[0]))
            if wait_for(seen, 1.0):
                return True
        return False

    def last_slam(self) -> SlamStatus:
        assert self.got["slam"], "no ~/status from the mapper"
        return self.got["slam"][-1]

    def send_keyframe(self, msg: Keyframe, timeout: float = 60.0) -> SlamStatus:
        """Publish a keyframe message (reliable, discovered long before); the mapper's status
        once it handled it."""
        n = len(self.got["slam"])
        self.kf_pub.publish(msg)
        assert wait_for(lambda: len(self.got["slam"]) > n, timeout), "the mapper did not answer"
        return self.got["slam"][n]


@pytest.fixture(scope="module")
def frames(data_dir: Path) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    root = data_dir / "sevenscenes_redkitchen_rgbd"
    K, K_depth = rgbd_intrinsics(root)
    files = list_rgbd_frames(root / "sequence")
    return [read_rgbd_frame(files[i][1], K, K_depth)[:2] + (K,) for i in FRAMES]


@pytest.fixture(scope="module")
def slam(tmp_path_factory: pytest.TempPathFactory, frames: list) -> Iterator[tuple[SlamProbe,
                                                                                   Any, Path]]:
    """The probe, the SLAM node's process, a temp dir; the stream of ``FRAMES`` already played."""
    tmp = tmp_path_factory.mktemp("slam")
    g = RosGraph()
    probe = SlamProbe(g)
    probe.send_tf("base_link", "camera_optical", camera_mount(), 0.0, static=True)
    env = ros_env(g.domain_id)
    logs = {n: open(tmp / f"{n}.log", "w") for n in ("odometry", "slam")}
    procs = {
        "slam": start_node("slam", {"backend": "sift", "autostart": True, "store_every": 3,
                                    "cloud_every": 1}, env, logs["slam"], namespace=NS,
                           remaps=[("keyframes", "odometry/keyframes"),
                                   ("graph", "odometry/graph")]),
        "odometry": start_node("odometry", {"backend": "sift", "autostart": True,
                                            "tracking.keyframe.max_translation": 0.1},
                               env, logs["odometry"], namespace=NS)}
    try:
        assert wait_for(lambda: bool(probe.got["slam"]), 60.0), \
            (tmp / "slam.log").read_text()[-3000:]
        for i, (rgb, depth, K) in enumerate(frames):
            assert probe.frame(rgb, depth, K, 100.0 + i / 3), \
                (tmp / "odometry.log").read_text()[-3000:]
        n_kf = lambda: len({m.id for m in probe.got["kf"]})  # noqa: E731
        assert wait_for(lambda: probe.last_slam().nodes == n_kf(), 60.0), \
            (probe.last_slam().reason, (tmp / "slam.log").read_text()[-3000:])
        yield probe, procs["slam"], tmp
    finally:
        codes = {n: stop_process(p) for n, p in procs.items()}
        g.close()
        for f in logs.values():
            f.close()
        assert codes == {"slam": 0, "odometry": 0}, (tmp / "slam.log").read_text()[-3000:]


def test_map_to_odom_rep105_at_keyframe_stamps_and_republished(slam) -> None:
    probe, proc, _ = slam
    kfs = {m.id: m for m in probe.got["kf"]}
    stamps = {i: _sec(m.header.stamp) for i, m in kfs.items()}
    assert len(kfs) >= 3 and probe.last_slam().edges >= len(kfs) - 1
    odom = {_sec(m.header.stamp): pose_to_matrix(m.pose.pose) for m in probe.got["odom"]}
    paths = {_sec(p.header.stamp): p for p in probe.got["opath"]}
    checked = 0
    for s in probe.got["slam"]:  # map -> odom of keyframe k, with the path of the same moment
        k = s.map_to_odom_keyframe
        if k < 0 or stamps.get(k) not in paths:
            continue
        t = stamps[k]
        path = paths[t]
        assert path.header.frame_id == "map"
        T_map_base = {_sec(p.header.stamp): pose_to_matrix(p.pose) for p in path.poses}[t]
        T = _transform_matrix(s.map_to_odom) @ odom[t]  # map -> odom -> base
        assert np.abs(T[:3, 3] - T_map_base[:3, 3]).max() < 1e-3
        assert np.abs(T[:3, :3] - T_map_base[:3, :3]).max() < 1e-3
        checked += 1
    assert checked >= len(kfs)  # every keyframe (paths that share a stamp all agree)
    last_status = probe.last_slam()
    assert last_status.loops_accepted >= 1  # the way back closed loops: map -> odom moved
    assert np.linalg.norm(_transform_matrix(last_status.map_to_odom)[:3, 3]) > 0.005
    # the latest keyframe, through what nav2 sees: the republished /tf map -> odom
    last = max(kfs)
    final = probe.got["opath"][-1]
    T_map_base = {_sec(p.header.stamp): pose_to_matrix(p.pose) for p in final.poses}[stamps[last]]
    assert len(final.poses) == len(kfs)
    n0 = len(probe.tf_of("map", "odom"))
    assert wait_for(lambda: len(probe.tf_of("map", "odom")) >= n0 + 5, 10.0)  # republished
    tfs = probe.tf_of("map", "odom")[-5:]
    assert len({_sec(t.header.stamp) for t in tfs}) == 5  # fresh stamps, not one replayed
    T = _transform_matrix(tfs[-1].transform) @ odom[stamps[last]]
    assert np.abs(T[:3, 3] - T_map_base[:3, 3]).max() < 1e-3
    # the other outputs: latched cloud, markers, a live process
    assert wait_for(lambda: probe.got["cloud"] and probe.got["kfm"] and probe.got["loopm"], 10.0)
    cloud = probe.got["cloud"][-1]
    assert cloud.header.frame_id == "map" and 0 < cloud.width <= 50_000
    assert len([m for m in probe.got["kfm"][-1].markers if m.ns == "keyframes"]) == len(kfs)
    loops = [m for m in probe.got["loopm"][-1].markers if m.ns == "loops"]
    assert loops and len(loops[0].points) == 2 * last_status.loops_accepted
    assert probe.last_slam().keyframes_in_memory < len(kfs)  # store_every=3: the rest on disk
    assert proc.poll() is None


def _keyframe(template: Keyframe, kid: int, stamp: float, edges: list[GraphEdge]) -> Keyframe:
    msg = copy.deepcopy(template)
    msg.id, msg.header.stamp, msg.edges = kid, sec_to_stamp(stamp), edges
    return msg


def _edge(a: int, b: int, stamp: float, info: np.ndarray, kind: str = "odometry") -> GraphEdge:
    e = GraphEdge(from_id=a, to_id=b, type=kind, information=[float(v) for v in info.ravel()],
                  stamp=sec_to_stamp(stamp))
    e.transform.orientation.w = 1.0
    return e


def test_bad_input_is_refused_and_nothing_is_lost(slam) -> None:
    probe, proc, _ = slam
    kfs = {m.id: m for m in probe.got["kf"]}
    n, template = max(kfs), kfs[max(kfs)]
    t = _sec(template.header.stamp)
    good = np.eye(6) * 1e4
    before = probe.last_slam()
    odometry_edges = lambda s: s.edges - s.loops_accepted  # noqa: E731

    nan = good.copy()
    nan[2, 2] = np.nan
    s = probe.send_keyframe(_keyframe(template, n + 1, t + 1, [
        _edge(n, n + 1, t + 1, good), _edge(n - 1, n + 1, t + 1, nan)]))
    assert s.state == "rejected" and "information must be a finite" in s.reason, s.reason
    assert s.nodes == before.nodes + 1 and odometry_edges(s) == odometry_edges(before) + 1

    s = probe.send_keyframe(_keyframe(template, n + 2, t + 2, [
        _edge(n + 1, n + 2, t + 2, good), _edge(n, n + 2, t + 2, -good)]))
    assert s.state == "rejected" and "not positive definite" in s.reason, s.reason
    assert s.nodes == before.nodes + 2 and odometry_edges(s) == odometry_edges(before) + 2

    s = probe.send_keyframe(_keyframe(template, n + 3, t + 3, [_edge(999, n + 3, t + 3, good)]))
    assert s.state == "rejected" and "999" in s.reason and "unknown" in s.reason, s.reason
    assert s.nodes == before.nodes + 3 and odometry_edges(s) == odometry_edges(before) + 2

    s = probe.send_keyframe(_keyframe(template, n + 4, t - 10, [_edge(n + 2, n + 4, t - 10, good)]))
    assert s.state == "rejected" and "out of order" in s.reason, s.reason
    assert s.nodes == before.nodes + 3 and odometry_edges(s) == odometry_edges(before) + 2

    dup = probe.last_slam().duplicates
    s = probe.send_keyframe(_keyframe(template, n + 2, t + 2, [_edge(n + 1, n + 2, t + 2, good)]))
    assert s.duplicates == dup + 2 and s.nodes == before.nodes + 3  # keyframe and edge again

    s = probe.send_keyframe(_keyframe(template, n + 4, t + 4, [_edge(n + 2, n + 4, t + 4, good)]))
    assert s.state == "mapping" and s.reason == "ok", s.reason  # the stream goes on
    assert s.nodes == before.nodes + 4 and odometry_edges(s) == odometry_edges(before) + 3
    assert s.items_rejected == before.items_rejected + 4
    assert proc.poll() is None


def test_save_map_is_loaded_by_the_localizer(slam, frames) -> None:
    probe, proc, tmp = slam
    out = tmp / "map"
    r = probe.call(LoadMap, f"{NS}/mapper/save_map", LoadMap.Request(path=str(out)), 60.0)
    assert r.success and r.num_keyframes == probe.last_slam().nodes, r.message
    saved = r.num_keyframes
    current = (out / "CURRENT").read_text()
    # not writable: a path under a regular file; a directory holding other data
    (tmp / "file").write_text("x")
    r = probe.call(LoadMap, f"{NS}/mapper/save_map", LoadMap.Request(path=str(tmp / "file/m")),
                   60.0)
    assert not r.success and "not saved" in r.message, r.message
    (tmp / "other").mkdir()
    (tmp / "other" / "notes.txt").write_text("mine")
    r = probe.call(LoadMap, f"{NS}/mapper/save_map", LoadMap.Request(path=str(tmp / "other")),
                   60.0)
    assert not r.success and "not saved" in r.message, r.message
    assert (tmp / "other" / "notes.txt").read_text() == "mine"
    assert (out / "CURRENT").read_text() == current and len(load_map(out)) == saved
    r = probe.call(Trigger, f"{NS}/mapper/optimize", Trigger.Request(), 60.0)
    assert r.success and "batch" in r.message, r.message  # the node keeps its graph and runs
    assert proc.poll() is None
    # the localizer node (what localize.launch.py map:=... starts) loads it and localizes in it
    from ros_graph_helpers import SUCCESS

    g = RosGraph()
    try:
        loc = make_node(g, out)
        lp = Probe(g)
        assert loc.trigger_configure() == SUCCESS, loc.counters.last_reason
        assert loc.trigger_activate() == SUCCESS
        rgb, _, K = frames[0]
        img = rgb_to_image(rgb, sec_to_stamp(500.0), "camera_optical_frame")
        info = lp.camera_info(K, rgb.shape[1], rgb.shape[0])
        for _ in range(30):
            lp.publish(img, info)
            if wait_for(lambda: [s for s in lp.got["status"] if s.success], 1.0):
                break
        ok = [s for s in lp.got["status"] if s.success]
        assert ok, [s.reason for s in lp.got["status"]][-3:]
        assert wait_for(lambda: lp.got["pose"], 5.0)
        kmap = load_map(out)
        T_cam = pose_to_matrix(lp.got["pose"][-1].pose.pose)  # base = camera (no TF here)
        nearest = min(np.linalg.norm(kmap.record(i).T_map_cam[:3, 3] - T_cam[:3, 3])
                      for i in kmap.ids)
        assert nearest < 0.05  # frame 0 is keyframe 0's image
    finally:
        g.close()
