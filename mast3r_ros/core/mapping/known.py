"""Known cameras given to the sparse global alignment, and its result."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from mast3r_ros.core.errors import ConfigError, InputError
from mast3r_ros.core.mapping.kinematic import KinematicTree

__all__ = ["KnownCameras", "AlignmentResult"]


@dataclass
class KnownCameras:
    """Known intrinsics and/or poses, in the network image's pixels and any metric world frame.

    Attributes:
        K: image index -> (3, 3) intrinsics (pixels of the network-size image).
        T_world_cam: image index -> (4, 4) camera-to-world pose (e.g. from odometry).
        intrinsics_mode: ``fixed`` (never optimised), ``prior`` (optimised with a penalty) or
            ``init`` (only the starting value).
        poses_mode: ``fixed`` (every image needs a pose) or ``prior`` (at least two).
        pose_prior_weight, intrinsics_prior_weight: weights of the prior penalties.
    """

    K: dict[int, np.ndarray] = field(default_factory=dict)
    T_world_cam: dict[int, np.ndarray] = field(default_factory=dict)
    intrinsics_mode: str = "fixed"
    poses_mode: str = "prior"
    pose_prior_weight: float = 1.0
    intrinsics_prior_weight: float = 1.0

    def validate(self, n: int) -> None:
        """Raises ConfigError / InputError on bad modes, indices or matrices."""
        if self.intrinsics_mode not in ("fixed", "prior", "init"):
            raise ConfigError(f"intrinsics_mode={self.intrinsics_mode!r}: use fixed, prior or init")
        if self.poses_mode not in ("fixed", "prior"):
            raise ConfigError(f"poses_mode={self.poses_mode!r}: use fixed or prior")
        for name, d, shape in (("K", self.K, (3, 3)), ("T_world_cam", self.T_world_cam, (4, 4))):
            for k, m in d.items():
                m = np.asarray(m)
                if not 0 <= k < n or m.shape != shape or not np.isfinite(m).all():
                    raise InputError(f"known {name}[{k}] must be a finite {shape} matrix for an "
                                     f"image index in [0, {n})")
        for k, m in self.K.items():
            if m[0, 0] <= 0 or m[1, 1] <= 0:
                raise InputError(f"known K[{k}] has a non-positive focal")
        if self.T_world_cam and self.poses_mode == "fixed" and len(self.T_world_cam) != n:
            raise InputError(f"poses_mode='fixed' needs a pose for all {n} images, got "
                             f"{len(self.T_world_cam)}; use poses_mode='prior'")
        if self.poses_mode == "prior" and len(self.T_world_cam) == 1:
            raise InputError("a pose prior needs at least two known poses")


@dataclass
class AlignmentResult:
    """Output of the alignment.

    Attributes:
        K: (N, 3, 3) float64 intrinsics (network image pixels).
        T_world_cam: (N, 4, 4) float64 camera-to-world poses.
        anchor_depth: list of (h*w,) float32 depths of the anchors of each image.
        pts3d: list of (n_i, 3) float32 world points of each image's matched pixels.
        loss_coarse, loss_fine: value of each stage's loss before its last step (NaN if not run).
        tree: the kinematic tree used.
    """

    K: np.ndarray
    T_world_cam: np.ndarray
    anchor_depth: list[np.ndarray]
    pts3d: list[np.ndarray]
    loss_coarse: float
    loss_fine: float
    tree: KinematicTree

    @property
    def focals(self) -> np.ndarray:
        return self.K[:, 0, 0].copy()

    @property
    def principal_points(self) -> np.ndarray:
        return self.K[:, :2, 2].copy()
