"""Configuration of the localization pipeline: inputs, network, matching, retrieval, pose, store."""

from __future__ import annotations

from dataclasses import dataclass, field

from mast3r_ros.core.config.base import opt, validate_fields
from mast3r_ros.core.errors import ConfigError

__all__ = ["InputConfig", "ModelConfig", "MatchingConfig", "SiftConfig", "RetrievalConfig",
           "PoseConfig", "MapStoreConfig", "LocalizerConfig"]


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
