"""REP-105 output of the localizer with the real core: ``map -> odom`` from the latest correction,
republished on the TF thread, post-dated by ``transform_tolerance``, going on after the last image
and stopping on reset, deactivate and a new map; frames, topics and rates changed at run time."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
from nav_msgs.msg import Odometry
from rclpy.parameter import Parameter
from ros_graph_helpers import (
    K_DEMO,
    OdomStreamer,
    Probe,
    RosGraph,
    active_node,
    camera_mount,
    query_gt,
    send_and_wait,
    wait_for,
)
from std_srvs.srv import Trigger

from mast3r_ros.core.map import read_rgb
from mast3r_ros.ros.common.conversions import (
    matrix_to_pose,
    pose_to_matrix,
    rgb_to_image,
    stamp_to_sec,
)
from mast3r_ros.ros.common.tf_io import transform_to_xyzq
from mast3r_ros.ros.common.transforms import xyzquat_to_matrix
from mast3r_ros.srv import LoadMap

T_ODOM_BASE = xyzquat_to_matrix([1.5, -0.4, 0.0, 0.0, 0.0, 0.38, 0.925])  # a parked robot


def _image_now(probe: Probe, index: int) -> Any:
    return rgb_to_image(read_rgb(query_gt(index)[0]), probe.node.get_clock().now().to_msg(),
                        "camera_optical_frame")


def _now(probe: Probe) -> float:
    return probe.node.get_clock().now().nanoseconds * 1e-9


def _stops(probe: Probe, parent: str = "map", child: str = "odom") -> bool:
    """True when no ``parent -> child`` arrives during 0.6 s (after 0.3 s for those in flight)."""
    time.sleep(0.3)
    n = len(probe.tf_of(parent, child))
    time.sleep(0.6)
    return len(probe.tf_of(parent, child)) == n


def _localize(node: Any, probe: Probe, index: int = 0) -> Any:
    status = send_and_wait(node, probe, _image_now(probe, index),
                           probe.camera_info(K_DEMO, 640, 480))
    assert status.success, status.reason
    return status


def test_map_to_odom_republished_post_dated_until_stopped(graph: RosGraph, small_map_dir: Path,
                                                          demo_map_dir: Path) -> None:
    node, probe = active_node(graph, small_map_dir, transform_tolerance=5.0)
    probe.send_tf("base_link", "camera_optical_frame", camera_mount(), 0.0, static=True)
    odom = OdomStreamer(probe, lambda t: T_ODOM_BASE)
    try:
        status = _localize(node, probe)
        assert status.tf_status == "published", status.tf_status
        T_map_base = pose_to_matrix(probe.got["pose"][-1].pose.pose)
        t0 = _now(probe)
        time.sleep(1.0)  # no image any more: the correction keeps coming
        late = [t for t in probe.tf_of("map", "odom") if stamp_to_sec(t.header.stamp) > t0 + 4.0]
        assert len(late) >= 5, len(late)
        assert all(stamp_to_sec(t.header.stamp) <= _now(probe) + 5.0 for t in late)  # now + 5 s
        T_map_odom = xyzquat_to_matrix(transform_to_xyzq(late[-1]))
        np.testing.assert_allclose(T_map_odom @ T_ODOM_BASE, T_map_base, atol=1e-6)
        # transform_tolerance and tf_publish_rate take effect at run time
        assert node.set_parameters([Parameter("transform_tolerance", value=0.0),
                                    Parameter("tf_publish_rate", value=2.0)])[0].successful
        time.sleep(0.3)
        n0, t1 = len(probe.tf_of("map", "odom")), _now(probe)
        time.sleep(2.0)
        slow = probe.tf_of("map", "odom")[n0:]
        assert 1 <= len(slow) <= 6, len(slow)
        assert all(stamp_to_sec(t.header.stamp) <= _now(probe) for t in slow)
        assert all(stamp_to_sec(t.header.stamp) >= t1 - 0.6 for t in slow)
        assert node.set_parameters([Parameter("tf_publish_rate", value=50.0)])[0].successful
        time.sleep(0.3)
        n1 = len(probe.tf_of("map", "odom"))
        time.sleep(1.0)
        assert len(probe.tf_of("map", "odom")) - n1 >= 15
        # stops on reset; resumes with the next localized frame
        assert probe.call(Trigger, "reset", Trigger.Request()).success
        assert _stops(probe)
        _localize(node, probe, 1)
        assert wait_for(lambda: not _stops(probe), 5.0)
        # stops on deactivate; after activate nothing until a frame is localized again
        assert node.trigger_deactivate().name == "SUCCESS"
        assert _stops(probe)
        assert node.trigger_activate().name == "SUCCESS"
        assert _stops(probe)
        _localize(node, probe, 2)
        assert not _stops(probe)
        # stops when a new map is loaded
        resp = probe.call(LoadMap, "load_map", LoadMap.Request(path=str(demo_map_dir)), 60.0)
        assert resp.success, resp.message
        assert _stops(probe)
    finally:
        odom.stop()


def test_tf_settings_and_odometry_sources_at_run_time(graph: RosGraph,
                                                      small_map_dir: Path) -> None:
    node, probe = active_node(graph, small_map_dir, publish_tf=False)
    probe.send_tf("base_link", "camera_optical_frame", camera_mount(), 0.0, static=True)
    odom = OdomStreamer(probe, lambda t: T_ODOM_BASE)
    odom2 = None
    try:
        status = _localize(node, probe)
        assert status.tf_status == "not published: publish_tf is false"
        assert _stops(probe)
        assert node.set_parameters([Parameter("publish_tf", value=True)])[0].successful
        _localize(node, probe, 1)
        assert wait_for(lambda: probe.tf_of("map", "odom"), 5.0)
        # a renamed odom frame: the old correction stops at once, the next frame uses odom2
        odom.stop()  # base_link has one parent at a time
        odom2 = OdomStreamer(probe, lambda t: np.eye(4), parent="odom2")
        assert node.set_parameters([Parameter("odom_frame", value="odom2")])[0].successful
        assert _stops(probe)
        status = _localize(node, probe, 2)
        assert status.tf_status == "published"
        assert wait_for(lambda: probe.tf_of("map", "odom2"), 5.0)
        T_map_base = pose_to_matrix(probe.got["pose"][-1].pose.pose)
        np.testing.assert_allclose(  # odom2 -> base_link is the identity
            xyzquat_to_matrix(transform_to_xyzq(probe.tf_of("map", "odom2")[-1])), T_map_base,
            atol=1e-6)
        # odometry from a nav_msgs/Odometry topic, rebound at run time
        odom2.stop()
        assert node.set_parameters([Parameter("odom_frame", value="odom3"),
                                    Parameter("odom_topic", value="wheel/odom")])[0].successful
        pub = probe.node.create_publisher(Odometry, "wheel/odom", 50)
        msg = Odometry()
        msg.pose.pose = matrix_to_pose(T_ODOM_BASE)
        feeder = OdomTopic(probe, pub, msg)
        try:
            status = _localize(node, probe, 0)
        finally:
            feeder.stop()
        assert status.tf_status == "published", status.tf_status
        assert wait_for(lambda: probe.tf_of("map", "odom3"), 5.0)
        T_map_base = pose_to_matrix(probe.got["pose"][-1].pose.pose)
        T = xyzquat_to_matrix(transform_to_xyzq(probe.tf_of("map", "odom3")[-1]))
        np.testing.assert_allclose(T @ T_ODOM_BASE, T_map_base, atol=1e-6)
        time.sleep(1.5)  # odometry stopped: the lookup says so instead of waiting on every frame
        status = _localize(node, probe, 1)
        assert "older than the stamp (its publisher stopped?)" in status.tf_status, \
            status.tf_status
    finally:
        odom.stop()
        if odom2 is not None:
            odom2.stop()


class OdomTopic(OdomStreamer):
    """Publishes a constant ``nav_msgs/Odometry`` (stamped now) at 30 Hz."""

    def __init__(self, probe: Probe, pub: Any, msg: Odometry) -> None:
        self.pub, self.msg = pub, msg
        super().__init__(probe, lambda t: np.eye(4))

    def _run(self) -> None:
        clock = self.probe.node.get_clock()
        while not self._stop.is_set():
            self.msg.header.stamp = clock.now().to_msg()
            self.pub.publish(self.msg)
            self._stop.wait(self.period)
