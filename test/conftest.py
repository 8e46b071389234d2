"""Shared pytest fixtures: locations of the golden fixtures and the real data sets, seeded RNG."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Optional

import numpy as np
import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
_LAUNCH_SKIPPED = pytest.StashKey[list]()


def _shared_dir() -> Path:
    env = os.environ.get("MAST3R_ROS_SHARED")
    return Path(env) if env else REPO_ROOT.parent / "shared"


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    """The team's shared folder (golden fixtures + data); fails loudly when absent."""
    d = _shared_dir()
    if not d.is_dir():
        pytest.fail(f"shared folder not found at {d}; set MAST3R_ROS_SHARED")
    return d


@pytest.fixture(scope="session")
def golden_dir(shared_dir: Path) -> Path:
    """``shared/golden``: fixtures produced by the official MASt3R code."""
    return shared_dir / "golden"


@pytest.fixture(scope="session")
def data_dir(shared_dir: Path) -> Path:
    """``shared/data``: 7-Scenes, ScanNet and Strecha samples with ground truth."""
    return shared_dir / "data"


@pytest.fixture(scope="session")
def tiny_checkpoint(golden_dir: Path) -> Path:
    """The tiny official-format checkpoint (45 M parameters, random weights)."""
    return golden_dir / "tiny" / "tiny_mast3r.pth"


@pytest.fixture()
def rng() -> np.random.Generator:
    """A seeded numpy generator, fresh for every test."""
    return np.random.default_rng(12345)


_LAUNCH_DIR = REPO_ROOT / "test" / "launch"


def _launch_testing_problem() -> str:
    """Why the launch_testing tests cannot run here ("" when they can)."""
    try:
        import launch_testing  # noqa: F401
    except ImportError as exc:
        return f"launch_testing is not importable ({exc})"
    return ""


def pytest_ignore_collect(collection_path: Path, config: pytest.Config) -> Optional[bool]:
    """Leave test/launch out (importing it needs ``launch``) when launch_testing is missing; the
    terminal summary says so, with the files that were left out."""
    path = collection_path.resolve()
    if not (path == _LAUNCH_DIR or _LAUNCH_DIR in path.parents) or not _launch_testing_problem():
        return None
    asked = [Path(a.split("::")[0]).resolve() for a in config.args]
    if any(a == path or a in path.parents or path in a.parents for a in asked):
        files = [path] if path.is_file() else sorted(path.glob("test_*.py"))
        config.stash[_LAUNCH_SKIPPED] = sorted(set(config.stash.get(_LAUNCH_SKIPPED, []))
                                               | set(files))
    return True


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: pytest.Config) -> None:
    files = config.stash.get(_LAUNCH_SKIPPED, [])
    if files:
        terminalreporter.write_line(
            f"launch marker: {len(files)} launch_testing test file(s) deselected "
            f"({', '.join(f.name for f in files)}): {_launch_testing_problem()}; they run with "
            "`pytest -m launch` or `colcon test` on a ROS 2 install (see README)", yellow=True)


def pytest_configure(config: pytest.Config) -> None:
    # user-level caches (checkpoint hashes) go to a per-session folder, never the user's home
    import tempfile

    os.environ["XDG_CACHE_HOME"] = tempfile.mkdtemp(prefix="mast3r_ros_test_cache_")
    try:
        import torch

        torch.set_num_threads(min(2, os.cpu_count() or 1))
    except ImportError:  # pragma: no cover - torch is a hard dependency
        pass


@pytest.fixture(scope="session")
def tied_checkpoint(tiny_checkpoint: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny checkpoint with its decoders made transparent and its two heads tied.

    Every decoder block's attention, cross-attention and MLP output projections are zeroed (the
    residual stream then carries each image's own encoder tokens) and ``downstream_head2`` gets
    ``downstream_head1``'s weights. A view's outputs then depend on its own image only, and the
    same image gives the same descriptors in either view: identical images match pixel for
    pixel. This lets tests assert poses through the real network path (loader, engine, backend,
    localizer) where random weights alone give meaningless matches. Same architecture, same keys.
    """
    import torch

    ckpt = torch.load(tiny_checkpoint, map_location="cpu", weights_only=False)
    sd = dict(ckpt["model"])
    for k in list(sd):
        if k.startswith(("dec_blocks.", "dec_blocks2.")) and \
                k.split(".", 2)[2] in ("attn.proj.weight", "attn.proj.bias",
                                       "cross_attn.proj.weight", "cross_attn.proj.bias",
                                       "mlp.fc2.weight", "mlp.fc2.bias"):
            sd[k] = torch.zeros_like(sd[k])
        if k.startswith("downstream_head2."):
            sd[k] = sd["downstream_head1." + k[len("downstream_head2."):]].clone()
    out = tmp_path_factory.mktemp("ckpt") / "tiny_tied.pth"
    torch.save({"args": ckpt["args"], "model": sd}, out)
    return out
