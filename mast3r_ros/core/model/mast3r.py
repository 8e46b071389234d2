"""The MASt3R network (``AsymmetricMASt3R``): CroCo ViT encoder, two cross-attending decoders, and
one ``catmlp+dpt`` head per view.

Image convention: float32 (B, 3, H, W), RGB, values ``(u8 / 255 - 0.5) / 0.5`` in [-1, 1], H and W
multiples of 16 (either orientation). Outputs of view 2 are expressed in view 1's camera frame
(OpenCV optical frame: x right, y down, z forward; metric units for the release checkpoint).

The state_dict of :class:`Mast3rModel` has exactly the keys, order and shapes of the official
model, including ``mask_token`` (unused at inference) and the DPT's aliased ``layer_rn`` entries.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable, Optional, Sequence

import torch
from torch import nn

from mast3r_ros.core.errors import InputError
from mast3r_ros.core.model.args import ModelArgs
from mast3r_ros.core.model.blocks import (
    DecoderBlock,
    EncoderBlock,
    PatchEmbed,
    RoPE2D,
    RopeTables,
    layer_norm,
)
from mast3r_ros.core.model.heads import (
    CatMlpDptHead,
    conf_activation,
    depth_activation,
    unit_descriptors,
)

__all__ = ["HeadOutput", "Mast3rModel", "HEADS_ALL", "check_image"]

HEADS_ALL = ("pts3d", "desc")
"""Head names: ``pts3d`` = DPT (pts3d + conf), ``desc`` = local MLP (desc + desc_conf)."""


@dataclass
class HeadOutput:
    """Per-pixel outputs of one view; fields of a head that was not run are None.

    Attributes:
        pts3d: (B, H, W, 3) 3D points in the first view's camera frame.
        conf: (B, H, W) point confidence (>= 1 for the release).
        desc: (B, H, W, D) unit-norm local descriptors (D = 24 for the release).
        desc_conf: (B, H, W) descriptor confidence (>= 0 for the release).
    """

    pts3d: Optional[torch.Tensor] = None
    conf: Optional[torch.Tensor] = None
    desc: Optional[torch.Tensor] = None
    desc_conf: Optional[torch.Tensor] = None


def _hw(img: torch.Tensor) -> tuple[int, int]:
    """(H, W) of a (B, 3, H, W) image batch."""
    return int(img.shape[-2]), int(img.shape[-1])


def check_image(img: object, name: str = "img") -> torch.Tensor:
    """Validate a normalised network image batch.

    Raises:
        InputError: not a float tensor (B, 3, H, W), H/W not positive multiples of 16, non-finite
            values or values outside [-1, 1] (beyond a small tolerance).
    """
    if not isinstance(img, torch.Tensor):
        raise InputError(f"{name} must be a torch.Tensor, got {type(img).__name__}")
    if not img.is_floating_point():
        raise InputError(f"{name} must be a float tensor normalised to [-1, 1], got {img.dtype}; "
                         "use preprocess_image() on uint8 RGB")
    if img.ndim != 4 or img.shape[1] != 3 or img.shape[0] < 1:
        raise InputError(f"{name} must have shape (B, 3, H, W), got {tuple(img.shape)}")
    h, w = img.shape[-2:]
    if h < 16 or w < 16 or h % 16 or w % 16:
        raise InputError(f"{name} height and width must be positive multiples of 16, got {h}x{w}; "
                         "use preprocess_image() to resize/crop")
    if img.device.type != "meta":
        lo, hi = torch.aminmax(img.detach())
        if not (torch.isfinite(lo) and torch.isfinite(hi)) or lo < -1.001 or hi > 1.001:
            raise InputError(f"{name} values must be finite and within [-1, 1] "
                             f"((rgb/255 - 0.5)/0.5), got range [{float(lo)}, {float(hi)}]")
    return img


class Mast3rModel(nn.Module):
    """Our implementation of ``AsymmetricMASt3R`` (inference only).

    Args:
        args: constructor arguments (see :class:`ModelArgs`); validated.
    """

    def __init__(self, args: ModelArgs) -> None:
        super().__init__()
        args.validate()
        self.args = args
        ed, dd = args.enc_embed_dim, args.dec_embed_dim
        self.patch_size = args.patch_size
        self.rope = RoPE2D(args.rope_base)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, dd))
        self.patch_embed = PatchEmbed(ed, args.patch_size)
        self.enc_blocks = nn.ModuleList(
            EncoderBlock(ed, args.enc_num_heads, args.mlp_ratio) for _ in range(args.enc_depth))
        self.enc_norm = layer_norm(ed)
        self.decoder_embed = nn.Linear(ed, dd)
        self.dec_blocks = nn.ModuleList(
            DecoderBlock(dd, args.dec_num_heads, args.mlp_ratio) for _ in range(args.dec_depth))
        self.dec_norm = layer_norm(dd)
        self.dec_blocks2 = nn.ModuleList(
            DecoderBlock(dd, args.dec_num_heads, args.mlp_ratio) for _ in range(args.dec_depth))
        head_kw: dict[str, Any] = dict(
            enc_dim=ed, dec_dim=dd, dec_depth=args.dec_depth, desc_dim=args.desc_dim,
            two_confs=args.two_confs, has_conf=args.conf_mode is not None,
            patch_size=args.patch_size)
        self.downstream_head1 = CatMlpDptHead(**head_kw)
        self.downstream_head2 = CatMlpDptHead(**head_kw)

    # ----------------------------------------------------------------------------------- encoder
    def rope_tables(self, hw: tuple[int, int], head_dim: int, device: torch.device) -> RopeTables:
        """Cached RoPE factors for an image of ``hw`` pixels (token grid ``hw / 16``)."""
        p = self.patch_size
        return self.rope.grid_tables(hw[0] // p, hw[1] // p, head_dim, device)

    def encode(self, img: torch.Tensor) -> torch.Tensor:
        """Encoder tokens after ``enc_norm``.

        Args:
            img: (B, 3, H, W) normalised images (checked by :func:`check_image`).

        Returns:
            (B, N, C_enc) tokens, N = (H/16) * (W/16), row-major.
        """
        check_image(img)
        a = self.args
        rope = self.rope_tables(_hw(img), a.enc_embed_dim // a.enc_num_heads,
                                img.device)
        x = self.patch_embed(img)
        for blk in self.enc_blocks:
            x = blk(x, rope)
        return self.enc_norm(x)

    # ----------------------------------------------------------------------------------- decoder
    def decode(self, feat1: torch.Tensor, hw1: tuple[int, int], feat2: torch.Tensor,
               hw2: tuple[int, int]) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """Run both decoders; view 1 uses ``dec_blocks``, view 2 ``dec_blocks2``.

        Args:
            feat1: (B or 1, N1, C_enc) encoder tokens of view 1 (batch 1 is broadcast).
            hw1: (H, W) pixels of view 1.
            feat2: (B, N2, C_enc) encoder tokens of view 2.
            hw2: (H, W) pixels of view 2.

        Returns:
            For each view the list ``[encoder tokens, block 1 out, ..., norm(block L out)]`` of
            length ``dec_depth + 1``, batch B.
        """
        b = max(feat1.shape[0], feat2.shape[0])
        feat1 = feat1.expand(b, -1, -1)
        feat2 = feat2.expand(b, -1, -1)
        hd = self.args.dec_embed_dim // self.args.dec_num_heads
        rope1 = self.rope_tables(hw1, hd, feat1.device)
        rope2 = self.rope_tables(hw2, hd, feat2.device)
        out1, out2 = [feat1], [feat2]
        x1, x2 = self.decoder_embed(feat1), self.decoder_embed(feat2)
        for blk1, blk2 in zip(self.dec_blocks, self.dec_blocks2):
            x1, x2 = blk1(x1, x2, rope1, rope2), blk2(x2, x1, rope2, rope1)
            out1.append(x1)
            out2.append(x2)
        out1[-1] = self.dec_norm(out1[-1])
        out2[-1] = self.dec_norm(out2[-1])
        return out1, out2

    # ------------------------------------------------------------------------------------- heads
    def run_head(self, view: int, tokens: Sequence[torch.Tensor], hw: tuple[int, int],
                 heads: Iterable[str] = HEADS_ALL) -> HeadOutput:
        """Run the head of ``view`` (1 or 2) in float32 and apply the output activations.

        Args:
            view: 1 or 2.
            tokens: the decoder output list of that view (see :meth:`decode`).
            hw: (H, W) pixels.
            heads: subset of ``("pts3d", "desc")``; the other head's compute is skipped. Without
                ``two_confs``, ``desc_conf`` is a copy of ``conf`` and needs the ``pts3d`` head.
        """
        heads = set(heads)
        head = self.downstream_head1 if view == 1 else self.downstream_head2
        a = self.args
        out = HeadOutput()
        with torch.autocast(device_type=tokens[0].device.type, enabled=False):
            if "pts3d" in heads:
                raw = head.run_dpt([t.float() for t in tokens], hw).permute(0, 2, 3, 1)
                out.pts3d = depth_activation(raw[..., :3], a.depth_mode)
                if a.conf_mode is not None:
                    out.conf = conf_activation(raw[..., 3], a.conf_mode)
            if "desc" in heads:
                raw = head.run_local([tokens[0].float(), tokens[-1].float()], hw)
                out.desc = unit_descriptors(raw[..., : a.desc_dim])
                mode = a.effective_desc_conf_mode
                if a.two_confs and mode is not None:
                    out.desc_conf = conf_activation(raw[..., a.desc_dim], mode)
                elif "pts3d" in heads and out.conf is not None:
                    out.desc_conf = out.conf.clone()
        return out

    # ------------------------------------------------------------------------------------- pairs
    def forward_pair(self, img1: torch.Tensor, img2: torch.Tensor,
                     heads: Iterable[str] = HEADS_ALL) -> tuple[HeadOutput, HeadOutput]:
        """Predict both views of a pair (the official ``model(view1, view2)``).

        Args:
            img1: (B, 3, H1, W1) normalised images of view 1.
            img2: (B, 3, H2, W2) normalised images of view 2 (same B; shape may differ).
            heads: subset of ``("pts3d", "desc")``.

        Returns:
            ``(out1, out2)``; ``out2.pts3d`` is expressed in view 1's frame.
        """
        heads = tuple(heads)
        check_image(img1, "img1")
        check_image(img2, "img2")
        if img1.shape[0] != img2.shape[0]:
            raise InputError(f"img1 and img2 need the same batch size, got {img1.shape[0]} and "
                             f"{img2.shape[0]}")
        hw1, hw2 = _hw(img1), _hw(img2)
        if hw1 == hw2:
            f1, f2 = self.encode(torch.cat((img1, img2), dim=0)).chunk(2, dim=0)
        else:
            f1, f2 = self.encode(img1), self.encode(img2)
        dec1, dec2 = self.decode(f1, hw1, f2, hw2)
        return self.run_head(1, dec1, hw1, heads), self.run_head(2, dec2, hw2, heads)

    def forward(self, img1: torch.Tensor, img2: torch.Tensor) -> tuple[HeadOutput, HeadOutput]:
        """Same as :meth:`forward_pair` with all heads."""
        return self.forward_pair(img1, img2)
