"""Dense reciprocal nearest neighbours: mutual NN over *all* pixels (exact, blocked).

Costs one full nearest-neighbour search per pixel in each direction (2 x H1*W1*H2*W2*D
multiply-adds), so it is meant for comparison with :func:`fast_reciprocal_nn` and for small maps;
memory stays bounded by the blocked search of :mod:`.nn`.
"""

from __future__ import annotations

import torch

from mast3r_ros.core.matching.frm import ArrayLike, check_descriptor_pair
from mast3r_ros.core.matching.nn import nearest_neighbors

__all__ = ["dense_reciprocal_nn"]


@torch.no_grad()
def dense_reciprocal_nn(desc1: ArrayLike, desc2: ArrayLike, dist: str = "dot"
                        ) -> tuple[torch.Tensor, torch.Tensor]:
    """All mutual nearest-neighbour pixel pairs between two descriptor maps.

    Args:
        desc1: (H1, W1, D) float descriptors of image 1.
        desc2: (H2, W2, D) float descriptors of image 2.
        dist: ``"dot"`` (largest inner product) or ``"l2"`` (smallest Euclidean distance).

    Returns:
        ``(xy1, xy2)``: (N, 2) int64 (x, y) pixels, sorted by flat image-1 index ``y * W1 + x``;
        pixel ``xy1[i]``'s nearest neighbour is ``xy2[i]`` and vice versa (ties: first index).
        Empty maps give empty results.

    Raises:
        MatchingError: invalid descriptors (see :func:`check_descriptor_pair`) or ``dist``.
    """
    d1, d2 = check_descriptor_pair(desc1, desc2)
    (h1, w1, dim), (h2, w2, _) = d1.shape, d2.shape
    if h1 * w1 == 0 or h2 * w2 == 0:
        empty = torch.empty((0, 2), dtype=torch.int64, device=d1.device)
        return empty, empty.clone()
    f1, f2 = d1.reshape(-1, dim), d2.reshape(-1, dim)
    nn12 = nearest_neighbors(f1, f2, dist)
    nn21 = nearest_neighbors(f2, f1, dist)
    p = torch.nonzero(nn21[nn12] == torch.arange(f1.shape[0], device=d1.device)).squeeze(1)
    q = nn12[p]
    return torch.stack([p % w1, p // w1], 1), torch.stack([q % w2, q // w2], 1)
