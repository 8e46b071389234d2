"""ROS 2 parameters derived from the core's frozen config dataclasses.

Every leaf field of a config dataclass becomes one parameter with a dotted name
(``pose.min_inliers``), a :class:`ParameterDescriptor` built from the field metadata (help text,
integer/float range, choices, read-only) and the dataclass default. Nested dataclasses become name
prefixes. :func:`config_from_values` turns parameter values back into the dataclass and raises
:class:`~mast3r_ros.core.errors.ConfigError` when the combination is invalid, so the node can
reject a ``set_parameters`` call with that message.
"""

from __future__ import annotations

import dataclasses
import sys
from typing import Any, Iterator, Optional, Sequence

from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor, ParameterType

from mast3r_ros.core.config import config_from_flat, flat_values, leaf_fields

__all__ = ["ParamSpec", "iter_param_specs", "section_specs", "descriptor_for", "declare_spec",
           "config_from_values", "config_to_values"]

_INT_MAX = 2**63 - 1


@dataclasses.dataclass(frozen=True)
class ParamSpec:
    """One leaf field of a config dataclass as a ROS parameter."""

    name: str
    default: Any
    help: str
    range: tuple | None
    choices: tuple | None
    read_only: bool


def iter_param_specs(cls: type, prefix: str = "") -> Iterator[ParamSpec]:
    """Leaf fields of ``cls`` (recursing into nested dataclasses) as :class:`ParamSpec`."""
    for name, f, default in leaf_fields(cls, prefix):
        md = f.metadata
        yield ParamSpec(name, list(default) if isinstance(default, tuple) else default,
                        md.get("help", ""), md.get("range"), md.get("choices"),
                        bool(md.get("read_only", False)))


def section_specs(sections: Sequence[tuple[str, type]], preset: Optional[Any] = None
                  ) -> Iterator[tuple[type, ParamSpec]]:
    """(config class, parameter spec) of every parameter of a node's sections, in order.

    Args:
        sections: (name prefix, config dataclass) of each section.
        preset: an instance of one section's class whose values replace that section's
            defaults (e.g. the SLAM front end's pipeline preset), or None.
    """
    values = flat_values(preset) if preset is not None else {}
    for prefix, cls in sections:
        for spec in iter_param_specs(cls, prefix):
            if preset is not None and cls is type(preset):
                spec = dataclasses.replace(spec, default=values[spec.name[len(prefix):]])
            yield cls, spec


def descriptor_for(spec: ParamSpec) -> ParameterDescriptor:
    """The ParameterDescriptor of one parameter (description, range, choices, read-only)."""
    d = ParameterDescriptor(name=spec.name, description=spec.help, read_only=spec.read_only)
    value = spec.default
    if isinstance(value, bool):
        d.type = ParameterType.PARAMETER_BOOL
    elif isinstance(value, int):
        d.type = ParameterType.PARAMETER_INTEGER
        if spec.range is not None:
            lo, hi = spec.range
            d.integer_range = [IntegerRange(from_value=int(lo) if lo is not None else -_INT_MAX,
                                            to_value=int(hi) if hi is not None else _INT_MAX,
                                            step=0)]
    elif isinstance(value, float):
        d.type = ParameterType.PARAMETER_DOUBLE
        if spec.range is not None:
            lo, hi = spec.range
            big = sys.float_info.max
            d.floating_point_range = [FloatingPointRange(
                from_value=float(lo) if lo is not None else -big,
                to_value=float(hi) if hi is not None else big, step=0.0)]
    elif isinstance(value, str):
        d.type = ParameterType.PARAMETER_STRING
    elif isinstance(value, list):
        d.type = ParameterType.PARAMETER_DOUBLE_ARRAY
    if spec.choices:
        d.additional_constraints = "one of: " + ", ".join(str(c) for c in spec.choices)
    return d


def _param_value(default: Any, value: Any) -> Any:
    """A ROS parameter value in the field's Python type (arrays -> tuples, ints for floats)."""
    if isinstance(default, tuple):
        return tuple(float(v) for v in value)
    if isinstance(default, float) and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    return value


def config_from_values(cls: type, values: dict[str, Any], prefix: str = "") -> Any:
    """Build ``cls`` from dotted parameter values (missing names keep their defaults).

    Raises:
        ConfigError: a value is out of range, of the wrong type or inconsistent.
    """
    return config_from_flat(cls, values, prefix, _param_value)


def config_to_values(cfg: Any, prefix: str = "") -> dict[str, Any]:
    """Flatten a config instance into ``{dotted name: value}`` (tuples as lists)."""
    out: dict[str, Any] = {}
    for f in dataclasses.fields(cfg):
        value = getattr(cfg, f.name)
        if dataclasses.is_dataclass(value):
            out.update(config_to_values(value, f"{prefix}{f.name}."))
        else:
            out[f"{prefix}{f.name}"] = list(value) if isinstance(value, tuple) else value
    return out


def declare_spec(node: Any, spec: ParamSpec) -> Any:
    """Declare one parameter on ``node``; returns its value (start-up overrides applied).

    Empty list defaults are declared by type (rclpy cannot infer a type from ``[]``) and read back
    as ``[]`` when unset.
    """
    from rclpy.parameter import Parameter

    desc = descriptor_for(spec)
    if isinstance(spec.default, list) and not spec.default:
        value = node.declare_parameter(spec.name, Parameter.Type.DOUBLE_ARRAY, desc).value
        return [] if value is None else list(value)
    value = node.declare_parameter(spec.name, spec.default, desc).value
    return list(value) if isinstance(spec.default, list) else value
