"""Our TF buffer gives the results of tf2 (``tf2_ros.Buffer``) on the same messages.

Needs ``tf2_ros`` (a ROS 2 install, or the hand-built one of ``ros_from_source.sh``): marked
``launch`` with the launch_testing tests of this folder, so it is opt-in (``pytest -m launch``) and
deselected with a message where they cannot run.
"""

from __future__ import annotations

import numpy as np
import pytest

from mast3r_ros.ros.common.outputs import transform_msg
from mast3r_ros.ros.common.tf_buffer import TransformBuffer, TransformUnavailable
from mast3r_ros.ros.common.tf_io import transform_to_xyzq
from mast3r_ros.ros.common.transforms import xyzquat_to_matrix

pytestmark = pytest.mark.launch
S = 1_000_000_000


def _tree(rng: np.random.Generator) -> list[tuple[str, str, int, np.ndarray, bool]]:
    """A robot-like tree with a second root: (parent, child, stamp ns, T, static) messages."""
    out = []
    static = [("base_link", "camera_link"), ("camera_link", "camera_optical"),
              ("base_link", "lidar"), ("world", "marker")]
    dynamic = [("map", "odom", 0.5), ("odom", "base_link", 0.033), ("base_link", "arm", 0.1)]
    for parent, child in static:
        T = xyzquat_to_matrix([*rng.normal(size=3), *rng.normal(size=4)])
        out.append((parent, child, 0, T, True))
    for parent, child, period in dynamic:
        t = 100 * S + int(rng.uniform(0, period) * S)
        while t < 106 * S:
            T = xyzquat_to_matrix([*rng.normal(size=3), *rng.normal(size=4)])
            out.append((parent, child, t, T, False))
            t += int(period * S * rng.uniform(0.8, 1.2))
    order = rng.permutation(len(out))  # arrival order is not time order
    return [out[i] for i in order]


def test_lookups_match_tf2(rng: np.random.Generator) -> None:
    from rclpy.duration import Duration
    from rclpy.time import Time
    from tf2_ros import Buffer

    from mast3r_ros.ros.common.conversions import ns_to_stamp, stamp_to_ns

    ours, theirs = TransformBuffer(cache_time=10.0), Buffer(cache_time=Duration(seconds=10.0))
    for parent, child, stamp, T, static in _tree(rng):
        msg = transform_msg(ns_to_stamp(stamp), parent, child, T)
        ours.set_transform(parent, child, stamp, transform_to_xyzq(msg), static)
        (theirs.set_transform_static if static else theirs.set_transform)(msg, "test")
    frames = ["map", "odom", "base_link", "camera_link", "camera_optical", "lidar", "arm",
              "world", "marker", "nowhere"]
    times = [0, 100 * S, 101 * S + 123_456_789, 103 * S, 105 * S + 980_000_000, 106 * S,
             99 * S] + [int(t) for t in rng.uniform(100, 106, size=20) * S]
    compared = agreed_errors = 0
    for target in frames:
        for source in frames:
            for t in times:
                try:
                    T_ours, stamp_ours = ours.lookup(target, source, t)
                except TransformUnavailable:
                    T_ours = None
                try:
                    msg = theirs.lookup_transform(target, source, Time(nanoseconds=t))
                except Exception:  # noqa: BLE001 - tf2's Lookup/Connectivity/Extrapolation
                    msg = None
                assert (T_ours is None) == (msg is None), (target, source, t, msg)
                if msg is None:
                    agreed_errors += 1
                    continue
                compared += 1
                np.testing.assert_allclose(T_ours, xyzquat_to_matrix(transform_to_xyzq(msg)),
                                           atol=1e-9, err_msg=f"{target} <- {source} at {t}")
                assert stamp_ours == stamp_to_ns(msg.header.stamp), (target, source, t)
    assert compared > 300 and agreed_errors > 100, (compared, agreed_errors)
