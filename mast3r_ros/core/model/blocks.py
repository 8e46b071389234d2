"""Transformer building blocks of the CroCo / DUSt3R / MASt3R backbone.

Everything is plain PyTorch: attention goes through
:func:`torch.nn.functional.scaled_dot_product_attention`, 2D rotary position embeddings (RoPE) are
computed in float32 and cached per token grid. Module and parameter names follow the official
checkpoints (``attn.qkv``, ``cross_attn.projq``, ``mlp.fc1``, ``norm_y`` ...), so a release
state_dict loads without renaming.

Shapes: ``B`` batch, ``N`` tokens, ``C`` channels, ``Hh`` heads, ``Dh = C // Hh`` channels per head.
Token positions are integer ``(row y, column x)`` pairs on the patch grid.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn

__all__ = [
    "LAYER_NORM_EPS",
    "RopeTables",
    "RoPE2D",
    "grid_positions",
    "Mlp",
    "SelfAttention",
    "CrossAttention",
    "EncoderBlock",
    "DecoderBlock",
    "PatchEmbed",
]

LAYER_NORM_EPS = 1e-6
"""Epsilon of every LayerNorm of the release model (``partial(nn.LayerNorm, eps=1e-6)``)."""


def layer_norm(dim: int) -> nn.LayerNorm:
    """LayerNorm with the release epsilon."""
    return nn.LayerNorm(dim, eps=LAYER_NORM_EPS)


def grid_positions(batch: int, h: int, w: int, device: torch.device) -> torch.Tensor:
    """Token positions of an ``h x w`` patch grid, row-major.

    Returns:
        (batch, h*w, 2) int64 tensor of ``(y, x)`` pairs; token ``i`` sits at ``(i // w, i % w)``.
    """
    ys = torch.arange(h, device=device).repeat_interleave(w)
    xs = torch.arange(w, device=device).repeat(h)
    return torch.stack((ys, xs), dim=-1).unsqueeze(0).expand(batch, h * w, 2)


@dataclass(frozen=True)
class RopeTables:
    """Cosine and sine factors of 2D RoPE for one set of token positions.

    Attributes:
        cos: (B or 1, 1, N, Dh) factors; the first ``Dh/2`` channels use the y position, the
            others the x position.
        sin: same shape as ``cos``.
    """

    cos: torch.Tensor
    sin: torch.Tensor

    def apply(self, t: torch.Tensor) -> torch.Tensor:
        """Rotate queries or keys ``t`` (B, Hh, N, Dh) by their positions."""
        quarters = t.unflatten(-1, (2, 2, t.shape[-1] // 4))
        rotated = torch.stack((-quarters[..., 1, :], quarters[..., 0, :]), dim=-2).flatten(-3)
        return t * self.cos.to(t.dtype) + rotated * self.sin.to(t.dtype)


class RoPE2D(nn.Module):
    """2D rotary embedding: half of each head's channels rotated by y, the other half by x.

    Within each half of size ``D = Dh/2``, channel ``j`` and ``j + D/2`` form a rotation pair with
    frequency ``base ** (-2j / D)`` (``base`` = 100 for ``pos_embed='RoPE100'``).

    Args:
        base: the frequency base.
    """

    def __init__(self, base: float = 100.0) -> None:
        super().__init__()
        self.base = float(base)
        self._grid_cache: dict[tuple, RopeTables] = {}

    def _tables_1d(self, pos: torch.Tensor, dim: int) -> tuple[torch.Tensor, torch.Tensor]:
        inv_freq = 1.0 / (self.base ** (torch.arange(0, dim, 2, device=pos.device).float() / dim))
        angles = pos.float()[..., None] * inv_freq  # (B, N, D/2)
        angles = torch.cat((angles, angles), dim=-1)  # (B, N, D)
        return angles.cos(), angles.sin()

    def tables(self, pos: torch.Tensor, head_dim: int) -> RopeTables:
        """Factors for arbitrary positions ``pos`` (B, N, 2) and head size ``head_dim``."""
        if head_dim % 4:
            raise ValueError(f"RoPE2D needs a head size divisible by 4, got {head_dim}")
        cy, sy = self._tables_1d(pos[..., 0], head_dim // 2)
        cx, sx = self._tables_1d(pos[..., 1], head_dim // 2)
        cos = torch.cat((cy, cx), dim=-1).unsqueeze(1)
        sin = torch.cat((sy, sx), dim=-1).unsqueeze(1)
        return RopeTables(cos=cos, sin=sin)

    def grid_tables(self, h: int, w: int, head_dim: int, device: torch.device) -> RopeTables:
        """Cached factors (1, 1, h*w, head_dim) for the row-major ``h x w`` grid."""
        key = (h, w, head_dim, str(device))
        tab = self._grid_cache.get(key)
        if tab is None:
            tab = self.tables(grid_positions(1, h, w, device), head_dim)
            if len(self._grid_cache) > 64:
                self._grid_cache.clear()
            self._grid_cache[key] = tab
        return tab


class Mlp(nn.Module):
    """Two linear layers with an exact (erf) GELU between them."""

    def __init__(self, in_dim: int, hidden_dim: int, out_dim: Optional[int] = None) -> None:
        super().__init__()
        self.fc1 = nn.Linear(in_dim, hidden_dim)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden_dim, out_dim or in_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(..., in_dim) -> (..., out_dim)."""
        return self.fc2(self.act(self.fc1(x)))


class SelfAttention(nn.Module):
    """Multi-head self-attention with RoPE on queries and keys."""

    def __init__(self, dim: int, num_heads: int) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.qkv = nn.Linear(dim, dim * 3, bias=True)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor, rope: RopeTables) -> torch.Tensor:
        """(B, N, C) tokens -> (B, N, C)."""
        b, n, c = x.shape
        qkv = self.qkv(x).view(b, n, 3, self.num_heads, c // self.num_heads).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)
        out = F.scaled_dot_product_attention(rope.apply(q), rope.apply(k), v)
        return self.proj(out.transpose(1, 2).reshape(b, n, c))


class CrossAttention(nn.Module):
    """Multi-head cross-attention (queries from ``x``, keys/values from memory ``y``) with RoPE."""

    def __init__(self, dim: int, num_heads: int) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.projq = nn.Linear(dim, dim, bias=True)
        self.projk = nn.Linear(dim, dim, bias=True)
        self.projv = nn.Linear(dim, dim, bias=True)
        self.proj = nn.Linear(dim, dim)

    def _split(self, t: torch.Tensor) -> torch.Tensor:
        b, n, c = t.shape
        return t.view(b, n, self.num_heads, c // self.num_heads).transpose(1, 2)

    def forward(self, x: torch.Tensor, y: torch.Tensor, rope_x: RopeTables,
                rope_y: RopeTables) -> torch.Tensor:
        """Queries (B, Nx, C) attend to memory (B, Ny, C); returns (B, Nx, C)."""
        b, n, c = x.shape
        q = rope_x.apply(self._split(self.projq(x)))
        k = rope_y.apply(self._split(self.projk(y)))
        v = self._split(self.projv(y))
        out = F.scaled_dot_product_attention(q, k, v)
        return self.proj(out.transpose(1, 2).reshape(b, n, c))


class EncoderBlock(nn.Module):
    """Pre-norm ViT block: ``x + attn(norm1(x))`` then ``x + mlp(norm2(x))``."""

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float) -> None:
        super().__init__()
        self.norm1 = layer_norm(dim)
        self.attn = SelfAttention(dim, num_heads)
        self.norm2 = layer_norm(dim)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))

    def forward(self, x: torch.Tensor, rope: RopeTables) -> torch.Tensor:
        """(B, N, C) -> (B, N, C)."""
        x = x + self.attn(self.norm1(x), rope)
        return x + self.mlp(self.norm2(x))


class DecoderBlock(nn.Module):
    """CroCo decoder block: self-attention, cross-attention to the other view, MLP.

    The memory (other view's tokens) is normalised by ``norm_y`` before the cross-attention.
    """

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float) -> None:
        super().__init__()
        self.norm1 = layer_norm(dim)
        self.attn = SelfAttention(dim, num_heads)
        self.cross_attn = CrossAttention(dim, num_heads)
        self.norm2 = layer_norm(dim)
        self.norm3 = layer_norm(dim)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))
        self.norm_y = layer_norm(dim)

    def forward(self, x: torch.Tensor, y: torch.Tensor, rope_x: RopeTables,
                rope_y: RopeTables) -> torch.Tensor:
        """Update tokens ``x`` (B, Nx, C) given the other view's tokens ``y`` (B, Ny, C)."""
        x = x + self.attn(self.norm1(x), rope_x)
        y = self.norm_y(y)
        x = x + self.cross_attn(self.norm2(x), y, rope_x, rope_y)
        return x + self.mlp(self.norm3(x))


class PatchEmbed(nn.Module):
    """16x16 patches -> tokens (``PatchEmbedDust3R``: any orientation, no normalisation).

    Args:
        dim: token size.
        patch_size: patch side in pixels.
    """

    def __init__(self, dim: int, patch_size: int = 16) -> None:
        super().__init__()
        self.patch_size = patch_size
        self.proj = nn.Conv2d(3, dim, kernel_size=patch_size, stride=patch_size)

    def forward(self, img: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) image -> (B, H/16 * W/16, C) tokens, row-major over the patch grid."""
        return self.proj(img).flatten(2).transpose(1, 2)
