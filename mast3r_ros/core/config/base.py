"""The machinery of the config dataclasses: field declaration with metadata, validation, and the
walk over nested fields that ROS parameters and CLI options derive from."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import field
from typing import Any, Callable, Iterator, Mapping, Optional

from mast3r_ros.core.errors import ConfigError

__all__ = ["opt", "validate_fields", "make_config", "field_default", "leaf_fields",
           "config_from_flat", "flat_values"]


def opt(default: Any, help: str, range: Optional[tuple] = None, choices: Optional[tuple] = None,
        read_only: bool = False) -> Any:
    """Declare a config field with its documentation and constraints."""
    meta = {"help": help, "range": range, "choices": choices, "read_only": read_only}
    return field(default=default, metadata=meta)


def validate_fields(obj: Any) -> None:
    """Check every field of a config dataclass against its ``range`` / ``choices`` metadata.

    Raises:
        ConfigError: naming the section, the field, the value and what is allowed.
    """
    name = type(obj).__name__
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        rng = f.metadata.get("range")
        choices = f.metadata.get("choices")
        if rng is not None and value is not None:
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise ConfigError(f"{name}.{f.name} must be a number, got {value!r}")
            if isinstance(value, float) and not math.isfinite(value):
                raise ConfigError(f"{name}.{f.name} must be finite, got {value!r}")
            lo, hi = rng
            if (lo is not None and value < lo) or (hi is not None and value > hi):
                raise ConfigError(f"{name}.{f.name}={value!r} is outside [{lo}, {hi}]")
        if choices is not None and value not in choices:
            raise ConfigError(f"{name}.{f.name}={value!r} is not one of {list(choices)}")


def make_config(cls: type, kwargs: dict[str, Any]) -> Any:
    """``cls(**kwargs)`` for a config dataclass, with every failure a :class:`ConfigError`.

    Raises:
        ConfigError: a value out of range (from ``__post_init__``), an unknown field name or a
            value of the wrong type (``TypeError`` / ``ValueError`` of the constructor).
    """
    try:
        return cls(**kwargs)
    except ConfigError:
        raise
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"invalid {cls.__name__} values: {exc}") from exc


def field_default(f: dataclasses.Field) -> Any:
    """The default of a config field (a fresh instance for a nested config).

    Raises:
        ConfigError: the field has no default (every config field needs one).
    """
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    raise ConfigError(f"config field {f.name} has no default; every config field needs one")


def leaf_fields(cls: type, prefix: str = "") -> Iterator[tuple[str, dataclasses.Field, Any]]:
    """``(dotted name, field, default)`` of every leaf field of a config dataclass, nested
    configs recursed (``pose.min_inliers``): what ROS parameters and CLI options derive from."""
    for f in dataclasses.fields(cls):
        default = field_default(f)
        if dataclasses.is_dataclass(default):
            yield from leaf_fields(type(default), f"{prefix}{f.name}.")
        else:
            yield f"{prefix}{f.name}", f, default


def config_from_flat(cls: type, values: Mapping[str, Any], prefix: str = "",
                     convert: Optional[Callable[[Any, Any], Any]] = None) -> Any:
    """Build ``cls`` from ``{dotted name: value}``; names not given keep their defaults.

    Args:
        cls: the config dataclass.
        values: flat values (extra names are ignored).
        prefix: prefix of this class's names in ``values``.
        convert: ``(default, value) -> value`` applied to every given value (e.g. list ->
            tuple for tuple fields).

    Raises:
        ConfigError: a value out of range, of the wrong type or inconsistent.
    """
    kwargs: dict[str, Any] = {}
    for f in dataclasses.fields(cls):
        default = field_default(f)
        name = f"{prefix}{f.name}"
        if dataclasses.is_dataclass(default):
            kwargs[f.name] = config_from_flat(type(default), values, f"{name}.", convert)
        elif name in values:
            kwargs[f.name] = convert(default, values[name]) if convert else values[name]
    return make_config(cls, kwargs)


def flat_values(cfg: Any, prefix: str = "") -> dict[str, Any]:
    """``{dotted name: value}`` of every leaf field of a config instance (the inverse of
    :func:`config_from_flat`; a preset's values as defaults for CLI options)."""
    out: dict[str, Any] = {}
    for name, _, _ in leaf_fields(type(cfg), prefix):
        value = cfg
        for part in name[len(prefix):].split("."):
            value = getattr(value, part)
        out[name] = value
    return out
