"""Localizer: synthetic scenes through a stub backend (exact GT, failure reasons) and the real
7-Scenes sample through the SIFT baseline with our own retrieval."""

from __future__ import annotations

import numpy as np
import pytest

from mast3r_ros.core.backends.sift import SiftBackend
from mast3r_ros.core.config import LocalizerConfig, PoseConfig, RetrievalConfig
from mast3r_ros.core.evaluation import read_queries, summarize_absolute
from mast3r_ros.core.geometry.camera import project
from mast3r_ros.core.geometry.scale import intrinsics_from_focal
from mast3r_ros.core.geometry.se3 import (invert_pose, make_pose, pose_errors, random_rotation,
                                          transform_points)
from mast3r_ros.core.geometry.camera import scale_intrinsics
from mast3r_ros.core.localizer import Localizer
from mast3r_ros.core.map import Keyframe, KeyframeMap, build_map_from_rgbd, read_matrix, read_rgb
from mast3r_ros.core.features import EncoderId, SiftFeatures
from mast3r_ros.core.types import (Encoding, Frame, MatchResult, PairMatches, QueryGeometry,
                                   Timings)

W, H = 320, 240
K = intrinsics_from_focal(260.0, W, H)


class StubBackend:
    """A matcher backend that returns pre-computed matches (per keyframe id) and an optional query
    geometry: the localizer's own stages (retrieval, lifting, solvers, gates) are under test."""

    name = "stub"
    encoder_id = EncoderId("stub", "", 0, "", "stub", SiftFeatures.KIND)

    def __init__(self, matches: dict[int, PairMatches], depth_fn=None, K_est=None) -> None:
        self.matches, self.depth_fn, self.K_est = matches, depth_fn, K_est

    def encode(self, rgb: np.ndarray) -> Encoding:
        return Encoding(self.encoder_id, rgb.shape[1], rgb.shape[0], np.ones(4, np.float32),
                        SiftFeatures(np.zeros((0, 2)), np.zeros((0, 128), np.float32)))

    def match(self, query, refs, config, *, geometry=False, query_image=None) -> MatchResult:
        pairs = [self.matches.get(r.keyframe_id, PairMatches.empty(r.keyframe_id)) for r in refs]
        geo = None
        if geometry and (self.depth_fn is not None or self.K_est is not None):
            geo = QueryGeometry(self.depth_fn or (lambda xy: np.full(len(xy), np.nan)),
                                self.K_est)
        return MatchResult(pairs, geo, Timings(matching=0.0))


def _scene(rng, with_depth=True, with_pointmap=False, n=400):
    """A keyframe looking at a wall-like depth surface and a query camera nearby."""
    T_kf = make_pose(random_rotation(rng, 20), rng.normal(0, 0.5, 3))
    rows, cols = np.mgrid[0:H, 0:W]
    depth = (3.0 + 0.5 * np.sin(cols / 40.0) + 0.002 * rows).astype(np.float32)
    rays = np.stack([(cols - K[0, 2]) / K[0, 0], (rows - K[1, 2]) / K[1, 1], np.ones_like(depth)], -1)
    pm = transform_points(T_kf, (rays * depth[..., None]).reshape(-1, 3)).reshape(H, W, 3)
    kf = Keyframe(7, np.zeros((H, W, 3), np.uint8), K, T_kf, depth=depth if with_depth else None,
                  pointmap=pm.astype(np.float32) if with_pointmap else None)
    T_q = T_kf @ make_pose(random_rotation(rng, 8), [0.3, -0.05, 0.1])
    xy_kf = np.stack([rng.integers(10, W - 10, n), rng.integers(10, H - 10, n)], 1).astype(float)
    X_map = pm[xy_kf[:, 1].astype(int), xy_kf[:, 0].astype(int)].astype(np.float64)
    X_q = transform_points(invert_pose(T_q), X_map)
    xy_q = project(X_q, K)
    return kf, T_q, PairMatches(7, xy_q, xy_kf, np.ones(n)), X_q[:, 2]


def _loc(kmap, backend, **pose) -> Localizer:
    cfg = LocalizerConfig(backend="sift", retrieval=RetrievalConfig(top_k=2),
                          pose=PoseConfig(**pose) if pose else PoseConfig())
    return Localizer(cfg, kmap, backend)


@pytest.mark.parametrize("depth,pointmap", [(True, False), (False, True)])
def test_exact_pose_from_depth_or_pointmap(rng, depth, pointmap) -> None:
    kf, T_q, m, _ = _scene(rng, depth, pointmap)
    r = _loc(KeyframeMap(None, [kf]), StubBackend({7: m})).localize(Frame(np.zeros((H, W, 3), np.uint8), K))
    assert r.success, r.reason
    dt, dr = pose_errors(r.T_map_cam, T_q)
    assert dt < 1e-4 and dr < 1e-3  # float32 depth/pointmap storage limits exactness
    assert r.method == "pnp" and r.keyframe_ids == [7] and r.num_inliers > 300
    assert r.covariance.shape == (6, 6) and np.all(np.linalg.eigvalsh(r.covariance) > 0)
    assert r.inlier_points_map.shape == (r.num_inliers, 3)
    assert {"retrieval", "lift", "pose", "total"} <= set(r.timings.as_dict())


def test_essential_path_with_metric_scale(rng) -> None:
    kf, T_q, m, z_q = _scene(rng, with_depth=False)
    lookup = {tuple(np.round(x, 6)): z for x, z in zip(m.xy_query, z_q)}
    backend = StubBackend({7: m}, depth_fn=lambda xy: np.array([lookup[tuple(np.round(x, 6))] for x in xy]))
    r = _loc(KeyframeMap(None, [kf]), backend).localize(Frame(np.zeros((H, W, 3), np.uint8), K))
    assert r.success and r.method == "essential", r.reason
    dt, dr = pose_errors(r.T_map_cam, T_q)
    assert dt < 1e-4 and dr < 1e-4


def test_missing_K_uses_backend_estimate(rng) -> None:
    kf, T_q, m, _ = _scene(rng)
    backend = StubBackend({7: m}, K_est=K)
    r = _loc(KeyframeMap(None, [kf]), backend).localize(Frame(np.zeros((H, W, 3), np.uint8), None))
    assert r.success and pose_errors(r.T_map_cam, T_q)[0] < 1e-4


def test_covariance_scale(rng) -> None:
    kf, _, m, _ = _scene(rng)
    frame = Frame(np.zeros((H, W, 3), np.uint8), K)
    kmap = KeyframeMap(None, [kf])
    m = PairMatches(7, m.xy_query + rng.normal(0, 0.5, m.xy_query.shape), m.xy_ref, m.score)
    c1 = _loc(kmap, StubBackend({7: m})).localize(frame).covariance
    c4 = _loc(kmap, StubBackend({7: m}), covariance_scale=4.0).localize(frame).covariance
    assert np.allclose(c4, 4.0 * c1, rtol=1e-3)


def test_explicit_keyframe_ids(rng) -> None:
    kf, T_q, m, _ = _scene(rng)
    loc = _loc(KeyframeMap(None, [kf]), StubBackend({7: m}))
    img = np.zeros((H, W, 3), np.uint8)
    r = loc.localize(Frame(img, K), [7])
    assert r.success and r.keyframe_ids == [7]
    r = loc.localize(Frame(img, K), [3])
    assert not r.success and "unknown keyframe" in r.reason


def test_pose_prior_restricts_retrieval(rng) -> None:
    kf, T_q, m, _ = _scene(rng)
    loc = _loc(KeyframeMap(None, [kf]), StubBackend({7: m}))
    img = np.zeros((H, W, 3), np.uint8)
    near, far = T_q.copy(), T_q.copy()
    far[:3, 3] += 100.0
    assert loc.localize(Frame(img, K, T_map_cam_prior=near)).success
    r = loc.localize(Frame(img, K, T_map_cam_prior=far))
    assert not r.success and "prior" in r.reason


def test_essential_path_without_scale_fails(rng) -> None:
    kf, _, m, _ = _scene(rng, with_depth=False)
    r = _loc(KeyframeMap(None, [kf]), StubBackend({7: m})).localize(Frame(np.zeros((H, W, 3), np.uint8), K))
    assert not r.success and "scale unknown" in r.reason


def test_failure_reasons(rng) -> None:
    kf, _, m, _ = _scene(rng)
    kmap = KeyframeMap(None, [kf])
    img = np.zeros((H, W, 3), np.uint8)
    loc = _loc(kmap, StubBackend({7: m}))
    cases = [
        (Frame(img, np.zeros((3, 3))), "invalid intrinsics"),
        (Frame(img, np.full((3, 3), np.nan)), "invalid intrinsics"),
        (Frame(img, None), "no intrinsics"),
        (Frame(img.astype(np.float32), K), "uint8"),
        (Frame(img[..., 0], K), "(H, W, 3)"),
        (Frame(img[:8, :8], K), "too small"),
        (Frame(img[:100, :100], K), "does not fit"),  # K of a 320x240 image on a 100x100 one
        (Frame(img, K, depth=np.ones((3, 3))), "depth shape"),
    ]
    for frame, fragment in cases:
        r = loc.localize(frame)
        assert not r.success and fragment in r.reason, (fragment, r.reason)
    assert "map is empty" in _loc(KeyframeMap(), StubBackend({})).localize(Frame(img, K)).reason
    assert "no matches" in _loc(kmap, StubBackend({})).localize(Frame(img, K)).reason
    # fewer than 4 correspondences and collinear ones
    few = PairMatches(7, m.xy_query[:3], m.xy_ref[:3], np.ones(3))
    assert "fewer than 4" in _loc(kmap, StubBackend({7: few})).localize(Frame(img, K)).reason
    line = np.stack([np.linspace(20, 300, 50), np.linspace(20, 220, 50)], 1)
    coll = PairMatches(7, line + 1.0, line, np.ones(50))
    assert "collinear" in _loc(kmap, StubBackend({7: coll})).localize(Frame(img, K)).reason


def test_depth_holes(rng) -> None:
    kf, T_q, m, _ = _scene(rng)
    kf.depth[:, : W // 2] = 0.0          # half the depth missing
    kf.depth[::7, :] = np.nan
    r = _loc(KeyframeMap(None, [kf]), StubBackend({7: m})).localize(Frame(np.zeros((H, W, 3), np.uint8), K))
    assert r.success and pose_errors(r.T_map_cam, T_q)[0] < 1e-4
    assert r.num_matches < 0.6 * len(m)
    kf.depth[:] = 0.0                     # no depth at all -> too few correspondences
    r = _loc(KeyframeMap(None, [kf]), StubBackend({7: m})).localize(Frame(np.zeros((H, W, 3), np.uint8), K))
    assert not r.success and "fewer than 4" in r.reason


# ----------------------------------------------------------------------------- 7-Scenes + SIFT
@pytest.fixture(scope="module")
def sevenscenes(data_dir):
    root = data_dir / "sevenscenes_redkitchen_rgbd"
    cfg = LocalizerConfig(backend="sift", retrieval=RetrievalConfig(top_k=4))
    loc = Localizer(cfg, build_map_from_rgbd(root), SiftBackend())
    return root, loc, read_matrix(root / "color-intrinsics.txt", (3, 3)), read_queries(root / "queries_with_gt.txt")


def test_sevenscenes_sift_end_to_end(sevenscenes) -> None:
    root, loc, Kc, queries = sevenscenes
    perr, rerr = [], []
    for q in queries[::5]:  # 7 of 33 queries: the CLI eval runs them all
        r = loc.localize(Frame(read_rgb(root / q.name), Kc))
        assert r.success, (q.name, r.reason)
        nearest = int(q.name.split("-")[1][:6]) // 20 * 20
        assert nearest in r.keyframe_ids  # our retrieval found the neighbouring keyframe
        dp, dr = pose_errors(r.T_map_cam, q.T_world_cam)
        perr.append(dp)
        rerr.append(dr)
        assert np.all(np.sqrt(np.diag(r.covariance)[:3]) < 0.02)  # cm-level position sigma
    s = summarize_absolute(perr, rerr)
    assert s["median_position_cm"] < 2.0 and s["median_rotation_deg"] < 1.5
    assert s["recall_5cm_5deg"] == 1.0


def test_sevenscenes_query_of_another_size(sevenscenes) -> None:
    import cv2

    root, loc, Kc, queries = sevenscenes
    q = queries[10]
    rgb = cv2.resize(read_rgb(root / q.name), (480, 360), interpolation=cv2.INTER_AREA)
    r = loc.localize(Frame(rgb, scale_intrinsics(Kc, 0.75, 0.75)))
    assert r.success, r.reason
    dp, dr = pose_errors(r.T_map_cam, q.T_world_cam)
    assert dp < 0.05 and dr < 3.0
    blank = np.full((480, 640, 3), 128, np.uint8)
    r = loc.localize(Frame(blank, Kc))
    assert not r.success and "no matches" in r.reason


def test_backend_input_errors_become_failures(rng) -> None:
    from mast3r_ros.core.errors import ImageError

    kf, _, m, _ = _scene(rng)
    backend = StubBackend({7: m})

    def bad_match(query, refs, config, **kw):
        raise ImageError("crop 40x40 is not a multiple of 16")

    backend.match = bad_match  # type: ignore[method-assign]
    r = _loc(KeyframeMap(None, [kf]), backend).localize(Frame(np.zeros((H, W, 3), np.uint8), K))
    assert not r.success and "multiple of 16" in r.reason
