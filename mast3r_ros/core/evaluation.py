"""Evaluation metrics and readers of the ``shared/data`` ground-truth formats.

Absolute pose (7-Scenes): position error ``||C_est - C_gt||`` (m) and rotation error (deg) of
camera-to-world poses; failures count as infinite error; medians and recall at (cm, deg)
thresholds. Relative pose (SuperGlue/LoFTR protocol): rotation error, translation-direction error
folded with ``min(e, 180 - e)``, pose error = max of both (inf for failures), AUC@5/10/20.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence, Union

import numpy as np

from mast3r_ros.core.errors import InputError
from mast3r_ros.core.geometry.se3 import orthonormalize_pose, rotation_angle_deg

__all__ = [
    "QueryGT", "PairGT", "read_queries", "read_pairs", "relative_pose_errors", "pose_auc",
    "summarize_absolute", "summarize_relative", "retrieval_recall",
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
