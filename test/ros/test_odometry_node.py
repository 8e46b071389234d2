"""The odometry node across processes: the real node (SIFT baseline, real 7-Scenes RGB-D frames)
started as ``ros2 run`` starts it, driven and observed by a probe in the test process."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import pytest
from geometry_msgs.msg import PoseWithCovarianceStamped
from nav_msgs.msg import Odometry
from nav_msgs.msg import Path as PathMsg
from rclpy.qos import qos_profile_sensor_data
from ros_graph_helpers import Probe, RosGraph, camera_mount, wait_for
from sensor_msgs.msg import Image
from std_srvs.srv import Trigger

from mast3r_ros.core.geometry.se3 import invert_pose
from mast3r_ros.core.map.rgbd import list_rgbd_frames, read_rgbd_frame, rgbd_intrinsics
from mast3r_ros.msg import Keyframe, KeyframeGraph, TrackingStatus
from mast3r_ros.ros.common.conversions import pose_to_matrix, rgb_to_image, sec_to_stamp
from mast3r_ros.ros.common.frame_node import LATCHED_QOS
from mast3r_ros.ros.common.graph_procs import ros_env, start_node, stop_process
from mast3r_ros.srv import ResetToPose

NS = "/o"


@pytest.fixture(scope="module")
def frames(data_dir: Path) -> list[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]]:
    """(rgb, depth m, K, GT T_world_cam) of the first 6 sequence frames."""
    root = data_dir / "sevenscenes_redkitchen_rgbd"
    K, K_depth = rgbd_intrinsics(root)
    out = []
    for _, path in list_rgbd_frames(root / "sequence")[:6]:
        rgb, depth, T = read_rgbd_frame(path, K, K_depth)
        out.append((rgb, depth, K, T))
    return out


class OdomProbe(Probe):
    """The graph probe plus the odometry node's topics and a depth publisher."""

    def __init__(self, graph: RosGraph) -> None:
        super().__init__(graph, ns=NS)
        self.depth_pub = self.node.create_publisher(Image, f"{NS}/depth", qos_profile_sensor_data)
        for key, typ, topic, qos in [
                ("odom", Odometry, f"{NS}/odom", 10),
                ("tstatus", TrackingStatus, f"{NS}/odometry/tracking_status", 10),
                ("kf", Keyframe, f"{NS}/odometry/keyframes", 10),
                ("graph", KeyframeGraph, f"{NS}/odometry/graph", LATCHED_QOS),
                ("path", PathMsg, f"{NS}/odometry/path", 10)]:
            self.got[key] = []
            self.node.create_subscription(typ, topic, self._store(key), qos)

    def frame(self, rgb: np.ndarray, depth: Any, K: np.ndarray, stamp: float,
              encoding: str = "rgb8") -> None:
        """Publish depth (16UC1 mm, or a given Image), camera_info and the image at ``stamp``."""
        if depth is not None:
            if isinstance(depth, np.ndarray):
                mm = np.round(depth * 1000).astype(np.uint16)
                depth = Image(height=mm.shape[0], width=mm.shape[1], encoding="16UC1",
                              step=2 * mm.shape[1], data=mm.tobytes())
            depth.header.stamp, depth.header.frame_id = sec_to_stamp(stamp), "camera_optical"
            self.depth_pub.publish(depth)
        img = rgb_to_image(rgb, sec_to_stamp(stamp), "camera_optical")
        img.encoding = encoding
        self.publish(img, self.camera_info(K, rgb.shape[1], rgb.shape[0]))

    def send(self, rgb: np.ndarray, depth: Any, K: np.ndarray, stamp: float,
             encoding: str = "rgb8", timeout: float = 30.0) -> TrackingStatus:
        """Publish until the node answers for ``stamp``; its status."""
        def answered() -> list:
            return [s for s in self.got["tstatus"]
                    if abs(s.header.stamp.sec + s.header.stamp.nanosec * 1e-9 - stamp) < 1e-6]
        for _ in range(int(timeout)):
            self.frame(rgb, depth, K, stamp, encoding)
            if wait_for(lambda: bool(answered()), 1.0):
                return answered()[-1]
        raise AssertionError(f"no status for stamp {stamp}")

    def trigger(self, name: str) -> Any:
        return self.call(Trigger, f"{NS}/odometry/{name}", Trigger.Request(), 20.0)


def _start(graph: RosGraph, tmp_path: Path, **params: Any) -> subprocess.Popen:
    log = open(tmp_path / "odometry.log", "w")
    proc = start_node("odometry", {"backend": "sift", "autostart": True, **params},
                      ros_env(graph.domain_id), log, namespace=NS)
    proc.log = log  # type: ignore[attr-defined]
    return proc


@pytest.fixture()
def mounted(graph: RosGraph) -> Iterator[OdomProbe]:
    probe = OdomProbe(graph)
    probe.send_tf("base_link", "camera_optical", camera_mount(), 0.0, static=True)
    yield probe


def _stamp(msg: Any) -> float:
    """Message stamp in seconds, rounded to the microsecond (to compare with sent stamps)."""
    return round(msg.header.stamp.sec + msg.header.stamp.nanosec * 1e-9, 6)


def test_odometry_frames_stamps_tf_and_stream(graph: RosGraph, mounted: OdomProbe, frames,
                                              tmp_path: Path) -> None:
    proc = _start(graph, tmp_path)
    try:
        stamps = [round(100.0 + i / 3, 6) for i in range(len(frames))]
        for (rgb, depth, K, _), t in zip(frames, stamps):
            st = mounted.send(rgb, depth, K, t)
            assert st.state == "tracking" and st.depth == "used", (st.reason, st.depth)
        assert wait_for(lambda: len(mounted.got["odom"]) >= len(frames), 5.0)
        odom = {_stamp(m): m for m in mounted.got["odom"]}
        assert set(stamps) <= set(odom)
        first = odom[stamps[0]]
        assert first.header.frame_id == "odom" and first.child_frame_id == "base_link"
        np.testing.assert_allclose(pose_to_matrix(first.pose.pose), np.eye(4), atol=1e-6)
        # the base moved as the GT says, seen through the camera mounting
        B = camera_mount()
        T_gt = [invert_pose(frames[0][3]) @ f[3] for f in frames]
        for t, G in zip(stamps, T_gt):
            T = pose_to_matrix(odom[t].pose.pose)
            assert np.linalg.norm(T[:3, 3] - (B @ G @ invert_pose(B))[:3, 3]) < 0.05
            assert np.all(np.isfinite(odom[t].pose.covariance))
        last = odom[stamps[-1]]
        assert np.linalg.norm([last.twist.twist.linear.x, last.twist.twist.linear.y,
                               last.twist.twist.linear.z]) > 0.01
        tf = [x for x in mounted.tf_of("odom", "base_link")]
        assert {_stamp(x) for x in tf} >= set(stamps)
        assert not mounted.tf_of("map", "odom")  # never map -> odom
        kf = mounted.got["kf"][0]
        assert kf.id == 0 and kf.image.width == 640 and kf.depth.encoding == "32FC1"
        assert len(kf.global_descriptor) > 0
        assert wait_for(lambda: mounted.got["graph"] and mounted.got["path"], 5.0)
        assert len(mounted.got["path"][-1].poses) == len(frames)
        late = OdomProbe(graph)  # the graph is latched: a late subscriber gets it
        assert wait_for(lambda: late.got["graph"], 10.0)
        assert list(late.got["graph"][-1].ids)[0] == 0
    finally:
        assert stop_process(proc) == 0, (tmp_path / "odometry.log").read_text()[-3000:]


def test_odometry_services_lost_and_bad_input(graph: RosGraph, mounted: OdomProbe, frames,
                                              tmp_path: Path) -> None:
    proc = _start(graph, tmp_path, publish_tf=False, publish_null_when_lost=True)
    try:
        rgb, depth, K, _ = frames[0]
        assert mounted.send(rgb, depth, K, 10.0).state == "tracking"
        st = mounted.send(frames[1][0], depth[:200], K, 10.33)  # depth of the wrong size
        assert st.state == "tracking" and st.depth.startswith("rejected"), st.depth
        st = mounted.send(frames[2][0], depth, K, 10.66, encoding="weird")
        assert "rejected frame" in st.reason and st.state == "tracking"
        st = mounted.send(frames[2][0], depth, K, 5.0)  # stamp going back
        assert "went back" in st.reason
        grey = np.full_like(rgb, 128)
        st = mounted.send(grey, depth, K, 11.0)
        assert st.state == "lost" and "relocalization failed" in st.reason
        null = [m for m in mounted.got["odom"] if abs(_stamp(m) - 11.0) < 1e-6]
        assert wait_for(lambda: [m for m in mounted.got["odom"] if abs(_stamp(m) - 11.0) < 1e-6],
                        3.0)
        null = [m for m in mounted.got["odom"] if abs(_stamp(m) - 11.0) < 1e-6]
        assert null[0].pose.pose.orientation.w == 0.0 and null[0].pose.covariance[0] == 9999.0
        assert wait_for(lambda: any(s.level == b"\x01" for d in mounted.got["diag"]
                                    for s in d.status if "front end" in s.name), 5.0)
        assert mounted.trigger("pause").success
        assert mounted.send(rgb, depth, K, 12.0).state == "paused"
        assert mounted.trigger("resume").success
        assert mounted.trigger("reset").success
        st = mounted.send(frames[3][0], frames[3][1], K, 13.0)
        assert st.state == "tracking" and st.is_keyframe
        odom = [m for m in mounted.got["odom"] if abs(_stamp(m) - 13.0) < 1e-6]
        np.testing.assert_allclose(pose_to_matrix(odom[-1].pose.pose), np.eye(4), atol=1e-6)
        req = ResetToPose.Request(pose=PoseWithCovarianceStamped())
        req.pose.header.frame_id = "odom"
        req.pose.pose.pose.position.x, req.pose.pose.pose.orientation.w = 2.0, 1.0
        assert mounted.call(ResetToPose, f"{NS}/odometry/reset_to_pose", req, 20.0).success
        bad = ResetToPose.Request(pose=PoseWithCovarianceStamped())
        bad.pose.header.frame_id = "map"
        assert not mounted.call(ResetToPose, f"{NS}/odometry/reset_to_pose", bad, 20.0).success
        mounted.send(frames[4][0], frames[4][1], K, 14.0)
        odom = [m for m in mounted.got["odom"] if abs(_stamp(m) - 14.0) < 1e-6]
        assert wait_for(lambda: [m for m in mounted.got["odom"]
                                 if abs(_stamp(m) - 14.0) < 1e-6], 3.0)
        odom = [m for m in mounted.got["odom"] if abs(_stamp(m) - 14.0) < 1e-6]
        assert abs(odom[-1].pose.pose.position.x - 2.0) < 1e-6
        assert not mounted.tf_of("odom", "base_link")  # publish_tf:=false
        assert proc.poll() is None  # still running after all of it
    finally:
        assert stop_process(proc) == 0, (tmp_path / "odometry.log").read_text()[-3000:]
