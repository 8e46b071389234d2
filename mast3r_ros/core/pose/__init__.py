"""Pose stage of localization: 2D-3D correspondences from keyframes, and the solvers."""

from mast3r_ros.core.pose.correspondences import (
           Correspondences,
           gather_correspondences,
           lift_matches,
)
from mast3r_ros.core.pose.solvers import solve_essential, solve_pnp
from mast3r_ros.core.types import PoseEstimate

__all__ = ["Correspondences", "gather_correspondences", "lift_matches", "PoseEstimate",
           "solve_essential", "solve_pnp"]
