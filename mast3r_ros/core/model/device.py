"""Device and precision selection (chosen once from the config, then passed down)."""

from __future__ import annotations

import logging
from typing import Union

import torch

from mast3r_ros.core.errors import ConfigError

__all__ = ["resolve_device", "resolve_precision", "PRECISIONS"]

log = logging.getLogger(__name__)

PRECISIONS = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


def resolve_device(spec: Union[str, torch.device]) -> torch.device:
    """Turn a device spec into a :class:`torch.device`.

    Args:
        spec: ``"auto"`` (CUDA when available, else CPU), ``"cpu"``, ``"cuda"``, ``"cuda:N"``, or a
            ``torch.device``.

    Raises:
        ConfigError: unknown spec, or CUDA requested on a machine without a usable CUDA device.
    """
    if isinstance(spec, torch.device):
        dev = spec
    elif not isinstance(spec, str):
        raise ConfigError(f"device must be a string or torch.device, got {type(spec).__name__}")
    elif spec.strip().lower() == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    else:
        try:
            dev = torch.device(spec.strip().lower())
        except (RuntimeError, ValueError) as exc:
            raise ConfigError(f"unknown device {spec!r}; use auto, cpu, cuda or cuda:N") from exc
    if dev.type not in ("cpu", "cuda", "meta"):
        raise ConfigError(f"unsupported device {dev}; use auto, cpu, cuda or cuda:N")
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError(f"device {spec!r} requested but CUDA is not available; use 'cpu' or "
                              "'auto'")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise ConfigError(f"device {spec!r}: only {torch.cuda.device_count()} CUDA device(s)")
    return dev


def resolve_precision(precision: str, device: torch.device) -> torch.dtype:
    """Autocast dtype for ``precision`` on ``device``.

    fp16/bf16 are CUDA autocast options; on other devices they fall back to fp32 with a warning.

    Raises:
        ConfigError: unknown precision name.
    """
    if precision not in PRECISIONS:
        raise ConfigError(f"precision {precision!r} is not one of {sorted(PRECISIONS)}")
    dtype = PRECISIONS[precision]
    if dtype != torch.float32 and device.type != "cuda":
        log.warning("precision %s needs CUDA autocast; running fp32 on %s", precision, device)
        return torch.float32
    return dtype
