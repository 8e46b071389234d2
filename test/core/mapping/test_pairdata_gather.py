"""Typed pair records, the streamed gather (one pair half at a time), relative-depth spill, and
the refusal of scene graphs that fall apart."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mast3r_ros.core.errors import InputError, MappingError
from mast3r_ros.core.mapping.canonical import CanonicalAccumulator
from mast3r_ros.core.mapping.gather import check_connected, graph_components
from mast3r_ros.core.mapping.images import ImageArrays, ImageFiles, as_image_source
from mast3r_ros.core.mapping.pairdata import PairData, PairView
from mast3r_ros.core.mapping.problem import (
    MemoryHalves,
    RelDepthStore,
    assemble_problem,
    build_problem,
)
from mast3r_ros.core.mapping.scene_graph import make_pairs
from mast3r_ros.core.mapping.synthetic import make_scene


@pytest.fixture(scope="module")
def scene():
    return make_scene(5, make_pairs(5, "swin-2-noncyclic"), np.random.default_rng(3))


def test_pairdata_swap_and_schema_round_trip(scene):
    p = scene.pairs[0]
    s = p.swapped()
    assert (s.i, s.j) == (p.j, p.i) and s.view_i is p.view_j and s.view_of(p.i) is p.view_i
    back = PairData.from_arrays(p.i, p.j, p.to_arrays())
    for name, arr in p.to_arrays().items():
        assert np.array_equal(back.to_arrays()[name], arr), name
    with pytest.raises(InputError, match="not in pair"):
        p.view_of(99)
    bad = p.to_arrays()
    bad["v1.xy"] = bad["v1.xy"][:-1]
    with pytest.raises(InputError, match="disagree"):
        PairData.from_arrays(p.i, p.j, bad)
    bad = p.to_arrays()
    bad["conf"] = bad["conf"].astype(np.float64)
    with pytest.raises(InputError, match="dtype"):
        PairData.from_arrays(p.i, p.j, bad)
    with pytest.raises(InputError, match="itself"):
        PairData(1, 1, p.view_i, p.view_j, p.conf, p.score)
    with pytest.raises(InputError, match=r"\(H, W, 3\)"):
        PairView(np.zeros((4, 4)), np.zeros((4, 4)), np.zeros((4, 4, 3)), np.zeros((4, 4)),
                 np.zeros((0, 2), np.int64))


def test_accumulator_equals_stacked_fusion(scene):
    views = [p.view_of(2) for p in scene.pairs if 2 in (p.i, p.j)]
    acc = CanonicalAccumulator(8)
    for v in views:
        acc.add(torch.as_tensor(v.pts_self), torch.as_tensor(v.conf_self))
    w = torch.stack([torch.as_tensor(v.conf_self) for v in views]).unsqueeze(-1) - 0.999
    X = torch.stack([torch.as_tensor(v.pts_self) for v in views])
    torch.testing.assert_close(acc.result().canon, (w * X).sum(0) / w.sum(0), rtol=0, atol=0)
    with pytest.raises(InputError, match="two sizes"):
        acc.add(torch.zeros(16, 16, 3), torch.ones(16, 16))


class _CountingHalves(MemoryHalves):
    """Records every half read (the real in-memory source underneath)."""

    def __init__(self, pairs):
        super().__init__(pairs)
        self.reads: list[tuple[int, int]] = []

    def half(self, pair_index, img):
        self.reads.append((pair_index, img))
        return super().half(pair_index, img)


def test_gather_reads_each_half_once_image_by_image(scene):
    src = _CountingHalves(scene.pairs)
    pairs = [(p.i, p.j) for p in scene.pairs]
    assemble_problem(5, pairs, src)
    assert sorted(src.reads) == sorted((k, img) for k, pr in enumerate(pairs) for img in pr)
    assert [img for _, img in src.reads] == sorted(img for _, img in src.reads)


def test_fallback_data_only_for_pairs_that_fall_back(scene):
    p0 = scene.pairs[0]
    low = PairData(p0.i, p0.j, p0.view_i, p0.view_j, np.full_like(p0.conf, 2.0), p0.score)
    pairs = [low] + scene.pairs[1:]
    prob = build_problem(5, pairs, fallback_conf_thr=5.0)
    assert prob.fb_pairs == [(p0.i, p0.j), (p0.j, p0.i)]
    full = build_problem(5, pairs)
    assert len(full.fb_pairs) == 2 * len(pairs)
    assert torch.equal(prob.fb_target[0][0], full.fb_target[0][0])


def test_rel_depth_spills_to_disk_and_reads_back(scene):
    mem, disk = RelDepthStore(), RelDepthStore.on_disk()
    a = build_problem(5, scene.pairs, rel_depths=mem)
    b = build_problem(5, scene.pairs, rel_depths=disk)
    assert torch.equal(a.core_depth, b.core_depth)
    for k in range(5):
        assert torch.equal(mem.get(k), disk.get(k))
    assert list(disk._dir.glob("*.npy"))


def test_disconnected_scene_graph_is_refused_with_sizes(scene):
    conn = build_problem(5, scene.pairs)
    check_connected(conn, 5.0)
    extra = make_scene(7, [(5, 6)], np.random.default_rng(4)).pairs
    split = build_problem(7, scene.pairs + extra)
    assert graph_components(split, 5.0).tolist() == [0, 0, 0, 0, 0, 1, 1]
    with pytest.raises(MappingError, match=r"2 disconnected groups \(sizes \[5, 2\]\)"):
        check_connected(split, 5.0)


def test_image_sources(tmp_path):
    import cv2

    im = np.random.default_rng(0).integers(0, 255, (20, 30, 3), dtype=np.uint8)
    cv2.imwrite(str(tmp_path / "a.png"), im[..., ::-1])
    files = ImageFiles([tmp_path / "a.png"])
    assert len(files) == 1 and np.array_equal(files.load(0), im)
    assert files.path(0) == str(tmp_path / "a.png")
    arrays = as_image_source([im])
    assert isinstance(arrays, ImageArrays) and arrays.path(0) is None
    assert as_image_source(files) is files
    with pytest.raises(InputError):
        as_image_source("not images")  # type: ignore[arg-type]
    with pytest.raises(InputError, match="does not exist"):
        ImageFiles([tmp_path / "missing.png"]).load(0)
