"""Synthetic scenes with exact ground truth for the geometry tests."""

from __future__ import annotations

import numpy as np
import pytest

from mast3r_ros.core.geometry.camera import project
from mast3r_ros.core.geometry.se3 import make_pose, random_rotation, transform_points


class Scene:
    """Random map points seen by a camera with known K and pose."""

    def __init__(self, rng: np.random.Generator, n: int = 300) -> None:
        self.K = np.array([[525.0, 0.0, 319.5], [0.0, 520.0, 239.5], [0.0, 0.0, 1.0]])
        self.T_map_cam = make_pose(random_rotation(rng, 60.0), rng.uniform(-2, 2, 3))
        X_cam = np.stack([rng.uniform(-2, 2, n), rng.uniform(-1.5, 1.5, n), rng.uniform(2, 6, n)], 1)
        self.X_cam = X_cam
        self.X_map = transform_points(self.T_map_cam, X_cam)
        self.xy = project(X_cam, self.K)


@pytest.fixture()
def scene(rng: np.random.Generator) -> Scene:
    return Scene(rng)
