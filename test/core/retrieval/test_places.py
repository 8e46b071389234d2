"""Retrieval at scale: the approximate index against exact search, and places (retrieval
clusters) in a map of look-alike rooms."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from mast3r_ros.core.backends.sift import SiftBackend
from mast3r_ros.core.config import LocalizerConfig, RetrievalConfig
from mast3r_ros.core.errors import InputError
from mast3r_ros.core.evaluation import read_queries
from mast3r_ros.core.geometry.se3 import pose_errors
from mast3r_ros.core.localizer import Localizer
from mast3r_ros.core.map import Keyframe, KeyframeMap, build_map_from_rgbd, read_matrix, read_rgb
from mast3r_ros.core.retrieval import GlobalIndex
from mast3r_ros.core.retrieval.select import cluster_positions
from mast3r_ros.core.types import Frame

DEMO = Path(__file__).resolve().parents[3] / "demo_data" / "sevenscenes_redkitchen"


def _places_data(rng, n_places: int, per: int, dim: int, sigma: float = 0.5):
    """Unit descriptors grouped in places (a place = ``per`` keyframes around one direction)."""
    C = rng.normal(size=(n_places, dim)).astype(np.float32)
    C /= np.linalg.norm(C, axis=1, keepdims=True)
    X = np.repeat(C, per, 0) + sigma / np.sqrt(dim) * rng.normal(size=(n_places * per, dim))
    return C, X.astype(np.float32)


def test_approximate_index_recall_exact_scores_and_serialisation(rng) -> None:
    C, X = _places_data(rng, 300, 10, 64)
    ids = list(range(5000, 5000 + len(X)))
    exact = GlobalIndex(X, ids, approximate_above=10 ** 9)
    approx = GlobalIndex(X, ids, approximate_above=1000)
    assert approx.approximate and not exact.approximate
    Q = C[rng.integers(0, 300, 100)] + 0.5 / 8 * rng.normal(size=(100, 64))
    hits = 0
    for q in Q:
        a_ids, a_s = approx.search(q, 5)
        e_ids, e_s = exact.search(q, 5)
        hits += len(set(a_ids) & set(e_ids))
        # scores are exact (re-ranked with the stored vectors), never quantised
        want = {i: s for i, s in zip(*exact.search(q, 50))}
        assert all(abs(want[i] - s) < 1e-5 for i, s in zip(a_ids, a_s) if i in want)
    assert hits / (5 * len(Q)) >= 0.98
    # the serialised accelerator reloads without retraining and answers the same
    again = GlobalIndex(X, ids, approximate_above=1000, ann=approx.ann_bytes())
    for q in Q[:10]:
        assert list(again.search(q, 5)[0]) == list(approx.search(q, 5)[0])
    with pytest.raises(InputError, match="rebuild"):
        GlobalIndex(X[:-1], ids[:-1], approximate_above=1000, ann=approx.ann_bytes())
    # adds after the build are searchable; removed rows never come back
    approx.add(1, Q[0] * 10)
    assert approx.search(Q[0], 1)[0][0] == 1
    approx.remove(1)
    assert 1 not in approx.search(Q[0], 5)[0]


def test_cluster_positions_single_linkage() -> None:
    P = np.array([[0, 0, 0], [1, 0, 0], [2.1, 0, 0], [20, 0, 0], [0.5, 0, 0]], float)
    assert cluster_positions(P, 1.2) == [[0, 1, 2, 4], [3]]
    assert cluster_positions(P, 0.1) == [[0], [1], [2], [3], [4]]


@pytest.fixture(scope="module")
def kitchens():
    """The demo map, and 30 copies of it 10 m apart (a building of identical kitchens)."""
    base = build_map_from_rgbd(DEMO)
    backend = SiftBackend()
    cfg = LocalizerConfig(backend="sift")
    single = Localizer(cfg, base, backend)
    big = KeyframeMap()
    for r in range(30):
        for kf in base.keyframes():
            T = kf.T_map_cam.copy()
            T[0, 3] += 10.0 * r
            big.add(Keyframe(kf.id + 1000 * r, kf.rgb, kf.K, T, kf.stamp, kf.depth),
                    base.encoding(kf.id))  # identical images: identical encodings
    K = read_matrix(DEMO / "color-intrinsics.txt", (3, 3))
    queries = read_queries(DEMO / "queries_with_gt.txt")[::3]
    return single, big, backend, cfg, K, queries


def _replica_error(T: np.ndarray, T_gt: np.ndarray) -> tuple[float, float, int]:
    """Pose error within the replica the estimate lies in (and that replica's index)."""
    r = int(round(T[0, 3] / 10.0 - T_gt[0, 3] / 10.0))
    shifted = T_gt.copy()
    shifted[0, 3] += 10.0 * r
    dt, dr = pose_errors(T, shifted)
    return dt, dr, r


def test_look_alike_places_are_solved_separately(kitchens) -> None:
    """Every query is localized in one of the 30 kitchens with exactly the accuracy it has in the
    single kitchen (the winning place holds the same keyframes); pooling all retrieved
    keyframes in one RANSAC (one place) mixes kitchens and loses that accuracy."""
    single, big, backend, cfg, K, queries = kitchens
    loc = Localizer(cfg, big, backend)
    pooled = Localizer(LocalizerConfig(backend="sift", retrieval=RetrievalConfig(
        cluster_radius=1e9)), big, backend)
    worse = 0
    for q in queries:
        frame = Frame(read_rgb(DEMO / q.name), K)
        ref = single.localize(frame)
        r = loc.localize(frame)
        assert r.success, (q.name, r.reason)
        dt, dr, replica = _replica_error(r.T_map_cam, q.T_world_cam)
        dt0, dr0 = pose_errors(ref.T_map_cam, q.T_world_cam)
        assert 0 <= replica < 30 and len({i // 1000 for i in r.cluster_ids}) == 1
        assert dt < 0.05 and abs(dt - dt0) < 2e-3 and abs(dr - dr0) < 0.2, (q.name, dt, dt0)
        p = pooled.localize(frame)
        pdt = _replica_error(p.T_map_cam, q.T_world_cam)[0] if p.success else np.inf
        worse += pdt > dt0 + 2e-3 or len({i // 1000 for i in p.cluster_ids}) > 1
    assert worse >= len(queries) // 2  # pooling look-alike places is not the same thing
