"""The pairwise stage on Ray (a local ``ray.init(num_cpus=2)``) with the tiny checkpoint: identical
pairs and poses to the serial path, put-if-absent reruns, a dying worker, bad addresses, and no
Ray import without ``--ray``."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import ray  # requirements-ray.txt (tools/setup.sh installs it): a missing ray fails, never skips
import torch
from _mapping_fixture import load_fixture

from mast3r_ros.core.config import MappingConfig, ModelConfig, RayConfig
from mast3r_ros.core.errors import MappingError
from mast3r_ros.core.mapping.build import build_map
from mast3r_ros.core.mapping.images import ImageFiles
from mast3r_ros.core.mapping.ray_compute import PairWorker, RayPairCompute, check_reachable

REPO = Path(__file__).resolve().parents[3]
HERE = Path(__file__).resolve().parent
CFG = dict(scene_graph="swin-2", niter1=20, niter2=20, matching_conf_thr=0.0, device="cpu")


@pytest.fixture(scope="module")
def ray_session(tmp_path_factory):
    """One local Ray instance for the module (start-up is the slow part on 2 cores)."""
    marker = tmp_path_factory.mktemp("ray") / "die-once"
    env = {"env_vars": {"PYTHONPATH": f"{REPO}:{HERE}", "OMP_NUM_THREADS": "1",
                        "MAST3R_TEST_DIE_MARKER": str(marker)}}
    ray.init(num_cpus=2, include_dashboard=False, runtime_env=env, log_to_driver=False)
    yield env
    ray.shutdown()


@pytest.fixture(scope="module")
def image_files(golden_dir, tmp_path_factory):
    """5 images of 64x48: the fixture's 3 and two mirrored copies."""
    fx = load_fixture(golden_dir)
    ims = [np.round((fx[f"img_{k}"][0].transpose(1, 2, 0) * 0.5 + 0.5) * 255).astype(np.uint8)
           for k in range(3)]
    ims += [np.ascontiguousarray(ims[0][:, ::-1]), np.ascontiguousarray(ims[1][::-1])]
    d = tmp_path_factory.mktemp("images")
    paths = []
    for k, im in enumerate(ims):
        paths.append(d / f"{k:03d}.png")
        cv2.imwrite(str(paths[-1]), im[..., ::-1])
    return ImageFiles(paths)


@pytest.fixture(scope="module")
def model(tiny_checkpoint):
    return ModelConfig(checkpoint=str(tiny_checkpoint), device="cpu", image_size=64)


def _serial(model, images, cache_dir):
    from mast3r_ros.core.model.factory import make_engine

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the Ray workers run 1 thread each: same arithmetic, same bits
    try:
        return build_map(images, make_engine(model), MappingConfig(cache_dir=str(cache_dir), **CFG))
    finally:
        torch.set_num_threads(threads)


def test_ray_pairs_and_poses_identical_to_serial(ray_session, model, image_files, tmp_path):
    serial = _serial(model, image_files, tmp_path / "serial")
    rc = RayPairCompute(model, RayConfig(num_workers=2, pairs_per_task=2, tasks_in_flight=1),
                        runtime_env=ray_session)
    cfg = MappingConfig(cache_dir=str(tmp_path / "ray"), **CFG)
    dist = build_map(image_files, rc, cfg)
    assert serial.pairs == dist.pairs and len(dist.pairs) == 10
    assert (dist.compute.computed, dist.compute.cached) == (10, 0)
    from mast3r_ros.core.mapping.plan import plan_build

    plan = plan_build(image_files, rc, cfg)
    assert plan.todo() == []
    other = plan_build(image_files, rc, MappingConfig(cache_dir=str(tmp_path / "serial"), **CFG))
    for i, j in plan.pairs:
        a = plan.cache.load(i, j, plan.keys[i], plan.keys[j]).to_arrays()
        b = other.cache.load(i, j, other.keys[i], other.keys[j]).to_arrays()
        assert a.keys() == b.keys()
        for name in a:
            assert np.array_equal(a[name], b[name]), (i, j, name)
    assert np.array_equal(dist.alignment.T_world_cam, serial.alignment.T_world_cam)
    assert np.array_equal(dist.alignment.K, serial.alignment.K)
    # a rerun (or a second machine on the same cache) computes nothing
    again = build_map(image_files, rc, cfg)
    assert (again.compute.computed, again.compute.cached) == (0, 10)


class DiesOnce(PairWorker):
    """A worker whose process dies in the first task after the marker file appears (a crash, not
    an exception); the real worker code runs otherwise."""

    def run(self, tasks):
        marker = os.environ["MAST3R_TEST_DIE_MARKER"]
        if os.path.exists(marker):
            os.unlink(marker)
            os._exit(1)
        return super().run(tasks)


def _arm(ray_session) -> Path:
    marker = Path(ray_session["env_vars"]["MAST3R_TEST_DIE_MARKER"])
    marker.touch()
    return marker


def test_worker_dying_mid_task_is_restarted_and_retried(ray_session, model, image_files,
                                                        tmp_path):
    marker = _arm(ray_session)
    rc = RayPairCompute(model, RayConfig(num_workers=1, max_restarts=2), runtime_env=ray_session,
                        worker_class=DiesOnce)
    cfg = MappingConfig(cache_dir=str(tmp_path / "cache"), **CFG)
    res = build_map(image_files, rc, cfg)
    assert not marker.exists()  # it did die once
    assert (res.compute.computed, res.compute.cached) == (10, 0)


def test_worker_dying_without_restarts_is_a_clear_error(ray_session, model, image_files,
                                                        tmp_path):
    _arm(ray_session)
    rc = RayPairCompute(model, RayConfig(num_workers=1, max_restarts=0), runtime_env=ray_session,
                        worker_class=DiesOnce)
    with pytest.raises(MappingError, match="Ray pairwise stage failed"):
        build_map(image_files, rc, MappingConfig(cache_dir=str(tmp_path / "cache"), **CFG))
    leftovers = [p.name for p in (tmp_path / "cache").rglob("*") if p.name.startswith(".tmp")]
    assert leftovers == []


def test_unreachable_or_malformed_address():
    with pytest.raises(MappingError, match="cannot reach the Ray cluster"):
        check_reachable("127.0.0.1:9", timeout=1.0)
    with pytest.raises(MappingError, match="not host:port"):
        check_reachable("no-port-here", timeout=1.0)
    check_reachable("", timeout=1.0)  # local instance / $RAY_ADDRESS: left to Ray


def test_in_memory_images_are_refused(ray_session, model, tmp_path):
    rc = RayPairCompute(model, RayConfig(num_workers=1), runtime_env=ray_session)
    ims = [np.zeros((48, 64, 3), np.uint8), np.full((48, 64, 3), 200, np.uint8)]
    with pytest.raises(MappingError, match="image folder"):
        build_map(ims, rc, MappingConfig(cache_dir=str(tmp_path), **CFG))


def test_local_path_never_imports_ray(tiny_checkpoint, golden_dir):
    code = (
        "import sys, numpy as np\n"
        "from mast3r_ros.core.config import MappingConfig, ModelConfig\n"
        "from mast3r_ros.core.mapping.build import build_map\n"
        "from mast3r_ros.core.model.factory import make_engine\n"
        "import mast3r_ros.cli.build_map\n"
        f"fx = np.load({str(golden_dir / 'sparse_ga' / 'sparse_ga.npz')!r})\n"
        "ims = [np.round((fx[f'img_{k}'][0].transpose(1, 2, 0) * 0.5 + 0.5) * 255)"
        ".astype(np.uint8) for k in range(3)]\n"
        f"eng = make_engine(ModelConfig(checkpoint={str(tiny_checkpoint)!r}, device='cpu', "
        "image_size=64))\n"
        "build_map(ims, eng, MappingConfig(scene_graph='complete', niter1=2, niter2=2, "
        "device='cpu'))\n"
        "assert 'ray' not in sys.modules, 'the local path imported ray'\n")
    env = dict(os.environ, PYTHONPATH=str(REPO))
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
