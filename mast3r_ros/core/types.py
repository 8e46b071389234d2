"""Value types passed between the stages of the pipeline.

Conventions (stated once, used everywhere):

* Poses are 4x4 float64 homogeneous matrices ``T_a_b`` that map points from frame ``b`` to
  frame ``a`` (``X_a = T_a_b @ X_b``). ``T_map_cam`` is a camera-to-map pose. Camera frames are
  OpenCV optical frames (x right, y down, z forward), as in ROS ``*_optical_frame``.
* ``K`` is a 3x3 float64 pinhole matrix in pixels.
* Pixel coordinates ``xy`` are (N, 2) float arrays (x = column, y = row) with the **pixel-centre**
  convention: the centre of the top-left pixel is (0, 0) (OpenCV's convention). See
  :mod:`mast3r_ros.core.geometry.camera`.
* Points ``X_*`` are (N, 3) float arrays in metres in the frame named by the suffix.
* Times are seconds (float) from the image stamp.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable, Hashable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Optional

import numpy as np

from mast3r_ros.core.features import EncoderId, Features

__all__ = ["ImageSized", "Frame", "Timings", "StageTimer", "Encoding", "KeyframeEncoding",
           "PairMatches", "QueryGeometry", "MatchResult", "PoseEstimate",
           "LocalizationResult"]

_NAN = float("nan")


class ImageSized:
    """Mixin for value types holding an ``rgb`` (H, W, 3) image: its size in pixels."""

    rgb: np.ndarray

    @property
    def height(self) -> int:
        """H, rows of ``rgb``."""
        return int(self.rgb.shape[0])

    @property
    def width(self) -> int:
        """W, columns of ``rgb``."""
        return int(self.rgb.shape[1])


@dataclass
class Frame(ImageSized):
    """One camera image as the core sees it.

    Attributes:
        rgb: (H, W, 3) uint8 RGB image.
        K: (3, 3) float64 intrinsics of ``rgb`` in pixels, or None when unknown.
        stamp: capture time in seconds (ROS stamp as float), 0 when unknown.
        frame_id: camera optical frame name.
        depth: optional (H, W) float32 depth in metres (0 or NaN = invalid), same size as ``rgb``.
        T_map_cam_prior: optional (4, 4) pose prior (e.g. from ``initialpose``) to narrow retrieval.
    """

    rgb: np.ndarray
    K: Optional[np.ndarray] = None
    stamp: float = 0.0
    frame_id: str = "camera"
    depth: Optional[np.ndarray] = None
    T_map_cam_prior: Optional[np.ndarray] = None


@dataclass(frozen=True)
class Timings:
    """Seconds spent per stage of one call; NaN when the stage did not run.

    The fields are fixed for every backend, so consumers (status messages, benchmarks) never need
    to know backend-specific names.

    Attributes:
        preprocess: image -> network input (resize, crop, normalise).
        encode: encoder pass (MASt3R) or feature extraction (SIFT).
        retrieval: global-descriptor search.
        decode: decoder and heads (MASt3R).
        matching: correspondence search and filtering (FRM, descriptor NN).
        coarse_to_fine: full-resolution refinement of matches.
        lift: 2D-3D correspondences from keyframe depth / pointmaps.
        pose: pose solver (PnP / essential matrix) and refinement.
        total: the whole call.
    """

    preprocess: float = _NAN
    encode: float = _NAN
    retrieval: float = _NAN
    decode: float = _NAN
    matching: float = _NAN
    coarse_to_fine: float = _NAN
    lift: float = _NAN
    pose: float = _NAN
    total: float = _NAN

    def replace(self, **changes: float) -> Timings:
        """A copy with some stages set."""
        return dataclasses.replace(self, **changes)

    def merge(self, other: Timings) -> Timings:
        """Stage-wise: ``other``'s value where it ran, else this one's."""
        return Timings(**{f.name: (getattr(other, f.name) if not math.isnan(getattr(other, f.name))
                                   else getattr(self, f.name))
                          for f in dataclasses.fields(self)})

    def as_dict(self) -> dict[str, float]:
        """The stages that ran, ``{name: seconds}`` (for JSON output)."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)
                if not math.isnan(getattr(self, f.name))}


class StageTimer:
    """Accumulates wall-clock seconds per :class:`Timings` stage within one call.

    Example::

        timer = StageTimer()
        with timer.stage("encode"):
            ...
        timings = timer.timings()
    """

    def __init__(self) -> None:
        self._t0 = time.perf_counter()
        self._acc: dict[str, float] = {}

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        """Time the body and add it to stage ``name`` (a :class:`Timings` field)."""
        t = time.perf_counter()
        try:
            yield
        finally:
            self._acc[name] = self._acc.get(name, 0.0) + time.perf_counter() - t

    def add(self, timings: Timings) -> None:
        """Add the stages of a sub-call's timings (not its total)."""
        for name, value in timings.as_dict().items():
            if name != "total":
                self._acc[name] = self._acc.get(name, 0.0) + value

    def timings(self, total: bool = True) -> Timings:
        """The accumulated stages (and the time since construction as ``total``)."""
        extra = {"total": time.perf_counter() - self._t0} if total else {}
        return Timings(**self._acc, **extra)


@dataclass(frozen=True)
class Encoding:
    """One image encoded by a backend: everything matching and retrieval need from it.

    Attributes:
        encoder: identity of the backend and weights that produced it.
        width: W of the original image in pixels.
        height: H of the original image in pixels.
        global_desc: (D,) float32 L2-normalised retrieval descriptor.
        features: the backend's typed local features.
        timings: ``preprocess`` / ``encode`` seconds of this encoding.
    """

    encoder: EncoderId
    width: int
    height: int
    global_desc: np.ndarray
    features: Features
    timings: Timings = field(default_factory=Timings)


@dataclass(frozen=True)
class KeyframeEncoding:
    """A keyframe's stored encoding as a match reference.

    Attributes:
        keyframe_id: id of the keyframe in its map.
        encoding: its encoding (same :class:`EncoderId` as the query's).
        image: loads the keyframe's original (H, W, 3) uint8 RGB on demand; only coarse-to-fine
            matching calls it. None when unavailable (coarse-to-fine is then skipped).
        cache_key: names the encoding's content (its map, keyframe and version), so a backend
            may cache what it derives from it (e.g. tokens on its device); None = do not cache.
    """

    keyframe_id: int
    encoding: Encoding
    image: Optional[Callable[[], np.ndarray]] = None
    cache_key: Optional[Hashable] = None


@dataclass(frozen=True)
class PairMatches:
    """2D-2D correspondences between a query image and one keyframe image.

    Attributes:
        ref_id: keyframe id of the reference image.
        xy_query: (N, 2) float64 pixels in the query's original image.
        xy_ref: (N, 2) float64 pixels in the reference's original image.
        score: (N,) float64 match confidence (higher is better).
    """

    ref_id: int
    xy_query: np.ndarray
    xy_ref: np.ndarray
    score: np.ndarray

    def __len__(self) -> int:
        return int(self.xy_query.shape[0])

    @classmethod
    def empty(cls, ref_id: int) -> PairMatches:
        """No matches with keyframe ``ref_id``."""
        return cls(ref_id, np.zeros((0, 2)), np.zeros((0, 2)), np.zeros(0))


@dataclass(frozen=True)
class QueryGeometry:
    """What the network predicted about the query's own geometry (MASt3R's pointmap head).

    Attributes:
        depth_at: maps (N, 2) original query pixels to (N,) metric depths (NaN outside the
            prediction).
        K: (3, 3) intrinsics of the original query image estimated from the pointmap (centred
            principal point), or None when the estimate failed.
    """

    depth_at: Callable[[np.ndarray], np.ndarray]
    K: Optional[np.ndarray]


@dataclass(frozen=True)
class MatchResult:
    """Output of ``MatcherBackend.match``.

    Attributes:
        pairs: one :class:`PairMatches` per reference, in the order of the references.
        geometry: the query's predicted geometry when it was requested and the backend can
            predict it, else None.
        timings: ``decode`` / ``matching`` / ``coarse_to_fine`` seconds of this call.
    """

    pairs: list[PairMatches]
    geometry: Optional[QueryGeometry] = None
    timings: Timings = field(default_factory=Timings)

    @property
    def num_matches(self) -> int:
        """Matches over all pairs."""
        return sum(len(p) for p in self.pairs)


@dataclass(frozen=True)
class PoseEstimate:
    """Outcome of a pose solver (a value; failures carry a reason).

    Attributes:
        success: every gate passed.
        reason: "ok" or why not.
        T_map_cam: (4, 4) camera-to-map pose (also set when a gate failed after solving), or None.
        covariance: (6, 6) map-frame covariance (x, y, z, rx, ry, rz), or None.
        num_matches: correspondences given to the solver.
        num_inliers: correspondences consistent with the pose.
        reprojection_error: median inlier reprojection error in pixels (NaN when unknown).
        inlier_points_map: (M, 3) map-frame points of the inliers.
        inlier_xy_query: (M, 2) query pixels of the inliers.
        method: "pnp" or "essential".
    """

    success: bool
    reason: str
    T_map_cam: Optional[np.ndarray] = None
    covariance: Optional[np.ndarray] = None
    num_matches: int = 0
    num_inliers: int = 0
    reprojection_error: float = float("nan")
    inlier_points_map: np.ndarray = field(default_factory=lambda: np.zeros((0, 3)))
    inlier_xy_query: np.ndarray = field(default_factory=lambda: np.zeros((0, 2)))
    method: str = ""


@dataclass(frozen=True)
class LocalizationResult(PoseEstimate):
    """Outcome of localizing one frame (a :class:`PoseEstimate` with what led to it). Never
    raised: ``success=False`` carries a ``reason``.

    Attributes (besides those of :class:`PoseEstimate`; ``covariance`` is in the map frame, order
    (x, y, z, rx, ry, rz), m^2 and rad^2 with the rotation as a small-angle perturbation, as in ROS
    ``PoseWithCovariance``; ``num_matches`` counts the 2D-3D or 2D-2D correspondences):
        keyframe_ids: ids of the retrieved keyframes, best first.
        retrieval_scores: similarity of each retrieved keyframe.
        timings: seconds per stage.
        backend: matcher backend ("mast3r", "sift").
        cluster_ids: keyframe ids of the retrieval cluster whose pose won (all retrieved keyframes
            when there was one cluster).
    """

    keyframe_ids: list[int] = field(default_factory=list)
    retrieval_scores: list[float] = field(default_factory=list)
    timings: Timings = field(default_factory=Timings)
    backend: str = ""
    cluster_ids: list[int] = field(default_factory=list)
