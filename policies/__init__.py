"""Provider confinement policies: the model, unit parsing and the config file loader.

Self-contained on purpose (no imports from the rest of the repo) so the host,
the CLI and the workers can all depend on it without import cycles.

The config file loader (:mod:`policies.config`) needs ``jsonschema``, which is slow to import
and which a worker never needs: its names are imported on first use (module ``__getattr__``),
so ``from policies import Policy`` stays cheap and ``from policies import load_config`` works.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .model import DEFAULT_REQUIRE, LAYERS, Policy, Workers
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

if TYPE_CHECKING:
    from .config import Config, ConfigError, ProviderConfig, load_config, parse_config
    from .schema import SCHEMA

#: Public names imported on first use, and the submodule each lives in.
_LAZY = {
    "Config": "config",
    "ConfigError": "config",
    "ProviderConfig": "config",
    "load_config": "config",
    "parse_config": "config",
    "SCHEMA": "schema",
}

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


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
