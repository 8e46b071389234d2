"""Command-line options generated from config dataclasses: the dataclasses stay the only home of
defaults, ranges, choices and help texts.

Every leaf field of a config dataclass becomes one option with its dotted name, as the ROS
parameter of the same field (``--pose.min-inliers``, also spelled ``--pose.min_inliers``); nested
dataclasses become name prefixes. Options are not given argparse defaults: a field that is not on
the command line keeps its dataclass default, so the CLI cannot drift from the dataclass. Values
are validated by the dataclass (``__post_init__`` -> :class:`ConfigError`); floats must also be
finite on the command line. A boolean field ``a.x`` has ``--a.x`` and ``--a.no-x``. Old short
flags (``--device``, ``--top-k`` ...) are aliases; an alias may set several fields (``--device``
sets the model's and the alignment's device in ``build-map``).
"""

from __future__ import annotations

import argparse
import dataclasses
import math
from typing import Any, Iterator, Mapping, Optional, Sequence

from mast3r_ros.core.config import config_from_flat, leaf_fields
from mast3r_ros.core.errors import ConfigError

__all__ = ["ConfigOption", "iter_options", "add_config_options", "add_alias", "config_from_args",
           "finite_float", "Aliases"]

Aliases = Mapping[str, Sequence[str]]
"""Alias option string (``--top-k``) -> the dotted names it sets (``retrieval.top_k``)."""

_DEST = "config:"


@dataclasses.dataclass(frozen=True)
class ConfigOption:
    """One leaf field of a config dataclass as a command-line option."""

    name: str
    field: dataclasses.Field
    default: Any

    @property
    def dest(self) -> str:
        """Attribute of the parsed namespace (None when the option was not given)."""
        return _DEST + self.name


def iter_options(cls: type, prefix: str = "",
                 only: Optional[Sequence[str]] = None) -> Iterator[ConfigOption]:
    """Leaf fields of ``cls`` (nested dataclasses recursed) with their dotted names.

    Args:
        cls: a config dataclass.
        prefix: prepended to every name (``"input."``).
        only: top-level field names to keep (default: all).
    """
    for name, f, default in leaf_fields(cls, prefix):
        if only is not None and name[len(prefix):].split(".")[0] not in only:
            continue
        yield ConfigOption(name, f, default)


def finite_float(text: str) -> float:
    """argparse type: a finite float."""
    value = float(text)
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"{text!r} is not a finite number")
    return value


def _strict_int(text: str) -> int:
    return int(text, 10)


def _kind(default: Any) -> dict[str, Any]:
    """argparse keywords for a field with this default value."""
    if isinstance(default, bool):
        return {"action": "store_const", "const": True}
    if isinstance(default, int):
        return {"type": _strict_int, "metavar": "N"}
    if isinstance(default, float):
        return {"type": finite_float, "metavar": "X"}
    if isinstance(default, tuple):
        return {"type": finite_float, "nargs": "+", "metavar": "X"}
    return {"type": str, "metavar": "S"}


def _help(opt: ConfigOption) -> str:
    md = opt.field.metadata
    parts = [md.get("help", "")]
    rng, choices = md.get("range"), md.get("choices")
    if choices:
        parts.append(f"one of {', '.join(map(str, choices))}")
    if rng is not None:
        lo, hi = rng
        parts.append(f"range [{'-inf' if lo is None else lo}, {'inf' if hi is None else hi}]")
    parts.append(f"default {opt.default!r}")
    return "; ".join(p for p in parts if p).replace("%", "%%")


class _SetMany(argparse.Action):
    """An alias that stores one value into several fields."""

    def __init__(self, option_strings: list[str], dest: str, targets: Sequence[str] = (),
                 **kwargs: Any) -> None:
        super().__init__(option_strings, dest, **kwargs)
        self.targets = tuple(targets)

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace,
                 values: Any, option_string: Optional[str] = None) -> None:
        for name in self.targets:
            setattr(namespace, _DEST + name, values)


def add_alias(parser: Any, alias: str, targets: Sequence[ConfigOption]) -> None:
    """Add ``alias``, an option that stores its value into every one of ``targets``.

    Args:
        parser: a parser or argument group.
        alias: the option string (``--device``).
        targets: options added by :func:`add_config_options` (of the same type).
    """
    parser.add_argument(alias, action=_SetMany, targets=[t.name for t in targets],
                        dest=_DEST + alias, type=_kind(targets[0].default).get("type"),
                        help=f"sets {', '.join(t.name for t in targets)}")


def add_config_options(parser: argparse.ArgumentParser, cls: type, *, prefix: str = "",
                       only: Optional[Sequence[str]] = None, aliases: Optional[Aliases] = None,
                       title: Optional[str] = None) -> list[ConfigOption]:
    """Add one option per leaf field of ``cls`` (see the module docstring).

    Args:
        parser: the (sub)command parser.
        cls: the config dataclass.
        prefix: dotted prefix of every option (``"input."``).
        only: top-level field names to expose (default: all).
        aliases: extra option strings; one target = another spelling, several = set them all.
        title: argument group title (default: the class name).

    Returns:
        The options added.

    Raises:
        ConfigError: an alias names a field that is not among the options.
    """
    opts = list(iter_options(cls, prefix, only))
    by_name = {o.name: o for o in opts}
    group = parser.add_argument_group(title or cls.__name__, (cls.__doc__ or "").split("\n")[0])
    single: dict[str, list[str]] = {}
    for alias, targets in (aliases or {}).items():
        missing = [t for t in targets if t not in by_name]
        if missing:
            raise ConfigError(f"CLI alias {alias} names unknown options {missing}")
        if len(targets) == 1:
            single.setdefault(targets[0], []).append(alias)
        else:
            add_alias(group, alias, [by_name[t] for t in targets])
    for o in opts:
        flags = _spellings(o.name) + single.get(o.name, [])
        group.add_argument(*flags, dest=o.dest, default=None, help=_help(o), **_kind(o.default))
        if isinstance(o.default, bool):
            head, _, last = o.name.rpartition(".")
            group.add_argument(*_spellings(f"{head}.no_{last}" if head else f"no_{last}"),
                               dest=o.dest, default=None, action="store_const", const=False,
                               help=f"set {o.name} to False")
    return opts


def _spellings(name: str) -> list[str]:
    """``--a.b-c`` and ``--a.b_c`` for the dotted field name ``a.b_c``."""
    return list(dict.fromkeys([f"--{name.replace('_', '-')}", f"--{name}"]))


def config_from_args(cls: type, args: argparse.Namespace, prefix: str = "",
                     **fixed: Any) -> Any:
    """Build ``cls`` from the options of :func:`add_config_options` (unset ones keep defaults).

    Args:
        cls: the config dataclass.
        args: the parsed namespace.
        prefix: the prefix given to :func:`add_config_options`.
        **fixed: top-level fields set by the command itself (e.g. ``backend="mast3r"``).

    Raises:
        ConfigError: a value out of range or of the wrong type (the dataclass says which).
    """
    given = {o.name: getattr(args, o.dest) for o in iter_options(cls, prefix)
             if o.name[len(prefix):].split(".")[0] not in fixed
             and getattr(args, o.dest, None) is not None}
    given.update({f"{prefix}{k}": v for k, v in fixed.items()})
    return config_from_flat(cls, given, prefix,
                            lambda d, v: tuple(v) if isinstance(d, tuple) else v)

