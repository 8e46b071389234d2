"""The tracker through the real MASt3R path (tied tiny checkpoint: identical images match pixel
for pixel, see its fixture): one encoder and one decoder pass per tracked frame, and the
keyframe's 3D from the network's own pointmap when no depth is given."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from mast3r_ros.core.config import LocalizerConfig, MatchingConfig, ModelConfig, TrackingConfig
from mast3r_ros.core.map.rgbd import list_rgbd_frames, read_rgbd_frame, rgbd_intrinsics
from mast3r_ros.core.tracking import Tracker, TrackingState
from mast3r_ros.core.types import Frame


@pytest.fixture(scope="module")
def tracker(tied_checkpoint: Path) -> Tracker:
    cfg = LocalizerConfig(backend="mast3r",
                          model=ModelConfig(checkpoint=str(tied_checkpoint), device="cpu",
                                            image_size=128),
                          matching=MatchingConfig(desc_conf_threshold=0.0, subsample=2))
    return Tracker(TrackingConfig(), cfg)


@pytest.fixture(scope="module")
def frame(data_dir: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    root = data_dir / "sevenscenes_redkitchen_rgbd"
    K, K_depth = rgbd_intrinsics(root)
    rgb, depth, _ = read_rgbd_frame(list_rgbd_frames(root / "sequence")[0][1], K, K_depth)
    return rgb, depth, K


class _DecodeCounter:
    """Counts the engine's decoder calls (wraps the real engine, changes nothing)."""

    def __init__(self, engine) -> None:
        self.engine, self.calls = engine, 0
        self._decode = engine.decode

    def __call__(self, *args, **kwargs):
        self.calls += 1
        return self._decode(*args, **kwargs)


@pytest.mark.parametrize("with_depth", [True, False], ids=["sensor-depth", "mast3r-pointmap"])
def test_identical_frame_tracks_at_the_keyframe(tracker, frame, with_depth: bool) -> None:
    rgb, depth, K = frame
    d = depth if with_depth else None
    tracker.reset()
    first = tracker.process(Frame(rgb, K, 0.0), d)
    assert first.state is TrackingState.TRACKING and first.is_keyframe, first.reason
    kf = first.keyframes[0].keyframe
    assert kf.depth is not None and np.mean(kf.depth > 0) > 0.5  # sensor or predicted
    counter = _DecodeCounter(tracker.backend.engine)
    tracker.backend.engine.decode = counter
    try:
        r = tracker.process(Frame(rgb, K, 0.1), d)
    finally:
        del tracker.backend.engine.decode
    assert r.has_pose and r.keyframe_id == kf.id and not r.relocalized, r.reason
    assert counter.calls == 1  # one decoder pass against the cached keyframe encoding
    assert r.timings.encode > 0 and r.timings.decode > 0 and r.timings.matching > 0
    assert np.linalg.norm(r.T_track_cam[:3, 3]) < 0.005
    assert np.allclose(r.T_track_cam[:3, :3], np.eye(3), atol=2e-3)
    assert r.num_inliers >= 100 and r.kf_information is not None
