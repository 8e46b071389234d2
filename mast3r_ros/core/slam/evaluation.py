"""Evaluation helpers of the SLAM back end: RGB-D sequences with GT, evo's SE(3) ATE, loop truth.

The sequence layout is the one of ``shared/data/sevenscenes_redkitchen_rgbd/sequence/``
(``frame-NNNNNN.{color.jpg, depth.png, pose.txt}``, camera-to-world poses, depth in millimetres
registered to colour with ``color-intrinsics.txt`` / ``camera-intrinsics.txt`` of the parent
folder).
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Union

import cv2
import numpy as np

from mast3r_ros.core.errors import InputError
from mast3r_ros.core.evaluation import parse_frame_ranges as frame_range_groups
from mast3r_ros.core.evaluation import read_queries
from mast3r_ros.core.geometry.se3 import (
    invert_pose,
    make_pose,
    orthonormalize_pose,
    pose_errors,
    so3_exp,
)
from mast3r_ros.core.localizer import Localizer
from mast3r_ros.core.map.rgbd import read_matrix, read_rgb, register_depth
from mast3r_ros.core.slam.mapper import PoseGraphMapper
from mast3r_ros.core.tracking.stream import EdgeType, GraphEdge, KeyframeEvent
from mast3r_ros.core.types import Frame

#: one item of a front end's stream
StreamItem = Union[KeyframeEvent, GraphEdge]

__all__ = ["SequenceFrame", "StreamItem", "parse_frame_ranges", "sequence_files", "read_frame",
           "read_sequence",
           "orthonormalize_pose", "align_trajectory", "loop_errors", "is_false_loop",
           "summarize_slam", "false_loop_edges", "interleave_edges", "relocalize_queries"]

_FRAME = re.compile(r"frame-(\d+)\.color\.(jpg|png)$")
#: a loop whose relative pose disagrees with GT by more than this is false (issue targets)
FALSE_LOOP_M, FALSE_LOOP_DEG = 0.3, 10.0


@dataclass(frozen=True)
class SequenceFrame:
    """One RGB-D frame with GT.

    Attributes:
        number: frame number in the recording (from the file name).
        rgb: (H, W, 3) uint8.
        depth: (H, W) float32 metres registered to ``rgb`` (0 = invalid).
        K: (3, 3) colour intrinsics.
        T_world_cam: (4, 4) GT camera-to-world pose.
        stamp: seconds (frame number / fps).
    """

    number: int
    rgb: np.ndarray
    depth: np.ndarray
    K: np.ndarray
    T_world_cam: np.ndarray
    stamp: float


def parse_frame_ranges(spec: Optional[str], n: int) -> list[int]:
    """Indices selected by comma-separated Python slices ``START:END[:STEP]`` into ``range(n)``,
    in play order (:func:`mast3r_ros.core.evaluation.parse_frame_ranges`, flattened).

    Example: ``parse_frame_ranges("0:6:2,5:0:-2", 6) == [0, 2, 4, 5, 3, 1]``; None = all.

    Raises:
        InputError: a part that is not a slice of integers, a zero step, or an empty selection.
    """
    if spec is None or not spec.strip():
        return list(range(n))
    return [i for group in frame_range_groups(spec, n) for i in group]


def sequence_files(folder: Union[str, Path], stride: int = 1) -> list[Path]:
    """Colour files of a sequence folder in frame order, every ``stride``-th.

    Raises:
        InputError: no ``frame-*.color.jpg`` in the folder, or stride < 1.
    """
    if stride < 1:
        raise InputError(f"stride must be >= 1, got {stride}")
    folder = Path(folder)
    files = sorted((int(m.group(1)), p) for p in folder.iterdir()
                   if (m := _FRAME.search(p.name))) if folder.is_dir() else []
    if not files:
        raise InputError(f"no frame-*.color.jpg files under {folder}")
    return [p for _, p in files][::stride]


def read_frame(color_path: Path, K_color: np.ndarray, K_depth: np.ndarray, fps: float = 30.0,
               offset_px: tuple[float, float] = (0.0, 0.0)) -> SequenceFrame:
    """Read one colour / depth / pose triple (depth registered to the colour image).

    Raises:
        InputError: missing or unreadable depth or pose.
    """
    stem = color_path.name.split(".color.")[0]
    number = int(_FRAME.search(color_path.name).group(1))  # type: ignore[union-attr]
    rgb = read_rgb(color_path)
    raw = cv2.imread(str(color_path.parent / f"{stem}.depth.png"), cv2.IMREAD_UNCHANGED)
    if raw is None:
        raise InputError(f"missing depth image for {color_path}")
    depth_d = raw.astype(np.float32) / 1000.0
    depth_d[(raw == 0) | (raw == 65535)] = 0.0
    depth = register_depth(depth_d, K_depth, K_color, rgb.shape[:2], offset_px)
    T = orthonormalize_pose(read_matrix(color_path.parent / f"{stem}.pose.txt", (4, 4)))
    return SequenceFrame(number, rgb, depth, K_color, T, number / fps)


def read_sequence(data: Union[str, Path], stride: int = 1, frames: Optional[str] = None
                  ) -> list[SequenceFrame]:
    """The selected frames of ``data/sequence`` in play order (a frame may play twice).

    Args:
        data: the data set folder (``sequence/`` and the intrinsics files).
        stride: take every ``stride``-th file.
        frames: slices into the strided file list (:func:`parse_frame_ranges`); None = all.
    """
    data = Path(data)
    files = sequence_files(data / "sequence", stride)
    order = parse_frame_ranges(frames, len(files))
    Kc = read_matrix(data / "color-intrinsics.txt", (3, 3))
    Kd = read_matrix(data / "camera-intrinsics.txt", (3, 3))
    cache: dict[int, SequenceFrame] = {}
    for i in order:
        if i not in cache:
            cache[i] = read_frame(files[i], Kc, Kd)
    return [cache[i] for i in order]


def align_trajectory(est: np.ndarray, gt: np.ndarray) -> tuple[np.ndarray, float]:
    """SE(3) alignment of estimated to GT camera poses (Umeyama, no scale) and the ATE, with evo.

    Args:
        est: (N, 4, 4) estimated camera-to-map poses.
        gt: (N, 4, 4) GT camera-to-world poses of the same frames.

    Returns:
        ``(T_world_map (4, 4), ate_rmse_m)``: the transform applied to ``est`` and the RMSE of
        the camera positions after it (metres).

    Raises:
        InputError: fewer than 3 poses or mismatched lengths.
    """
    from evo.core import metrics
    from evo.core.trajectory import PosePath3D

    est, gt = np.asarray(est, np.float64), np.asarray(gt, np.float64)
    if est.shape != gt.shape or est.ndim != 3 or est.shape[0] < 3:
        raise InputError(f"need >= 3 matching (N, 4, 4) poses, got {est.shape} and {gt.shape}")
    traj_est, traj_gt = PosePath3D(poses_se3=list(est)), PosePath3D(poses_se3=list(gt))
    r, t, _ = traj_est.align(traj_gt, correct_scale=False)
    ape = metrics.APE(metrics.PoseRelation.translation_part)
    ape.process_data((traj_gt, traj_est))
    S = np.eye(4)
    S[:3, :3], S[:3, 3] = r, t
    return S, float(ape.get_statistic(metrics.StatisticsType.rmse))


def loop_errors(edges: Iterable[GraphEdge], gt: dict[int, np.ndarray]
                ) -> list[tuple[int, int, float, float]]:
    """Error of each ``LOOP`` edge's relative pose against GT.

    Returns:
        ``[(from_id, to_id, position error m, rotation error deg)]``.
    """
    out = []
    for e in edges:
        if e.type is not EdgeType.LOOP:
            continue
        T_gt = invert_pose(gt[e.from_id]) @ gt[e.to_id]
        dp, dr = pose_errors(e.T_from_to, T_gt)
        out.append((e.from_id, e.to_id, dp, dr))
    return out


def is_false_loop(position_error_m: float, rotation_error_deg: float) -> bool:
    """The issue's definition: more than 0.3 m or 10 degrees away from GT."""
    return position_error_m > FALSE_LOOP_M or rotation_error_deg > FALSE_LOOP_DEG


def summarize_slam(mapper: PoseGraphMapper, gt: dict[int, np.ndarray], frames: int,
                   optimize_s: float) -> tuple[dict, np.ndarray]:
    """The issue's summary of a SLAM run (keyframes only, SE(3)-aligned with evo).

    Args:
        mapper: the back end after the whole stream and a final batch optimisation.
        gt: GT camera-to-world pose per keyframe id.
        frames: frames played.
        optimize_s: seconds of the final batch optimisation.

    Returns:
        ``(summary, T_world_map)``: ``frames``, ``keyframes``, ``loops_accepted``,
        ``loops_rejected``, ``false_loops``, ``ate_cm_odometry`` (the front end's keyframe poses),
        ``ate_cm_slam`` (optimised), ``optimize_ms``; and the alignment of the optimised map.
    """
    ids = [i for i in mapper.graph.ids if i in gt]
    G = np.stack([gt[i] for i in ids])
    front = np.stack([mapper.map.record(i).T_map_cam for i in ids])
    _, ate_odo = align_trajectory(front, G)
    S, ate_slam = align_trajectory(np.stack([mapper.graph.pose(i) for i in ids]), G)
    errs = loop_errors(mapper.graph.edges, gt)
    status = mapper.status
    summary = {"frames": frames, "keyframes": len(ids), "loops_accepted": status.loops_accepted,
               "loops_rejected": status.loops_rejected,
               "false_loops": sum(is_false_loop(p, r) for _, _, p, r in errs),
               "ate_cm_odometry": ate_odo * 100, "ate_cm_slam": ate_slam * 100,
               "optimize_ms": optimize_s * 1000}
    return summary, S


def false_loop_edges(gt: dict[int, np.ndarray], n: int, rng: np.random.Generator,
                     min_distance: float = 1.0, min_gap: int = 6) -> list[GraphEdge]:
    """Test hook: ``n`` confident loop edges between keyframes that are far apart in GT.

    Each claims a wrong relative pose (identity, or GT offset by 0.5 m and 20 degrees), with
    the information of a good loop (1 cm, 0.5 deg). Even ones are ``LOOP`` (claimed verified:
    only the consistency test can refuse them), odd ones ``LOOP_CANDIDATE`` (verified with the
    images first). Stamps are left at 0: :func:`interleave_edges` sets them.

    Raises:
        InputError: fewer than ``n`` pairs satisfy the distance and gap.
    """
    ids = sorted(gt)
    pairs = [(a, b) for a in ids for b in ids if b - a >= min_gap
             and np.linalg.norm(gt[a][:3, 3] - gt[b][:3, 3]) >= min_distance]
    if len(pairs) < n:
        raise InputError(f"only {len(pairs)} keyframe pairs are {min_distance} m apart")
    info = np.diag([1.0 / 0.01**2] * 3 + [1.0 / np.radians(0.5)**2] * 3)
    offset = make_pose(so3_exp(np.array([0.0, np.radians(20.0), 0.0])), np.array([0.5, 0.0, 0.0]))
    edges = []
    for k, j in enumerate(rng.choice(len(pairs), n, replace=False)):
        a, b = pairs[int(j)]
        T = np.eye(4) if k % 2 == 0 else invert_pose(gt[a]) @ gt[b] @ offset
        edges.append(GraphEdge(a, b, EdgeType.LOOP if k % 2 == 0 else EdgeType.LOOP_CANDIDATE,
                               T, info))
    return edges


def interleave_edges(items: Sequence[StreamItem], extra: Sequence[GraphEdge]) -> list[StreamItem]:
    """Insert each extra edge right after the stream edge that first reaches its ``to`` node,
    with that edge's stamp (so the stream stays in order)."""
    by_to: dict[int, list[GraphEdge]] = {}
    for e in extra:
        by_to.setdefault(e.to_id, []).append(e)
    out: list[StreamItem] = []
    for it in items:
        out.append(it)
        if isinstance(it, GraphEdge):
            for e in by_to.pop(it.to_id, []):
                out.append(dataclasses.replace(e, stamp=it.stamp))
    return out


def relocalize_queries(localizer: Localizer, data: Path, S: np.ndarray,
                       exclude_numbers: set[int]) -> dict:
    """Localize ``data/query`` images in a SLAM map; errors after the map's GT alignment ``S``.

    Queries whose frame number is in ``exclude_numbers`` (frames used for SLAM) are skipped.

    Returns:
        ``reloc_queries``, ``reloc_localized``, ``reloc_median_cm``, ``reloc_median_deg``,
        ``reloc_recall_5cm5deg`` (failures count as infinite error).
    """
    K = read_matrix(data / "color-intrinsics.txt", (3, 3))
    pe, re_ = [], []
    for q in read_queries(data / "queries_with_gt.txt"):
        m = _FRAME.search(q.name)
        if m is None or int(m.group(1)) in exclude_numbers:
            continue
        r = localizer.localize(Frame(read_rgb(data / q.name), K))
        if r.success and r.T_map_cam is not None:
            dp, dr = pose_errors(S @ r.T_map_cam, orthonormalize_pose(q.T_world_cam))
        else:
            dp, dr = np.inf, np.inf
        pe.append(dp)
        re_.append(dr)
    p, r_ = np.array(pe), np.array(re_)
    n = int(p.size)
    return {"reloc_queries": n, "reloc_localized": int(np.isfinite(p).sum()),
            "reloc_median_cm": float(np.median(p) * 100) if n else float("nan"),
            "reloc_median_deg": float(np.median(r_)) if n else float("nan"),
            "reloc_recall_5cm5deg": float(np.mean((p <= 0.05) & (r_ <= 5.0))) if n else 0.0}
