"""The model's constructor arguments: a whitelist parser for checkpoint strings and a typed record.

Official checkpoints carry the constructor call as a string, e.g.
``AsymmetricMASt3R(pos_embed='RoPE100', ..., depth_mode=('exp', -inf, inf), ...)``. The official
loader ``eval``s it; here it is parsed with :mod:`ast` (syntax only, nothing is executed) and every
keyword is checked against a whitelist of known arguments and literal types.
"""

from __future__ import annotations

import ast
import dataclasses
import logging
import math
from dataclasses import dataclass
from typing import Any, Mapping, Optional

from mast3r_ros.core.errors import CheckpointError

__all__ = ["ModelArgs", "parse_model_args", "MODEL_CLASS_NAME", "RELEASE_ARGS"]

log = logging.getLogger(__name__)

MODEL_CLASS_NAME = "AsymmetricMASt3R"
_MAX_ARGS_LEN = 8192

RELEASE_ARGS = (
    "AsymmetricMASt3R(pos_embed='RoPE100', patch_embed_cls='ManyAR_PatchEmbed', img_size=(512, 512), "
    "head_type='catmlp+dpt', output_mode='pts3d+desc24', depth_mode=('exp', -inf, inf), "
    "conf_mode=('exp', 1, inf), enc_embed_dim=1024, enc_depth=24, enc_num_heads=16, "
    "dec_embed_dim=768, dec_depth=12, dec_num_heads=12, two_confs=True, "
    "desc_conf_mode=('exp', 0, inf))"
)
"""Constructor string of ``MASt3R_ViTLarge_BaseDecoder_512_catmlpdpt_metric``."""

_NAMED_CONSTANTS = {"inf": math.inf, "True": True, "False": False, "None": None}


def _literal(node: ast.AST) -> Any:
    """Convert a literal expression node (numbers, strings, bools, None, inf, tuples) to a value."""
    if isinstance(node, ast.Constant) and isinstance(node.value, (str, int, float, bool, type(None))):
        return node.value
    if isinstance(node, ast.Name) and node.id in _NAMED_CONSTANTS:
        return _NAMED_CONSTANTS[node.id]
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
        value = _literal(node.operand)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise CheckpointError(f"sign applied to a non-number in model args: {ast.dump(node)}")
        return -value if isinstance(node.op, ast.USub) else value
    if isinstance(node, (ast.Tuple, ast.List)):
        return tuple(_literal(e) for e in node.elts)
    raise CheckpointError(
        f"model args contain a non-literal expression ({type(node).__name__}); only numbers, "
        "strings, booleans, None, inf and tuples are accepted")


def parse_model_args(s: str) -> dict[str, Any]:
    """Parse a constructor string such as ``AsymmetricMASt3R(enc_depth=24, ...)`` without eval.

    Args:
        s: the ``args.model`` string of an official checkpoint.

    Returns:
        The keyword arguments as written (tuples for tuples/lists, ``float('inf')`` for ``inf``).

    Raises:
        CheckpointError: syntax error, another class, positional arguments, a non-literal value or
            a keyword that is not a known argument of the model.
    """
    if not isinstance(s, str) or len(s) > _MAX_ARGS_LEN:
        raise CheckpointError("model args must be a constructor string of reasonable length")
    try:
        tree = ast.parse(s.strip(), mode="eval")
    except SyntaxError as exc:
        raise CheckpointError(f"cannot parse model args {s[:200]!r}: {exc.msg}") from exc
    call = tree.body
    if not isinstance(call, ast.Call) or not isinstance(call.func, ast.Name):
        raise CheckpointError(f"model args are not a constructor call: {s[:200]!r}")
    if call.func.id != MODEL_CLASS_NAME:
        raise CheckpointError(
            f"checkpoint is for architecture {call.func.id!r}, only {MODEL_CLASS_NAME} is supported")
    if call.args:
        raise CheckpointError("model args must use keywords only")
    known = {f.name for f in dataclasses.fields(ModelArgs)}
    out: dict[str, Any] = {}
    for kw in call.keywords:
        if kw.arg is None:
            raise CheckpointError("model args must not use **kwargs")
        if kw.arg not in known:
            raise CheckpointError(f"unknown model argument {kw.arg!r}; known: {sorted(known)}")
        out[kw.arg] = _literal(kw.value)
    return out


def _mode(value: Any, name: str, allowed: tuple[str, ...]) -> tuple:
    if not (isinstance(value, tuple) and len(value) == 3 and value[0] in allowed
            and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value[1:])):
        raise CheckpointError(f"{name}={value!r} is not a supported (mode, vmin, vmax) with mode in "
                              f"{allowed}")
    return (value[0], float(value[1]), float(value[2]))


@dataclass(frozen=True)
class ModelArgs:
    """Constructor arguments of ``AsymmetricMASt3R`` (official names and defaults).

    Only the configuration family of the release is supported: RoPE positions, ``catmlp+dpt`` head,
    ``pts3d+descN`` output, normalised descriptors, patch size 16. Arguments that only matter for
    training (``mask_ratio``, ``freeze``, ``img_size``) are accepted and ignored.
    """

    output_mode: str = "pts3d"
    head_type: str = "linear"
    depth_mode: tuple = ("exp", -math.inf, math.inf)
    conf_mode: Optional[tuple] = ("exp", 1.0, math.inf)
    freeze: str = "none"
    landscape_only: bool = True
    patch_embed_cls: str = "PatchEmbedDust3R"
    desc_mode: str = "norm"
    two_confs: bool = False
    desc_conf_mode: Optional[tuple] = None
    img_size: Any = 224
    patch_size: int = 16
    mask_ratio: float = 0.9
    enc_embed_dim: int = 768
    enc_depth: int = 12
    enc_num_heads: int = 12
    dec_embed_dim: int = 512
    dec_depth: int = 8
    dec_num_heads: int = 16
    mlp_ratio: float = 4.0
    norm_im2_in_dec: bool = True
    pos_embed: str = "cosine"

    @classmethod
    def from_kwargs(cls, kwargs: Mapping[str, Any]) -> "ModelArgs":
        """Build from parsed kwargs, applying the official loader's rewrites, and validate.

        Rewrites: ``ManyAR_PatchEmbed`` -> ``PatchEmbedDust3R`` and ``landscape_only=False``
        (images are embedded in their own orientation). Lists become tuples.

        Raises:
            CheckpointError: unknown keyword, wrong type, or an unsupported configuration.
        """
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(kwargs) - known)
        if unknown:
            raise CheckpointError(f"unknown model arguments {unknown}; known: {sorted(known)}")
        kw = {k: tuple(v) if isinstance(v, list) else v for k, v in kwargs.items()}
        if kw.get("patch_embed_cls") == "ManyAR_PatchEmbed":
            kw["patch_embed_cls"] = "PatchEmbedDust3R"
        if kw.get("landscape_only") is True:
            log.warning("checkpoint asks for landscape_only=True; portrait images are embedded in "
                        "their own orientation instead (landscape_only=False, as the release)")
        kw["landscape_only"] = False
        args = cls(**kw)
        args.validate()
        return args

    @property
    def desc_dim(self) -> int:
        """Local descriptor size, from ``output_mode='pts3d+descN'``."""
        return int(self.output_mode[len("pts3d+desc"):])

    @property
    def rope_base(self) -> float:
        """RoPE frequency base, from ``pos_embed='RoPE<base>'``."""
        return float(self.pos_embed[len("RoPE"):])

    @property
    def effective_desc_conf_mode(self) -> Optional[tuple]:
        """Descriptor confidence mode (falls back to ``conf_mode`` as in the release)."""
        return self.desc_conf_mode if self.desc_conf_mode is not None else self.conf_mode

    def validate(self) -> None:
        """Raise :class:`CheckpointError` unless this is a supported MASt3R configuration."""
        def need(cond: bool, msg: str) -> None:
            if not cond:
                raise CheckpointError(f"unsupported model configuration: {msg}")

        ints = ("patch_size", "enc_embed_dim", "enc_depth", "enc_num_heads", "dec_embed_dim",
                "dec_depth", "dec_num_heads")
        for name in ints:
            v = getattr(self, name)
            need(isinstance(v, int) and not isinstance(v, bool) and 0 < v <= 100_000,
                 f"{name}={v!r} must be a positive integer")
        for name in ("two_confs", "landscape_only", "norm_im2_in_dec"):
            need(isinstance(getattr(self, name), bool), f"{name} must be a boolean")
        need(isinstance(self.mlp_ratio, (int, float)) and 0 < self.mlp_ratio <= 64,
             f"mlp_ratio={self.mlp_ratio!r}")
        need(self.head_type == "catmlp+dpt", f"head_type={self.head_type!r} (need 'catmlp+dpt')")
        need(isinstance(self.output_mode, str) and self.output_mode.startswith("pts3d+desc")
             and self.output_mode[10:].isdigit() and int(self.output_mode[10:]) > 0,
             f"output_mode={self.output_mode!r} (need 'pts3d+descN')")
        need(isinstance(self.pos_embed, str) and self.pos_embed.startswith("RoPE"),
             f"pos_embed={self.pos_embed!r} (need 'RoPE<freq>')")
        try:
            base = self.rope_base
        except ValueError:
            base = -1.0
        need(base > 0, f"pos_embed={self.pos_embed!r} has no valid frequency")
        need(self.patch_embed_cls == "PatchEmbedDust3R", f"patch_embed_cls={self.patch_embed_cls!r}")
        need(self.patch_size == 16, "patch_size must be 16")
        need(self.desc_mode == "norm", f"desc_mode={self.desc_mode!r} (need 'norm')")
        need(self.norm_im2_in_dec, "norm_im2_in_dec must be True")
        need(self.dec_depth > 9, f"dec_depth={self.dec_depth} must exceed 9 for the DPT hooks")
        need(self.enc_embed_dim % self.enc_num_heads == 0
             and (self.enc_embed_dim // self.enc_num_heads) % 4 == 0,
             "encoder head size must be a multiple of 4")
        need(self.dec_embed_dim % self.dec_num_heads == 0
             and (self.dec_embed_dim // self.dec_num_heads) % 4 == 0,
             "decoder head size must be a multiple of 4")
        _mode(self.depth_mode, "depth_mode", ("exp", "linear", "square"))
        if self.conf_mode is not None:
            _mode(self.conf_mode, "conf_mode", ("exp", "sigmoid"))
        if self.desc_conf_mode is not None:
            _mode(self.desc_conf_mode, "desc_conf_mode", ("exp", "sigmoid"))

    def to_string(self) -> str:
        """The equivalent constructor string (for logging and map compatibility checks)."""
        parts = [f"{f.name}={getattr(self, f.name)!r}" for f in dataclasses.fields(self)]
        return f"{MODEL_CLASS_NAME}({', '.join(parts)})"
