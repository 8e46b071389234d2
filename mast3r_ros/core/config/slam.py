"""Configuration of the SLAM back end (pose graph, loop closures) and front end (tracking)."""

from __future__ import annotations

from dataclasses import dataclass, field

from mast3r_ros.core.config.base import opt, validate_fields
from mast3r_ros.core.config.pipeline import LocalizerConfig, SiftConfig

__all__ = ["PoseGraphConfig", "LoopClosureConfig", "SlamConfig", "KeyframeRuleConfig",
           "LostConfig", "TrackingConfig", "tracking_pipeline"]


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
