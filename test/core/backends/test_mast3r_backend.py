"""MASt3R backend plumbing with the tiny random-weight checkpoint (shapes, coordinates, batching,
feature caching in the map, model identity). Accuracy cannot be asserted with random weights."""

from __future__ import annotations

import numpy as np
import pytest

from mast3r_ros.core.backends.mast3r import Mast3rBackend, checkpoint_id
from mast3r_ros.core.config import LocalizerConfig, MatchingConfig, ModelConfig
from mast3r_ros.core.errors import CheckpointError, MapCompatibilityError
from mast3r_ros.core.geometry.scale import intrinsics_from_focal
from mast3r_ros.core.localizer import Localizer
from mast3r_ros.core.map import Keyframe, KeyframeMap, MapMeta, load_map, save_map
from mast3r_ros.core.types import Frame


def _cfg(ckpt, size=64) -> LocalizerConfig:
    return LocalizerConfig(backend="mast3r", model=ModelConfig(checkpoint=str(ckpt), device="cpu",
                                                               image_size=size),
                           matching=MatchingConfig(desc_conf_threshold=0.0, subsample=4))


def _img(rng, h, w) -> np.ndarray:
    return rng.integers(0, 255, (h, w, 3), dtype=np.uint8)


@pytest.fixture(scope="module")
def backend(tiny_checkpoint) -> Mast3rBackend:
    return Mast3rBackend.from_config(_cfg(tiny_checkpoint))


@pytest.fixture()
def kmap(rng) -> KeyframeMap:
    kfs = []
    for i, (h, w) in enumerate([(72, 96), (72, 96), (96, 72)]):  # two landscape, one portrait
        T = np.eye(4)
        T[0, 3] = i
        kfs.append(Keyframe(i, _img(rng, h, w), intrinsics_from_focal(80.0, w, h), T,
                            depth=np.full((h, w), 2.0, np.float32)))
    return KeyframeMap(MapMeta(), kfs)


def test_checkpoint_errors_and_env(tmp_path, monkeypatch, tiny_checkpoint) -> None:
    monkeypatch.delenv("MAST3R_CHECKPOINT", raising=False)
    with pytest.raises(CheckpointError, match="MAST3R_CHECKPOINT"):
        Mast3rBackend.from_config(LocalizerConfig(backend="mast3r"))
    monkeypatch.setenv("MAST3R_CHECKPOINT", str(tiny_checkpoint))
    cfg = LocalizerConfig(backend="mast3r", model=ModelConfig(device="cpu", image_size=64))
    assert Mast3rBackend.from_config(cfg).model_id == checkpoint_id(tiny_checkpoint)
    monkeypatch.delenv("MAST3R_CHECKPOINT")
    with pytest.raises(CheckpointError):
        Mast3rBackend.from_config(_cfg(tmp_path / "missing.pth"))
    bad = tmp_path / "bad.pth"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError):
        Mast3rBackend.from_config(_cfg(bad))


def test_prepare_map_caches_features_and_descriptors(backend, kmap, tmp_path, tiny_checkpoint) -> None:
    backend.prepare_map(kmap)
    meta = kmap.meta
    assert meta.model_id == checkpoint_id(tiny_checkpoint) and meta.image_size == 64
    assert meta.backend == "mast3r" and meta.descriptor == backend.descriptor_name
    f0, f2 = kmap.features[0], kmap.features[2]
    assert tuple(f0["true_shape"]) == (48, 64) and tuple(f2["true_shape"]) == (64, 48)
    assert f0["feat"].shape == (12, 64) and f0["feat"].dtype == np.float32  # tiny: C = 64
    assert kmap.global_desc.shape == (3, 64)
    assert np.allclose(np.linalg.norm(kmap.global_desc, axis=1), 1.0, atol=1e-5)
    save_map(kmap, tmp_path / "m")
    loaded = load_map(tmp_path / "m", backend.expected_meta)
    # poison the live encoder: a reloaded map must be served from its cached features
    loaded.keyframes[0].rgb[:] = 0
    backend.prepare_map(loaded)
    assert np.allclose(loaded.global_desc, kmap.global_desc, atol=1e-6)
    assert np.allclose(loaded.features[0]["feat"], f0["feat"])
    with pytest.raises(MapCompatibilityError, match="image_size"):
        Localizer.from_paths(_cfg(tiny_checkpoint, size=128), tmp_path / "m")
    foreign = KeyframeMap(kmap.meta.replace(model_id="0" * 64), kmap.keyframes)
    with pytest.raises(MapCompatibilityError, match="model_id"):
        backend.prepare_map(foreign)


def test_match_coordinates_batching_and_pointmap(backend, kmap, rng) -> None:
    backend.prepare_map(kmap)
    q = _img(rng, 90, 120)  # another size than the keyframes: scale 64/120
    frame = Frame(q, intrinsics_from_focal(100.0, 120, 90))  # K given + keyframe depth: desc only
    backend.global_descriptor(frame)
    all_m = backend.match(frame, kmap.keyframes)
    assert [m.ref_id for m in all_m] == [0, 1, 2]
    assert set(backend.timings) >= {"encode", "decode", "matching"}
    tq = backend._query[1].transform
    for m, kf in zip(all_m, kmap.keyframes):
        assert len(m) > 0 and m.xy_query.shape == m.xy_ref.shape == (len(m), 2)
        assert np.all((m.xy_query >= -0.5) & (m.xy_query <= [119.5, 89.5]))
        assert np.all((m.xy_ref >= -0.5) & (m.xy_ref <= [kf.width - 0.5, kf.height - 0.5]))
        net = tq.to_network(m.xy_query)  # came from integer network pixels
        assert np.allclose(net, np.rint(net), atol=1e-9)
    # batched decode (keyframes 0 and 1 share a shape) == one keyframe at a time
    alone = backend.match(frame, [kmap.keyframes[1]])[0]
    assert np.array_equal(alone.xy_query, all_m[1].xy_query)
    assert np.allclose(alone.score, all_m[1].score, atol=1e-5)
    assert backend._query_pts is None  # the pts3d head was skipped
    assert backend.estimate_intrinsics(frame) is None and backend.query_depth(frame, net) is None


def test_localizer_runs_mast3r_path(backend, kmap, rng) -> None:
    cfg = _cfg("unused")
    loc = Localizer(cfg, kmap, backend)
    r = loc.localize(Frame(_img(rng, 72, 96), intrinsics_from_focal(80.0, 96, 72)))
    assert r.backend == "mast3r" and r.keyframe_ids and r.num_matches > 0
    assert {"encode", "decode", "matching", "pose", "total"} <= set(r.timings)


def test_focal_estimate_in_original_pixels(backend, kmap, rng) -> None:
    """A known network-resolution pointmap gives K of the ORIGINAL image (scale undone)."""
    backend.prepare_map(kmap)
    frame = Frame(_img(rng, 90, 120), None)  # network image 64x48, scale 64/120
    backend.global_descriptor(frame)
    backend.match(frame, kmap.keyframes[:1])
    tr = backend._query[1].transform
    f_net = 50.0
    pp = tr.to_network(np.array([[59.5, 44.5]]))[0]
    rows, cols = np.mgrid[0:48, 0:64]
    z = 2.0 + 0.01 * cols
    pts = np.stack([(cols - pp[0]) / f_net * z, (rows - pp[1]) / f_net * z, z], -1)
    backend._query_pts = (frame, pts.astype(np.float32))
    K = backend.estimate_intrinsics(frame)
    assert K[0, 0] == pytest.approx(f_net * 120 / 64, rel=1e-4)
    assert np.allclose(K[:2, 2], [59.5, 44.5])
    xy = np.array([[10.0, 20.0]])
    net = np.rint(tr.to_network(xy)).astype(int)[0]
    assert backend.query_depth(frame, xy)[0] == pytest.approx(z[net[1], net[0]], rel=1e-6)


@pytest.mark.gpu
def test_cuda_plumbing(tiny_checkpoint, kmap, rng) -> None:
    cfg = LocalizerConfig(backend="mast3r", model=ModelConfig(
        checkpoint=str(tiny_checkpoint), device="cuda", image_size=64),
        matching=MatchingConfig(desc_conf_threshold=0.0, subsample=4))
    be = Mast3rBackend.from_config(cfg)
    be.prepare_map(kmap)
    frame = Frame(_img(rng, 72, 96), None)
    be.global_descriptor(frame)
    ms = be.match(frame, kmap.keyframes)
    assert all(len(m) > 0 and np.all(np.isfinite(m.xy_query)) for m in ms)


def test_coarse_to_fine_refines_large_images(tiny_checkpoint, kmap, rng) -> None:
    """With coarse_to_fine on, images above the network size are re-matched on full-res crops."""
    cfg = LocalizerConfig(backend="mast3r", model=ModelConfig(
        checkpoint=str(tiny_checkpoint), device="cpu", image_size=64),
        matching=MatchingConfig(desc_conf_threshold=0.0, subsample=2, coarse_to_fine=True,
                                c2f_max_crop_pairs=2))
    be = Mast3rBackend.from_config(cfg)
    be.prepare_map(kmap)
    frame = Frame(_img(rng, 144, 192), intrinsics_from_focal(160.0, 192, 144))  # 3x the network
    be.global_descriptor(frame)
    m = be.match(frame, kmap.keyframes[:1])[0]
    assert "coarse_to_fine" in be.timings
    assert len(m) > 0 and np.all((m.xy_query >= 0) & (m.xy_query <= [191, 143]))
    net = be._query[1].transform.to_network(m.xy_query)
    # coarse matches sit on integer network pixels; crop matches (3x finer) mostly do not
    assert np.mean(np.all(np.abs(net - np.rint(net)) < 1e-9, axis=1)) < 0.9
