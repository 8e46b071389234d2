"""The pose graph on disk: a sidecar file in the map directory, written after the map.

``<map>/pose_graph.npz`` (no pickled objects) holds the format version, the node ids with their
optimised poses and their odometry poses, and every edge (ids, type, ``T_from_to``, information,
stamp). The map store leaves files it did not write alone, so the sidecar survives the map's own
saves; it is written to a temporary name and renamed, so a crash leaves the previous sidecar.
:func:`load_pose_graph` checks that the sidecar belongs to the map next to it: the same node ids and
the map's keyframe poses equal to the saved optimised poses.
"""

from __future__ import annotations

import contextlib
import io
import os
import uuid
import zipfile
from pathlib import Path
from typing import Any, Optional, Union

import numpy as np

from mast3r_ros.core.config import PoseGraphConfig
from mast3r_ros.core.errors import InputError, MapError, MapFormatError
from mast3r_ros.core.map.keyframe import KeyframeMap
from mast3r_ros.core.map.store import load_map, save_map
from mast3r_ros.core.slam.graph import PoseGraph
from mast3r_ros.core.tracking.stream import EdgeType, GraphEdge

__all__ = ["GRAPH_FILE", "GRAPH_FORMAT", "save_pose_graph", "load_pose_graph", "save_slam_map",
           "load_slam_map"]

#: name of the sidecar inside the map directory
GRAPH_FILE = "pose_graph.npz"
#: version of the sidecar's layout
GRAPH_FORMAT = 1
_POSE_TOL = 1e-6  # metres / rotation-matrix entries: "the map was saved with this graph"


def save_pose_graph(path: Union[str, Path], graph: PoseGraph,
                    odom_poses: dict[int, np.ndarray]) -> Path:
    """Write ``<path>/pose_graph.npz`` atomically.

    Args:
        path: the map directory (it must exist: save the map first).
        graph: the pose graph (its current estimate is saved).
        odom_poses: (4, 4) odometry pose ``T_odom_cam`` per node id (missing ids are saved as NaN).

    Returns:
        The written file.

    Raises:
        MapError: the directory is missing or not writable (the previous sidecar is intact).
    """
    ids = graph.ids
    nan = np.full((4, 4), np.nan)
    edges = graph.edges
    arrays: dict[str, Any] = {
        "format": np.array(GRAPH_FORMAT, np.int64),
        "node_ids": np.array(ids, np.int64),
        "node_poses": np.stack([graph.pose(i) for i in ids]) if ids else np.zeros((0, 4, 4)),
        "node_odom": (np.stack([odom_poses.get(i, nan) for i in ids]) if ids
                      else np.zeros((0, 4, 4))),
        "edge_ids": np.array([[e.from_id, e.to_id] for e in edges], np.int64).reshape(-1, 2),
        "edge_types": np.array([e.type.value for e in edges], dtype="<U16"),
        "edge_T": np.stack([e.T_from_to for e in edges]) if edges else np.zeros((0, 4, 4)),
        "edge_info": np.stack([e.information for e in edges]) if edges else np.zeros((0, 6, 6)),
        "edge_stamps": np.array([e.stamp for e in edges], np.float64),
    }
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    target = Path(path) / GRAPH_FILE
    tmp = Path(path) / f".{GRAPH_FILE}.{uuid.uuid4().hex}"
    try:
        with open(tmp, "wb") as f:
            f.write(buf.getvalue())
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, target)
    except OSError as exc:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise MapError(f"cannot write the pose graph to {target}: {exc}") from exc
    return target


def load_pose_graph(path: Union[str, Path], kmap: Optional[KeyframeMap] = None,
                    config: Optional[PoseGraphConfig] = None
                    ) -> tuple[PoseGraph, dict[int, np.ndarray]]:
    """Read ``<path>/pose_graph.npz`` and rebuild the graph (optimised once with iSAM2).

    Args:
        path: the map directory.
        kmap: the map loaded from ``path``; when given, the sidecar must belong to it.
        config: pose-graph settings of the rebuilt graph.

    Returns:
        ``(graph, odom_poses)``; ``odom_poses`` omits nodes saved without one.

    Raises:
        MapFormatError: missing, corrupt or foreign sidecar (another map version).
    """
    file = Path(path) / GRAPH_FILE
    try:
        with np.load(file, allow_pickle=False) as z:
            a = {k: z[k] for k in z.files}
    except (OSError, ValueError, KeyError, zipfile.BadZipFile) as exc:
        raise MapFormatError(f"cannot read the pose graph {file}: {exc}") from exc
    _check_arrays(a, file)
    ids = [int(i) for i in a["node_ids"]]
    if kmap is not None:
        _check_belongs(a, ids, kmap, file)
    graph = PoseGraph(config)
    try:
        for i, T in zip(ids, a["node_poses"]):
            graph.add_node(i, T)
        for (f, t), typ, T, info, st in zip(a["edge_ids"], a["edge_types"], a["edge_T"],
                                           a["edge_info"], a["edge_stamps"]):
            graph.add_edge(GraphEdge(int(f), int(t), EdgeType(str(typ)), T, info, float(st)))
    except (InputError, ValueError) as exc:
        raise MapFormatError(f"corrupt pose graph {file}: {exc}") from exc
    graph.update()
    odom = {i: T for i, T in zip(ids, a["node_odom"]) if np.all(np.isfinite(T))}
    return graph, odom


def _check_arrays(a: dict[str, np.ndarray], file: Path) -> None:
    need = ("format", "node_ids", "node_poses", "node_odom", "edge_ids", "edge_types", "edge_T",
            "edge_info", "edge_stamps")
    missing = [k for k in need if k not in a]
    if missing:
        raise MapFormatError(f"{file}: missing arrays {missing}")
    if int(a["format"]) != GRAPH_FORMAT:
        raise MapFormatError(f"{file}: pose-graph format {int(a['format'])}, this version reads "
                             f"{GRAPH_FORMAT}")
    n, e = len(a["node_ids"]), len(a["edge_ids"])
    shapes = {"node_poses": (n, 4, 4), "node_odom": (n, 4, 4), "edge_ids": (e, 2),
              "edge_types": (e,), "edge_T": (e, 4, 4), "edge_info": (e, 6, 6),
              "edge_stamps": (e,)}
    for k, shape in shapes.items():
        if a[k].shape != shape:
            raise MapFormatError(f"{file}: {k} has shape {a[k].shape}, expected {shape}")


def _check_belongs(a: dict[str, np.ndarray], ids: list[int], kmap: KeyframeMap,
                   file: Path) -> None:
    if set(ids) - set(kmap.ids):
        raise MapFormatError(f"{file}: nodes {sorted(set(ids) - set(kmap.ids))[:5]} are not "
                             "keyframes of this map; the sidecar belongs to another map")
    for i, T in zip(ids, a["node_poses"]):
        if not np.allclose(kmap.record(i).T_map_cam, T, atol=_POSE_TOL):
            raise MapFormatError(f"{file}: keyframe {i}'s pose in the map differs from the "
                                 "graph's; the map was saved without this graph")


def save_slam_map(path: Union[str, Path], kmap: KeyframeMap, graph: PoseGraph,
                  odom_poses: dict[int, np.ndarray]) -> Path:
    """Write the map (the store the localizer loads), then its pose-graph sidecar.

    Args:
        path: map directory.
        kmap: the map with the graph's optimised poses.
        graph: its pose graph.
        odom_poses: ``T_odom_cam`` per node.

    Returns:
        The map directory.

    Raises:
        MapError: the path is not writable or is not a map directory.
    """
    try:
        out = save_map(kmap, path)
    except OSError as exc:
        raise MapError(f"cannot write the map to {path}: {exc}") from exc
    save_pose_graph(out, graph, odom_poses)
    return Path(out)


def load_slam_map(path: Union[str, Path], config: Optional[PoseGraphConfig] = None
                  ) -> tuple[KeyframeMap, PoseGraph, dict[int, np.ndarray]]:
    """Read a map saved by :func:`save_slam_map` with its pose graph.

    Raises:
        MapFormatError: unreadable map, missing or foreign sidecar.
    """
    kmap = load_map(path)
    graph, odom = load_pose_graph(path, kmap, config)
    return kmap, graph, odom
