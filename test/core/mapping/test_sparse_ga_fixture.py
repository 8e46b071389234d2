"""Canonical views, kinematic tree and optimiser against the official sparse_ga fixture.

The fixture stores what the official code cached (network outputs + matches of the tiny model), so
the back end is compared without the network.

Tolerances are the noise floor of the comparison, measured (not guessed):

* ``init_only`` (no optimiser step) is exact to float32 rounding: 1e-5 on everything.
* After Adam steps, float32 rounding differences are amplified (Adam turns the tiny gradient
  along gauge directions into full-size steps; the random tiny model makes a poorly conditioned
  problem). Perturbing our own inputs by one float32 ulp moves the ``coarse30_fine30`` relative
  poses by 3e-3 to 5e-3 (4 draws) and the 300+300 ``defaults`` ones by 1e-2 to 4e-2; the official
  code itself reproduces its own ``defaults`` run only to 0.07 across thread counts (fixture
  README). So 1e-3 on whole pose matrices is below the noise floor of this fixture. What holds:
  ``coarse30_fine30`` rotations within 1e-3 (measured 2.6e-4), translations within 1e-2
  (measured 5.6e-3 on a 5.4-unit scene, i.e. 1e-3 relative); ``defaults`` rotations within 0.03
  (measured 1.4e-2), translations within 0.1 (measured 0.066; official self-reproducibility 0.07).
"""

from __future__ import annotations

import numpy as np
import pytest
from _mapping_fixture import fixture_pairs, load_fixture

from mast3r_ros.core.config import MappingConfig
from mast3r_ros.core.mapping.kinematic import spanning_tree
from mast3r_ros.core.mapping.problem import build_problem
from mast3r_ros.core.mapping.sparse_ga import sparse_scene_optimize


@pytest.fixture(scope="module")
def fixture(golden_dir):
    return load_fixture(golden_dir)


@pytest.fixture(scope="module")
def problem(fixture):
    return build_problem(3, fixture_pairs(fixture))


def _in_cam0(T, pts):
    inv0 = np.linalg.inv(np.asarray(T, np.float64)[0])
    return pts @ inv0[:3, :3].T + inv0[:3, 3]


def _compare_poses(res, fx, run, tol_rot, tol_trans):
    """Relative poses ``inv(T_0) @ T_i`` (gauge-free) against the official ones."""
    gt = fx[run + "__cam2w"].astype(np.float64)
    rel = np.linalg.inv(res.T_world_cam[0]) @ res.T_world_cam
    rel_gt = np.linalg.inv(gt[0]) @ gt
    np.testing.assert_allclose(rel[:, :3, :3], rel_gt[:, :3, :3], atol=tol_rot)
    np.testing.assert_allclose(rel[:, :3, 3], rel_gt[:, :3, 3], atol=tol_trans)


def _compare(res, fx, run, tol_f, tol_rot, tol_trans, tol_depth):
    p = run + "__"
    np.testing.assert_allclose(res.focals, fx[p + "focals"], rtol=tol_f)
    np.testing.assert_allclose(res.principal_points, fx[p + "principal_points"], rtol=tol_f)
    _compare_poses(res, fx, run, tol_rot, tol_trans)
    gt = fx[p + "cam2w"].astype(np.float64)
    for i in range(3):
        d_gt = fx[p + f"depthmap_{i}"]
        np.testing.assert_allclose(res.anchor_depth[i], d_gt, rtol=tol_depth, atol=tol_depth)
        pts = _in_cam0(res.T_world_cam, res.pts3d[i])
        pts_gt = _in_cam0(gt, fx[p + f"pts3d_{i}"].astype(np.float64))
        assert pts.shape == pts_gt.shape
        np.testing.assert_allclose(pts, pts_gt, atol=tol_depth * np.abs(pts_gt).max())


def test_canonical_focals_and_scores(problem, fixture):
    np.testing.assert_allclose(problem.base_focals.numpy(), fixture["init_only__focals"], rtol=1e-6)
    assert problem.num_matches[0, 1] == 98 and problem.num_matches[0, 2] == 116
    assert problem.num_matches[1, 2] == 110
    assert [len(problem.pt_img[problem.pt_img == k]) for k in range(3)] == [214, 208, 226]


@pytest.mark.parametrize("mode", ["hclust-ward", "mst"])
def test_kinematic_tree_matches_official(problem, mode):
    tree = spanning_tree(problem.num_matches.numpy(), mode, problem.n_anchors)
    assert tree.root == 2 and set(tree.edges) == {(2, 0), (2, 1)}


def test_init_state_is_tight(problem, fixture):
    tree = spanning_tree(problem.num_matches.numpy(), "hclust-ward", problem.n_anchors)
    cfg = MappingConfig(niter1=0, niter2=0, matching_conf_thr=0.0)
    res = sparse_scene_optimize(problem, tree, cfg)
    _compare(res, fixture, "init_only", tol_f=1e-6, tol_rot=1e-5, tol_trans=1e-5, tol_depth=1e-5)
    np.testing.assert_allclose(res.T_world_cam, fixture["init_only__cam2w"], atol=1e-5)


def test_coarse30_fine30(problem, fixture):
    tree = spanning_tree(problem.num_matches.numpy(), "hclust-ward", problem.n_anchors)
    cfg = MappingConfig(lr1=0.07, niter1=30, lr2=0.01, niter2=30, matching_conf_thr=0.0)
    res = sparse_scene_optimize(problem, tree, cfg)
    _compare(res, fixture, "coarse30_fine30", tol_f=5e-3, tol_rot=1e-3, tol_trans=1e-2,
             tol_depth=1e-2)


def test_defaults_use_fallback_regression(problem, fixture):
    """matching_conf_thr=5: every pair of the tiny model falls back to the regression loss. The
    official 300+300 run reproduces itself only to 0.07 (module docstring)."""
    tree = spanning_tree(problem.num_matches.numpy(), "hclust-ward", problem.n_anchors)
    res = sparse_scene_optimize(problem, tree, MappingConfig())
    assert np.isfinite(res.loss_fine)
    np.testing.assert_allclose(res.focals, fixture["defaults__focals"], rtol=0.01)
    _compare_poses(res, fixture, "defaults", tol_rot=0.03, tol_trans=0.1)
