"""Trajectory evaluation: similarity (Umeyama) alignment and absolute trajectory error."""

from __future__ import annotations

import numpy as np

from mast3r_ros.core.errors import InputError

__all__ = ["umeyama", "align_poses", "absolute_trajectory_error", "rotation_errors_deg"]


def umeyama(src: np.ndarray, dst: np.ndarray, with_scale: bool = True) -> tuple[float, np.ndarray,
                                                                                   np.ndarray]:
    """Least-squares similarity ``dst ~ s * R @ src + t`` (Umeyama 1991).

    Args:
        src, dst: (N, 3) corresponding points, N >= 3 (not all collinear for a unique rotation).
        with_scale: estimate s (else s = 1).

    Returns:
        (s, R (3, 3), t (3,)).
    """
    src, dst = np.asarray(src, np.float64), np.asarray(dst, np.float64)
    if src.shape != dst.shape or src.ndim != 2 or src.shape[1] != 3 or len(src) < 3:
        raise InputError(f"umeyama needs two (N>=3, 3) arrays, got {src.shape} and {dst.shape}")
    mu_s, mu_d = src.mean(0), dst.mean(0)
    a, b = src - mu_s, dst - mu_d
    cov = b.T @ a / len(src)
    U, S, Vt = np.linalg.svd(cov)
    D = np.eye(3)
    if np.linalg.det(U) * np.linalg.det(Vt) < 0:
        D[2, 2] = -1
    R = U @ D @ Vt
    var = (a ** 2).sum() / len(src)
    s = float(np.trace(np.diag(S) @ D) / var) if with_scale and var > 0 else 1.0
    return s, R, mu_d - s * R @ mu_s


def align_poses(T_est: np.ndarray, T_gt: np.ndarray) -> np.ndarray:
    """(N, 4, 4) estimated camera-to-world poses mapped into the GT frame by the similarity that
    best aligns the camera centres."""
    s, R, t = umeyama(T_est[:, :3, 3], T_gt[:, :3, 3])
    out = np.array(T_est, dtype=np.float64, copy=True)
    out[:, :3, :3] = R @ T_est[:, :3, :3]
    out[:, :3, 3] = s * T_est[:, :3, 3] @ R.T + t
    return out


def absolute_trajectory_error(T_est: np.ndarray, T_gt: np.ndarray) -> tuple[float, np.ndarray]:
    """RMSE of the camera centres after similarity alignment, and (N,) per-camera errors."""
    al = align_poses(T_est, T_gt)
    err = np.linalg.norm(al[:, :3, 3] - T_gt[:, :3, 3], axis=1)
    return float(np.sqrt((err ** 2).mean())), err


def rotation_errors_deg(T_est: np.ndarray, T_gt: np.ndarray) -> np.ndarray:
    """(N,) angle of ``R_gt_i^T R_gt_0 R_est_0^T R_est_i`` in degrees (gauge-free rotation error
    relative to camera 0)."""
    Re = np.einsum("ij,njk->nik", T_est[0, :3, :3].T, T_est[:, :3, :3])
    Rg = np.einsum("ij,njk->nik", T_gt[0, :3, :3].T, T_gt[:, :3, :3])
    d = np.einsum("nji,njk->nik", Rg, Re)
    c = np.clip((np.trace(d, axis1=1, axis2=2) - 1) / 2, -1.0, 1.0)
    return np.degrees(np.arccos(c))
