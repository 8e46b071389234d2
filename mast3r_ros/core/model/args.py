"""The model's constructor arguments: a whitelist parser for checkpoint strings and a typed record.

Official checkpoints carry the constructor call as a string, e.g.
``AsymmetricMASt3R(pos_embed='RoPE100', ..., depth_mode=('exp', -inf, inf), ...)``. The official
loader ``eval``s it; here it is parsed with :mod:`ast` (syntax only, nothing is executed) and every
keyword is checked against a whitelist of known arguments and literal types.

A checkpoint is untrusted input, so the architecture it asks for is bounded
(:data:`ARCH_BOUNDS` and the ``MAX_*`` constants: the release with a margin) before any module is
built: a 1 kB file asking for 100,000 blocks fails here in microseconds with
:class:`CheckpointError`. Numbers that do not fit a float, strings of unicode digits and deeply
nested literals are :class:`CheckpointError` too, never ``OverflowError`` / ``ValueError`` /
``RecursionError``.
"""

from __future__ import annotations

import ast
import dataclasses
import logging
import math
import re
from dataclasses import dataclass
from typing import Any, Mapping, Optional

from mast3r_ros.core.errors import CheckpointError

__all__ = ["ModelArgs", "parse_model_args", "MODEL_CLASS_NAME", "RELEASE_ARGS", "ARCH_BOUNDS",
           "MAX_MLP_RATIO", "MAX_DESC_DIM", "MAX_ROPE_BASE", "MAX_IMG_SIZE"]

log = logging.getLogger(__name__)

MODEL_CLASS_NAME = "AsymmetricMASt3R"
_MAX_ARGS_LEN = 8192

RELEASE_ARGS = (
    "AsymmetricMASt3R(pos_embed='RoPE100', patch_embed_cls='ManyAR_PatchEmbed', "
    "img_size=(512, 512), head_type='catmlp+dpt', output_mode='pts3d+desc24', "
    "depth_mode=('exp', -inf, inf), "
    "conf_mode=('exp', 1, inf), enc_embed_dim=1024, enc_depth=24, enc_num_heads=16, "
    "dec_embed_dim=768, dec_depth=12, dec_num_heads=12, two_confs=True, "
    "desc_conf_mode=('exp', 0, inf))"
)
"""Constructor string of ``MASt3R_ViTLarge_BaseDecoder_512_catmlpdpt_metric``."""

#: inclusive bounds of the integer architecture arguments. The release is a ViT-L encoder
#: (24 blocks x 1024, 16 heads) and ViT-B decoders (12 x 768, 12 heads); the bounds leave a 2x
#: margin on depth and width (ViT-H / ViT-g sizes fit) and need ``dec_depth > 9`` for the DPT hooks.
ARCH_BOUNDS: dict[str, tuple[int, int]] = {
    "enc_embed_dim": (16, 2048), "enc_depth": (1, 48), "enc_num_heads": (1, 64),
    "dec_embed_dim": (16, 2048), "dec_depth": (10, 48), "dec_num_heads": (1, 64),
    "patch_size": (16, 16),
}
MAX_MLP_RATIO = 8.0
"""Largest MLP hidden / embedding ratio (release: 4)."""
MAX_DESC_DIM = 256
"""Largest local descriptor size ``N`` of ``output_mode='pts3d+descN'`` (release: 24)."""
MAX_ROPE_BASE = 1e6
"""Largest RoPE frequency base of ``pos_embed='RoPE<base>'`` (release: 100)."""
MAX_IMG_SIZE = 8192
"""Largest training image side of ``img_size`` (release: 512; only validated, not used)."""
_MAX_NESTING = 4
_MAX_STR_LEN = 64
_DESC_MODE = re.compile(r"pts3d\+desc([0-9]{1,4})")
_ROPE_MODE = re.compile(r"RoPE([0-9.eE+]{1,32})")

_NAMED_CONSTANTS = {"inf": math.inf, "True": True, "False": False, "None": None}


def _literal(node: ast.AST, depth: int = 0) -> Any:
    """Convert a literal expression node (numbers, strings, bools, None, inf, tuples) to a value."""
    if depth > _MAX_NESTING:
        raise CheckpointError("model args nest tuples or signs too deeply")
    if isinstance(node, ast.Constant) and isinstance(node.value,
                                                     (str, int, float, bool, type(None))):
        return node.value
    if isinstance(node, ast.Name) and node.id in _NAMED_CONSTANTS:
        return _NAMED_CONSTANTS[node.id]
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
        value = _literal(node.operand, depth + 1)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise CheckpointError(f"sign applied to a non-number in model args: "
                                  f"{ast.dump(node)[:200]}")
        return -value if isinstance(node.op, ast.USub) else value
    if isinstance(node, (ast.Tuple, ast.List)):
        return tuple(_literal(e, depth + 1) for e in node.elts)
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
    except (ValueError, MemoryError, RecursionError) as exc:  # NUL bytes, parser stack overflow
        raise CheckpointError(f"cannot parse model args {s[:200]!r}: "
                              f"{type(exc).__name__}") from exc
    call = tree.body
    if not isinstance(call, ast.Call) or not isinstance(call.func, ast.Name):
        raise CheckpointError(f"model args are not a constructor call: {s[:200]!r}")
    if call.func.id != MODEL_CLASS_NAME:
        raise CheckpointError(
            f"checkpoint is for architecture {call.func.id!r}, only {MODEL_CLASS_NAME} is "
            "supported")
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


def _short_repr(value: Any) -> str:
    """``repr`` for messages: bounded, and safe for integers beyond ``int`` -> ``str`` limits."""
    try:
        text = repr(value)
    except ValueError:  # an integer with more than sys.get_int_max_str_digits() digits
        return f"<{type(value).__name__} too large to print>"
    return text if len(text) <= 80 else text[:77] + "..."


def _to_float(v: Any) -> float:
    """A number as float; NaN for a non-number or an integer beyond the float range."""
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return math.nan
    try:
        return float(v)
    except OverflowError:
        return math.nan


def _mode(value: Any, name: str, allowed: tuple[str, ...]) -> tuple:
    """Validate a ``(mode, vmin, vmax)`` activation triple and return it with float bounds."""
    ok = isinstance(value, tuple) and len(value) == 3 and isinstance(value[0], str)
    lo, hi = (_to_float(value[1]), _to_float(value[2])) if ok else (math.nan, math.nan)
    if not (ok and value[0] in allowed and lo <= hi):  # NaN compares False
        raise CheckpointError(f"{name}={_short_repr(value)} is not a supported (mode, vmin, vmax) "
                              f"with mode in {allowed}, vmin <= vmax, numbers within the float "
                              "range (or inf)")
    return (value[0], lo, hi)


_DEPTH_MODES = ("exp", "linear", "square")
_CONF_MODES = ("exp", "sigmoid")


def _need(cond: bool, msg: str) -> None:
    if not cond:
        raise CheckpointError(f"unsupported model configuration: {msg}")


def _parse_float(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        return math.nan


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
        unknown = sorted(str(k)[:_MAX_STR_LEN] for k in set(kwargs) - known)
        if unknown:
            more = f" (+{len(unknown) - 10} more)" if len(unknown) > 10 else ""
            raise CheckpointError(f"unknown model arguments {unknown[:10]}{more}; known: "
                                  f"{sorted(known)}")
        kw: dict[str, Any] = {k: tuple(v) if isinstance(v, list) else v
                              for k, v in kwargs.items()}
        if kw.get("patch_embed_cls") == "ManyAR_PatchEmbed":
            kw["patch_embed_cls"] = "PatchEmbedDust3R"
        if kw.get("landscape_only") is True:
            log.warning("checkpoint asks for landscape_only=True; portrait images are embedded in "
                        "their own orientation instead (landscape_only=False, as the release)")
        kw["landscape_only"] = False
        args = cls(**kw)
        args.validate()
        modes: dict[str, Any] = {"depth_mode": _mode(args.depth_mode, "depth_mode", _DEPTH_MODES)}
        for name in ("conf_mode", "desc_conf_mode"):
            if getattr(args, name) is not None:
                modes[name] = _mode(getattr(args, name), name, _CONF_MODES)
        return dataclasses.replace(args, **modes)  # bounds as floats

    @property
    def desc_dim(self) -> int:
        """Local descriptor size, from ``output_mode='pts3d+descN'``."""
        return int(self.output_mode[len("pts3d+desc"):])  # validated: 1 to 4 ASCII digits

    @property
    def rope_base(self) -> float:
        """RoPE frequency base, from ``pos_embed='RoPE<base>'``."""
        return float(self.pos_embed[len("RoPE"):])

    @property
    def effective_desc_conf_mode(self) -> Optional[tuple]:
        """Descriptor confidence mode (falls back to ``conf_mode`` as in the release)."""
        return self.desc_conf_mode if self.desc_conf_mode is not None else self.conf_mode

    def validate(self) -> None:
        """Raise :class:`CheckpointError` unless this is a supported MASt3R configuration within
        the architecture bounds (:data:`ARCH_BOUNDS`, ``MAX_*``)."""
        for name, (lo, hi) in ARCH_BOUNDS.items():
            v = getattr(self, name)
            _need(isinstance(v, int) and not isinstance(v, bool) and lo <= v <= hi,
                  f"{name}={_short_repr(v)} must be an integer in [{lo}, {hi}]"
                  + (" (the DPT head taps decoder block 9)" if name == "dec_depth" else ""))
        for name in ("two_confs", "landscape_only", "norm_im2_in_dec"):
            _need(isinstance(getattr(self, name), bool), f"{name} must be a boolean")
        _need(_to_float(self.mlp_ratio) > 0 and _to_float(self.mlp_ratio) <= MAX_MLP_RATIO,
              f"mlp_ratio={_short_repr(self.mlp_ratio)} must be in (0, {MAX_MLP_RATIO}]")
        for name in ("enc", "dec"):
            dim, heads = getattr(self, f"{name}_embed_dim"), getattr(self, f"{name}_num_heads")
            _need(dim % heads == 0 and (dim // heads) % 4 == 0,
                  f"{name}oder head size {dim}/{heads} must be a multiple of 4")
        self._validate_strings()
        self._validate_ignored()
        _mode(self.depth_mode, "depth_mode", _DEPTH_MODES)
        for name in ("conf_mode", "desc_conf_mode"):
            if getattr(self, name) is not None:
                _mode(getattr(self, name), name, _CONF_MODES)

    def _validate_strings(self) -> None:
        for name in ("output_mode", "head_type", "pos_embed", "patch_embed_cls", "desc_mode",
                     "freeze"):
            v = getattr(self, name)
            _need(isinstance(v, str) and len(v) <= _MAX_STR_LEN,
                  f"{name}={_short_repr(v)} must be a string of at most {_MAX_STR_LEN} characters")
        _need(self.head_type == "catmlp+dpt", f"head_type={self.head_type!r} (need 'catmlp+dpt')")
        desc = _DESC_MODE.fullmatch(self.output_mode)
        _need(desc is not None and 0 < int(desc.group(1)) <= MAX_DESC_DIM,
              f"output_mode={self.output_mode!r} (need 'pts3d+descN', 0 < N <= {MAX_DESC_DIM})")
        rope = _ROPE_MODE.fullmatch(self.pos_embed)
        base = _to_float(_parse_float(rope.group(1))) if rope else math.nan
        _need(0 < base <= MAX_ROPE_BASE,
              f"pos_embed={self.pos_embed!r} (need 'RoPE<base>', 0 < base <= {MAX_ROPE_BASE:g})")
        _need(self.patch_embed_cls == "PatchEmbedDust3R",
              f"patch_embed_cls={self.patch_embed_cls!r} (need 'PatchEmbedDust3R')")
        _need(self.desc_mode == "norm", f"desc_mode={self.desc_mode!r} (need 'norm')")
        _need(self.norm_im2_in_dec, "norm_im2_in_dec must be True")

    def _validate_ignored(self) -> None:
        """Arguments that only matter for training: typed and bounded, then ignored."""
        size = self.img_size if isinstance(self.img_size, tuple) else (self.img_size,)
        _need(len(size) in (1, 2) and all(isinstance(v, int) and not isinstance(v, bool)
                                          and 0 < v <= MAX_IMG_SIZE for v in size),
              f"img_size={_short_repr(self.img_size)} must be one or two integers in "
              f"[1, {MAX_IMG_SIZE}]")
        ratio = _to_float(self.mask_ratio)
        _need(0.0 <= ratio <= 1.0, f"mask_ratio={_short_repr(self.mask_ratio)} must be in [0, 1]")

    def to_string(self) -> str:
        """The equivalent constructor string (for logging and map compatibility checks)."""
        parts = [f"{f.name}={getattr(self, f.name)!r}" for f in dataclasses.fields(self)]
        return f"{MODEL_CLASS_NAME}({', '.join(parts)})"
