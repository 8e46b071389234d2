"""Options shared by the subcommands (generated from the config dataclasses), JSON output, and the
translation of OS errors into typed errors."""

from __future__ import annotations

import argparse
import contextlib
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Optional, Sequence

import numpy as np

from mast3r_ros.cli.options import Aliases, ConfigOption, add_config_options, config_from_args
from mast3r_ros.core.config import InputConfig, LocalizerConfig, opt, validate_fields
from mast3r_ros.core.errors import IntrinsicsError, Mast3rRosError
from mast3r_ros.core.geometry.camera import intrinsics_problem
from mast3r_ros.core.io import check_regular_file

__all__ = ["SequenceOptions", "add_sequence_options", "sequence_options",
           "LOCALIZER_ALIASES", "add_localizer_options", "localizer_config", "add_input_options",
           "input_config", "os_errors_as", "read_intrinsics", "to_jsonable", "dump_json"]

#: short flags of earlier releases (README commands) -> the dotted LocalizerConfig fields
LOCALIZER_ALIASES: Aliases = {
    "--checkpoint": ("model.checkpoint",),
    "--device": ("model.device",),
    "--precision": ("model.precision",),
    "--image-size": ("model.image_size",),
    "--top-k": ("retrieval.top_k",),
    "--reproj-threshold": ("pose.ransac_reproj_threshold",),
    "--min-inliers": ("pose.min_inliers",),
}


def add_localizer_options(p: argparse.ArgumentParser, only: Optional[Sequence[str]] = None,
                          aliases: Optional[Aliases] = None) -> list[ConfigOption]:
    """Options of :class:`LocalizerConfig` (``--backend``, ``--model.*``, ``--pose.*`` ...).

    Args:
        p: the subcommand parser.
        only: top-level fields to expose (e.g. ``("backend", "model")``); default all.
        aliases: short flags (default :data:`LOCALIZER_ALIASES`, restricted to what is exposed).

    Returns:
        The options added.
    """
    names = only if only is not None else [f for f in LocalizerConfig.__dataclass_fields__]
    chosen = LOCALIZER_ALIASES if aliases is None else aliases
    return add_config_options(p, LocalizerConfig, only=only, title="pipeline",
                                     aliases={a: t for a, t in chosen.items()
                                       if all(x.split(".")[0] in names for x in t)})


def localizer_config(args: argparse.Namespace, **fixed: Any) -> LocalizerConfig:
    """The validated :class:`LocalizerConfig` of the command line (``fixed`` fields forced)."""
    cfg: LocalizerConfig = config_from_args(LocalizerConfig, args, **fixed)
    return cfg


def add_input_options(p: argparse.ArgumentParser) -> None:
    """``--input.max_image_pixels`` (alias ``--max-image-pixels``)."""
    add_config_options(p, InputConfig, prefix="input.", title="input limits",
                       aliases={"--max-image-pixels": ("input.max_image_pixels",)})


def input_config(args: argparse.Namespace) -> InputConfig:
    """The validated :class:`InputConfig` of the command line."""
    cfg: InputConfig = config_from_args(InputConfig, args, prefix="input.")
    return cfg


@contextlib.contextmanager
def os_errors_as(error: type[Mast3rRosError], what: str) -> Iterator[None]:
    """Turn an ``OSError`` (read-only or full file system, permissions) into ``error``.

    Args:
        error: the typed error to raise.
        what: what was being done, e.g. ``"cannot write the map to /maps/x"``.
    """
    try:
        yield
    except OSError as exc:
        where = f" ({exc.filename})" if exc.filename else ""
        raise error(f"{what}: {exc.strerror or exc}{where}; check the path, its permissions and "
                    "the free space") from exc


def read_intrinsics(path: Optional[Path] = None, K: Optional[np.ndarray] = None
                    ) -> Optional[np.ndarray]:
    """A checked 3x3 K from a text file (``path``) or given values (``K``); None for neither.

    Raises:
        IntrinsicsError: the file is not a regular file (a FIFO would block), or K is not a usable
            pinhole matrix (zero or negative focal, NaN ...).
        InputError: the file does not hold 9 numbers.
    """
    if path is not None:
        from mast3r_ros.core.map import read_matrix

        check_regular_file(path, IntrinsicsError)
        K = read_matrix(path, (3, 3))
    if K is None:
        return None
    problem = intrinsics_problem(K)
    if problem is not None:
        raise IntrinsicsError(f"the given intrinsics are unusable: {problem}")
    return K


def to_jsonable(x: Any) -> Any:
    """Convert numpy values / arrays (and non-finite floats -> None) for JSON output."""
    if isinstance(x, dict):
        return {str(k): to_jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [to_jsonable(v) for v in x]
    if isinstance(x, np.ndarray):
        return to_jsonable(x.tolist())
    if isinstance(x, (np.floating, float)):
        return float(x) if math.isfinite(float(x)) else None
    if isinstance(x, (np.integer,)):
        return int(x)
    if isinstance(x, np.bool_):
        return bool(x)
    return x


def dump_json(obj: Any) -> str:
    """One JSON document (numpy-safe, NaN/inf as null)."""
    return json.dumps(to_jsonable(obj), indent=None, sort_keys=False)


@dataclass(frozen=True)
class SequenceOptions:
    """Which files of ``DATA/sequence/`` the odometry and slam evaluation tasks play."""

    stride: int = opt(1, "odometry/slam tasks: take every N-th file of DATA/sequence",
                      range=(1, 10_000))
    frames: str = opt("", "odometry/slam tasks: comma-separated Python slices START:END[:STEP] "
                          "into that list, played in order (0:40,15:66 = a kidnap back to frame "
                          "15; 0:66:2,65:0:-2 = out and back); empty = all")

    def __post_init__(self) -> None:
        validate_fields(self)


def add_sequence_options(p: argparse.ArgumentParser) -> None:
    """``--stride`` and ``--frames`` (:class:`SequenceOptions`)."""
    add_config_options(p, SequenceOptions, title="sequence (odometry and slam tasks)")


def sequence_options(args: argparse.Namespace) -> SequenceOptions:
    """The validated :class:`SequenceOptions` of the command line."""
    opts: SequenceOptions = config_from_args(SequenceOptions, args)
    return opts
