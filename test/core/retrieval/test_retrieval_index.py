"""faiss index (exact cosine top-k, masks, errors) and the tiny-image descriptor."""

from __future__ import annotations

import numpy as np
import pytest

from mast3r_ros.core.errors import InputError
from mast3r_ros.core.retrieval import GlobalIndex, tiny_image_descriptor


def test_index_topk_matches_bruteforce(rng) -> None:
    D = rng.normal(size=(50, 32)).astype(np.float32)
    ids = list(range(100, 150))
    idx = GlobalIndex(D, ids)
    q = rng.normal(size=32)
    got, scores = idx.search(q, 5)
    Dn = D / np.linalg.norm(D, axis=1, keepdims=True)
    sims = Dn @ (q / np.linalg.norm(q))
    order = np.argsort(-sims)[:5]
    assert list(got) == [ids[i] for i in order]
    assert np.allclose(scores, sims[order], atol=1e-5)
    assert np.all(np.diff(scores) <= 0)


def test_index_mask_small_and_empty(rng) -> None:
    D = rng.normal(size=(6, 8))
    idx = GlobalIndex(D, [1, 2, 3, 4, 5, 6])
    allowed = [2, 5, 99]  # ids to search among (99 is unknown: ignored)
    got, _ = idx.search(D[0], 3, allowed)
    assert set(got) == {2, 5}
    assert len(idx.search(D[0], 20)[0]) == 6
    empty = GlobalIndex(np.zeros((0, 8)), [])
    assert len(empty) == 0 and empty.search(D[0], 3)[0].shape == (0,)
    with pytest.raises(InputError):
        idx.search(np.ones(5), 2)
    with pytest.raises(InputError):
        GlobalIndex(D, [1, 2])


def test_tiny_descriptor_properties(rng) -> None:
    img = rng.integers(0, 255, (120, 160, 3), dtype=np.uint8)
    d = tiny_image_descriptor(img)
    assert d.dtype == np.float32 and np.isclose(np.linalg.norm(d), 1.0)
    brighter = np.clip(img.astype(int) + 20, 0, 255).astype(np.uint8)
    other = rng.integers(0, 255, (120, 160, 3), dtype=np.uint8)
    assert d @ tiny_image_descriptor(brighter) > 0.95   # photometric offset invariance
    assert d @ tiny_image_descriptor(other) < 0.5
    assert tiny_image_descriptor(img[::2, ::2]).shape == d.shape  # any input size


def test_recall_on_sevenscenes(data_dir) -> None:
    """Every query's top-2 contains one of the 2 map frames nearest to its GT position."""
    from mast3r_ros.core.evaluation import read_queries, retrieval_recall
    from mast3r_ros.core.map import build_map_from_rgbd, read_rgb

    root = data_dir / "sevenscenes_redkitchen_rgbd"
    kmap = build_map_from_rgbd(root)
    idx = GlobalIndex(np.stack([tiny_image_descriptor(kf.rgb) for kf in kmap.keyframes()]), kmap.ids)
    C = kmap.poses()[:, :3, 3]
    got, rel = [], []
    for q in read_queries(root / "queries_with_gt.txt")[::3]:
        got.append(list(idx.search(tiny_image_descriptor(read_rgb(root / q.name)), 4)[0]))
        rel.append(set(np.array(kmap.ids)[np.argsort(np.linalg.norm(C - q.T_world_cam[:3, 3], axis=1))[:2]]))
    rec = retrieval_recall(got, rel, (1, 2))
    assert rec["recall@2"] == 1.0 and rec["recall@1"] >= 0.9


def test_index_add_remove_match_a_rebuilt_index(rng) -> None:
    """Incremental add / remove (with compaction) answers exactly like an index built at once."""
    D = rng.normal(size=(300, 16)).astype(np.float32)
    idx = GlobalIndex(np.zeros((0, 16)), [])
    for i in range(300):
        idx.add(1000 + i, D[i])
    removed = set(range(1000, 1300, 3)) | set(range(1001, 1200, 3))  # 167 > 133 live: compacts
    for i in sorted(removed):
        idx.remove(i)
    live = [i for i in range(1000, 1300) if i not in removed]
    assert len(idx) == len(live) and list(idx.ids) == live and 1000 not in idx
    ref = GlobalIndex(D[[i - 1000 for i in live]], live)
    for q in rng.normal(size=(10, 16)):
        got, s1 = idx.search(q, 7)
        want, s2 = ref.search(q, 7)
        assert list(got) == list(want) and np.allclose(s1, s2, atol=1e-6)
    assert np.allclose(idx.descriptor(live[5]), D[live[5] - 1000] / np.linalg.norm(
        D[live[5] - 1000]), atol=1e-6)
    with pytest.raises(InputError):
        idx.add(live[0], D[0])          # duplicate id
    with pytest.raises(InputError):
        idx.add(5, np.full(16, np.nan))  # non-finite descriptor
    with pytest.raises(KeyError):
        idx.remove(1000)
