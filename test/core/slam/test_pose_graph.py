"""Pose graph on synthetic graphs with known GT: a square loop with drift, outlier loops, the
direction in which information weighting moves the solution, bad input, persistence."""

from __future__ import annotations

import numpy as np
import pytest

from mast3r_ros.core.config import PoseGraphConfig
from mast3r_ros.core.errors import InputError, MapError, MapFormatError
from mast3r_ros.core.geometry.se3 import invert_pose, make_pose, so3_exp
from mast3r_ros.core.map.keyframe import Keyframe, KeyframeMap
from mast3r_ros.core.slam import GraphError, PoseGraph, load_slam_map, save_slam_map
from mast3r_ros.core.slam.factors import covariance_map_to_body, swap_blocks
from mast3r_ros.core.tracking.stream import EdgeType, GraphEdge

INFO = np.diag([1.0 / 0.02**2] * 3 + [1.0 / np.radians(1.0)**2] * 3)


def square_gt(n_side: int = 5, side: float = 2.0) -> list[np.ndarray]:
    """Camera poses around a square (z up path in the x-y plane), turning 90 deg per corner."""
    poses, T = [], np.eye(4)
    step = make_pose(np.eye(3), [side / n_side, 0, 0])
    turn = make_pose(so3_exp([0, 0, np.pi / 2]), [0, 0, 0])
    for i in range(4 * n_side):
        poses.append(T.copy())
        T = T @ step
        if (i + 1) % n_side == 0:
            T = T @ turn
    return poses


def rel(gt: list[np.ndarray], a: int, b: int) -> np.ndarray:
    return invert_pose(gt[a]) @ gt[b]


def drifting_graph(gt: list[np.ndarray], rng: np.random.Generator,
                   cfg: PoseGraphConfig | None = None) -> tuple[PoseGraph, list[np.ndarray]]:
    """Odometry with a yaw bias (drift) and noise; nodes initialised by dead reckoning."""
    g = PoseGraph(cfg)
    T = gt[0].copy()
    g.add_node(0, T)
    odo = [T.copy()]
    bias = make_pose(so3_exp([0, 0, np.radians(1.5)]), [0.01, 0, 0])
    for i in range(1, len(gt)):
        noise = make_pose(so3_exp(rng.normal(0, np.radians(0.2), 3)), rng.normal(0, 0.005, 3))
        meas = rel(gt, i - 1, i) @ bias @ noise
        T = T @ meas
        odo.append(T.copy())
        g.add_node(i, T)
        g.add_edge(GraphEdge(i - 1, i, EdgeType.ODOMETRY, meas, INFO))
        g.update()
    return g, odo


def position_rmse(g: PoseGraph, gt: list[np.ndarray]) -> float:
    return float(np.sqrt(np.mean([np.sum((g.pose(i)[:3, 3] - T[:3, 3])**2)
                                  for i, T in enumerate(gt)])))


@pytest.mark.parametrize("kernel", ["cauchy", "huber", "none"])
def test_square_loop_closure_removes_drift(rng: np.random.Generator, kernel: str) -> None:
    gt = square_gt()
    g, odo = drifting_graph(gt, rng, PoseGraphConfig(robust_kernel=kernel))
    before = position_rmse(g, gt)
    end_err_before = np.linalg.norm(odo[-1][:3, 3] - gt[-1][:3, 3])
    g.add_edge(GraphEdge(0, len(gt) - 1, EdgeType.LOOP, rel(gt, 0, len(gt) - 1), INFO))
    g.update(extra_iterations=3)
    incremental = position_rmse(g, gt)
    result = g.optimize()
    after = position_rmse(g, gt)
    assert before > 0.2 and end_err_before > 0.3          # the drift is real
    assert after < 0.25 * before                          # the loop removes most of it
    assert result.kind == "batch" and result.error_after <= result.error_before + 1e-9
    if kernel == "none":  # plain Gauss-Newton: iSAM2 reaches the batch optimum by itself
        assert incremental == pytest.approx(after, abs=0.005)
    else:  # robust reweighting converges slowly in iSAM2: why the mapper batches after a loop
        assert incremental > after


def test_outlier_loop_is_rejected_by_chi2_and_dampened_by_the_kernel(rng) -> None:
    gt = square_gt()
    g, _ = drifting_graph(gt, rng)
    g.add_edge(GraphEdge(0, len(gt) - 1, EdgeType.LOOP, rel(gt, 0, len(gt) - 1), INFO))
    g.update(extra_iterations=2)
    good = position_rmse(g, gt)
    wrong = GraphEdge(2, 12, EdgeType.LOOP, np.eye(4), INFO)  # two places ~2 m apart "coincide"
    true_edge = GraphEdge(3, 17, EdgeType.LOOP, rel(gt, 3, 17), INFO)
    assert g.chi2(wrong) > 1000.0
    assert g.chi2(true_edge) < 22.5                       # chi2(6) at 0.999
    # if a wrong loop got in anyway, the Cauchy kernel limits the damage; plain least squares
    # folds the map
    robust, plain = g, drifting_graph(gt, np.random.default_rng(12345),
                                      PoseGraphConfig(robust_kernel="none"))[0]
    plain.add_edge(GraphEdge(0, len(gt) - 1, EdgeType.LOOP, rel(gt, 0, len(gt) - 1), INFO))
    for graph in (robust, plain):
        graph.add_edge(wrong)
        graph.optimize()
    assert position_rmse(robust, gt) < good + 0.05
    assert position_rmse(plain, gt) > position_rmse(robust, gt) + 0.1


def test_information_weighting_moves_the_solution_towards_the_confident_edge() -> None:
    """Two edges disagree about one relative pose; the estimate lies between them, closer to the
    one with more information, and weighting translation / rotation acts per block."""
    def solve(info_a: np.ndarray, info_b: np.ndarray) -> np.ndarray:
        g = PoseGraph(PoseGraphConfig(robust_kernel="none"))
        g.add_node(0, np.eye(4))
        g.add_node(1, make_pose(np.eye(3), [1.0, 0, 0]))
        g.add_edge(GraphEdge(0, 1, EdgeType.ODOMETRY, make_pose(np.eye(3), [1.0, 0, 0]), info_a))
        g.add_edge(GraphEdge(0, 1, EdgeType.LOOP, make_pose(np.eye(3), [1.2, 0, 0]), info_b))
        g.optimize()
        return g.pose(1)

    equal = solve(INFO, INFO)[0, 3]
    strong_b = solve(INFO, 9 * INFO)[0, 3]
    only_rot_b = INFO.copy()
    only_rot_b[3:, 3:] *= 9
    rot_b = solve(INFO, only_rot_b)[0, 3]
    assert equal == pytest.approx(1.1, abs=1e-3)
    assert strong_b == pytest.approx(1.18, abs=1e-3)   # (1.0 * 1 + 1.2 * 9) / 10
    assert rot_b == pytest.approx(1.1, abs=1e-3)       # rotation weight leaves x alone


def test_stream_convention_reorders_blocks_and_rotates_the_covariance() -> None:
    M = np.arange(36.0).reshape(6, 6)
    assert np.array_equal(swap_blocks(swap_blocks(M)), M)
    assert np.array_equal(swap_blocks(M)[:3, :3], M[3:, 3:])
    R = so3_exp([0.0, 0.0, np.pi / 2])
    cov = np.diag([1.0, 4.0, 9.0, 0.1, 0.2, 0.3])
    body = covariance_map_to_body(make_pose(R, [1, 2, 3]), cov)
    assert np.allclose(np.diag(body), [4.0, 1.0, 9.0, 0.2, 0.1, 0.3])  # x_body = y_map


def test_bad_edges_and_nodes_raise_typed_errors_and_change_nothing() -> None:
    g = PoseGraph()
    g.add_node(0, np.eye(4))
    g.add_node(1, make_pose(np.eye(3), [1, 0, 0]))
    g.add_edge(GraphEdge(0, 1, EdgeType.ODOMETRY, make_pose(np.eye(3), [1, 0, 0]), INFO))
    g.update()
    before = (g.ids, len(g.edges), g.pose(1))
    with pytest.raises(InputError, match="finite"):
        GraphEdge(0, 1, EdgeType.LOOP, np.eye(4), np.full((6, 6), np.nan))
    with pytest.raises(InputError, match="positive definite"):
        GraphEdge(0, 1, EdgeType.LOOP, np.eye(4), -np.eye(6))
    with pytest.raises(GraphError, match="unknown node"):
        g.add_edge(GraphEdge(0, 7, EdgeType.LOOP, np.eye(4), INFO))
    with pytest.raises(GraphError, match="verified"):
        g.add_edge(GraphEdge(0, 1, EdgeType.LOOP_CANDIDATE, np.eye(4), INFO))
    with pytest.raises(GraphError, match="already"):
        g.add_node(1, np.eye(4))
    with pytest.raises(GraphError, match="finite"):
        g.add_node(2, np.full((4, 4), np.nan))
    assert (g.ids, len(g.edges)) == before[:2] and np.allclose(g.pose(1), before[2])


def _map_for(gt: list[np.ndarray], g: PoseGraph) -> KeyframeMap:
    K = np.array([[50.0, 0, 15.5], [0, 50.0, 11.5], [0, 0, 1]])
    return KeyframeMap(keyframes=[Keyframe(i, np.zeros((24, 32, 3), np.uint8), K, g.pose(i),
                                           float(i)) for i in range(len(gt))])


def test_save_load_round_trip_with_the_map(tmp_path, rng) -> None:
    gt = square_gt(3)
    g, odo = drifting_graph(gt, rng)
    g.add_edge(GraphEdge(0, len(gt) - 1, EdgeType.LOOP, rel(gt, 0, len(gt) - 1), INFO))
    g.optimize()
    save_slam_map(tmp_path / "m", _map_for(gt, g), g, dict(enumerate(odo)))
    kmap, g2, odom = load_slam_map(tmp_path / "m")
    assert g2.ids == g.ids and len(g2.edges) == len(g.edges)
    assert [e.type for e in g2.edges] == [e.type for e in g.edges]
    for i in g.ids:
        assert np.allclose(g2.pose(i), g.pose(i), atol=1e-4)  # re-solved from the saved optimum
        assert np.allclose(kmap.record(i).T_map_cam, g.pose(i), atol=1e-9)
        assert np.allclose(odom[i], odo[i])
    assert np.allclose(g2.edges[-1].information, g.edges[-1].information)


def test_a_sidecar_of_another_map_and_an_unwritable_path_are_refused(tmp_path, rng) -> None:
    gt = square_gt(3)
    g, odo = drifting_graph(gt, rng)
    kmap = _map_for(gt, g)
    g.add_edge(GraphEdge(0, len(gt) - 1, EdgeType.LOOP, rel(gt, 0, len(gt) - 1), INFO))
    g.optimize()                                  # the graph moved: the map is stale
    save_slam_map(tmp_path / "m", kmap, g, dict(enumerate(odo)))
    with pytest.raises(MapFormatError, match="differs"):
        load_slam_map(tmp_path / "m")
    (tmp_path / "file").write_text("not a directory")  # (chmod does not stop root)
    with pytest.raises(MapError):
        save_slam_map(tmp_path / "file" / "m", _map_for(gt, g), g, {})
    assert len(g.edges) == len(gt)                # the graph is untouched
