"""MASt3R backend with the tiny checkpoint: encodings, coordinates, batching, geometry, identity,
and the whole Localizer path with the tied checkpoint (identical images match pixel for pixel)."""

from __future__ import annotations

import numpy as np
import pytest

from mast3r_ros.core.backends import encode_map
from mast3r_ros.core.backends.mast3r import Mast3rBackend
from mast3r_ros.core.config import LocalizerConfig, MatchingConfig, ModelConfig
from mast3r_ros.core.errors import CheckpointError, InputError, MapCompatibilityError
from mast3r_ros.core.features import Mast3rFeatures
from mast3r_ros.core.geometry.scale import intrinsics_from_focal
from mast3r_ros.core.localizer import Localizer
from mast3r_ros.core.map import Keyframe, KeyframeMap, build_map_from_rgbd, load_map, save_map
from mast3r_ros.core.model.factory import checkpoint_id, make_engine
from mast3r_ros.core.model.preprocess import image_transform
from mast3r_ros.core.types import Frame

DEMO = __import__("pathlib").Path(__file__).resolve().parents[3] / "demo_data" / \
    "sevenscenes_redkitchen"


def _model(ckpt, size=64) -> ModelConfig:
    return ModelConfig(checkpoint=str(ckpt), device="cpu", image_size=size)


def _cfg(ckpt, size=64, **matching) -> LocalizerConfig:
    m = {"desc_conf_threshold": 0.0, "subsample": 4, **matching}
    return LocalizerConfig(backend="mast3r", model=_model(ckpt, size),
                           matching=MatchingConfig(**m))


def _img(rng, h, w) -> np.ndarray:
    return rng.integers(0, 255, (h, w, 3), dtype=np.uint8)


@pytest.fixture(scope="module")
def backend(tiny_checkpoint) -> Mast3rBackend:
    return Mast3rBackend(make_engine(_model(tiny_checkpoint)))


@pytest.fixture()
def kmap(rng) -> KeyframeMap:
    kfs = []
    for i, (h, w) in enumerate([(72, 96), (72, 96), (96, 72)]):  # two landscape, one portrait
        T = np.eye(4)
        T[0, 3] = i
        kfs.append(Keyframe(i, _img(rng, h, w), intrinsics_from_focal(80.0, w, h), T,
                            depth=np.full((h, w), 2.0, np.float32)))
    return KeyframeMap(None, kfs)


def test_checkpoint_errors_and_env(tmp_path, monkeypatch, tiny_checkpoint) -> None:
    monkeypatch.delenv("MAST3R_CHECKPOINT", raising=False)
    with pytest.raises(CheckpointError, match="MAST3R_CHECKPOINT"):
        make_engine(ModelConfig())
    monkeypatch.setenv("MAST3R_CHECKPOINT", str(tiny_checkpoint))
    engine = make_engine(ModelConfig(device="cpu", image_size=64))
    assert engine.model_id == checkpoint_id(tiny_checkpoint) and engine.image_size == 64
    assert Mast3rBackend(engine).encoder_id.model_id == engine.model_id
    monkeypatch.delenv("MAST3R_CHECKPOINT")
    with pytest.raises(CheckpointError):
        make_engine(_model(tmp_path / "missing.pth"))
    bad = tmp_path / "bad.pth"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError):
        make_engine(_model(bad))


def test_encode_and_map_encodings_survive_save(backend, kmap, tmp_path, tiny_checkpoint) -> None:
    assert encode_map(kmap, backend) == 3 and encode_map(kmap, backend) == 0
    assert kmap.encoder == backend.encoder_id and kmap.encoder.image_size == 64
    f0, f2 = kmap.features(0), kmap.features(2)
    assert isinstance(f0, Mast3rFeatures) and f0.true_shape == (48, 64)
    assert f2.true_shape == (64, 48) and tuple(f0.tokens.shape) == (12, 64)  # tiny: C = 64
    assert f0.tokens.dtype.is_floating_point and str(f0.tokens.device) == "cpu"
    desc = kmap.index.descriptors([0, 1, 2])
    assert np.allclose(np.linalg.norm(desc, axis=1), 1.0, atol=1e-5)
    save_map(kmap, tmp_path / "m")
    loaded = load_map(tmp_path / "m")
    assert loaded.encoder == kmap.encoder and not loaded.missing_encodings()
    assert encode_map(loaded, backend) == 0  # served from the stored encodings
    assert np.array_equal(loaded.features(0).tokens.numpy(), f0.tokens.numpy())
    with pytest.raises(MapCompatibilityError, match="image_size"):
        Localizer.from_paths(_cfg(tiny_checkpoint, size=128), tmp_path / "m")
    other = Mast3rBackend(make_engine(_model(tiny_checkpoint)))
    other.encoder_id = other.encoder_id.__class__(**{**other.encoder_id.__dict__,
                                                      "model_id": "0" * 64})
    with pytest.raises(MapCompatibilityError, match="model_id"):
        encode_map(loaded, other)


def test_match_coordinates_batching_and_heads(backend, kmap, rng) -> None:
    encode_map(kmap, backend)
    q = backend.encode(_img(rng, 90, 120))  # another size than the keyframes: scale 64/120
    assert q.timings.encode > 0 and q.timings.preprocess > 0
    refs = [kmap.keyframe_encoding(i) for i in (0, 1, 2)]
    res = backend.match(q, refs, MatchingConfig(desc_conf_threshold=0.0, subsample=4))
    assert [m.ref_id for m in res.pairs] == [0, 1, 2] and res.geometry is None
    assert res.timings.decode > 0 and res.timings.matching > 0
    tq = image_transform(120, 90, 64)
    for m, kid in zip(res.pairs, (0, 1, 2)):
        rec = kmap.record(kid)
        assert len(m) > 0 and m.xy_query.shape == m.xy_ref.shape == (len(m), 2)
        assert np.all((m.xy_query >= -0.5) & (m.xy_query <= [119.5, 89.5]))
        assert np.all((m.xy_ref >= -0.5) & (m.xy_ref <= [rec.width - 0.5, rec.height - 0.5]))
        net = tq.to_network(m.xy_query)  # came from integer network pixels
        assert np.allclose(net, np.rint(net), atol=1e-9)
    # batched decode (keyframes 0 and 1 share a shape) == one keyframe at a time
    alone = backend.match(q, refs[1:2], MatchingConfig(desc_conf_threshold=0.0, subsample=4))
    assert np.array_equal(alone.pairs[0].xy_query, res.pairs[1].xy_query)
    assert np.allclose(alone.pairs[0].score, res.pairs[1].score, atol=1e-5)
    # matching settings are read per call: a stricter threshold keeps fewer matches
    strict = backend.match(q, refs[:1], MatchingConfig(desc_conf_threshold=float(
        np.median(res.pairs[0].score)), subsample=4))
    assert 0 < len(strict.pairs[0]) < len(res.pairs[0])
    with pytest.raises(InputError, match="another encoder"):
        from mast3r_ros.core.backends.sift import SiftBackend
        backend.match(SiftBackend().encode(_img(rng, 90, 120)), refs, MatchingConfig())


def test_query_geometry_in_original_pixels(backend, kmap, rng) -> None:
    """The pointmap head gives depth at original pixels and K of the ORIGINAL image."""
    encode_map(kmap, backend)
    q = backend.encode(_img(rng, 90, 120))  # network image 64x48, scale 64/120
    res = backend.match(q, [kmap.keyframe_encoding(0)], MatchingConfig(), geometry=True)
    geo = res.geometry
    assert geo is not None and geo.K is not None
    assert geo.K[0, 0] > 0 and np.allclose(geo.K[:2, 2], [59.5, 44.5])
    z = geo.depth_at(np.array([[10.0, 20.0], [-50.0, 0.0]]))
    assert np.isfinite(z[0]) and np.isnan(z[1])


def test_coarse_to_fine_refines_large_images(backend, kmap, rng) -> None:
    """With coarse_to_fine on, images above the network size are re-matched on full-res crops."""
    encode_map(kmap, backend)
    big = _img(rng, 144, 192)  # 3x the network size
    q = backend.encode(big)
    cfg = MatchingConfig(desc_conf_threshold=0.0, subsample=2, coarse_to_fine=True,
                         c2f_max_crop_pairs=2)
    res = backend.match(q, [kmap.keyframe_encoding(0)], cfg, query_image=big)
    m = res.pairs[0]
    assert res.timings.coarse_to_fine > 0
    assert len(m) > 0 and np.all((m.xy_query >= 0) & (m.xy_query <= [191, 143]))
    net = image_transform(192, 144, 64).to_network(m.xy_query)
    # coarse matches sit on integer network pixels; crop matches (3x finer) mostly do not
    assert np.mean(np.all(np.abs(net - np.rint(net)) < 1e-9, axis=1)) < 0.9
    coarse = backend.match(q, [kmap.keyframe_encoding(0)], cfg)  # no full-res image: coarse only
    assert np.isnan(coarse.timings.coarse_to_fine)


def test_localizer_mast3r_path_recovers_keyframe_pose(tied_checkpoint) -> None:
    """Whole MASt3R path (make_engine, encode, retrieval, batched decode, FRM, confidence filter,
    pixel mapping, lifting, PnP) on real 7-Scenes keyframes: a query identical to a keyframe must
    come back at that keyframe's pose (the tied checkpoint matches identical images exactly)."""
    kmap = build_map_from_rgbd(DEMO, max_frames=4)
    cfg = _cfg(tied_checkpoint, size=128, desc_conf_threshold=0.0, subsample=2)
    loc = Localizer(cfg, kmap)
    for kid in kmap.ids[1:3]:
        kf = kmap.keyframe(kid)
        r = loc.localize(Frame(kf.rgb, kf.K))
        assert r.success, r.reason
        assert r.backend == "mast3r" and r.keyframe_ids[0] == kid
        assert r.num_inliers >= 0.25 * r.num_matches  # the identical keyframe's share at least
        err_t = np.linalg.norm(r.T_map_cam[:3, 3] - kf.T_map_cam[:3, 3])
        u, _, vt = np.linalg.svd(kf.T_map_cam[:3, :3])  # 7-Scenes GT is not exactly orthonormal
        R = r.T_map_cam[:3, :3].T @ (u @ vt)
        err_r = np.degrees(np.arccos(np.clip((np.trace(R) - 1) / 2, -1, 1)))
        assert err_t < 0.005 and err_r < 0.2, (err_t, err_r)
        assert r.timings.decode > 0 and r.timings.pose > 0 and r.timings.total > 0


@pytest.mark.gpu
def test_cuda_plumbing(tiny_checkpoint, kmap, rng) -> None:
    be = Mast3rBackend(make_engine(ModelConfig(checkpoint=str(tiny_checkpoint), device="cuda",
                                               image_size=64)))
    encode_map(kmap, be)
    res = be.match(be.encode(_img(rng, 72, 96)), [kmap.keyframe_encoding(i) for i in kmap.ids],
                   MatchingConfig(desc_conf_threshold=0.0, subsample=4), geometry=True)
    assert all(len(m) > 0 and np.all(np.isfinite(m.xy_query)) for m in res.pairs)
    assert res.geometry is not None


def test_checkpoint_id_cache_follows_the_file(tmp_path, monkeypatch) -> None:
    """The remembered hash is reused for the same file and recomputed once the file changes."""
    import hashlib

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    f = tmp_path / "w.pth"
    f.write_bytes(b"a" * 1000)
    first = checkpoint_id(f)
    assert first == hashlib.sha256(b"a" * 1000).hexdigest()
    assert (tmp_path / "cache" / "mast3r_ros" / "checkpoint_ids.json").is_file()
    f.write_bytes(b"b" * 1001)  # size (and mtime) change: hashed again
    assert checkpoint_id(f) == hashlib.sha256(b"b" * 1001).hexdigest()
    assert checkpoint_id(f, cache=False) == checkpoint_id(f)
