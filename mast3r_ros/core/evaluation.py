"""Evaluation metrics and readers of the ``shared/data`` ground-truth formats.

Absolute pose (7-Scenes): position error ``||C_est - C_gt||`` (m) and rotation error (deg) of
camera-to-world poses; failures count as infinite error; medians and recall at (cm, deg)
thresholds. Relative pose (SuperGlue/LoFTR protocol): rotation error, translation-direction error
folded with ``min(e, 180 - e)``, pose error = max of both (inf for failures), AUC@5/10/20.
Trajectories (odometry): ATE after an SE(3) alignment and per-step RPE computed with **evo**
(the field's tool), and the relative-pose NEES of steps against a chi-square(6) band.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence, Union

import numpy as np

from mast3r_ros.core.errors import InputError
from mast3r_ros.core.geometry.se3 import (
    invert_pose,
    orthonormalize_pose,
    rotation_angle_deg,
    so3_log,
)

__all__ = [
    "QueryGT", "PairGT", "read_queries", "read_pairs", "relative_pose_errors", "pose_auc",
    "summarize_absolute", "summarize_relative", "retrieval_recall", "parse_frame_ranges",
    "TrajectoryErrors", "trajectory_errors", "nees_in_band",
]


@dataclass
class QueryGT:
    """One 7-Scenes query: image path (relative to the data folder), oracle refs, GT pose."""

    name: str
    refs: list[str]
    T_world_cam: np.ndarray


@dataclass
class PairGT:
    """One relative-pose pair: names, intrinsics and ``T_0to1`` (``X_1 = R X_0 + t``)."""

    name0: str
    name1: str
    K0: np.ndarray
    K1: np.ndarray
    T_0to1: np.ndarray


def _lines(path: Union[str, Path]) -> list[list[str]]:
    try:
        text = Path(path).read_text()
    except OSError as exc:
        raise InputError(f"cannot read {path}: {exc}") from exc
    return [ln.split() for ln in text.splitlines() if ln.strip() and not ln.startswith("#")]


def _numbers(values: Sequence[str], path: Union[str, Path]) -> np.ndarray:
    try:
        v = np.array(values, dtype=np.float64)
    except ValueError as exc:
        raise InputError(f"{path}: non-numeric field ({exc})") from exc
    if not np.all(np.isfinite(v)):
        raise InputError(f"{path}: non-finite number in a pose or intrinsics")
    return v


def read_queries(path: Union[str, Path]) -> list[QueryGT]:
    """Parse ``queries_with_gt.txt`` (name, 4 refs, 16 pose numbers row-major).

    GT poses are projected onto the nearest rigid transform
    (:func:`~mast3r_ros.core.geometry.se3.orthonormalize_pose`): the 7-Scenes rotations are not
    exactly orthonormal, which would otherwise add ~1 degree to every rotation error.
    """
    out = []
    for f in _lines(path):
        if len(f) != 21:
            raise InputError(f"{path}: expected 21 fields per line, got {len(f)}")
        T = orthonormalize_pose(_numbers(f[5:], path).reshape(4, 4))
        out.append(QueryGT(f[0], f[1:5], T))
    return out


def read_pairs(path: Union[str, Path]) -> list[PairGT]:
    """Parse ``pairs_with_gt.txt`` (``name0 name1 rot0 rot1 K0[9] K1[9] T_0to1[16]``; the
    relative pose projected onto the nearest rigid transform, see :func:`read_queries`)."""
    out = []
    for f in _lines(path):
        if len(f) != 38:
            raise InputError(f"{path}: expected 38 fields per line, got {len(f)}")
        v = _numbers(f[4:], path)
        out.append(PairGT(f[0], f[1], v[:9].reshape(3, 3), v[9:18].reshape(3, 3),
                          orthonormalize_pose(v[18:].reshape(4, 4))))
    return out


def relative_pose_errors(T_0to1_gt: np.ndarray, R: np.ndarray,
                         t: np.ndarray) -> tuple[float, float]:
    """(rotation error, folded translation-direction error) in degrees."""
    err_r = rotation_angle_deg(T_0to1_gt[:3, :3], R)
    t_gt = T_0to1_gt[:3, 3]
    n = np.linalg.norm(t_gt) * np.linalg.norm(t)
    cos = float(np.dot(t_gt, t) / max(n, 1e-12))
    err_t = float(np.degrees(np.arccos(np.clip(cos, -1.0, 1.0))))
    return err_r, min(err_t, 180.0 - err_t)


def pose_auc(errors: Sequence[float], thresholds: Sequence[float] = (5, 10, 20)) -> list[float]:
    """Area under the cumulative recall curve of pose errors up to each threshold, in percent."""
    e = np.sort(np.asarray(errors, dtype=np.float64))
    n = e.size
    recall = np.arange(1, n + 1) / max(n, 1)
    e = np.concatenate([[0.0], e])
    recall = np.concatenate([[0.0], recall])
    aucs = []
    for thr in thresholds:
        last = int(np.searchsorted(e, thr))
        x = np.concatenate([e[:last], [thr]])
        y = np.concatenate([recall[:last], [recall[last - 1]]])
        aucs.append(100.0 * float(np.trapezoid(y, x)) / thr)
    return aucs


def summarize_absolute(pos_err_m: Sequence[float], rot_err_deg: Sequence[float],
                       thresholds: Sequence[tuple[float, float]] = ((0.02, 2), (0.05, 5),
                                                                    (0.10, 10))) -> dict:
    """Median errors (cm, deg) and recall at (metres, degrees) thresholds (failures = inf)."""
    p = np.asarray(pos_err_m, dtype=np.float64)
    r = np.asarray(rot_err_deg, dtype=np.float64)
    out = {"num_queries": int(p.size),
           "num_localized": int(np.isfinite(p).sum()),
           "median_position_cm": float(np.median(p) * 100) if p.size else float("nan"),
           "median_rotation_deg": float(np.median(r)) if r.size else float("nan")}
    for tm, td in thresholds:
        hit = (p <= tm) & (r <= td)
        out[f"recall_{tm * 100:g}cm_{td:g}deg"] = float(np.mean(hit)) if p.size else 0.0
    return out


def summarize_relative(err_r: Sequence[float], err_t: Sequence[float]) -> dict:
    """AUC@5/10/20 of max(err_r, err_t) and the medians (failures = inf)."""
    er, et = np.asarray(err_r, dtype=np.float64), np.asarray(err_t, dtype=np.float64)
    pose = np.maximum(er, et)
    auc = pose_auc(pose.tolist(), (5, 10, 20))
    return {"num_pairs": int(pose.size), "num_estimated": int(np.isfinite(pose).sum()),
            "auc@5": auc[0], "auc@10": auc[1], "auc@20": auc[2],
            "median_rotation_deg": float(np.median(er)) if er.size else float("nan"),
            "median_translation_deg": float(np.median(et)) if et.size else float("nan")}


def retrieval_recall(retrieved: Sequence[Sequence[int]], relevant: Sequence[set[int]],
                     ks: Sequence[int] = (1, 2, 4)) -> dict:
    """Share of queries with at least one relevant item in the first k retrieved, per k."""
    if len(retrieved) != len(relevant):
        raise InputError("retrieved and relevant lists differ in length")
    n = max(len(retrieved), 1)
    return {f"recall@{k}": sum(bool(set(list(r)[:k]) & g) for r, g in zip(retrieved, relevant)) / n
            for k in ks}


def parse_frame_ranges(spec: str, n: int) -> list[list[int]]:
    """Indices of comma-separated Python slices ``START:END[:STEP]`` into a list of ``n`` items.

    Example: ``parse_frame_ranges("0:40,15:66", 66)`` plays 0..39, then 15..65.

    Raises:
        InputError: a malformed slice or one that selects nothing.
    """
    out = []
    for part in spec.split(","):
        fields = part.strip().split(":")
        if len(fields) not in (2, 3):
            raise InputError(f"frame range {part!r} is not START:END[:STEP]")
        try:
            vals = [int(f) if f.strip() else None for f in fields]
        except ValueError as exc:
            raise InputError(f"frame range {part!r} is not START:END[:STEP] of integers") from exc
        if len(vals) == 3 and vals[2] == 0:
            raise InputError(f"frame range {part!r} has step 0")
        idx = list(range(n))[slice(*vals)]
        if not idx:
            raise InputError(f"frame range {part!r} selects no frame of {n}")
        out.append(idx)
    return out


@dataclass(frozen=True)
class TrajectoryErrors:
    """Errors of an estimated trajectory against GT (evo; metres and degrees).

    Attributes:
        ate: RMSE of the position error after an SE(3) (no scale) alignment.
        max_error: largest position error after that alignment.
        rpe_translation: RMSE of the per-step relative translation error.
        rpe_rotation_deg: RMSE of the per-step relative rotation error.
        aligned: (N, 4, 4) the aligned estimated poses.
    """

    ate: float
    max_error: float
    rpe_translation: float
    rpe_rotation_deg: float
    aligned: np.ndarray


def trajectory_errors(T_est: np.ndarray, T_gt: np.ndarray,
                      stamps: Optional[np.ndarray] = None) -> TrajectoryErrors:
    """ATE (SE(3)-aligned) and per-step RPE with evo.

    Args:
        T_est: (N, 4, 4) estimated camera-to-world poses (N >= 3).
        T_gt: (N, 4, 4) GT poses of the same frames (rotations projected onto SO(3) here).
        stamps: (N,) increasing seconds (default 0..N-1).

    Raises:
        InputError: fewer than 3 poses or mismatched lengths.
    """
    from evo.core import metrics
    from evo.core.trajectory import PoseTrajectory3D

    n = len(T_est)
    if n < 3 or len(T_gt) != n:
        raise InputError(f"trajectory errors need >= 3 matched poses, got {n} and {len(T_gt)}")
    ts = np.arange(n, dtype=np.float64) if stamps is None else np.asarray(stamps, np.float64)
    gt = PoseTrajectory3D(poses_se3=[orthonormalize_pose(T) for T in T_gt], timestamps=ts)
    est = PoseTrajectory3D(poses_se3=[orthonormalize_pose(T) for T in T_est], timestamps=ts)
    rpe = []
    for rel in (metrics.PoseRelation.translation_part, metrics.PoseRelation.rotation_angle_deg):
        m = metrics.RPE(rel, 1.0, metrics.Unit.frames, all_pairs=False)
        m.process_data((gt, est))
        rpe.append(float(m.get_statistic(metrics.StatisticsType.rmse)))
    est.align(gt, correct_scale=False)
    ape = metrics.APE(metrics.PoseRelation.translation_part)
    ape.process_data((gt, est))
    return TrajectoryErrors(float(ape.get_statistic(metrics.StatisticsType.rmse)),
                            float(ape.get_statistic(metrics.StatisticsType.max)), rpe[0], rpe[1],
                            np.array(est.poses_se3))


def nees_in_band(motions: Sequence[np.ndarray], covariances: Sequence[np.ndarray],
                 gt_motions: Sequence[np.ndarray], confidence: float = 0.95
                 ) -> tuple[float, np.ndarray]:
    """Share of steps whose relative-pose NEES lies inside the chi-square(6) band.

    The error of a step is ``e = (t, log R)`` of ``inv(S_est) @ S_gt`` (a right perturbation in
    the step's end frame, ROS order, as the covariances), and ``NEES = e^T cov^-1 e``. A
    consistent estimator puts ``confidence`` of its steps inside
    ``[chi2_6((1 - c) / 2), chi2_6((1 + c) / 2)]`` (1.24 .. 14.45 for 95 %).

    Args:
        motions: (4, 4) estimated steps ``T_prev_cur``.
        covariances: (6, 6) their right covariances.
        gt_motions: (4, 4) GT steps (rotations projected onto SO(3) here).
        confidence: two-sided band probability.

    Returns:
        ``(fraction inside, (N,) NEES values)``; fraction NaN without steps.
    """
    from scipy.stats import chi2

    nees = []
    for S, C, G in zip(motions, covariances, gt_motions):
        D = invert_pose(orthonormalize_pose(S)) @ orthonormalize_pose(G)
        e = np.concatenate([D[:3, 3], so3_log(D[:3, :3])])
        nees.append(float(e @ np.linalg.solve(C, e)))
    values = np.asarray(nees)
    if values.size == 0:
        return float("nan"), values
    lo, hi = chi2.ppf((1 - confidence) / 2, 6), chi2.ppf((1 + confidence) / 2, 6)
    return float(np.mean((values >= lo) & (values <= hi))), values
