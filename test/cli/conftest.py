"""Fixtures of the CLI tests: one SIFT map of the 7-Scenes sample, built once per session."""

from __future__ import annotations

from pathlib import Path

import pytest

from mast3r_ros.cli import main


@pytest.fixture(scope="session")
def sift_map(tmp_path_factory: pytest.TempPathFactory, data_dir: Path) -> Path:
    """A map of every 4th 7-Scenes map frame with the SIFT backend."""
    out = tmp_path_factory.mktemp("cli") / "map"
    rc = main(["map-from-rgbd", str(data_dir / "sevenscenes_redkitchen_rgbd"), str(out),
               "--backend", "sift", "--stride", "4"])
    assert rc == 0
    return out
