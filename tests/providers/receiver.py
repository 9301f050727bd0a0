"""Actions that report exactly what the worker received, for the engine-side input tests."""

from __future__ import annotations

import hashlib
import json
from typing import Any

from providers import Provider

provider = Provider("receiver", version="1.0")


@provider.action
def number(n: int) -> str:
    """The type and value of ``n`` as the action got it."""
    return f"{type(n).__name__}:{n!r}"


@provider.action(
    input={"type": "object", "properties": {"n": {"type": "integer"}}, "required": ["n"]},
    output={},
)
def loose(**received: Any) -> dict[str, Any]:
    """A hand-written schema that allows extra keys: return everything received."""
    return received


@provider.action(input={"type": "object"}, output={})
def echo(**received: Any) -> dict[str, Any]:
    """Return the whole input."""
    return received


@provider.action(input={"type": "object"}, output={})
def digest(**received: Any) -> dict[str, Any]:
    """Length and SHA-256 of the input as received, re-encoded compactly (for big inputs)."""
    text = json.dumps(received, separators=(",", ":"), ensure_ascii=False).encode()
    return {"bytes": len(text), "sha256": hashlib.sha256(text).hexdigest()}


@provider.action(input={"type": "object"}, output={})
def depth(**received: Any) -> int:
    """How deep the received input nests (the input object itself is level 1)."""
    deepest, stack = 0, [(received, 1)]
    while stack:
        value, level = stack.pop()
        if isinstance(value, dict | list):
            deepest = max(deepest, level)
            stack.extend((v, level + 1) for v in (value.values() if isinstance(value, dict)
                                                   else value))  # fmt: skip
    return deepest


@provider.action(
    input={"type": "object", "properties": {"true": {"type": "integer"}}, "required": ["true"]},
    output={},
)
def truthy(**received: Any) -> dict[str, Any]:
    """A key named ``true`` that must hold an integer; extra keys allowed."""
    return received


@provider.action(
    input={"type": "object", "properties": {"n": {"type": "integer", "maximum": 10},
                                            "s": {"type": "string", "maxLength": 3},
                                            "e": {"enum": [1, 2]}},
           "additionalProperties": False},
    output={},
)  # fmt: skip
def bounded(**received: Any) -> dict[str, Any]:
    """Bounded values: ``n`` at most 10, ``s`` at most 3 characters, ``e`` 1 or 2."""
    return {key: [type(value).__name__, value] for key, value in received.items()}
