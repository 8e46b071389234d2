"""SLAM back end: keyframe pose graph (GTSAM), verified loop closures, persistence with the map."""

from mast3r_ros.core.slam.graph import GraphError, OptimizationResult, PoseGraph
from mast3r_ros.core.slam.loops import LoopCheck, loop_candidates, verify_loop
from mast3r_ros.core.slam.mapper import EdgeOutcome, PoseGraphMapper, SlamStatus, StreamError
from mast3r_ros.core.slam.persistence import (
                                              load_pose_graph,
                                              load_slam_map,
                                              save_pose_graph,
                                              save_slam_map,
)

__all__ = ["GraphError", "OptimizationResult", "PoseGraph", "LoopCheck", "loop_candidates",
           "verify_loop", "EdgeOutcome", "PoseGraphMapper", "SlamStatus", "StreamError",
           "load_pose_graph", "load_slam_map", "save_pose_graph", "save_slam_map"]
