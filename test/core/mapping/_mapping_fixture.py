"""Helpers shared by the mapping tests: the official sparse-GA fixture and synthetic scenes."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from mast3r_ros.core.mapping.pairdata import PairData, PairView

FIXTURE_PAIRS = [(1, 0), (2, 0), (2, 1), (0, 1), (0, 2), (1, 2)]


def fixture_pairs(npz: np.lib.npyio.NpzFile) -> list[PairData]:
    """PairData of the fixture's cache, one per unordered pair in order of first appearance."""
    out, seen = [], set()
    for a, b in FIXTURE_PAIRS:
        if frozenset((a, b)) in seen:
            continue
        seen.add(frozenset((a, b)))
        f, g, c = f"cache__fwd_{a}{b}__", f"cache__fwd_{b}{a}__", f"cache__corres_{a}{b}__"
        view_i = PairView(npz[f + "X_a_in_a"], npz[f + "C_a"], npz[f + "X_b_in_a"],
                          npz[f + "C_b_in_a"], npz[c + "xy_a"])
        view_j = PairView(npz[g + "X_a_in_a"], npz[g + "C_a"], npz[g + "X_b_in_a"],
                          npz[g + "C_b_in_a"], npz[c + "xy_b"])
        out.append(PairData(a, b, view_i, view_j, npz[c + "conf"], npz[c + "score"]))
    return out


def load_fixture(golden_dir: Path) -> np.lib.npyio.NpzFile:
    return np.load(golden_dir / "sparse_ga" / "sparse_ga.npz")
