"""Fixtures of the model tests: the tiny official checkpoint loaded once, golden pairs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from mast3r_ros.core.model import Mast3rModel, load_model

from model_helpers import PAIRS


@pytest.fixture(scope="session")
def tiny_model(tiny_checkpoint: Path) -> Mast3rModel:
    """Our model with the tiny checkpoint's weights, on the CPU, eval mode."""
    return load_model(tiny_checkpoint, device="cpu")


@pytest.fixture(scope="session")
def golden_pairs(golden_dir: Path) -> dict[str, dict[str, np.ndarray]]:
    """Official inputs/outputs of both golden pairs."""
    out = {}
    for name in PAIRS:
        with np.load(golden_dir / "tiny" / f"{name}.npz") as d:
            out[name] = {k: d[k] for k in d.files}
    return out

