"""encode -> retrieve -> match -> lift -> pose: the one place that knows the order of the pipeline.

``Localizer.localize`` never raises for data it cannot localize (bad image, bad K, empty map, no
matches, degenerate geometry, failed gates): it returns ``LocalizationResult(success=False,
reason=...)``. Only programming/configuration errors raise (typed :class:`Mast3rRosError`).

Each stage is a function of typed values in its own module: the backend's ``encode`` / ``match``
(:mod:`mast3r_ros.core.backends`), retrieval of places (:mod:`mast3r_ros.core.retrieval.select`),
2D-3D correspondences and the solvers (:mod:`mast3r_ros.core.pose`). The localizer holds the
configuration, the backend and the map, and nothing about previous frames.
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path
from typing import Optional, Sequence, Union

import numpy as np

from mast3r_ros.core.backends import MatcherBackend, create_backend, encode_map
from mast3r_ros.core.cache import ByteLRU
from mast3r_ros.core.config import LocalizerConfig
from mast3r_ros.core.errors import ConfigError, InputError
from mast3r_ros.core.geometry.camera import intrinsics_problem, sample_depth
from mast3r_ros.core.map.keyframe import KeyframeMap
from mast3r_ros.core.map.store import load_map
from mast3r_ros.core.pose import PoseEstimate, gather_correspondences, solve_essential, solve_pnp
from mast3r_ros.core.retrieval.select import Place, retrieve_places
from mast3r_ros.core.types import Encoding, Frame, LocalizationResult, MatchResult, StageTimer

__all__ = ["Localizer", "frame_problem"]

logger = logging.getLogger(__name__)


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
    prior = frame.T_map_cam_prior
    if prior is not None and (np.asarray(prior).shape != (4, 4)
                              or not np.all(np.isfinite(np.asarray(prior, dtype=float)))):
        return "pose prior must be a finite 4x4 matrix"
    return None


class Localizer:
    """Localize single frames against a keyframe map.

    Args:
        config: pipeline configuration.
        keyframe_map: the map; keyframes without an encoding of the backend are encoded here.
        backend: matcher backend; default: created from ``config.backend``.

    Raises:
        MapCompatibilityError: the map's stored encodings come from another model.
    """

    def __init__(self, config: LocalizerConfig, keyframe_map: KeyframeMap,
                 backend: Optional[MatcherBackend] = None) -> None:
        self._config = config
        self.backend = backend if backend is not None else create_backend(config)
        # keyframe encodings prepared on the model's device, by content (map, keyframe, version)
        self._device_cache: ByteLRU = ByteLRU(config.model.device_cache_bytes)
        self.map = keyframe_map
        self.set_map(keyframe_map)

    @classmethod
    def from_paths(cls, config: LocalizerConfig, map_path: Union[str, Path]) -> Localizer:
        """Create the backend (loads the model for ``mast3r``), then load and prepare the map.

        Raises:
            CheckpointError: ``mast3r`` backend with a missing/invalid checkpoint.
            MapFormatError / MapCompatibilityError: unusable map.
        """
        backend = create_backend(config)
        return cls(config, load_map(map_path, config=config.map_store), backend)

    @property
    def config(self) -> LocalizerConfig:
        """The pipeline configuration (read per frame)."""
        return self._config

    def update_config(self, config: LocalizerConfig) -> None:
        """Apply new stage settings from the next frame on.

        Raises:
            ConfigError: a setting that defines the backend or its encodings changed (backend,
                model, SIFT features); those need a new localizer.
        """
        for name in ("backend", "model", "sift"):
            if getattr(config, name) != getattr(self._config, name):
                raise ConfigError(f"{name} cannot change on a running localizer; reconfigure it")
        self._config = config

    def set_map(self, keyframe_map: KeyframeMap) -> None:
        """Replace the map, encoding the keyframes that have no encoding of this backend.

        Encodings made here live in memory only; for a large map run ``mast3r-ros encode-map``
        once so that they are stored and read on demand.
        """
        n = encode_map(keyframe_map, self.backend)
        self._device_cache.clear()
        if n and keyframe_map.source is not None:
            logger.warning("encoded %d keyframes of a saved map in memory; run `mast3r-ros "
                           "encode-map <map> --backend %s` once to store them", n,
                           self.backend.name)
        self.map = keyframe_map

    # ------------------------------------------------------------------ the pipeline
    def localize(self, frame: Frame, keyframe_ids: Optional[Sequence[int]] = None,
                 query: Optional[Encoding] = None) -> LocalizationResult:
        """Pose of one frame in the map (see the module docstring for the failure policy).

        Args:
            frame: the query.
            keyframe_ids: match against these keyframes instead of the retrieved places (e.g. an
                oracle list in evaluations); unknown ids give ``success=False``.
            query: the frame's encoding by this backend when the caller already has it (the
                tracker relocalizing a frame it encoded), so the image is not encoded twice.
        """
        timer = StageTimer()
        problem = frame_problem(frame)
        if problem is not None:
            return self._result(timer, reason=f"invalid input: {problem}")
        if len(self.map) == 0 or self.map.index is None:
            return self._result(timer, reason="map is empty")
        try:
            if query is None:
                query = self.backend.encode(frame.rgb)
                timer.add(query.timings)
            with timer.stage("retrieval"):
                places = self._places(query, frame, keyframe_ids)
            if not places:
                return self._result(timer, reason="no keyframe near the pose prior")
            best: Optional[tuple[PoseEstimate, Place]] = None
            for place in places:
                est = self._solve_place(frame, query, place, timer)
                if best is None or (est.success, est.num_inliers) > (best[0].success,
                                                                     best[0].num_inliers):
                    best = (est, place)
        except InputError as exc:  # e.g. an image the network preprocessing cannot crop
            return self._result(timer, reason=f"invalid input: {exc}")
        assert best is not None  # places is not empty
        est, place = best
        return self._result(timer, est, place, [i for p in places for i in p.ids],
                            [s for p in places for s in p.scores])

    def _places(self, query: Encoding, frame: Frame,
                keyframe_ids: Optional[Sequence[int]]) -> list[Place]:
        if keyframe_ids is not None:
            unknown = sorted(set(int(i) for i in keyframe_ids) - set(self.map.ids))
            if unknown:
                raise InputError(f"unknown keyframe ids {unknown[:5]}")
            return [Place([int(i) for i in keyframe_ids], [float("nan")] * len(keyframe_ids))]
        prior = frame.T_map_cam_prior
        return retrieve_places(self.map, query.global_desc, self._config.retrieval,
                               None if prior is None else np.asarray(prior)[:3, 3])

    def _solve_place(self, frame: Frame, query: Encoding, place: Place,
                     timer: StageTimer) -> PoseEstimate:
        """Match the query against one place's keyframes and solve its pose."""
        cfg = self._config
        records = [self.map.record(i) for i in place.ids]
        need_geometry = frame.K is None or not all(r.has_3d for r in records)
        refs = [self.map.keyframe_encoding(i) for i in place.ids]
        matched = self.backend.match(query, refs, cfg.matching, geometry=need_geometry,
                                     query_image=frame.rgb, cache=self._device_cache)
        timer.add(matched.timings)
        K = frame.K if frame.K is not None else (matched.geometry.K if matched.geometry else None)
        if K is None:
            return PoseEstimate(False, f"no intrinsics given and backend '{self.backend.name}' "
                                "cannot estimate them; provide CameraInfo")
        K = np.asarray(K, dtype=np.float64)
        if matched.num_matches == 0:
            return PoseEstimate(False, "no matches with the retrieved keyframes")
        with timer.stage("lift"):
            kfs = [self.map.keyframe(i) for i in place.ids]
        if any(r.has_3d for r in records):
            with timer.stage("lift"):
                corr = gather_correspondences(kfs, matched.pairs)
            with timer.stage("pose"):
                return solve_pnp(corr, K, cfg.pose)
        with timer.stage("pose"):
            return self._solve_essential(frame, K, kfs, matched)

    def _solve_essential(self, frame: Frame, K: np.ndarray, kfs: list,
                         matched: MatchResult) -> PoseEstimate:
        best = int(np.argmax([len(m) for m in matched.pairs]))
        geo = matched.geometry

        def metric(xy: np.ndarray) -> Optional[np.ndarray]:
            if geo is not None:
                return geo.depth_at(xy)
            if frame.depth is not None:
                return sample_depth(np.asarray(frame.depth, dtype=np.float32), xy)
            return None

        return solve_essential(kfs[best], matched.pairs[best], K, self._config.pose, metric)

    def _result(self, timer: StageTimer, est: Optional[PoseEstimate] = None,
                place: Optional[Place] = None, ids: Sequence[int] = (),
                scores: Sequence[float] = (), reason: str = "") -> LocalizationResult:
        timings = timer.timings()
        if est is None:
            logger.debug("not localized: %s", reason)
            return LocalizationResult(False, reason, timings=timings, backend=self.backend.name)
        fields = {f.name: getattr(est, f.name) for f in dataclasses.fields(est)}
        return LocalizationResult(**fields, keyframe_ids=list(ids), retrieval_scores=list(scores),
                                  timings=timings, backend=self.backend.name,
                                  cluster_ids=list(place.ids) if place else [])
