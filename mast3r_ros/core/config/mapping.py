"""Configuration of mapping: sparse global alignment, the Ray pairwise stage, keyframe selection."""

from __future__ import annotations

from dataclasses import dataclass

from mast3r_ros.core.config.base import opt, validate_fields

__all__ = ["MappingConfig", "RayConfig", "KeyframeSelectionConfig"]


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
