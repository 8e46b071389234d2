"""Dense descriptor matching: fast reciprocal NN, dense reciprocal NN, filtering, coarse-to-fine."""

from mast3r_ros.core.matching.frm import fast_reciprocal_nn
from mast3r_ros.core.matching.nn import nearest_neighbors

__all__ = ["fast_reciprocal_nn", "nearest_neighbors"]
