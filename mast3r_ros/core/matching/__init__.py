"""Dense descriptor matching: fast reciprocal NN, dense reciprocal NN, filtering, coarse-to-fine.

Public API::

    from mast3r_ros.core.matching import fast_reciprocal_nn
    xy1, xy2 = fast_reciprocal_nn(desc1, desc2, subsample=8, seeds=None, pixel_tol=0,
                                  dist="dot", max_iter=10, ret_basin=False)
"""

from mast3r_ros.core.matching.c2f import (
                                          crop_slice,
                                          crop_tag,
                                          greedy_selection,
                                          normalize_windows,
                                          overlapping_grid,
                                          score_cells,
                                          select_crop_pairs,
                                          start_positions,
)
from mast3r_ros.core.matching.c2f_match import C2FResult, coarse_to_fine_match
from mast3r_ros.core.matching.dense import dense_reciprocal_nn
from mast3r_ros.core.matching.filtering import confidence_mask, filter_by_confidence, match_scores
from mast3r_ros.core.matching.frm import fast_reciprocal_nn
from mast3r_ros.core.matching.nn import nearest_neighbors

__all__ = [
    "fast_reciprocal_nn",
    "dense_reciprocal_nn",
    "nearest_neighbors",
    "filter_by_confidence",
    "confidence_mask",
    "match_scores",
    "start_positions",
    "overlapping_grid",
    "normalize_windows",
    "score_cells",
    "greedy_selection",
    "select_crop_pairs",
    "crop_tag",
    "crop_slice",
    "coarse_to_fine_match",
    "C2FResult",
]
