"""Build a keyframe map from posed RGB-D frames (the 7-Scenes layout of ``shared/data``).

Layout read by :func:`build_map_from_rgbd`::

    <root>/map/frame-NNNNNN.color.jpg   colour image
    <root>/map/frame-NNNNNN.depth.png   uint16 depth in millimetres (0 = no measurement)
    <root>/map/frame-NNNNNN.pose.txt    4x4 camera-to-world pose (metres)
    <root>/color-intrinsics.txt         3x3 K of the colour images
    <root>/camera-intrinsics.txt        3x3 K of the depth images (defaults to the colour K)

7-Scenes colour and depth are not registered. The depth is resampled onto the colour pixel grid
through the pinhole mapping ``x_d = c_d + (x_c - c_c) * f_d / f_c (+ offset)`` (nearest neighbour,
so no depth is interpolated across edges). Back-projecting the registered depth with the colour K
gives exactly the 3D point the depth camera measured at ``x_d``.
"""

from __future__ import annotations

import logging
import re
from datetime import datetime, timezone
from pathlib import Path
from typing import Optional, Union

import cv2
import numpy as np

from mast3r_ros.core.errors import InputError
from mast3r_ros.core.map.keyframe import Keyframe, KeyframeMap, MapMeta

__all__ = ["build_map_from_rgbd", "register_depth", "read_matrix", "read_rgb",
           "rgbd_intrinsics", "list_rgbd_frames", "read_rgbd_frame"]

logger = logging.getLogger(__name__)
_FRAME = re.compile(r"frame-(\d+)\.color\.(jpg|png)$")


def read_matrix(path: Path, shape: tuple[int, int]) -> np.ndarray:
    """Read a whitespace-separated matrix file (e.g. K or a pose) as float64 of ``shape``."""
    try:
        vals = np.array(Path(path).read_text().split(), dtype=np.float64)
        return vals.reshape(shape)
    except (OSError, ValueError) as exc:
        raise InputError(f"cannot read a {shape} matrix from {path}: {exc}") from exc


def read_rgb(path: Union[str, Path]) -> np.ndarray:
    """Read an image file as (H, W, 3) uint8 RGB."""
    bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if bgr is None:
        raise InputError(f"cannot read image {path}")
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def register_depth(depth_d: np.ndarray, K_depth: np.ndarray, K_color: np.ndarray,
                   out_shape: tuple[int, int], offset_px: tuple[float, float] = (0.0, 0.0)
                   ) -> np.ndarray:
    """Resample a depth image onto the colour pixel grid (pure intrinsics change + offset).

    Args:
        depth_d: (Hd, Wd) float32 depth in metres of the depth camera (0 = invalid).
        K_depth: (3, 3) intrinsics of the depth image.
        K_color: (3, 3) intrinsics of the colour image.
        out_shape: (H, W) of the colour image.
        offset_px: (dx, dy) added to the depth-image coordinates (depth pixels).

    Returns:
        (H, W) float32 depth in metres aligned with the colour pixels (0 = invalid).
    """
    h, w = out_shape
    cols, rows = np.meshgrid(np.arange(w, dtype=np.float64), np.arange(h, dtype=np.float64))
    map_x = K_depth[0, 2] + (cols - K_color[0, 2]) * K_depth[0, 0] / K_color[0, 0] + offset_px[0]
    map_y = K_depth[1, 2] + (rows - K_color[1, 2]) * K_depth[1, 1] / K_color[1, 1] + offset_px[1]
    return cv2.remap(depth_d.astype(np.float32), map_x.astype(np.float32),
                     map_y.astype(np.float32), cv2.INTER_NEAREST, borderMode=cv2.BORDER_CONSTANT,
                     borderValue=0.0)


def rgbd_intrinsics(base: Path) -> tuple[np.ndarray, np.ndarray]:
    """``(K_color, K_depth)`` of a data set folder (``K_depth`` defaults to ``K_color``)."""
    K_color = read_matrix(base / "color-intrinsics.txt", (3, 3))
    K_depth = (read_matrix(base / "camera-intrinsics.txt", (3, 3))
               if (base / "camera-intrinsics.txt").exists() else K_color)
    return K_color, K_depth


def list_rgbd_frames(folder: Path) -> list[tuple[int, Path]]:
    """``(frame number, colour image path)`` of every ``frame-NNNNNN.color.*`` in ``folder``,
    sorted by number."""
    return sorted((int(m.group(1)), p) for p in Path(folder).iterdir()
                  if (m := _FRAME.search(p.name)))


def read_rgbd_frame(color_path: Path, K_color: np.ndarray, K_depth: np.ndarray, *,
                    depth_scale: float = 1000.0,
                    depth_offset_px: tuple[float, float] = (0.0, 0.0)
                    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One posed RGB-D frame: its colour image, its depth registered to it, its pose.

    Args:
        color_path: ``.../frame-NNNNNN.color.jpg``; the depth and pose files sit next to it.
        K_color: (3, 3) intrinsics of the colour image.
        K_depth: (3, 3) intrinsics of the depth image.
        depth_scale: depth PNG units per metre.
        depth_offset_px: offset of the registration (see :func:`register_depth`).

    Returns:
        ``(rgb (H, W, 3) uint8, depth (H, W) float32 metres (0 = none), T_world_cam (4, 4))``.

    Raises:
        InputError: a missing or unreadable file.
    """
    folder, stem = color_path.parent, color_path.name.split(".color.")[0]
    rgb = read_rgb(color_path)
    raw = cv2.imread(str(folder / f"{stem}.depth.png"), cv2.IMREAD_UNCHANGED)
    if raw is None:
        raise InputError(f"missing depth image for {color_path}")
    depth_d = raw.astype(np.float32) / depth_scale
    depth_d[(raw == 0) | (raw == 65535)] = 0.0
    depth = register_depth(depth_d, K_depth, K_color, rgb.shape[:2], depth_offset_px)
    return rgb, depth, read_matrix(folder / f"{stem}.pose.txt", (4, 4))


def build_map_from_rgbd(root: Union[str, Path], *, depth_scale: float = 1000.0, fps: float = 30.0,
                        depth_offset_px: tuple[float, float] = (0.0, 0.0),
                        max_frames: Optional[int] = None, stride: int = 1) -> KeyframeMap:
    """Read posed RGB-D frames into a :class:`KeyframeMap` (no descriptors yet).

    Args:
        root: data set folder with ``map/`` and the intrinsics files (or the ``map/`` folder).
        depth_scale: depth PNG units per metre (1000 = millimetres).
        fps: frame rate used to derive stamps from frame numbers (seconds).
        depth_offset_px: offset of the depth registration (see :func:`register_depth`).
        max_frames: keep at most this many frames (after ``stride``).
        stride: keep every ``stride``-th frame.

    Returns:
        The map; keyframe ids are the frame numbers, ``T_map_cam`` the camera-to-world poses.

    Raises:
        InputError: no frames, unreadable files or a colour/depth size mismatch.
    """
    root = Path(root)
    map_dir = root / "map" if (root / "map").is_dir() else root
    K_color, K_depth = rgbd_intrinsics(map_dir.parent if map_dir != root else root)
    frames = list_rgbd_frames(map_dir)[::max(stride, 1)][:max_frames]
    if not frames:
        raise InputError(f"no frame-*.color.jpg files under {map_dir}")
    kfs = []
    for num, color_path in frames:
        rgb, depth, T = read_rgbd_frame(color_path, K_color, K_depth, depth_scale=depth_scale,
                                        depth_offset_px=depth_offset_px)
        kfs.append(Keyframe(num, rgb, K_color, T, num / fps, depth))
    meta = MapMeta(created=datetime.now(timezone.utc).isoformat(timespec="seconds"),
                   source=f"rgbd:{root}")
    logger.info("read %d RGB-D keyframes from %s", len(kfs), map_dir)
    return KeyframeMap(meta, kfs)
