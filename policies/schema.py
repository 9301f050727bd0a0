"""JSON Schema (draft 2020-12) of the policy config file, as a Python dict.

The schema checks the *shape* of the file (known keys, types, unit grammar)
so that mistakes are reported with exact key paths before any value is
interpreted; semantic rules (``min <= max``, memory floor, required layers)
live in :mod:`policies.model`.  Each ``description`` is phrased as what is
expected there, because :mod:`policies.config` shows it verbatim in errors.
"""

from __future__ import annotations

from typing import Any, Final

from .model import ENV_NAME_PATTERN, LAYER_EXPECTED, LAYERS
from .units import DURATION_EXPECTED, DURATION_PATTERN, SIZE_EXPECTED, SIZE_PATTERN

__all__ = [
    "NAME_EXPECTED",
    "NAME_PATTERN",
    "SCHEMA",
    "SOURCE_EXPECTED",
]

NAME_PATTERN: Final = r"^[A-Za-z_][A-Za-z0-9_]*$"
NAME_EXPECTED: Final = (
    "a provider name of letters, digits and underscores, not starting with a digit"
)
SOURCE_EXPECTED: Final = (
    "a provider reference such as package.module, package.module:attr or path/to/file.py"
)

_PATHS: Final[dict[str, Any]] = {
    "type": "array",
    "description": "a list of absolute paths",
    "items": {"type": "string", "description": "an absolute path"},
}

SCHEMA: Final[dict[str, Any]] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "$id": "https://actionsandbox.invalid/schemas/policies.json",
    "title": "actionsandbox provider policies",
    "type": "object",
    "description": "a table with defaults and providers",
    "additionalProperties": False,
    "properties": {
        "defaults": {"$ref": "#/$defs/policy"},
        "providers": {
            "type": "object",
            "description": "a table of providers, each NAME = {source = ..., policy = {...}}",
            "propertyNames": {"pattern": NAME_PATTERN, "description": NAME_EXPECTED},
            "additionalProperties": {"$ref": "#/$defs/provider"},
        },
    },
    "$defs": {
        "duration": {
            "type": ["number", "string"],
            "description": DURATION_EXPECTED,
            "minimum": 0,
            "pattern": DURATION_PATTERN,
        },
        "size": {
            "type": ["integer", "string"],
            "description": SIZE_EXPECTED,
            "minimum": 0,
            "pattern": SIZE_PATTERN,
        },
        "provider": {
            "type": "object",
            "description": "a provider table with source and an optional policy table",
            "additionalProperties": False,
            "required": ["source"],
            "properties": {
                "source": {"type": "string", "minLength": 1, "description": SOURCE_EXPECTED},
                "policy": {"$ref": "#/$defs/policy"},
            },
        },
        "policy": {
            "type": "object",
            "description": "a table of policy settings",
            "additionalProperties": False,
            "properties": {
                "wall_time": {"$ref": "#/$defs/duration"},
                "cpu_time": {"$ref": "#/$defs/duration"},
                "memory": {"$ref": "#/$defs/size"},
                "processes": {"type": "integer", "minimum": 1},
                "open_files": {"type": "integer", "minimum": 16},
                "file_size": {"$ref": "#/$defs/size"},
                "output": {"$ref": "#/$defs/size"},
                "input": {"$ref": "#/$defs/size"},
                "log": {"$ref": "#/$defs/size"},
                "network": {"type": "boolean"},
                "read": _PATHS,
                "write": _PATHS,
                "env": {
                    "type": "array",
                    "description": "a list of environment variable names",
                    "items": {
                        "type": "string",
                        "pattern": ENV_NAME_PATTERN,
                        "description": "an environment variable name such as HOME or LANG",
                    },
                },
                "workers": {
                    "type": "object",
                    "description": "a table with min and max worker counts",
                    "additionalProperties": False,
                    "properties": {
                        "min": {"type": "integer", "minimum": 0},
                        "max": {"type": "integer", "minimum": 1},
                    },
                },
                "require": {
                    "type": "array",
                    "description": "a list of layer names",
                    "items": {"enum": list(LAYERS), "description": LAYER_EXPECTED},
                },
                "skip": {
                    "type": "array",
                    "description": "a list of layer names",
                    "items": {"enum": list(LAYERS), "description": LAYER_EXPECTED},
                },
                "allow_missing": {"type": "boolean"},
                "uid": {
                    "type": "integer",
                    "minimum": 1,
                    "maximum": 4294967294,
                    "description": "a user id between 1 and 4294967294",
                },
                "tmp": {"$ref": "#/$defs/size"},
                "workdir": {"$ref": "#/$defs/size"},
                "idle_timeout": {"$ref": "#/$defs/duration"},
                "queue": {"type": "integer", "minimum": 0, "description": "a number of calls"},
                "max_calls": {"type": "integer", "minimum": 0, "description": "a number of calls"},
                "max_memory_growth": {"$ref": "#/$defs/size"},
                "retries": {"type": "integer", "minimum": 0, "description": "a number of re-runs"},
            },
        },
    },
}
