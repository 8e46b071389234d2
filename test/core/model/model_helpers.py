"""Helpers shared by the model tests (a uniquely named module, not conftest)."""

from __future__ import annotations

import numpy as np
import torch

PAIRS = ("tiny_pair", "tiny_pair_mixed")


def rel_err(ours: torch.Tensor, ref: np.ndarray) -> float:
    """max |ours - ref| / (1 + |ref|)."""
    a = ours.detach().cpu().double().numpy()
    assert a.shape == ref.shape, (a.shape, ref.shape)
    return float((np.abs(a - ref) / (1.0 + np.abs(ref))).max())
