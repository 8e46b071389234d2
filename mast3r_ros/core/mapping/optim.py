"""Small optimisation helpers of the sparse global alignment: losses, schedule, rotations, Adam,
segment-wise rigid transforms."""

from __future__ import annotations

import math
from typing import Callable

import torch

__all__ = ["gamma_loss", "cosine_schedule", "quat_to_rotmat", "Adam", "transform_segments",
           "rigid_inv"]


def gamma_loss(gamma: float) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """``(|x - y| + o)^g - o^g`` with ``o = (1/g)^(1/(g-1))`` (plain distance for g = 1).

    The offset makes the slope 1 at zero distance. x, y: (..., D) -> (...,).
    """
    if gamma == 1:
        return lambda x, y: (x - y).norm(dim=-1)
    off = (1 / gamma) ** (1 / (gamma - 1))
    return lambda x, y: ((x - y).norm(dim=-1) + off) ** gamma - off ** gamma


def cosine_schedule(alpha: float, lr0: float, lr_end: float = 0.0) -> float:
    """Half-cosine decay from ``lr0`` (alpha = 0) to ``lr_end`` (alpha = 1)."""
    return lr_end + (lr0 - lr_end) * (1 + math.cos(math.pi * alpha)) / 2


def quat_to_rotmat(q: torch.Tensor) -> torch.Tensor:
    """(..., 4) unit quaternions (x, y, z, w) -> (..., 3, 3) rotation matrices."""
    x, y, z, w = q.unbind(-1)
    rows = [1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w),
            2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w),
            2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)]
    return torch.stack(rows, -1).reshape(q.shape[:-1] + (3, 3))


class Adam:
    """Plain Adam (bias-corrected, no weight decay), the update of ``torch.optim.Adam``.

    Written out because ``torch.optim`` pulls in the compiler stack on first use (seconds) and
    wraps every step in dispatch layers that dominate the cost of these small problems.
    """

    def __init__(self, params: list[torch.Tensor], betas: tuple[float, float] = (0.9, 0.9),
                 eps: float = 1e-8) -> None:
        self.params, self.b1, self.b2, self.eps, self.t = params, betas[0], betas[1], eps, 0
        self.m = [torch.zeros_like(p) for p in params]
        self.v = [torch.zeros_like(p) for p in params]

    def zero_grad(self) -> None:
        for p in self.params:
            p.grad = None

    @torch.no_grad()
    def step(self, lr: float) -> None:
        self.t += 1
        c1, c2 = 1 - self.b1 ** self.t, 1 - self.b2 ** self.t
        for p, m, v in zip(self.params, self.m, self.v):
            if p.grad is None:
                continue
            m.mul_(self.b1).add_(p.grad, alpha=1 - self.b1)
            v.mul_(self.b2).addcmul_(p.grad, p.grad, value=1 - self.b2)
            p.addcdiv_(m, (v.sqrt() / math.sqrt(c2)).add_(self.eps), value=-lr / c1)


def transform_segments(T: torch.Tensor, X: torch.Tensor, counts: list[int]) -> torch.Tensor:
    """Apply T[k] (N, 3 or 4, 4) to the k-th of N consecutive row segments of X (P, 3).

    One small matmul per segment instead of gathering a 3x4 matrix per row (memory-bound for
    hundreds of thousands of points).
    """
    parts = torch.split(X, counts)
    return torch.cat([x @ T[k, :3, :3].T + T[k, :3, 3] for k, x in enumerate(parts) if len(x)]
                     or [X[:0]])


def rigid_inv(T: torch.Tensor) -> torch.Tensor:
    R, t = T[..., :3, :3], T[..., :3, 3:]
    Rt = R.transpose(-1, -2)
    top = torch.cat((Rt, -Rt @ t), -1)
    bottom = torch.zeros_like(T[..., 3:, :])
    bottom[..., 3] = 1
    return torch.cat((top, bottom), -2)
