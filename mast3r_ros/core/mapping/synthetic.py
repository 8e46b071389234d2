"""Synthetic alignment inputs with exact ground truth (tests and benchmarks).

A box-shaped room is seen by N pinhole cameras moving along a path inside it. For every pair the
"network" outputs are the exact pointmaps (depth rendered by ray casting against the walls) with a
per-pair scale error and per-pixel noise, and the matches are exact projections rounded to pixels,
with pixel noise and a fraction of random outliers.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence

import numpy as np

from mast3r_ros.core.mapping.pairdata import PairData, PairView

__all__ = ["SyntheticScene", "make_cameras", "render_depth", "pointmap_pair", "make_pair",
           "make_scene"]

ROOM_LO = np.array([-6.0, -3.0, -6.0])
ROOM_HI = np.array([6.0, 3.0, 8.0])


@dataclass
class SyntheticScene:
    """pairs: PairData per pair; T_world_cam: (N, 4, 4) GT poses; K: (3, 3) GT intrinsics;
    depth: (N, H, W) GT depth maps."""

    pairs: list[PairData]
    T_world_cam: np.ndarray
    K: np.ndarray
    depth: np.ndarray


def _rot_y(a: float) -> np.ndarray:
    c, s = np.cos(a), np.sin(a)
    return np.array([[c, 0, s], [0, 1, 0], [-s, 0, c]])


def _rot_x(a: float) -> np.ndarray:
    c, s = np.cos(a), np.sin(a)
    return np.array([[1, 0, 0], [0, c, -s], [0, s, c]])


def make_cameras(n: int, rng: np.random.Generator, extent: float = 3.0) -> np.ndarray:
    """(n, 4, 4) camera-to-world poses along a gentle arc, looking roughly along +z."""
    T = np.tile(np.eye(4), (n, 1, 1))
    u = np.linspace(-1, 1, n)
    for k in range(n):
        yaw = 0.35 * u[k] + rng.normal(0, 0.05)
        pitch = rng.normal(0, 0.05)
        T[k, :3, :3] = _rot_y(yaw) @ _rot_x(pitch)
        T[k, :3, 3] = [extent * u[k], rng.normal(0, 0.2),
                       0.8 * np.sin(2 * u[k]) + rng.normal(0, 0.2)]
    return T


def render_depth(T_world_cam: np.ndarray, K: np.ndarray, H: int, W: int) -> np.ndarray:
    """(H, W) depth (z in the camera frame) of the room walls seen from one camera."""
    ys, xs = np.mgrid[:H, :W].astype(np.float64)
    rays = np.stack(((xs - K[0, 2]) / K[0, 0], (ys - K[1, 2]) / K[1, 1], np.ones_like(xs)), -1)
    d = rays.reshape(-1, 3) @ T_world_cam[:3, :3].T  # world direction, unit depth
    c = T_world_cam[:3, 3]
    best = np.full(len(d), np.inf)
    with np.errstate(divide="ignore", invalid="ignore"):
        for axis in range(3):
            for plane in (ROOM_LO[axis], ROOM_HI[axis]):
                t = (plane - c[axis]) / d[:, axis]
                hit = c + t[:, None] * d
                inside = np.all((hit >= ROOM_LO - 1e-6) & (hit <= ROOM_HI + 1e-6), axis=1)
                ok = (t > 0) & inside
                best = np.where(ok & (t < best), t, best)
    return best.reshape(H, W)


def _cam_points(depth: np.ndarray, K: np.ndarray) -> np.ndarray:
    H, W = depth.shape
    ys, xs = np.mgrid[:H, :W].astype(np.float64)
    return np.stack(((xs - K[0, 2]) / K[0, 0] * depth, (ys - K[1, 2]) / K[1, 1] * depth, depth), -1)


def _matches(i, j, T, K, depth, rng, stride, pix_noise, outlier_frac):
    H, W = depth[i].shape
    ys, xs = np.mgrid[stride // 2:H:stride, stride // 2:W:stride]
    xs, ys = xs.ravel(), ys.ravel()
    Xc = _cam_points(depth[i], K)[ys, xs]
    T_j_i = np.linalg.inv(T[j]) @ T[i]
    Xj = Xc @ T_j_i[:3, :3].T + T_j_i[:3, 3]
    z = Xj[:, 2]
    with np.errstate(divide="ignore", invalid="ignore"):
        u = K[0, 0] * Xj[:, 0] / z + K[0, 2] + rng.normal(0, pix_noise, len(z))
        v = K[1, 1] * Xj[:, 1] / z + K[1, 2] + rng.normal(0, pix_noise, len(z))
    ui, vi = np.round(u), np.round(v)
    ok = (z > 0) & (ui >= 0) & (ui < W) & (vi >= 0) & (vi < H)
    ui, vi = ui[ok].astype(np.int64), vi[ok].astype(np.int64)
    ok2 = np.abs(depth[j][vi, ui] - z[ok]) < 0.05 * z[ok]  # visible
    xy_i = np.stack((xs[ok][ok2], ys[ok][ok2]), 1).astype(np.int64)
    xy_j = np.stack((ui[ok2], vi[ok2]), 1)
    n_out = int(round(outlier_frac * len(xy_j)))
    if n_out:
        sel = rng.choice(len(xy_j), n_out, replace=False)
        xy_j[sel] = np.stack((rng.integers(0, W, n_out), rng.integers(0, H, n_out)), 1)
    return xy_i, xy_j


def pointmap_pair(i: int, j: int, T: np.ndarray, K: np.ndarray, depth: np.ndarray,
                  xy_i: np.ndarray, xy_j: np.ndarray, conf: np.ndarray, rng: np.random.Generator,
                  scale_sigma: float = 0.1, depth_noise: float = 0.01,
                  valid: Optional[np.ndarray] = None) -> PairData:
    """PairData for (i, j) from depth maps and given matches, emulating the network's pointmaps.

    Each pair gets its own scale error ``exp(N(0, scale_sigma))`` and per-pixel multiplicative
    noise; confidences are smooth fields (like the network's), ~1 (no weight) where ``valid``
    (N, H, W) is False.

    Args:
        T: (N, 4, 4) camera-to-world; K: (3, 3); depth: (N, H, W) metres (holes filled).
        xy_i, xy_j: (n, 2) int64 matched pixels; conf: (n,) match confidences.
    """
    s = float(np.exp(rng.normal(0, scale_sigma)))

    def noisy(X):
        eps = rng.standard_normal(X.shape[:2] + (1,))
        return (X * s * (1 + depth_noise * eps)).astype(np.float32)

    def smooth_conf(k):  # per-pixel random weights would mix the pair scales pixel by pixel
        H, W = depth[k].shape
        ys, xs = np.mgrid[:H, :W]
        ph = rng.uniform(0, 2 * np.pi, 2)
        field = 1 + 0.3 * np.sin(2 * np.pi * xs / W + ph[0]) * np.cos(np.pi * ys / H + ph[1])
        c = 1.0 + rng.uniform(1.0, 4.0) * field
        if valid is not None:
            c = np.where(valid[k], c, 1.0)
        return c.astype(np.float32)

    Pi, Pj = _cam_points(depth[i], K), _cam_points(depth[j], K)
    T_i_j = np.linalg.inv(T[i]) @ T[j]
    T_j_i = np.linalg.inv(T_i_j)
    Xj_in_i = Pj @ T_i_j[:3, :3].T + T_i_j[:3, 3]
    Xi_in_j = Pi @ T_j_i[:3, :3].T + T_j_i[:3, 3]
    conf = np.asarray(conf, np.float32)
    # (draw order of the random fields kept: i's decoding first, then j's)
    X_i_in_i, C_i, X_j_in_i, C_j_in_i = noisy(Pi), smooth_conf(i), noisy(Xj_in_i), smooth_conf(j)
    X_j_in_j, C_j, X_i_in_j, C_i_in_j = noisy(Pj), smooth_conf(j), noisy(Xi_in_j), smooth_conf(i)
    return PairData(i, j, PairView(X_i_in_i, C_i, X_j_in_i, C_j_in_i, np.asarray(xy_i, np.int64)),
                    PairView(X_j_in_j, C_j, X_i_in_j, C_i_in_j, np.asarray(xy_j, np.int64)), conf,
                    np.array([2.0, float(conf.sum()), len(conf)]))


def make_pair(i: int, j: int, T: np.ndarray, K: np.ndarray, depth: np.ndarray,
              rng: np.random.Generator, scale_sigma: float = 0.1, depth_noise: float = 0.01,
              pix_noise: float = 0.5, outlier_frac: float = 0.1, stride: int = 3) -> PairData:
    """Exact-geometry PairData for (i, j) with noise and outliers (see module doc)."""
    xy_i, xy_j = _matches(i, j, T, K, depth, rng, stride, pix_noise, outlier_frac)
    mconf = 6.0 + 4.0 * rng.random(len(xy_i))
    return pointmap_pair(i, j, T, K, depth, xy_i, xy_j, mconf, rng, scale_sigma, depth_noise)


def make_scene(n: int, pairs: Sequence[tuple[int, int]], rng: np.random.Generator,
               H: int = 48, W: int = 64, focal: float = 50.0, T: Optional[np.ndarray] = None,
               **noise) -> SyntheticScene:
    """A full synthetic problem: cameras, depth maps and one PairData per unordered pair (in
    order of first appearance in ``pairs``). ``noise`` goes to :func:`make_pair`."""
    K = np.array([[focal, 0, W / 2], [0, focal, H / 2], [0, 0, 1.0]])
    T = make_cameras(n, rng) if T is None else T
    depth = np.stack([render_depth(T[k], K, H, W) for k in range(n)])
    seen, out = set(), []
    for a, b in pairs:
        if frozenset((a, b)) in seen:
            continue
        seen.add(frozenset((a, b)))
        out.append(make_pair(a, b, T, K, depth, rng, **noise))
    return SyntheticScene(out, T, K, depth)
