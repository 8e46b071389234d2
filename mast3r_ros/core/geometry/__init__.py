"""Geometry: pixel convention and pinhole helpers, SE(3), PnP, essential matrix, scale/focal,
pose covariance. Pure numpy / OpenCV."""

from mast3r_ros.core.geometry.camera import (
                                             backproject,
                                             depth_to_points,
                                             intrinsics_problem,
                                             project,
                                             sample_depth,
                                             scale_intrinsics,
                                             validate_intrinsics,
)
from mast3r_ros.core.geometry.covariance import pose_covariance, pose_jacobian
from mast3r_ros.core.geometry.essential import (
                                             RelativePoseResult,
                                             estimate_relative_pose,
                                             triangulate_depths,
)
from mast3r_ros.core.geometry.pnp import PnPResult, degeneracy_problem, estimate_pose_pnp
from mast3r_ros.core.geometry.scale import estimate_focal, estimate_scale, intrinsics_from_focal
from mast3r_ros.core.geometry.se3 import (
                                             invert_pose,
                                             make_pose,
                                             pose_errors,
                                             rotation_angle_deg,
                                             so3_exp,
                                             so3_log,
                                             transform_points,
)

__all__ = [
    "backproject", "depth_to_points", "intrinsics_problem", "project", "sample_depth",
    "scale_intrinsics", "validate_intrinsics", "pose_covariance", "pose_jacobian",
    "RelativePoseResult", "estimate_relative_pose", "triangulate_depths", "PnPResult",
    "degeneracy_problem", "estimate_pose_pnp", "estimate_focal", "estimate_scale",
    "intrinsics_from_focal", "invert_pose", "make_pose", "pose_errors", "rotation_angle_deg",
    "so3_exp", "so3_log", "transform_points",
]
