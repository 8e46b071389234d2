"""retrieve -> match -> lift to 3D -> pose: the one place that knows the order of the pipeline.

Covariance: ``sigma^2 (J^T J)^-1`` of the PnP refinement (see
:mod:`mast3r_ros.core.geometry.covariance`), order (x, y, z, rx, ry, rz) in the MAP frame as in
ROS ``PoseWithCovariance``, times ``PoseConfig.covariance_scale``; None on the essential-matrix
path (no map 3D).

``Localizer.localize`` never raises for data it cannot localize (bad image, bad K, empty map, no
matches, degenerate geometry, failed gates): it returns ``LocalizationResult(success=False,
reason=...)``. Only programming/configuration errors raise (typed :class:`Mast3rRosError`).
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Optional, Sequence, Union

import numpy as np

from mast3r_ros.core.backends import MatcherBackend, create_backend
from mast3r_ros.core.config import LocalizerConfig
from mast3r_ros.core.errors import InputError
from mast3r_ros.core.geometry.camera import backproject, intrinsics_problem, sample_depth
from mast3r_ros.core.geometry.essential import estimate_relative_pose, triangulate_depths
from mast3r_ros.core.geometry.pnp import estimate_pose_pnp
from mast3r_ros.core.geometry.scale import estimate_scale
from mast3r_ros.core.geometry.se3 import transform_points
from mast3r_ros.core.map.keyframe import Keyframe, KeyframeMap
from mast3r_ros.core.map.store import load_map
from mast3r_ros.core.retrieval.index import GlobalIndex
from mast3r_ros.core.types import Frame, LocalizationResult, Matches

__all__ = ["Localizer", "lift_matches", "frame_problem"]

logger = logging.getLogger(__name__)

#: reject keyframe depth at pixels whose 3x3 neighbourhood spans more than this relative range
DEPTH_EDGE_REL = 0.05


def frame_problem(frame: Frame) -> Optional[str]:
    """Why a frame cannot be processed (image, K, depth), or None. K=None is not a problem."""
    rgb = frame.rgb
    if not isinstance(rgb, np.ndarray) or rgb.ndim != 3 or rgb.shape[2] != 3:
        return f"image must be (H, W, 3), got {getattr(rgb, 'shape', type(rgb).__name__)}"
    if rgb.dtype != np.uint8:
        return f"image must be uint8, got {rgb.dtype}"
    if min(rgb.shape[:2]) < 16:
        return f"image too small ({rgb.shape[1]}x{rgb.shape[0]}); at least 16x16 is needed"
    if frame.K is not None:
        problem = intrinsics_problem(frame.K)
        if problem is not None:
            return f"invalid intrinsics: {problem}"
        K = np.asarray(frame.K, dtype=np.float64)
        cx, cy = K[0, 2], K[1, 2]
        if not (-0.5 <= cx <= frame.width - 0.5 and -0.5 <= cy <= frame.height - 0.5):
            return (f"K does not fit the {frame.width}x{frame.height} image (principal point "
                    f"({cx:.1f}, {cy:.1f}) outside it); rescale K to the image size")
    if frame.depth is not None and np.asarray(frame.depth).shape != rgb.shape[:2]:
        return f"query depth shape {np.asarray(frame.depth).shape} != image {rgb.shape[:2]}"
    return None


def lift_matches(kf: Keyframe, m: Matches) -> tuple[np.ndarray, np.ndarray]:
    """Map-frame 3D points of the keyframe side of matches (depth, else pointmap).

    Returns:
        ``(X_map (N, 3) float64 with NaN rows where no valid 3D exists, valid (N,) bool)``.
    """
    n = len(m)
    X = np.full((n, 3), np.nan)
    if n == 0:
        return X, np.zeros(0, dtype=bool)
    if kf.depth is not None:
        z = sample_depth(kf.depth, m.xy_ref, max_rel_jump=DEPTH_EDGE_REL)
        ok = np.isfinite(z)
        X[ok] = transform_points(kf.T_map_cam, backproject(m.xy_ref[ok], z[ok], kf.K))
    elif kf.pointmap is not None:
        col = np.rint(m.xy_ref[:, 0]).astype(np.int64)
        row = np.rint(m.xy_ref[:, 1]).astype(np.int64)
        inside = (col >= 0) & (col < kf.width) & (row >= 0) & (row < kf.height)
        X[inside] = kf.pointmap[row[inside], col[inside]]
    valid = np.all(np.isfinite(X), axis=1)
    return X, valid


class Localizer:
    """Localize single frames against a keyframe map.

    Args:
        config: pipeline configuration.
        keyframe_map: the map (prepared by the backend here: descriptors/features are computed when
            missing).
        backend: matcher backend; default: created from ``config.backend``.
    """

    def __init__(self, config: LocalizerConfig, keyframe_map: KeyframeMap,
                 backend: Optional[MatcherBackend] = None) -> None:
        self.config = config
        self.backend = backend if backend is not None else create_backend(config)
        self.map = keyframe_map
        self._index: Optional[GlobalIndex] = None
        self.set_map(keyframe_map)

    @classmethod
    def from_paths(cls, config: LocalizerConfig, map_path: Union[str, Path]) -> "Localizer":
        """Create the backend (loads the model for ``mast3r``), then load and check the map.

        Raises:
            CheckpointError: ``mast3r`` backend with a missing/invalid checkpoint.
            MapFormatError / MapCompatibilityError: unusable map.
        """
        backend = create_backend(config)
        expected = getattr(backend, "expected_meta", None)
        return cls(config, load_map(map_path, expected), backend)

    def set_map(self, keyframe_map: KeyframeMap) -> None:
        """Replace the map (prepares it with the backend and rebuilds the retrieval index)."""
        self.backend.prepare_map(keyframe_map)
        self.map = keyframe_map
        if len(keyframe_map) and keyframe_map.global_desc is not None:
            self._index = GlobalIndex(keyframe_map.global_desc, keyframe_map.ids)
        else:
            self._index = None

    def _fail(self, reason: str, t0: float, **kw: object) -> LocalizationResult:
        timings = dict(kw.pop("timings", {}) or {})  # type: ignore[arg-type]
        timings["total"] = time.perf_counter() - t0
        logger.debug("not localized: %s", reason)
        return LocalizationResult(False, reason, timings=timings, backend=self.backend.name,
                                  **kw)  # type: ignore[arg-type]

    def retrieve(self, frame: Frame) -> tuple[list[int], list[float]]:
        """Top-k keyframe ids and scores for a frame (restricted by its pose prior, if any)."""
        assert self._index is not None
        allowed = None
        if frame.T_map_cam_prior is not None:
            C = self.map.poses()[:, :3, 3]
            d = np.linalg.norm(C - np.asarray(frame.T_map_cam_prior)[:3, 3], axis=1)
            allowed = d <= self.config.retrieval.prior_radius
        ids, scores = self._index.search(self.backend.global_descriptor(frame),
                                         self.config.retrieval.top_k, allowed)
        return [int(i) for i in ids], [float(s) for s in scores]

    def localize(self, frame: Frame,
                 keyframe_ids: Optional[Sequence[int]] = None) -> LocalizationResult:
        """Pose of one frame in the map (see the module docstring for the failure policy).

        Args:
            frame: the query.
            keyframe_ids: match against these keyframes instead of the retrieved top-k (e.g. an
                oracle list in evaluations); unknown ids give ``success=False``.
        """
        t0 = time.perf_counter()
        problem = frame_problem(frame)
        if problem is not None:
            return self._fail(f"invalid input: {problem}", t0)
        if len(self.map) == 0 or self._index is None:
            return self._fail("map is empty", t0)
        timings: dict[str, float] = {}
        try:
            t = time.perf_counter()
            if keyframe_ids is None:
                ids, scores = self.retrieve(frame)
            else:
                ids, scores = [int(i) for i in keyframe_ids], [float("nan")] * len(keyframe_ids)
                unknown = sorted(set(ids) - set(self.map.ids))
                if unknown:
                    return self._fail(f"unknown keyframe ids {unknown[:5]}", t0)
            timings["retrieval"] = time.perf_counter() - t
            if not ids:
                return self._fail("no keyframe near the pose prior", t0, timings=timings)
            kfs = [self.map.keyframe(i) for i in ids]
            t = time.perf_counter()
            matches = self.backend.match(frame, kfs)
            timings["match_total"] = time.perf_counter() - t
        except InputError as exc:  # e.g. an image the network preprocessing cannot crop
            return self._fail(f"invalid input: {exc}", t0, timings=timings)
        timings.update(self.backend.timings)
        common = dict(keyframe_ids=ids, retrieval_scores=scores, timings=timings)
        K = frame.K
        if K is None:
            K = self.backend.estimate_intrinsics(frame)
            if K is None:
                return self._fail(f"no intrinsics given and backend '{self.backend.name}' cannot "
                                  f"estimate them; provide CameraInfo", t0, **common)
        K = np.asarray(K, dtype=np.float64)
        if sum(len(m) for m in matches) == 0:
            return self._fail("no matches with the retrieved keyframes", t0, **common)
        if any(kf.has_3d for kf in kfs):
            return self._solve_pnp(frame, K, kfs, matches, t0, common)
        return self._solve_essential(frame, K, kfs, matches, t0, common)

    def _solve_pnp(self, frame: Frame, K: np.ndarray, kfs: Sequence[Keyframe],
                   matches: Sequence[Matches], t0: float, common: dict) -> LocalizationResult:
        t = time.perf_counter()
        xs, Xs = [], []
        for kf, m in zip(kfs, matches):
            X, ok = lift_matches(kf, m)
            xs.append(m.xy_query[ok])
            Xs.append(X[ok])
        xy, X_map = np.concatenate(xs), np.concatenate(Xs)
        common["timings"]["lift"] = time.perf_counter() - t
        t = time.perf_counter()
        pc = self.config.pose
        res = estimate_pose_pnp(xy, X_map, K, reproj_threshold=pc.ransac_reproj_threshold,
                                confidence=pc.ransac_confidence, max_iters=pc.ransac_max_iters,
                                min_inliers=pc.min_inliers,
                                max_median_reproj_error=pc.max_median_reproj_error,
                                refine=pc.refine, method=pc.pnp_method)
        common["timings"]["pose"] = time.perf_counter() - t
        common["timings"]["total"] = time.perf_counter() - t0
        inl = res.inliers
        cov = res.covariance * pc.covariance_scale if res.covariance is not None else None
        return LocalizationResult(
            res.success, res.reason, res.T_map_cam, cov, int(xy.shape[0]),
            res.num_inliers, res.reprojection_error, X_map[inl] if inl.size else np.zeros((0, 3)),
            xy[inl] if inl.size else np.zeros((0, 2)), method="pnp", backend=self.backend.name,
            **common)

    def _solve_essential(self, frame: Frame, K: np.ndarray, kfs: Sequence[Keyframe],
                         matches: Sequence[Matches], t0: float, common: dict) -> LocalizationResult:
        """No map 3D: relative pose to the best-matched keyframe, metric scale from query depth."""
        t = time.perf_counter()
        best = int(np.argmax([len(m) for m in matches]))
        kf, m = kfs[best], matches[best]
        rel = estimate_relative_pose(m.xy_query, m.xy_ref, K, kf.K, threshold_px=1.0)
        common["timings"]["pose"] = time.perf_counter() - t
        if not rel.success:
            return self._fail(f"essential matrix: {rel.reason}", t0, num_matches=len(m), **common)
        xq, xr = m.xy_query[rel.inliers], m.xy_ref[rel.inliers]
        metric = self.backend.query_depth(frame, xq)
        if metric is None and frame.depth is not None:
            metric = sample_depth(np.asarray(frame.depth, dtype=np.float32), xq)
        if metric is None:
            return self._fail("keyframes have no depth and the query no metric depth: scale "
                              "unknown", t0, num_matches=len(m), **common)
        T_kf_q = rel.T_1_0
        s = estimate_scale(metric, triangulate_depths(xq, xr, K, kf.K, T_kf_q))
        if not np.isfinite(s):
            return self._fail("could not estimate the metric scale", t0, num_matches=len(m), **common)
        T_kf_q[:3, 3] *= s
        T_map_cam = kf.T_map_cam @ T_kf_q
        n_in = int(rel.inliers.sum())
        ok = n_in >= self.config.pose.min_inliers
        common["timings"]["total"] = time.perf_counter() - t0
        return LocalizationResult(
            ok, "ok" if ok else f"too few inliers ({n_in} < {self.config.pose.min_inliers})",
            T_map_cam, None, len(m), n_in, inlier_xy_query=xq, method="essential",
            backend=self.backend.name, **common)
