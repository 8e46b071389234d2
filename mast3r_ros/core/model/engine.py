"""Inference engine for localization: encode each image once, decode one query against k cached
references in one batch, and run only the heads the caller needs.

Typical use::

    engine = InferenceEngine(model, device="cpu")
    enc_q = engine.encode(query_img)             # (1, 3, H, W) -> EncodedImages, batch 1
    enc_refs = EncodedImages.concat([cache[i] for i in top_k])   # same (H, W) for all refs
    out_q, out_r = engine.decode(enc_q, enc_refs, heads=("desc",))

``out_q`` holds the query as view 1 of each pair (batch k), ``out_r`` the references as view 2 with
points expressed in the query's camera frame. References decoded together must share one image
shape; group them by shape and call :meth:`InferenceEngine.decode` once per group.
"""

from __future__ import annotations

import contextlib
import copy
import logging
from dataclasses import dataclass
from typing import Iterable, Optional, Sequence, Union

import torch
import torch.nn.functional as F

from mast3r_ros.core.errors import ConfigError, InputError
from mast3r_ros.core.model.blocks import grid_positions
from mast3r_ros.core.model.device import resolve_device, resolve_precision
from mast3r_ros.core.model.mast3r import HEADS_ALL, HeadOutput, Mast3rModel, check_image

__all__ = ["EncodedImages", "InferenceEngine"]

log = logging.getLogger(__name__)


@dataclass
class EncodedImages:
    """Encoder outputs of a batch of images of one shape (what a map caches per keyframe).

    Attributes:
        feat: (B, N, C) encoder tokens after ``enc_norm``, N = (H/16) * (W/16), row-major.
        pos: (B, N, 2) int64 token positions (row y, column x): the row-major grid implied by
            ``true_shape`` (the decoder derives its RoPE factors from ``true_shape``).
        true_shape: (H, W) image size in pixels, shared by the batch.
    """

    feat: torch.Tensor
    pos: torch.Tensor
    true_shape: tuple[int, int]

    def __post_init__(self) -> None:
        self.true_shape = (int(self.true_shape[0]), int(self.true_shape[1]))
        h, w = self.true_shape
        n = (h // 16) * (w // 16)
        if self.feat.ndim != 3 or self.feat.shape[1] != n or h % 16 or w % 16:
            raise InputError(f"EncodedImages: feat {tuple(self.feat.shape)} does not fit an image "
                             f"of {h}x{w} (expected (B, {n}, C))")
        if tuple(self.pos.shape) != (self.feat.shape[0], n, 2):
            raise InputError(f"EncodedImages: pos {tuple(self.pos.shape)} != "
                             f"({self.feat.shape[0]}, {n}, 2)")

    def __len__(self) -> int:
        return self.feat.shape[0]

    def __getitem__(self, index: Union[int, slice, Sequence[int], torch.Tensor]) -> "EncodedImages":
        """Select images; an int keeps the batch axis (batch 1)."""
        if isinstance(index, int):
            index = slice(index, index + 1 if index != -1 else None)
        return EncodedImages(self.feat[index], self.pos[index], self.true_shape)

    def to(self, device: Union[str, torch.device]) -> "EncodedImages":
        """Copy to ``device`` (no copy when already there)."""
        return EncodedImages(self.feat.to(device), self.pos.to(device), self.true_shape)

    def cpu(self) -> "EncodedImages":
        """Copy to the CPU."""
        return self.to("cpu")

    @classmethod
    def concat(cls, items: Sequence["EncodedImages"]) -> "EncodedImages":
        """Concatenate along the batch axis; all items must share ``true_shape`` and device.

        Raises:
            InputError: empty list or different image shapes.
        """
        if not items:
            raise InputError("EncodedImages.concat needs at least one item")
        shapes = {it.true_shape for it in items}
        if len(shapes) != 1:
            raise InputError(f"cannot batch encodings of different image shapes {sorted(shapes)}; "
                             "group references by shape")
        return cls(torch.cat([it.feat for it in items]), torch.cat([it.pos for it in items]),
                   items[0].true_shape)

    stack = concat


def _same_device(a: torch.device, b: torch.device) -> bool:
    """True when ``a`` and ``b`` name the same device (``cuda`` = the current CUDA device)."""
    if a.type != b.type:
        return False
    if a.type != "cuda" or a.index == b.index:
        return True
    current = torch.cuda.current_device()
    return (a.index if a.index is not None else current) == (b.index if b.index is not None
                                                             else current)


def _check_heads(heads: Iterable[str]) -> tuple[str, ...]:
    heads = tuple(heads)
    unknown = set(heads) - set(HEADS_ALL)
    if not heads or unknown:
        raise InputError(f"heads must be a non-empty subset of {HEADS_ALL}, got {heads}")
    return heads


def _cat_outputs(outs: Sequence[HeadOutput]) -> HeadOutput:
    """Concatenate head outputs along the batch axis (fields that are None stay None)."""
    return HeadOutput(**{name: None if getattr(outs[0], name) is None
                         else torch.cat([getattr(o, name) for o in outs])
                         for name in ("pts3d", "conf", "desc", "desc_conf")})


class InferenceEngine:
    """Runs a :class:`Mast3rModel` on one device with a chosen precision.

    Args:
        model: the network. It is used as is when it already sits on ``device`` in eval mode;
            otherwise the engine works on its own copy, so the caller's model is never modified.
        device: torch device or spec (``"auto"``, ``"cpu"``, ``"cuda:0"``); never defaults to CUDA.
        precision: ``"fp32"`` (default), or ``"fp16"`` / ``"bf16"`` CUDA autocast of the encoder
            and decoder (heads always run in float32, as in the release). On CPU fp16/bf16 fall
            back to fp32 with a warning.
        decode_chunk: references decoded per network call in :meth:`decode`. None = automatic:
            all k at once on CUDA (batching fills the GPU), one at a time on CPU, where the
            decoder is compute-bound and a batch of k only adds memory traffic (measured on the
            release model at 512x384, 2 threads: 16.2 s for a batch of 4 vs 13.4 s one by one).
        model_id: identity of the weights (checkpoint sha256; "" when unknown), part of every
            encoding's :class:`~mast3r_ros.core.features.EncoderId`.
        image_size: network input long side in pixels (preprocessing).

    Raises:
        ConfigError: unknown device or precision.
    """

    def __init__(self, model: Mast3rModel, device: Union[str, torch.device] = "cpu",
                 precision: str = "fp32", decode_chunk: Optional[int] = None, *,
                 model_id: str = "", image_size: int = 512) -> None:
        if not isinstance(model, Mast3rModel):
            raise ConfigError(f"InferenceEngine needs a Mast3rModel, got {type(model).__name__}")
        if decode_chunk is not None and (isinstance(decode_chunk, bool)
                                         or not isinstance(decode_chunk, int) or decode_chunk < 1):
            raise ConfigError(f"decode_chunk must be None or an int >= 1, got {decode_chunk!r}")
        self.device = resolve_device(device)
        self.decode_chunk = decode_chunk or (1 if self.device.type == "cpu" else None)
        self.autocast_dtype = resolve_precision(precision, self.device)
        self.precision = precision if self.autocast_dtype != torch.float32 else "fp32"
        if isinstance(image_size, bool) or not isinstance(image_size, int) or image_size < 16 \
                or image_size % 16:
            raise ConfigError(f"image_size must be a positive multiple of 16, got {image_size!r}")
        self.model_id, self.image_size = model_id, image_size
        on_device = all(_same_device(p.device, self.device) for p in model.parameters())
        if not on_device or model.training:
            model = copy.deepcopy(model).to(self.device).eval()
        self.model = model
        log.info("inference engine on %s, precision %s", self.device, self.precision)

    def _autocast(self) -> contextlib.AbstractContextManager:
        if self.autocast_dtype == torch.float32:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=self.autocast_dtype)

    @torch.inference_mode()
    def encode(self, imgs: torch.Tensor) -> EncodedImages:
        """Encode a batch of same-shaped normalised images (B, 3, H, W)."""
        check_image(imgs, "imgs")
        imgs = imgs.to(self.device, torch.float32)
        h, w = imgs.shape[-2:]
        with self._autocast():
            feat = self.model.encode(imgs)
        pos = grid_positions(imgs.shape[0], h // 16, w // 16, self.device).contiguous()
        return EncodedImages(feat, pos, (h, w))

    @torch.inference_mode()
    def decode(self, enc_query: EncodedImages, enc_refs: EncodedImages,
               heads: Iterable[str] = HEADS_ALL) -> tuple[HeadOutput, HeadOutput]:
        """Decode one query against k references in one batch.

        Args:
            enc_query: encoding of the query image, batch 1 (broadcast over the references).
            enc_refs: encodings of k references of one shape (batch k).
            heads: subset of ``("pts3d", "desc")``: ``pts3d`` = DPT (pts3d + conf), ``desc`` =
                local MLP (desc + desc_conf). Skipped heads leave their fields None.

        Returns:
            ``(out_q, out_r)``, each with batch k: the query as view 1 (points in the query's
            frame) and the references as view 2 (points expressed in the query's frame).
        """
        heads = _check_heads(heads)
        if len(enc_query) != 1:
            raise InputError(f"enc_query must hold exactly one image, got {len(enc_query)}")
        if len(enc_refs) < 1:
            raise InputError("enc_refs must hold at least one reference")
        q, r = enc_query.to(self.device), enc_refs.to(self.device)
        step = self.decode_chunk or len(r)
        parts = []
        for i in range(0, len(r), step):
            chunk = r[i:i + step]
            with self._autocast():
                dec_q, dec_r = self.model.decode(q.feat, q.true_shape, chunk.feat, chunk.true_shape)
            parts.append((self.model.run_head(1, dec_q, q.true_shape, heads),
                          self.model.run_head(2, dec_r, r.true_shape, heads)))
        if len(parts) == 1:
            return parts[0]
        return _cat_outputs([p[0] for p in parts]), _cat_outputs([p[1] for p in parts])

    @torch.inference_mode()
    def forward_pair(self, img1: torch.Tensor, img2: torch.Tensor,
                     heads: Iterable[str] = HEADS_ALL) -> tuple[HeadOutput, HeadOutput]:
        """Same as :meth:`Mast3rModel.forward_pair`, on the engine's device and precision."""
        heads = _check_heads(heads)
        img1 = check_image(img1, "img1").to(self.device, torch.float32)
        img2 = check_image(img2, "img2").to(self.device, torch.float32)
        with self._autocast():
            return self.model.forward_pair(img1, img2, heads)

    @torch.inference_mode()
    def global_descriptor(self, enc: EncodedImages) -> torch.Tensor:
        """Cheap retrieval descriptor: L2-normalised mean of the encoder tokens.

        Returns:
            (B, C) float32 unit vectors (C = 1024 for the release).
        """
        return F.normalize(enc.feat.float().mean(dim=1), dim=-1)

