"""MASt3R ``catmlp+dpt`` head: a DPT for the pointmap + confidence and an MLP for local features.

Module names follow the official checkpoints (``dpt.scratch.layer1_rn``, ``dpt.scratch.refinenet4``,
``dpt.act_postprocess.3.1``, ``dpt.head.4``, ``head_local_features.fc2`` ...). The DPT registers
each ``layerK_rn`` convolution twice (also as ``layer_rn.K-1``), as the release does, so its
state_dict has
the same aliased entries.

Shapes: ``B`` batch, ``N = (H/16)*(W/16)`` tokens, image ``H x W`` pixels.
"""

from __future__ import annotations

from typing import Any, Optional, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from mast3r_ros.core.model.blocks import Mlp

__all__ = ["DPT", "CatMlpDptHead", "depth_activation", "conf_activation", "unit_descriptors"]

Mode = tuple  # (name, vmin, vmax), e.g. ('exp', 1, inf)


def depth_activation(xyz: torch.Tensor, mode: Mode) -> torch.Tensor:
    """Map raw (..., 3) channels to 3D points (``exp``: ``xyz/|xyz| * expm1(|xyz|)``)."""
    name, vmin, vmax = mode
    if name == "linear":
        return xyz.clamp(min=vmin, max=vmax)
    d = xyz.norm(dim=-1, keepdim=True)
    unit = xyz / d.clamp(min=1e-8)
    if name == "square":
        return unit * d.square()
    if name == "exp":
        return unit * torch.expm1(d)
    raise ValueError(f"unsupported depth mode {name!r}")


def conf_activation(x: torch.Tensor, mode: Mode) -> torch.Tensor:
    """Map raw confidence logits to confidences (``exp``: ``vmin + exp(x)`` clipped at ``vmax``)."""
    name, vmin, vmax = mode
    if name == "exp":
        return vmin + x.exp().clamp(max=vmax - vmin)
    if name == "sigmoid":
        return (vmax - vmin) * torch.sigmoid(x) + vmin
    raise ValueError(f"unsupported confidence mode {name!r}")


class _Scratch(nn.Module):
    """Container whose attribute names match the release (``layerK_rn``, ``refinenetK``)."""


class ResidualConvUnit(nn.Module):
    """``x + conv2(relu(conv1(relu(x))))`` with 3x3 convolutions."""

    def __init__(self, features: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(features, features, 3, padding=1, bias=True)
        self.conv2 = nn.Conv2d(features, features, 3, padding=1, bias=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, F, h, w) -> (B, F, h, w)."""
        return x + self.conv2(F.relu(self.conv1(F.relu(x))))


class FusionBlock(nn.Module):
    """DPT refinement: add the skip path, refine, upsample x2 (bilinear, align_corners), 1x1
    conv."""

    def __init__(self, features: int) -> None:
        super().__init__()
        self.out_conv = nn.Conv2d(features, features, kernel_size=1, bias=True)
        self.resConfUnit1 = ResidualConvUnit(features)
        self.resConfUnit2 = ResidualConvUnit(features)

    def forward(self, x: torch.Tensor, skip: Optional[torch.Tensor] = None) -> torch.Tensor:
        """(B, F, h, w) [+ skip (B, F, h, w)] -> (B, F, 2h, 2w)."""
        if skip is not None:
            x = x + self.resConfUnit1(skip)
        x = self.resConfUnit2(x)
        x = F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=True)
        return self.out_conv(x)


class _Upsample(nn.Module):
    """Bilinear x2 upsampling with ``align_corners=True`` (no parameters)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=True)


class DPT(nn.Module):
    """Dense prediction transformer head reading four token layers.

    Args:
        dim_tokens: channel size of each hooked layer (encoder size, then decoder size x3).
        hooks: indices into the list of decoder outputs (``[0, L/2, 3L/4, L]``).
        num_channels: output channels (3 coordinates + 1 confidence).
        layer_dims: channel sizes of the four reassembled maps.
        feature_dim: channel size of the fusion path.
        last_dim: channel size before the final 1x1 convolution.
        patch_size: pixels per token side.
    """

    def __init__(self, dim_tokens: Sequence[int], hooks: Sequence[int], num_channels: int,
                 layer_dims: Sequence[int] = (96, 192, 384, 768), feature_dim: int = 256,
                 last_dim: int = 128, patch_size: int = 16) -> None:
        super().__init__()
        self.hooks = list(hooks)
        self.patch_size = patch_size
        scratch = _Scratch()
        convs = [nn.Conv2d(c, feature_dim, 3, padding=1, bias=False) for c in layer_dims]
        for i, conv in enumerate(convs):
            setattr(scratch, f"layer{i + 1}_rn", conv)
        scratch.layer_rn = nn.ModuleList(convs)  # the same modules again, as in the release
        for i in range(4):
            setattr(scratch, f"refinenet{i + 1}", FusionBlock(feature_dim))
        self.scratch = scratch
        self.head = nn.Sequential(
            nn.Conv2d(feature_dim, feature_dim // 2, 3, padding=1),
            _Upsample(),
            nn.Conv2d(feature_dim // 2, last_dim, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(last_dim, num_channels, 1),
        )
        d = list(layer_dims)
        self.act_postprocess = nn.ModuleList([
            nn.Sequential(nn.Conv2d(dim_tokens[0], d[0], 1),
                          nn.ConvTranspose2d(d[0], d[0], kernel_size=4, stride=4)),
            nn.Sequential(nn.Conv2d(dim_tokens[1], d[1], 1),
                          nn.ConvTranspose2d(d[1], d[1], kernel_size=2, stride=2)),
            nn.Sequential(nn.Conv2d(dim_tokens[2], d[2], 1)),
            nn.Sequential(nn.Conv2d(dim_tokens[3], d[3], 1),
                          nn.Conv2d(d[3], d[3], kernel_size=3, stride=2, padding=1)),
        ])

    def forward(self, tokens: Sequence[torch.Tensor], hw: tuple[int, int]) -> torch.Tensor:
        """Decoder outputs -> raw (B, num_channels, H, W) map.

        Args:
            tokens: every decoder output (B, N, C_i); the hooked ones are used.
            hw: image size (H, W) in pixels.
        """
        gh, gw = hw[0] // self.patch_size, hw[1] // self.patch_size
        sc: Any = self.scratch  # submodules registered by name (typed as Module | Tensor)
        maps = []
        for i, hook in enumerate(self.hooks):
            t = tokens[hook]
            grid = t.transpose(1, 2).reshape(t.shape[0], t.shape[2], gh, gw)
            maps.append(sc.layer_rn[i](self.act_postprocess[i](grid)))
        path = sc.refinenet4(maps[3])[:, :, : maps[2].shape[2], : maps[2].shape[3]]
        path = sc.refinenet3(path, maps[2])
        path = sc.refinenet2(path, maps[1])
        path = sc.refinenet1(path, maps[0])
        return self.head(path)


class CatMlpDptHead(nn.Module):
    """``catmlp+dpt``: DPT for points + confidence, MLP on [encoder, last decoder] tokens for
    local descriptors (+ their confidence), unshuffled to pixels.

    Args:
        enc_dim: encoder token size.
        dec_dim: decoder token size.
        dec_depth: number of decoder blocks (> 9).
        desc_dim: local descriptor size (24 in the release).
        two_confs: whether the MLP also predicts a descriptor confidence.
        has_conf: whether the DPT predicts a confidence channel.
        patch_size: pixels per token side.
        mlp_ratio: hidden size factor of the local-feature MLP.
    """

    def __init__(self, enc_dim: int, dec_dim: int, dec_depth: int, desc_dim: int, two_confs: bool,
                 has_conf: bool = True, patch_size: int = 16, mlp_ratio: float = 4.0) -> None:
        super().__init__()
        hooks = [0, dec_depth * 2 // 4, dec_depth * 3 // 4, dec_depth]
        self.dpt = DPT([enc_dim, dec_dim, dec_dim, dec_dim], hooks, num_channels=3 + int(has_conf),
                       patch_size=patch_size)
        in_dim = enc_dim + dec_dim
        self.patch_size = patch_size
        self.desc_dim = desc_dim
        self.two_confs = two_confs
        self.head_local_features = Mlp(in_dim, int(mlp_ratio * in_dim),
                                       (desc_dim + int(two_confs)) * patch_size ** 2)

    def run_dpt(self, tokens: Sequence[torch.Tensor], hw: tuple[int, int]) -> torch.Tensor:
        """Raw DPT output (B, 3 [+1], H, W): x, y, z, conf logits."""
        return self.dpt(tokens, hw)

    def run_local(self, tokens: Sequence[torch.Tensor], hw: tuple[int, int]) -> torch.Tensor:
        """Raw local features (B, H, W, desc_dim [+1]) from the encoder and last decoder tokens."""
        cat = torch.cat((tokens[0], tokens[-1]), dim=-1)
        b = cat.shape[0]
        feats = self.head_local_features(cat)  # (B, N, D * p * p)
        gh, gw = hw[0] // self.patch_size, hw[1] // self.patch_size
        feats = feats.transpose(1, 2).reshape(b, -1, gh, gw)
        return F.pixel_shuffle(feats, self.patch_size).permute(0, 2, 3, 1)


def unit_descriptors(desc: torch.Tensor) -> torch.Tensor:
    """L2-normalise descriptors along the last axis (``desc_mode='norm'``)."""
    return desc / desc.norm(dim=-1, keepdim=True)
