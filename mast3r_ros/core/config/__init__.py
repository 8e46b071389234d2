"""Configuration of every stage: frozen dataclasses, the only home of default values.

Each field carries metadata used for validation and to derive ROS parameters (dotted names
``<section>.<field>``, descriptors with ranges and help text):

* ``help``: one line of documentation (units included);
* ``range``: inclusive ``(low, high)`` for numbers (``None`` for an open side);
* ``choices``: allowed values for strings;
* ``read_only``: True when the value cannot change while a node runs (model, device, map).

Validation happens in ``__post_init__`` and raises :class:`~mast3r_ros.core.errors.ConfigError`.
"""

from mast3r_ros.core.config.base import (
                                         config_from_flat,
                                         field_default,
                                         flat_values,
                                         leaf_fields,
                                         make_config,
                                         opt,
                                         validate_fields,
)
from mast3r_ros.core.config.mapping import KeyframeSelectionConfig, MappingConfig, RayConfig
from mast3r_ros.core.config.pipeline import (
                                         InputConfig,
                                         LocalizerConfig,
                                         MapStoreConfig,
                                         MatchingConfig,
                                         ModelConfig,
                                         PoseConfig,
                                         RetrievalConfig,
                                         SiftConfig,
)
from mast3r_ros.core.config.slam import (
                                         KeyframeRuleConfig,
                                         LoopClosureConfig,
                                         LostConfig,
                                         PoseGraphConfig,
                                         SlamConfig,
                                         TrackingConfig,
                                         tracking_pipeline,
)

__all__ = [
    "opt",
    "validate_fields",
    "InputConfig",
    "ModelConfig",
    "MatchingConfig",
    "SiftConfig",
    "RetrievalConfig",
    "PoseConfig",
    "LocalizerConfig",
    "MappingConfig",
    "RayConfig",
    "KeyframeSelectionConfig",
    "MapStoreConfig",
    "PoseGraphConfig",
    "LoopClosureConfig",
    "SlamConfig",
    "KeyframeRuleConfig",
    "LostConfig",
    "TrackingConfig",
    "tracking_pipeline",
    "field_default",
    "leaf_fields",
    "config_from_flat",
    "flat_values",
    "make_config",
]
