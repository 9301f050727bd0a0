"""Provider confinement policies: the model, unit parsing and the config file loader.

Self-contained on purpose (no imports from the rest of the repo) so the host,
the CLI and the workers can all depend on it without import cycles.
"""

from .config import Config, ConfigError, ProviderConfig, load_config, parse_config
from .model import DEFAULT_REQUIRE, LAYERS, Policy, Workers
from .schema import SCHEMA
from .units import (
    GiB,
    KiB,
    MiB,
    PolicyError,
    format_duration,
    format_size,
    parse_duration,
    parse_size,
)

__all__ = [
    "DEFAULT_REQUIRE",
    "LAYERS",
    "SCHEMA",
    "Config",
    "ConfigError",
    "GiB",
    "KiB",
    "MiB",
    "Policy",
    "PolicyError",
    "ProviderConfig",
    "Workers",
    "format_duration",
    "format_size",
    "load_config",
    "parse_config",
    "parse_duration",
    "parse_size",
]
