"""Configuration of every stage: frozen dataclasses, the only home of default values.

Each field carries metadata used for validation and to derive ROS parameters (dotted names
``<section>.<field>``, descriptors with ranges and help text):

* ``help``: one line of documentation (units included);
* ``range``: inclusive ``(low, high)`` for numbers (``None`` for an open side);
* ``choices``: allowed values for strings;
* ``read_only``: True when the value cannot change while a node runs (model, device, map).

Validation happens in ``__post_init__`` and raises :class:`~mast3r_ros.core.errors.ConfigError`.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, Mapping, Optional

from mast3r_ros.core.errors import ConfigError

__all__ = [
    "opt",
    "validate_fields",
    "InputConfig",
    "ModelConfig",
    "MatchingConfig",
    "SiftConfig",
    "RetrievalConfig",
    "PoseConfig",
    "LocalizerConfig",
    "MappingConfig",
    "RayConfig",
    "KeyframeSelectionConfig",
    "MapStoreConfig",
    "PoseGraphConfig",
    "LoopClosureConfig",
    "SlamConfig",
    "KeyframeRuleConfig",
    "LostConfig",
    "TrackingConfig",
    "tracking_pipeline",
    "field_default",
    "leaf_fields",
    "config_from_flat",
    "flat_values",
    "make_config",
]


def opt(default: Any, help: str, range: Optional[tuple] = None, choices: Optional[tuple] = None,
        read_only: bool = False) -> Any:
    """Declare a config field with its documentation and constraints."""
    meta = {"help": help, "range": range, "choices": choices, "read_only": read_only}
    return field(default=default, metadata=meta)


def validate_fields(obj: Any) -> None:
    """Check every field of a config dataclass against its ``range`` / ``choices`` metadata.

    Raises:
        ConfigError: naming the section, the field, the value and what is allowed.
    """
    name = type(obj).__name__
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        rng = f.metadata.get("range")
        choices = f.metadata.get("choices")
        if rng is not None and value is not None:
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise ConfigError(f"{name}.{f.name} must be a number, got {value!r}")
            if isinstance(value, float) and not math.isfinite(value):
                raise ConfigError(f"{name}.{f.name} must be finite, got {value!r}")
            lo, hi = rng
            if (lo is not None and value < lo) or (hi is not None and value > hi):
                raise ConfigError(f"{name}.{f.name}={value!r} is outside [{lo}, {hi}]")
        if choices is not None and value not in choices:
            raise ConfigError(f"{name}.{f.name}={value!r} is not one of {list(choices)}")


def make_config(cls: type, kwargs: dict[str, Any]) -> Any:
    """``cls(**kwargs)`` for a config dataclass, with every failure a :class:`ConfigError`.

    Raises:
        ConfigError: a value out of range (from ``__post_init__``), an unknown field name or a
            value of the wrong type (``TypeError`` / ``ValueError`` of the constructor).
    """
    try:
        return cls(**kwargs)
    except ConfigError:
        raise
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"invalid {cls.__name__} values: {exc}") from exc


def field_default(f: dataclasses.Field) -> Any:
    """The default of a config field (a fresh instance for a nested config).

    Raises:
        ConfigError: the field has no default (every config field needs one).
    """
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    raise ConfigError(f"config field {f.name} has no default; every config field needs one")


def leaf_fields(cls: type, prefix: str = "") -> Iterator[tuple[str, dataclasses.Field, Any]]:
    """``(dotted name, field, default)`` of every leaf field of a config dataclass, nested
    configs recursed (``pose.min_inliers``): what ROS parameters and CLI options derive from."""
    for f in dataclasses.fields(cls):
        default = field_default(f)
        if dataclasses.is_dataclass(default):
            yield from leaf_fields(type(default), f"{prefix}{f.name}.")
        else:
            yield f"{prefix}{f.name}", f, default


def config_from_flat(cls: type, values: Mapping[str, Any], prefix: str = "",
                     convert: Optional[Callable[[Any, Any], Any]] = None) -> Any:
    """Build ``cls`` from ``{dotted name: value}``; names not given keep their defaults.

    Args:
        cls: the config dataclass.
        values: flat values (extra names are ignored).
        prefix: prefix of this class's names in ``values``.
        convert: ``(default, value) -> value`` applied to every given value (e.g. list ->
            tuple for tuple fields).

    Raises:
        ConfigError: a value out of range, of the wrong type or inconsistent.
    """
    kwargs: dict[str, Any] = {}
    for f in dataclasses.fields(cls):
        default = field_default(f)
        name = f"{prefix}{f.name}"
        if dataclasses.is_dataclass(default):
            kwargs[f.name] = config_from_flat(type(default), values, f"{name}.", convert)
        elif name in values:
            kwargs[f.name] = convert(default, values[name]) if convert else values[name]
    return make_config(cls, kwargs)


def flat_values(cfg: Any, prefix: str = "") -> dict[str, Any]:
    """``{dotted name: value}`` of every leaf field of a config instance (the inverse of
    :func:`config_from_flat`; a preset's values as defaults for CLI options)."""
    out: dict[str, Any] = {}
    for name, _, _ in leaf_fields(type(cfg), prefix):
        value = cfg
        for part in name[len(prefix):].split("."):
            value = getattr(value, part)
        out[name] = value
    return out


@dataclass(frozen=True)
class InputConfig:
    """Limits on what enters the pipeline from files, bags and messages (see the README's limits).

    Node configs and the map store use the same default (``InputConfig().max_image_pixels``).
    """

    max_image_pixels: int = opt(4096 * 4096, "images with more pixels (width*height, read from the "
                                             "file header before decoding) are rejected",
                                range=(256, 100_000_000))

    def __post_init__(self) -> None:
        validate_fields(self)


@dataclass(frozen=True)
class ModelConfig:
    """Which network runs where."""

    checkpoint: str = opt("", "path to a MASt3R .pth checkpoint or a Hugging Face model directory; "
                              "empty = use $MAST3R_CHECKPOINT", read_only=True)
    device: str = opt("auto", "torch device: auto (CUDA when available), cpu, cuda, cuda:N",
                      read_only=True)
    precision: str = opt("fp32", "inference precision; fp16/bf16 use CUDA autocast",
                         choices=("fp32", "fp16", "bf16"), read_only=True)
    image_size: int = opt(512, "long side of the network input in pixels", range=(64, 2048),
                          read_only=True)
    device_cache_bytes: int = opt(512 * 2**20, "byte budget of the keyframe encodings kept ready "
                                               "on the model's device (float32 tokens; GPU "
                                               "memory with CUDA, RAM on the CPU); 0 = none",
                                  range=(0, None), read_only=True)

    def __post_init__(self) -> None:
        validate_fields(self)
        if self.image_size % 16:
            raise ConfigError(f"ModelConfig.image_size={self.image_size} must be a multiple of 16")


@dataclass(frozen=True)
class MatchingConfig:
    """Dense descriptor matching (fast reciprocal NN) and match filtering."""

    subsample: int = opt(8, "seed grid step of fast reciprocal NN in network pixels", range=(1, 64))
    max_iter: int = opt(10, "maximum fast reciprocal NN iterations", range=(1, 100))
    desc_conf_threshold: float = opt(1.001, "minimum descriptor confidence of both pixels of a "
                                            "match "
                                            "(the official visloc uses 1.001)", range=(0.0, None))
    max_matches: int = opt(5000, "keep at most this many matches per pair (best confidence)",
                           range=(10, 1_000_000))
    coarse_to_fine: bool = opt(False, "refine matches on full-resolution crops (images > network "
                                      "size)")
    c2f_overlap: float = opt(0.5, "overlap of the coarse-to-fine crop grid", range=(0.0, 0.95))
    c2f_max_crop_pairs: int = opt(8, "maximum crop pairs per image pair in coarse-to-fine",
                                  range=(1, 64))
    ratio: float = opt(0.8, "SIFT baseline: Lowe ratio test threshold (best / second-best "
                            "descriptor distance)", range=(0.05, 1.0))
    mutual: bool = opt(True, "SIFT baseline: keep only mutual nearest neighbours")

    def __post_init__(self) -> None:
        validate_fields(self)


@dataclass(frozen=True)
class SiftConfig:
    """Features of the classical SIFT baseline backend (they define its encodings: read-only)."""

    n_features: int = opt(8000, "SIFT features per image (OpenCV nfeatures)", range=(16, 100_000),
                          read_only=True)
    root_sift: bool = opt(False, "RootSIFT-normalised descriptors", read_only=True)
    contrast_threshold: float = opt(0.04, "OpenCV contrastThreshold of the detector (lower keeps "
                                          "weaker features: blurry frames)",
                                    range=(0.001, 1.0), read_only=True)

    def __post_init__(self) -> None:
        validate_fields(self)


@dataclass(frozen=True)
class RetrievalConfig:
    """Global-descriptor retrieval of keyframes."""

    top_k: int = opt(4, "number of keyframes matched against each query", range=(1, 64))
    prior_radius: float = opt(5.0, "with a pose prior, only keyframes within this distance (m)",
                              range=(0.0, None))
    cluster_radius: float = opt(3.0, "retrieved keyframes farther apart than this (m, single "
                                      "linkage on camera positions) are solved as separate "
                                      "places and the best pose wins (look-alike rooms)",
                                range=(0.0, None))
    max_clusters: int = opt(3, "at most this many places (retrieval clusters) are matched and "
                               "solved per query", range=(1, 64))
    approximate_above: int = opt(20_000, "maps with more keyframes than this search an "
                                         "approximate index (IVF, 8-bit scalar quantised, exact "
                                         "re-ranking) instead of the exact flat one",
                                 range=(1, None), read_only=True)
    ivf_nprobe: int = opt(16, "inverted lists visited per query in the approximate index",
                          range=(1, 4096))

    def __post_init__(self) -> None:
        validate_fields(self)


@dataclass(frozen=True)
class PoseConfig:
    """Absolute / relative pose solvers and the gates that decide success."""

    ransac_reproj_threshold: float = opt(8.0, "PnP RANSAC inlier threshold in pixels "
                                              "(original image)", range=(0.1, 100.0))
    ransac_confidence: float = opt(0.9999, "RANSAC confidence", range=(0.5, 0.999999))
    ransac_max_iters: int = opt(10000, "RANSAC iterations", range=(10, 1_000_000))
    min_inliers: int = opt(30, "minimum inliers for success", range=(4, None))
    max_median_reproj_error: float = opt(4.0, "maximum median inlier reprojection error (px) for "
                                              "success", range=(0.01, 100.0))
    refine: bool = opt(True, "non-linear refinement of the pose on the inliers")
    pnp_method: str = opt("magsac", "robust PnP estimator: magsac (OpenCV USAC MAGSAC++), "
                                    "ransac_sqpnp, ransac_epnp (classic RANSAC)",
                          choices=("magsac", "ransac_sqpnp", "ransac_epnp"))
    covariance_scale: float = opt(1.0, "factor applied to the Gauss-Newton pose covariance "
                                       "(which assumes independent pixel errors; on 7-Scenes the "
                                       "measured position errors are ~5x its std)",
                                  range=(0.0, 1e6))

    def __post_init__(self) -> None:
        validate_fields(self)


@dataclass(frozen=True)
class MapStoreConfig:
    """The on-disk keyframe map store: payload cache, writer lock and read limits (applied
    when a map is opened or saved)."""

    host_cache_bytes: int = opt(256 * 2**20, "byte budget of the host LRU cache of keyframe "
                                             "payloads (images, depths, pointmaps, features) read "
                                             "from a map on disk; 0 = no caching",
                                range=(0, None), read_only=True)
    lock_timeout: float = opt(10.0, "seconds a save waits for another save of the same map before "
                                    "failing with 'map is being saved'", range=(0.0, 3600.0),
                              read_only=True)
    max_image_pixels: int = opt(InputConfig().max_image_pixels, "keyframes whose image is larger "
                                "(width*height) are refused when a map is read (checked on the "
                                "index, or on the file header for schema-1 PNGs)",
                                range=(256, 100_000_000), read_only=True)
    verify_hashes: bool = opt(True, "check the SHA-256 content hash of every payload array when it "
                                    "is read from disk", read_only=True)

    def __post_init__(self) -> None:
        validate_fields(self)


@dataclass(frozen=True)
class LocalizerConfig:
    """The whole localization pipeline."""

    backend: str = opt("mast3r", "matcher backend: mast3r (the product) or sift (classical "
                                 "baseline)",
                       choices=("mast3r", "sift"), read_only=True)
    model: ModelConfig = field(default_factory=ModelConfig)
    sift: SiftConfig = field(default_factory=SiftConfig)
    matching: MatchingConfig = field(default_factory=MatchingConfig)
    retrieval: RetrievalConfig = field(default_factory=RetrievalConfig)
    pose: PoseConfig = field(default_factory=PoseConfig)
    map_store: MapStoreConfig = field(default_factory=MapStoreConfig)

    def __post_init__(self) -> None:
        validate_fields(self)


@dataclass(frozen=True)
class MappingConfig:
    """Sparse global alignment (MASt3R-SfM back end); defaults are the official ones."""

    scene_graph: str = opt("swin-5", "pair graph: complete, swin-N, logwin-N, oneref-I, "
                                     "retrieval-Na-k")
    subsample: int = opt(8, "anchor grid step and FRM seed step in network pixels", range=(1, 64))
    lr1: float = opt(0.07, "learning rate of the coarse (3D matching) stage", range=(0.0, 10.0))
    niter1: int = opt(300, "iterations of the coarse stage", range=(0, 100_000))
    lr2: float = opt(0.01, "learning rate of the refinement (2D reprojection) stage",
                     range=(0.0, 10.0))
    niter2: int = opt(300, "iterations of the refinement stage (0 skips it)", range=(0, 100_000))
    matching_conf_thr: float = opt(5.0, "pairs whose best match confidence is below this use the "
                                        "fallback regression loss", range=(0.0, None))
    kinematic_mode: str = opt("hclust-ward", "spanning tree of the camera chain",
                              choices=("mst", "hclust-ward", "hclust-single", "hclust-complete",
                                       "hclust-average"))
    shared_intrinsics: bool = opt(False, "one focal and principal point for all images")
    opt_pp: bool = opt(True, "optimise principal points in the refinement stage")
    opt_depth: bool = opt(True, "optimise anchor depths in the refinement stage")
    gamma1: float = opt(1.5, "exponent of the coarse-stage gamma loss", range=(0.05, 4.0))
    gamma2: float = opt(0.5, "exponent of the refinement-stage gamma loss", range=(0.05, 4.0))
    gamma_fallback: float = opt(1.1, "exponent of the fallback regression loss", range=(0.05, 4.0))
    loss_dust3r_w: float = opt(0.01, "weight of the fallback regression loss", range=(0.0, None))
    device: str = opt("auto", "torch device of the alignment: auto (CUDA when available), cpu, "
                              "cuda, cuda:N")
    cache_dir: str = opt("", "directory of the pairwise cache (network outputs + matches), "
                             "shared between runs and machines; empty = a temporary one")
    encodings_in_memory: int = opt(16, "encoder outputs kept in memory by the pairwise stage "
                                       "(LRU; about 3 MB each at 512x384)", range=(2, 10_000))
    spill_dir: str = opt("", "where the canonical views' relative depth maps wait for the dense "
                             "depths (one H x W float32 per image); empty = a temporary "
                             "directory")

    def __post_init__(self) -> None:
        validate_fields(self)


@dataclass(frozen=True)
class RayConfig:
    """The pairwise mapping stage on a Ray cluster (``build-map --ray``)."""

    address: str = opt("", "Ray cluster address (host:port, ray://host:port or auto); empty = "
                           "$RAY_ADDRESS, else a Ray instance on this machine")
    num_workers: int = opt(0, "workers, each holding one model; 0 = one per GPU of the cluster "
                              "(one worker without GPUs)", range=(0, 10_000))
    gpus_per_worker: float = opt(1.0, "GPUs reserved per worker when the cluster has GPUs",
                                 range=(0.0, 8.0))
    cpus_per_worker: float = opt(1.0, "CPUs reserved per worker", range=(0.0, 256.0))
    pairs_per_task: int = opt(8, "consecutive pairs per task (a worker reuses their encodings)",
                              range=(1, 10_000))
    tasks_in_flight: int = opt(2, "tasks queued per worker (bounds the driver's memory)",
                               range=(1, 64))
    max_restarts: int = opt(3, "restarts of a dead worker, each retrying its task",
                            range=(0, 100))
    connect_timeout: float = opt(10.0, "seconds to wait for the cluster's address to answer",
                                 range=(0.1, 600.0))

    def __post_init__(self) -> None:
        validate_fields(self)


@dataclass(frozen=True)
class KeyframeSelectionConfig:
    """When a camera frame becomes a mapping keyframe (by motion with a pose, else by overlap)."""

    mode: str = opt("auto", "auto: motion when the frame and the last keyframe have poses, overlap "
                            "otherwise; motion / overlap: only that test",
                    choices=("auto", "motion", "overlap"))
    min_translation: float = opt(0.10, "motion test: new keyframe after this camera translation "
                                       "(m)",
                                 range=(0.0, None))
    min_rotation_deg: float = opt(10.0, "motion test: new keyframe after this camera rotation "
                                        "(deg)",
                                  range=(0.0, 180.0))
    max_overlap: float = opt(0.5, "overlap test: new keyframe when the fraction of the last "
                                  "keyframe's features matched in the frame (geometrically "
                                  "verified) falls below this", range=(0.0, 1.0))
    min_interval: float = opt(0.0, "minimum time between keyframes (s, image stamps)",
                              range=(0.0, None))
    num_features: int = opt(500, "ORB features per image of the overlap test", range=(20, 20_000))
    min_features: int = opt(30, "frames with fewer ORB features (blank, blurred) never become "
                                "keyframes in the overlap test", range=(0, None))
    image_long_side: int = opt(320, "the overlap test runs on images downscaled to this long side "
                                    "(px, never upscaled)", range=(32, 4096))
    ratio: float = opt(0.8, "Lowe ratio test of the ORB matches", range=(0.1, 1.0))
    ransac_threshold: float = opt(3.0, "epipolar RANSAC threshold of the match verification (px "
                                       "of the downscaled image)", range=(0.1, 100.0))

    def __post_init__(self) -> None:
        validate_fields(self)


@dataclass(frozen=True)
class PoseGraphConfig:
    """The SLAM back end's pose graph (GTSAM): robust kernel, anchor, iSAM2 and batch settings."""

    robust_kernel: str = opt("cauchy", "robust kernel of the relative-pose factors (none = plain "
                                       "least squares)", choices=("cauchy", "huber", "none"))
    kernel_width: float = opt(3.0, "width of the robust kernel in whitened units (sigmas of the "
                                   "edge's own information)", range=(0.1, 100.0))
    anchor_position_std: float = opt(1e-4, "std (m) of the prior that fixes the first keyframe",
                                     range=(1e-9, 10.0))
    anchor_rotation_std: float = opt(1e-4, "std (rad) of the prior that fixes the first keyframe",
                                     range=(1e-9, 10.0))
    relinearize_threshold: float = opt(0.01, "iSAM2 relinearisation threshold (tangent-space "
                                             "norm)", range=(1e-6, 10.0))
    relinearize_skip: int = opt(1, "iSAM2 checks for relinearisation every N updates",
                                range=(1, 100))
    batch_max_iterations: int = opt(100, "Levenberg-Marquardt iterations of a batch optimisation",
                                    range=(1, 10_000))
    batch_relative_tolerance: float = opt(1e-6, "Levenberg-Marquardt relative error decrease "
                                                "that stops a batch optimisation",
                                          range=(0.0, 1.0))

    def __post_init__(self) -> None:
        validate_fields(self)


@dataclass(frozen=True)
class LoopClosureConfig:
    """Loop closures: retrieval candidates, geometric gates and the consistency test."""

    enabled: bool = opt(True, "search loop closures for every new keyframe")
    top_k: int = opt(3, "loop candidates retrieved per new keyframe (global descriptors)",
                     range=(1, 64))
    min_score: float = opt(0.0, "minimum global-descriptor similarity of a candidate",
                           range=(-1.0, 1.0))
    exclude_recent: int = opt(5, "the last N keyframes before the new one are never candidates "
                                 "(odometry already links them)", range=(0, 10_000))
    min_inliers: int = opt(60, "geometric gate: PnP inliers of the loop", range=(4, None))
    min_inlier_ratio: float = opt(0.25, "geometric gate: PnP inliers / 2D-3D correspondences",
                                  range=(0.0, 1.0))
    max_median_reproj_error: float = opt(3.0, "geometric gate: median inlier reprojection error "
                                              "(px)", range=(0.01, 100.0))
    covariance_scale: float = opt(25.0, "factor on the Gauss-Newton covariance of a loop's PnP "
                                        "(it assumes independent pixel errors and exact 3D "
                                        "points, which makes it optimistic)",
                                  range=(1.0, 1e6))
    min_position_std: float = opt(0.005, "floor of a loop edge's position std (m)",
                                  range=(0.0, 1.0))
    min_rotation_std: float = opt(0.002, "floor of a loop edge's rotation std (rad)",
                                  range=(0.0, 1.0))
    consistency_probability: float = opt(0.999, "chi-square(6) acceptance probability of a loop "
                                                "against the current estimate (innovation with "
                                                "the graph's joint marginal)",
                                         range=(0.5, 0.999999))

    def __post_init__(self) -> None:
        validate_fields(self)


@dataclass(frozen=True)
class SlamConfig:
    """The SLAM back end: pose graph, loop closures and the localizer settings loops reuse."""

    pose_graph: PoseGraphConfig = field(default_factory=PoseGraphConfig)
    loops: LoopClosureConfig = field(default_factory=LoopClosureConfig)
    max_stamp_regression: float = opt(0.0, "a keyframe or edge whose stamp goes back by more "
                                           "than this (s) is refused as out of order",
                                      range=(0.0, None))

    def __post_init__(self) -> None:
        validate_fields(self)


@dataclass(frozen=True)
class KeyframeRuleConfig:
    """When the tracker makes a new keyframe (any test that trips is enough)."""

    min_match_fraction: float = opt(1 / 3, "new keyframe when the inliers against the current "
                                           "keyframe fall below this fraction of its reference "
                                           "count (the inliers of the first frame tracked "
                                           "against it); MASt3R-SLAM's 1/3", range=(0.0, 1.0))
    max_translation: float = opt(0.3, "new keyframe after this camera translation from the "
                                      "current keyframe (m; 0 = off)", range=(0.0, None))
    max_rotation_deg: float = opt(20.0, "new keyframe after this camera rotation from the "
                                        "current keyframe (deg; 0 = off)", range=(0.0, 180.0))
    max_interval: float = opt(10.0, "new keyframe when the current one is older than this (s of "
                                    "image stamps; 0 = off)", range=(0.0, None))

    def __post_init__(self) -> None:
        validate_fields(self)


@dataclass(frozen=True)
class LostConfig:
    """When tracking is lost, and relocalization against the tracker's own keyframes."""

    min_match_fraction: float = opt(0.05, "LOST below this fraction of the keyframe's reference "
                                          "count (MASt3R-SLAM's 0.05)", range=(0.0, 1.0))
    min_inliers: int = opt(30, "LOST below this many PnP inliers (tracking and relocalization)",
                           range=(6, None))
    relocalization_top_k: int = opt(3, "keyframes of the window retrieved and matched to "
                                       "relocalize", range=(1, 64))

    def __post_init__(self) -> None:
        validate_fields(self)


@dataclass(frozen=True)
class TrackingConfig:
    """The SLAM front end: frame-to-keyframe tracking (``core/tracking``).

    The matcher, PnP and retrieval settings are the pipeline's (:class:`LocalizerConfig`).
    """

    max_keyframes: int = opt(50, "keyframes kept in the tracking window; older ones were handed "
                                 "on in the keyframe stream and are dropped", range=(2, 100_000))
    max_speed: float = opt(2.0, "motion gate: a frame whose pose implies a faster camera (m/s, "
                                "image stamps) is a jump, relocalized instead of tracked "
                                "(0 = off)", range=(0.0, None))
    max_angular_speed_deg: float = opt(360.0, "motion gate on rotation (deg/s; 0 = off)",
                                       range=(0.0, None))
    covariance_scale: float = opt(9.0, "variance factor on the PnP covariance sigma^2 (J^T J)^-1, "
                                       "which treats pixel errors as independent",
                                  range=(1e-6, 1e6))
    motion_noise: float = opt(0.1, "std per axis of the error the residuals cannot show, as a "
                                   "fraction of the measured motion (m per m, rad per rad; "
                                   "registration, synchronisation, calibration)",
                              range=(0.0, 10.0))
    position_noise: float = opt(0.0, "constant std (m) added per axis to every measurement",
                                range=(0.0, None))
    rotation_noise_deg: float = opt(0.0, "constant std (deg) added per axis to every "
                                         "measurement", range=(0.0, None))
    keyframe: KeyframeRuleConfig = field(default_factory=KeyframeRuleConfig)
    lost: LostConfig = field(default_factory=LostConfig)

    def __post_init__(self) -> None:
        validate_fields(self)


def tracking_pipeline() -> LocalizerConfig:
    """The pipeline preset of the SLAM front end (``eval odometry``, the odometry node).

    The localizer's defaults, except that the SIFT baseline keeps weaker features (OpenCV
    contrastThreshold 0.02 instead of 0.04): on hand-held indoor video (7-Scenes) 0.04 keeps about
    760 of the 8000 requested features per frame and solves 45 of 62 frame pairs 1.33 s apart;
    0.02 keeps about 2200 and solves 58 of 62, for ~1.5x the extraction time. (The localizer
    matches against 4 keyframes with known 3D and keeps 0.04.)
    """
    return LocalizerConfig(sift=SiftConfig(contrast_threshold=0.02))
