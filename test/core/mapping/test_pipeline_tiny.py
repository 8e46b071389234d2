"""plan -> compute -> gather -> align with the tiny official-format checkpoint, against the
official sparse_ga fixture (same images, same model); the pair cache (key, integrity,
put-if-absent); the streamed gather; the lazily materialised map."""

from __future__ import annotations

import dataclasses
import logging

import numpy as np
import pytest
import torch
from _mapping_fixture import load_fixture

from mast3r_ros.core.config import MappingConfig, ModelConfig
from mast3r_ros.core.mapping.build import build_map, compute_pairs
from mast3r_ros.core.mapping.cache import PairCache
from mast3r_ros.core.mapping.gather import MissingPairError, gather_problem
from mast3r_ros.core.mapping.problem import build_problem

GRAPH = dict(scene_graph="complete", subsample=8)


def _uint8_images(fx):
    return [np.round((fx[f"img_{k}"][0].transpose(1, 2, 0) * 0.5 + 0.5) * 255).astype(np.uint8)
            for k in range(3)]


@pytest.fixture(scope="module")
def fx(golden_dir):
    return load_fixture(golden_dir)


@pytest.fixture(scope="module")
def engine(tiny_checkpoint):
    from mast3r_ros.core.model.factory import make_engine

    return make_engine(ModelConfig(checkpoint=str(tiny_checkpoint), device="cpu", image_size=64))


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("pair_cache")


@pytest.fixture(scope="module")
def computed(fx, engine, cache_dir):
    cfg = MappingConfig(cache_dir=str(cache_dir), **GRAPH)
    return compute_pairs(_uint8_images(fx), engine, cfg)


def test_pairwise_matches_official_cache(computed, fx, engine):
    plan, stats = computed
    assert plan.pairs == [(1, 0), (2, 0), (2, 1)]
    assert (stats.computed, stats.cached) == (3, 0)
    s = plan.cache.settings
    assert (s.model_id, s.precision, s.image_size) == (engine.model_id, "fp32", 64)
    for i, j in plan.pairs:
        p = plan.cache.load(i, j, plan.keys[i], plan.keys[j])
        f, g, c = f"cache__fwd_{i}{j}__", f"cache__fwd_{j}{i}__", f"cache__corres_{i}{j}__"
        vi, vj = p.view_i, p.view_j
        for ours, key in ((vi.pts_self, f + "X_a_in_a"), (vi.pts_other, f + "X_b_in_a"),
                          (vi.conf_self, f + "C_a"), (vi.conf_other, f + "C_b_in_a"),
                          (vj.pts_self, g + "X_a_in_a"), (vj.pts_other, g + "X_b_in_a")):
            np.testing.assert_allclose(ours, fx[key], atol=1e-3, rtol=1e-4)
        np.testing.assert_array_equal(p.view_i.xy, fx[c + "xy_a"])
        np.testing.assert_array_equal(p.view_j.xy, fx[c + "xy_b"])
        np.testing.assert_allclose(p.conf, fx[c + "conf"], rtol=1e-4)
        np.testing.assert_allclose(p.score, fx[c + "score"], rtol=1e-5)


def test_cache_hits_swaps_and_keys(computed, fx, engine, cache_dir):
    plan, _ = computed
    again, stats = compute_pairs(_uint8_images(fx), engine,
                                 MappingConfig(cache_dir=str(cache_dir), **GRAPH))
    assert (stats.computed, stats.cached) == (0, 3)
    k = plan.keys
    a = plan.cache.load(1, 0, k[1], k[0])
    b = plan.cache.load(0, 1, k[0], k[1])  # the other orientation of the same file
    np.testing.assert_array_equal(b.view_i.xy, a.view_j.xy)
    np.testing.assert_array_equal(b.view_i.pts_self, a.view_j.pts_self)
    half = plan.cache.load_half(k[0], k[1])
    np.testing.assert_array_equal(half.view.xy, a.view_j.xy)
    # every setting of the key is part of the file name
    for change in (dict(precision="fp16"), dict(subsample=4), dict(image_size=128),
                   dict(frm_max_iter=5), dict(preprocessing="other"), dict(model_id="other")):
        other = PairCache(cache_dir, dataclasses.replace(plan.cache.settings, **change))
        assert not other.contains(k[1], k[0]), change
    assert plan.cache.contains(k[1], k[0])


def test_put_if_absent_never_clobbers(computed, tmp_path):
    plan, _ = computed
    k = plan.keys
    pd = plan.cache.load(1, 0, k[1], k[0])
    fresh = PairCache(tmp_path, plan.cache.settings)
    assert fresh.put(pd, k[1], k[0]) is True
    before = fresh.path(k[1], k[0]).read_bytes()
    assert fresh.put(pd.swapped(), k[0], k[1]) is False  # same unordered pair: already there
    assert fresh.path(k[1], k[0]).read_bytes() == before
    assert not [p for p in fresh.path(k[1], k[0]).parent.iterdir() if p.name.startswith(".tmp")]


def _damaged_cache(plan, root, damage):
    """A cache with pairs (1, 0) and (2, 0) of ``plan``, the first one damaged."""
    k = plan.keys
    cache = PairCache(root, plan.cache.settings)
    cache.put(plan.cache.load(1, 0, k[1], k[0]), k[1], k[0])
    cache.put(plan.cache.load(2, 0, k[2], k[0]), k[2], k[0])
    f = cache.path(k[1], k[0])
    raw = f.read_bytes()
    if damage == "truncate":
        f.write_bytes(raw[: len(raw) // 2])
    elif damage == "flip":
        buf = bytearray(raw)
        buf[len(buf) // 3] ^= 0xFF  # inside an array member: its CRC-32 no longer matches
        f.write_bytes(bytes(buf))
    else:  # a valid record of another pair under this pair's name
        f.write_bytes(cache.path(k[2], k[0]).read_bytes())
    return cache, f


@pytest.mark.parametrize("damage", ["truncate", "flip", "foreign"])
def test_corrupt_cache_file_is_detected(computed, tmp_path, caplog, damage):
    plan, _ = computed
    cache, f = _damaged_cache(plan, tmp_path, damage)
    with caplog.at_level(logging.WARNING):
        assert cache.load_half(plan.keys[1], plan.keys[0]) is None
    assert "corrupt" in caplog.text and not f.exists()


@pytest.mark.parametrize("damage", ["truncate", "flip", "foreign"])
def test_build_recomputes_a_corrupt_pair(computed, fx, engine, tmp_path, caplog, damage):
    plan, _ = computed
    _, f = _damaged_cache(plan, tmp_path, damage)
    cfg = MappingConfig(cache_dir=str(tmp_path), niter1=2, niter2=2, device="cpu", **GRAPH)
    with caplog.at_level(logging.WARNING):
        res = build_map(_uint8_images(fx), engine, cfg)
    assert "corrupt" in caplog.text
    assert res.compute.computed == 2  # the damaged one and (2, 1), never seen before
    k = plan.keys
    again = PairCache(tmp_path, plan.cache.settings).load(1, 0, k[1], k[0])
    np.testing.assert_array_equal(again.view_i.xy, plan.cache.load(1, 0, k[1], k[0]).view_i.xy)


def test_gather_streams_the_cache_exactly(computed):
    plan, _ = computed
    cfg = MappingConfig(**GRAPH, matching_conf_thr=0.0)
    streamed = gather_problem(plan, cfg)
    pairs = [plan.cache.load(i, j, plan.keys[i], plan.keys[j]) for i, j in plan.pairs]
    direct = build_problem(3, pairs, fallback_conf_thr=0.0)
    for name in ("base_focals", "core_depth", "pt_xy", "pt_anchor", "pt_offset", "m_pt_i",
                 "m_pt_j", "m_conf", "num_matches"):
        assert torch.equal(getattr(streamed, name), getattr(direct, name)), name
    assert streamed.fb_pairs == [] and direct.fb_pairs == []  # thr 0: every pair uses matches
    everything = gather_problem(plan, dataclasses.replace(cfg, matching_conf_thr=1e9))
    assert len(everything.fb_pairs) == 6


def test_missing_pair_is_a_clear_error(computed, tmp_path):
    plan, _ = computed
    empty = dataclasses.replace(plan, cache=PairCache(tmp_path, plan.cache.settings))
    with pytest.raises(MissingPairError, match="not in the cache"):
        gather_problem(empty, MappingConfig(**GRAPH))


def test_build_map_reproduces_official(computed, fx, engine, cache_dir):
    cfg = MappingConfig(niter1=30, niter2=30, matching_conf_thr=0.0, cache_dir=str(cache_dir),
                        device="cpu", **GRAPH)
    res = build_map(_uint8_images(fx), engine, cfg)
    assert (res.compute.computed, res.compute.cached) == (0, 3)
    np.testing.assert_allclose(res.alignment.focals, fx["coarse30_fine30__focals"], rtol=5e-3)
    gt = fx["coarse30_fine30__cam2w"].astype(np.float64)
    T = res.alignment.T_world_cam
    rel, rel_gt = np.linalg.inv(T[0]) @ T, np.linalg.inv(gt[0]) @ gt
    # our network outputs differ from the official ones by ~5e-5 (test above), far more than the
    # one-ulp perturbation that already moves these poses by 5e-3 (test_sparse_ga_fixture);
    # measured here: rotations 2.2e-3, translations 1.2e-2 (scene extent 5.4)
    np.testing.assert_allclose(rel[:, :3, :3], rel_gt[:, :3, :3], atol=5e-3)
    np.testing.assert_allclose(rel[:, :3, 3], rel_gt[:, :3, 3], atol=3e-2)
    kfs = list(res.kmap.keyframes())
    assert [kf.id for kf in kfs] == [0, 1, 2] and len(res.kmap) == 3
    for kf in kfs:
        assert kf.rgb.shape == (48, 64, 3) and kf.depth.shape == (48, 64)
        assert (kf.depth > 0).mean() > 0.9
    np.testing.assert_allclose(res.kmap.poses(), T)
    # dense depth equals the depth of the sparse points at the matched pixels (camera frame z)
    kf = kfs[1]
    X = res.alignment.pts3d[1]
    z = ((X - kf.T_map_cam[:3, 3]) @ kf.T_map_cam[:3, :3])[:, 2]
    xy = np.concatenate([fx["cache__corres_10__xy_a"], fx["cache__corres_21__xy_b"]])
    np.testing.assert_allclose(kf.depth[xy[:, 1], xy[:, 0]], z, rtol=1e-4)


def test_build_map_with_known_intrinsics_and_poses(computed, fx, engine, cache_dir):
    cfg = MappingConfig(niter1=10, niter2=10, matching_conf_thr=0.0, cache_dir=str(cache_dir),
                        device="cpu", **GRAPH)
    K = np.array([[30.0, 0, 31.5], [0, 30.0, 23.5], [0, 0, 1]])  # 64x48 originals: no rescale
    poses = [np.eye(4), None, np.eye(4)]
    poses[2][:3, 3] = [1.0, 0.0, 0.0]
    res = build_map(_uint8_images(fx), engine, cfg, K=K, poses=poses, intrinsics_mode="fixed",
                    poses_mode="prior")
    np.testing.assert_allclose(res.alignment.K, np.stack([K] * 3), atol=1e-4)
    T = res.alignment.T_world_cam
    np.testing.assert_allclose(T[0], np.eye(4), atol=1e-5)  # first known camera is the anchor
    assert np.linalg.norm(T[2, :3, 3] - T[0, :3, 3]) == pytest.approx(1.0, rel=1e-5)  # its scale
    assert [r.stamp for r in res.kmap.records()] == [0.0, 1.0, 2.0]


def test_build_map_round_trips_through_the_store(computed, fx, engine, cache_dir, tmp_path):
    from mast3r_ros.core.map import load_map, save_map

    cfg = MappingConfig(niter1=10, niter2=10, matching_conf_thr=0.0, cache_dir=str(cache_dir),
                        device="cpu", **GRAPH)
    res = build_map(_uint8_images(fx), engine, cfg)
    save_map(res.kmap, tmp_path / "map")
    back = load_map(tmp_path / "map")
    assert len(back) == 3
    np.testing.assert_allclose(back.poses(), res.kmap.poses())
    for a, b in zip(back.keyframes(), res.kmap.keyframes()):
        np.testing.assert_allclose(a.K, b.K)
        np.testing.assert_allclose(a.depth, b.depth)


def test_retrieval_scene_graph_uses_the_engine_descriptors(fx, engine, cache_dir):
    from mast3r_ros.core.mapping.pairwise import LocalPairCompute
    from mast3r_ros.core.mapping.plan import plan_build
    from mast3r_ros.core.mapping.scene_graph import make_pairs

    ims = _uint8_images(fx)
    compute = LocalPairCompute(engine)
    plan = plan_build(ims, compute, MappingConfig(scene_graph="retrieval-0-2",
                                                  cache_dir=str(cache_dir)))
    desc = compute.descriptors(plan)
    assert desc.shape[0] == 3 and desc.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(desc, axis=1), 1.0, rtol=1e-5)
    expect = make_pairs(3, "retrieval-0-2", sim=desc @ desc.T)
    assert set(map(frozenset, plan.pairs)) == set(map(frozenset, expect))
