"""TEST HARNESS ONLY, not a front end: a stand-in keyframe / edge stream from the real sequence.

Until the real tracker (``core/tracking``) is available to these tests, the back end is fed by
this harness: every selected frame is a keyframe; consecutive keyframes are linked by SIFT
matches + PnP on the previous keyframe's depth (the localizer's own stages), with the solver's
covariance scaled to the errors measured on frame pairs. It exists so that the back end's targets
can be tested on real images; it is deliberately naive (no keyframe selection, no relocalization,
no motion model) and is never shipped.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mast3r_ros.core.backends.sift import SiftBackend
from mast3r_ros.core.config import LocalizerConfig
from mast3r_ros.core.geometry.se3 import invert_pose
from mast3r_ros.core.map.keyframe import Keyframe
from mast3r_ros.core.pose import gather_correspondences, solve_pnp
from mast3r_ros.core.slam.evaluation import SequenceFrame
from mast3r_ros.core.slam.factors import covariance_map_to_body
from mast3r_ros.core.tracking.stream import EdgeType, GraphEdge, KeyframeEvent
from mast3r_ros.core.types import KeyframeEncoding

#: variance factor on the PnP covariance of a harness edge (median NEES 591 -> ~5.9 on the
#: sequence's consecutive out-and-back pairs, GT noise included)
HARNESS_COV_SCALE = 100.0


@dataclass
class StandInStream:
    """The harness's output: stream items in order, GT per keyframe id, frames per id."""

    items: list            # KeyframeEvent | GraphEdge, in stream order
    gt: dict[int, np.ndarray]
    frames: dict[int, SequenceFrame]


def stand_in_stream(frames: list[SequenceFrame], backend: SiftBackend,
                    localizer: LocalizerConfig) -> StandInStream:
    """Keyframe events and odometry edges for frames played in the given order.

    Keyframe ids are 0, 1, ... in play order (a frame played twice gets two ids); stamps
    increase by 1/3 s per keyframe so that the stream is in order even when frames play back.
    """
    items: list = []
    gt: dict[int, np.ndarray] = {}
    prev: tuple[Keyframe, object] | None = None
    T = np.eye(4)
    for kid, f in enumerate(frames):
        enc = backend.encode(f.rgb)
        stamp = kid / 3.0
        if prev is not None:
            kf_prev, enc_prev = prev
            m = backend.match(enc, [KeyframeEncoding(kf_prev.id, enc_prev)], localizer.matching)
            est = solve_pnp(gather_correspondences([kf_prev], m.pairs), f.K, localizer.pose)
            if not est.success or est.T_map_cam is None or est.covariance is None:
                raise RuntimeError(f"harness: no PnP between keyframes {kid - 1} and {kid}: "
                                   f"{est.reason}")
            T = est.T_map_cam
            cov = covariance_map_to_body(T, est.covariance) * HARNESS_COV_SCALE
            edge = GraphEdge(kf_prev.id, kid, EdgeType.ODOMETRY,
                             invert_pose(kf_prev.T_map_cam) @ T, np.linalg.inv(cov), stamp)
        kf = Keyframe(kid, f.rgb, f.K, T, stamp, f.depth)
        items.append(KeyframeEvent(kf, T.copy(), enc))
        if prev is not None:
            items.append(edge)
        gt[kid] = f.T_world_cam
        prev = (kf, enc)
    return StandInStream(items, gt, dict(enumerate(frames)))
