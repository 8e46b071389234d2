"""The mapper in SLAM mode in process: the lifecycle releases what configure created, and the
work queue is bounded (a message arriving on a full queue is dropped and counted)."""

from __future__ import annotations

import os

import rclpy
from rclpy.parameter import Parameter
from ros_graph_helpers import SUCCESS, RosGraph, wait_for

from mast3r_ros.msg import Keyframe
from mast3r_ros.ros.common.frame_node import KEYFRAME_STREAM_QOS
from mast3r_ros.ros.slam.node import SlamNode


def _node(graph: RosGraph, **params: object) -> SlamNode:
    values = {"backend": "sift", "autostart": False, **params}
    return graph.add(SlamNode(context=graph.context, parameter_overrides=[
        Parameter(k, value=v) for k, v in values.items()]))


def test_lifecycle_cycles_and_releases(graph: RosGraph) -> None:
    node = _node(graph)
    assert node.get_name() == "mapper"
    for _ in range(2):  # configure -> activate -> deactivate -> cleanup, twice
        assert node.trigger_configure() == SUCCESS, node.counters.last_reason
        store = node.store_path()
        assert store and os.path.isdir(store) and node._mapper is not None
        assert len(node._entities) == 5 and node._subs == [] and node._tf is not None
        assert node.trigger_activate() == SUCCESS
        assert len(node._subs) == 2  # the stream is subscribed while active
        assert node.trigger_deactivate() == SUCCESS
        assert node._subs == []
        assert node.trigger_cleanup() == SUCCESS
        assert not os.path.exists(store)  # the temporary working store goes with cleanup
        assert node._mapper is None and node._tf is None
        assert node._entities == [] and node._subs == []


def test_keyframes_published_before_activation_arrive(graph: RosGraph) -> None:
    """The front end's keyframes are retained (KEYFRAME_STREAM_QOS), so a back end that starts
    after the first keyframes (a launch race, a restarted mapper) still receives them."""
    source = graph.add(rclpy.create_node("front_end", context=graph.context))
    pub = source.create_publisher(Keyframe, "keyframes", KEYFRAME_STREAM_QOS)
    for i in range(3):
        pub.publish(Keyframe(id=i))  # no image: each is refused with that reason once handled
    node = _node(graph)
    assert node.trigger_configure() == SUCCESS and node.trigger_activate() == SUCCESS
    c = node.counters
    assert wait_for(lambda: c.received == 3 and c.rejected == 3, 10.0), c
    assert "carries no image" in c.last_reason


def test_queue_is_bounded_and_drops_are_counted(graph: RosGraph) -> None:
    node = _node(graph, queue_size=1)
    assert node.trigger_configure() == SUCCESS and node.trigger_activate() == SUCCESS
    with node._work_lock:  # the worker is busy: messages pile up
        for i in range(3):
            node._on_keyframe(Keyframe(id=i))  # no image: refused once handled
        c = node.counters
        assert c.received == 3 and c.dropped >= 1
    assert wait_for(lambda: c.rejected + c.dropped == 3, 10.0), c
    assert "carries no image" in c.last_reason and node._mapper is not None
    assert len(node._mapper.map) == 0
