"""Integral floats as ``int`` where an action's input schema says ``integer``.

JSON Schema's ``integer`` is a mathematical integer: ``2.0`` and ``1e2`` are valid, and Python's
JSON decoder makes floats of them. So a schema-valid input gave ``def f(n: int)`` a float, and
``"ab" * n`` failed (a red team's finding; the schema derived from the hint and the host's
validator were both right). The worker passes each call's input through :func:`as_declared`
first: wherever the schema allows an integer and no other number, an integral float becomes the
``int`` the annotation promises. Nothing else changes; ``2.5`` stays a float (the host refused
it already, or the schema allows it).

It follows ``type``, ``enum``/``const``, ``anyOf``/``oneOf``, ``properties``,
``additionalProperties``, ``items`` and ``prefixItems`` (what the SDK derives from type hints),
not ``$ref``: a hand-written schema that uses references gets its numbers as decoded.
"""

from __future__ import annotations

from typing import Any

#: Deeper than any input the host accepts (its depth bound is 100).
_MAX_DEPTH = 128


def _number_kinds(schema: dict[str, Any]) -> tuple[bool, bool]:
    """(allows an integer, allows a non-integral number) for a scalar at this schema."""
    kind = schema.get("type")
    kinds = set(kind) if isinstance(kind, list) else {kind} if isinstance(kind, str) else None
    if kinds is not None:
        return "integer" in kinds or "number" in kinds, "number" in kinds
    choices = schema.get("enum") if "enum" in schema else (
        [schema["const"]] if "const" in schema else None
    )
    if isinstance(choices, list):
        numbers = [c for c in choices if isinstance(c, int | float) and not isinstance(c, bool)]
        return bool(numbers), any(isinstance(c, float) for c in numbers)
    branches = [
        b for key in ("anyOf", "oneOf") for b in schema.get(key) or () if isinstance(b, dict)
    ]
    if branches:
        found = [_number_kinds(b) for b in branches]
        return any(i for i, _ in found), any(f for _, f in found)
    return False, False


def _branch_for(schema: dict[str, Any], kind: str) -> dict[str, Any]:
    """The schema to follow into a container of JSON ``kind``: an ``anyOf``/``oneOf`` branch
    for that kind (``list[int] | None``), else the schema itself."""
    for key in ("anyOf", "oneOf"):
        for branch in schema.get(key) or ():
            if isinstance(branch, dict) and branch.get("type") == kind:
                return branch
    return schema


def _convert(value: Any, schema: Any, depth: int) -> Any:
    if not isinstance(schema, dict) or depth > _MAX_DEPTH:
        return value
    if isinstance(value, float):
        if value.is_integer():
            integer, other = _number_kinds(schema)
            if integer and not other:
                return int(value)
        return value
    if isinstance(value, dict):
        schema = _branch_for(schema, "object")
        properties = schema.get("properties")
        properties = properties if isinstance(properties, dict) else {}
        extra = schema.get("additionalProperties")
        changed = None
        for key, item in value.items():
            converted = _convert(item, properties.get(key, extra), depth + 1)
            if converted is not item:
                changed = changed if changed is not None else dict(value)
                changed[key] = converted
        return changed if changed is not None else value
    if isinstance(value, list):
        schema = _branch_for(schema, "array")
        prefix = schema.get("prefixItems")
        prefix = prefix if isinstance(prefix, list) else []
        rest = schema.get("items")
        out = None
        for index, item in enumerate(value):
            converted = _convert(item, prefix[index] if index < len(prefix) else rest, depth + 1)
            if converted is not item:
                out = out if out is not None else list(value)
                out[index] = converted
        return out if out is not None else value
    return value


def _mentions_integer(schema: Any) -> bool:
    return "integer" in repr(schema) or "const" in repr(schema) or "enum" in repr(schema)


def as_declared(arguments: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    """``arguments`` with every integral float that ``schema`` types as an integer made an
    ``int`` (a new dict where anything changed; ``arguments`` itself otherwise)."""
    return _convert(arguments, schema, 0)  # type: ignore[no-any-return]


def needs_conversion(schema: dict[str, Any]) -> bool:
    """Whether :func:`as_declared` can change anything for inputs of ``schema`` (computed once
    per action: most schemas have no integer, and their calls skip the walk)."""
    return _mentions_integer(schema)
