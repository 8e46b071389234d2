"""Straightforward reference implementation of fast reciprocal NN (for tests and benchmarks).

Written the plain way, with the structure of the official ``fast_reciprocal_NNs``: per-iteration
book-keeping in numpy on the host, and every iteration re-searches the nearest neighbours of all
active points with a blocked brute-force distance computation (block of queries x block of
targets, running minimum), no caching. Slow on purpose; it is the yardstick that
:func:`mast3r_ros.core.matching.fast_reciprocal_nn` is checked and timed against.
"""

from __future__ import annotations

from typing import Optional

import numpy as np
import torch

__all__ = ["reference_nn", "reference_frm"]


@torch.no_grad()
def reference_nn(queries: torch.Tensor, targets: torch.Tensor, dist: str = "dot",
                 block_size: int = 8192) -> np.ndarray:
    """Blocked brute-force nearest neighbours as a host int64 array (first index on ties)."""
    m = queries.shape[0]
    best = torch.full((m,), float("inf"), dtype=queries.dtype, device=queries.device)
    arg = torch.full((m,), -1, dtype=torch.int64, device=queries.device)
    for i0 in range(0, m, block_size):
        qa = queries[i0:i0 + block_size]
        for j0 in range(0, targets.shape[0], block_size):
            tb = targets[j0:j0 + block_size]
            if dist == "dot":
                val, idx = torch.max(qa @ tb.T, dim=1)
                val = -val
            else:
                val, idx = torch.min(torch.cdist(qa, tb), dim=1)
            better = val < best[i0:i0 + block_size]
            best[i0:i0 + block_size][better] = val[better]
            arg[i0:i0 + block_size][better] = idx[better] + j0
    return arg.cpu().numpy()


def reference_frm(desc1: torch.Tensor, desc2: torch.Tensor, subsample: int = 8,
                  seeds: Optional[tuple[np.ndarray, np.ndarray]] = None, pixel_tol: float = 0,
                  dist: str = "dot", max_iter: int = 10, block_size: int = 8192):
    """Reference FRM with the same arguments and outputs as ``fast_reciprocal_nn`` (no basin).

    Returns:
        (xy1, xy2): (N, 2) int64 numpy arrays of (x, y) pixels.
    """
    h1, w1, dim = desc1.shape
    h2, w2, _ = desc2.shape
    f1, f2 = desc1.reshape(-1, dim), desc2.reshape(-1, dim)
    if seeds is None:
        y, x = np.mgrid[subsample // 2:h1:subsample, subsample // 2:w1:subsample].reshape(2, -1)
        n_iter = max_iter if pixel_tol == 0 else 1
    else:
        x, y = (np.asarray(v, dtype=np.int64) for v in seeds)
        n_iter = 1
    p = np.unique(x + w1 * y).astype(np.int64)
    q = np.full_like(p, -1)
    old_p, old_q = p.copy(), q.copy()
    active = np.ones(len(p), dtype=bool)
    it = 0
    while active.any():
        q[active] = reference_nn(f1[torch.from_numpy(p[active])], f2, dist, block_size)
        active &= old_q != q
        p[active] = reference_nn(f2[torch.from_numpy(q[active])], f1, dist, block_size)
        active &= old_p != p
        it += 1
        if it >= n_iter:
            break
        old_p[:], old_q[:] = p, q
    if pixel_tol > 0:
        dyx = np.stack(np.divmod(old_p, w1), 1) - np.stack(np.divmod(p, w1), 1)
        keep = np.linalg.norm(dyx, axis=1) < pixel_tol
        p = old_p
    else:
        keep = ~active
    key = np.unique(p[keep] * (h2 * w2) + q[keep])
    p, q = np.divmod(key, h2 * w2)
    return np.stack([p % w1, p // w1], 1), np.stack([q % w2, q // w2], 1)


def smooth_descriptor_maps(h1: int, w1: int, h2: int, w2: int, dim: int = 24, seed: int = 0,
                           noise: float = 0.15, shift: tuple[float, float] = (-5.0, 3.0),
                           angle_deg: float = 6.0,
                           scale: float = 1.08) -> tuple[np.ndarray, np.ndarray]:
    """Two unit-norm descriptor maps of one smooth random field seen through a similarity.

    The field is a sum of 48 random cosines of the pixel coordinates; image-2 pixel ``x2`` sees the
    field at ``x1 = R(angle) * scale * x2 + shift`` (pixels), plus independent Gaussian noise.

    Returns:
        (desc1 (h1, w1, dim), desc2 (h2, w2, dim)) float32 arrays, L2-normalised per pixel.
    """
    rng = np.random.default_rng(seed)
    freqs = rng.normal(size=(2, 48)) * (2 * np.pi / 40.0)
    phases = rng.uniform(0, 2 * np.pi, size=48)
    amps = rng.normal(size=(48, dim))

    def field(xy: np.ndarray) -> np.ndarray:
        f = np.cos(xy @ freqs + phases) @ amps
        f += noise * np.sqrt(48 / 2) * rng.normal(size=f.shape)
        return (f / np.linalg.norm(f, axis=1, keepdims=True)).astype(np.float32)

    a = np.deg2rad(angle_deg)
    rot = scale * np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
    y1, x1 = np.mgrid[:h1, :w1].reshape(2, -1)
    y2, x2 = np.mgrid[:h2, :w2].reshape(2, -1)
    xy2_in_1 = np.stack([x2, y2], 1) @ rot.T + np.asarray(shift)
    desc1 = field(np.stack([x1, y1], 1).astype(float)).reshape(h1, w1, dim)
    return desc1, field(xy2_in_1).reshape(h2, w2, dim)
