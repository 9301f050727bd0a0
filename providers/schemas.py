"""Derive JSON Schemas (draft 2020-12) from Python type annotations.

Provider authors usually describe an action's input and output only through type hints.
The host, however, must validate untrusted data crossing the sandbox boundary without
importing provider code, so the hints are translated once, at registration, into plain
JSON Schema dicts that travel with the action description.

Only annotations with an unambiguous JSON meaning are accepted. Anything else (arbitrary
classes, ``bytes``, callables, ...) is rejected with a :class:`ProviderError` that tells
the author to pass an explicit schema instead: silently producing a permissive schema
would weaken validation without anyone noticing.

This module also hosts :func:`check_schema`, the only place that imports ``jsonschema``;
the import is deferred so that importing :mod:`providers` stays cheap in workers. Inside a worker
it is not imported at all: the worker leaves the meta-schema check to its host
(:func:`leave_meta_schema_check_to_host`), which checks every schema the worker announces anyway.
"""

from __future__ import annotations

import collections.abc
import inspect
import json
import math
import types
import typing
from collections.abc import Callable
from typing import Any

from providers.errors import ProviderError

__all__ = [
    "JSON_SCHEMA_DIALECT",
    "annotation_schema",
    "check_schema",
    "derive_input_schema",
    "derive_output_schema",
]

JSON_SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"

_SCALARS: dict[object, dict[str, Any]] = {
    str: {"type": "string"},
    int: {"type": "integer"},
    float: {"type": "number"},
    bool: {"type": "boolean"},
    None: {"type": "null"},
    type(None): {"type": "null"},
}

_SEQUENCE_ORIGINS: tuple[object, ...] = (
    list,
    collections.abc.Sequence,
    collections.abc.MutableSequence,
)
_MAPPING_ORIGINS: tuple[object, ...] = (
    dict,
    collections.abc.Mapping,
    collections.abc.MutableMapping,
)


class _Unsupported(Exception):
    """Internal: an annotation (possibly nested) has no JSON Schema equivalent."""

    def __init__(self, annotation: object, reason: str = "") -> None:
        super().__init__(annotation, reason)
        self.annotation = annotation
        self.reason = reason


def _type_name(annotation: object) -> str:
    """Readable name of an annotation for error messages (``list[int]``, ``bytes``...)."""
    if isinstance(annotation, type) and not typing.get_args(annotation):
        return annotation.__qualname__
    return repr(annotation).replace("typing.", "")


def _is_json_value(value: object) -> bool:
    """Whether *value* survives a strict JSON round trip (no NaN/inf, JSON types only)."""
    try:
        json.dumps(value, allow_nan=False)
    except (TypeError, ValueError):
        return False
    return True


def _json_copy(value: object) -> object:
    """Normalise a JSON-compatible value (tuples become lists) and detach it from the caller."""
    return json.loads(json.dumps(value, allow_nan=False))


def _literal_schema(values: tuple[object, ...]) -> dict[str, Any]:
    for value in values:
        # bool is an int subclass, so check the exact type: enum members, bytes, etc. are
        # not JSON values even if json.dumps could be coaxed into accepting them.
        if type(value) not in (str, int, bool, type(None)) and not (
            type(value) is float and math.isfinite(value)
        ):
            raise _Unsupported(typing.Literal[value], "Literal values must be JSON scalars")
    unique: list[object] = []
    for value in values:
        if not any(type(value) is type(seen) and value == seen for seen in unique):
            unique.append(value)
    if len(unique) == 1:
        return {"const": unique[0]}
    return {"enum": unique}


def _typeddict_schema(td: type, seen: tuple[type, ...]) -> dict[str, Any]:
    if td in seen:
        raise _Unsupported(td, "recursive TypedDict")
    try:
        hints = typing.get_type_hints(td, include_extras=True)
    except Exception as exc:
        raise _Unsupported(td, f"cannot resolve annotations: {exc}") from exc
    required_keys: frozenset[str] = getattr(td, "__required_keys__", frozenset())
    properties: dict[str, Any] = {}
    required: list[str] = []
    for key, hint in hints.items():
        # Python 3.11 mis-computes __required_keys__ for string annotations such as
        # ``NotRequired[int]`` under ``from __future__ import annotations``; the resolved
        # hint is authoritative, __required_keys__ covers plain keys and ``total=False``.
        is_required = key in required_keys
        inner = hint
        while True:
            origin = typing.get_origin(inner)
            if origin is typing.Required:
                is_required = True
            elif origin is typing.NotRequired:
                is_required = False
            elif origin is not typing.Annotated:
                break
            inner = typing.get_args(inner)[0]
        properties[key] = _schema_for(inner, (*seen, td))
        if is_required:
            required.append(key)
    return {
        "type": "object",
        "properties": properties,
        "required": required,
        "additionalProperties": False,
    }


def _schema_for(annotation: object, seen: tuple[type, ...] = ()) -> dict[str, Any]:
    """Translate one resolved annotation; raises :class:`_Unsupported` on failure."""
    if annotation is typing.Any or annotation is object:
        return {}
    try:
        scalar = _SCALARS.get(annotation)
    except TypeError:  # unhashable annotation objects
        scalar = None
    if scalar is not None:
        return dict(scalar)

    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)

    if origin is typing.Annotated:
        return _schema_for(args[0], seen)
    if origin is typing.Union or origin is types.UnionType:
        return {"anyOf": [_schema_for(arg, seen) for arg in args]}
    if origin is typing.Literal:
        return _literal_schema(args)
    if isinstance(annotation, type) and typing.is_typeddict(annotation):
        return _typeddict_schema(annotation, seen)
    if annotation in _SEQUENCE_ORIGINS or annotation is typing.List:  # noqa: UP006
        return {"type": "array"}
    if origin in _SEQUENCE_ORIGINS:
        return {"type": "array", "items": _schema_for(args[0], seen)}
    if annotation is tuple or annotation is typing.Tuple:  # noqa: UP006
        return {"type": "array"}
    if origin is tuple:
        if len(args) == 2 and args[1] is Ellipsis:
            return {"type": "array", "items": _schema_for(args[0], seen)}
        if args == ((),):  # tuple[()] : the empty tuple
            return {"type": "array", "maxItems": 0}
        return {
            "type": "array",
            "prefixItems": [_schema_for(arg, seen) for arg in args],
            "items": False,
            "minItems": len(args),
        }
    if annotation in _MAPPING_ORIGINS or annotation is typing.Dict:  # noqa: UP006
        return {"type": "object"}
    if origin in _MAPPING_ORIGINS:
        key_type, value_type = args
        if key_type is not str:
            raise _Unsupported(annotation, "JSON object keys are always strings")
        return {"type": "object", "additionalProperties": _schema_for(value_type, seen)}
    raise _Unsupported(annotation)


def annotation_schema(annotation: object) -> dict[str, Any]:
    """Return the JSON Schema for a single annotation.

    Raises :class:`ProviderError` (without action context) if it is not supported;
    action-level helpers below add the action and parameter names.
    """
    try:
        return _schema_for(annotation)
    except _Unsupported as exc:
        raise ProviderError(_unsupported_detail(exc)) from None


def _unsupported_detail(exc: _Unsupported) -> str:
    detail = f"unsupported annotation {_type_name(exc.annotation)}"
    return f"{detail} ({exc.reason})" if exc.reason else detail


def _resolve_hints(fn: Callable[..., object], action: str) -> dict[str, Any]:
    try:
        return typing.get_type_hints(fn, include_extras=True)
    except Exception as exc:
        raise ProviderError(
            f"action {action!r}: cannot resolve type annotations "
            f"({type(exc).__name__}: {exc}); give an explicit input=/output= schema"
        ) from exc


def derive_input_schema(fn: Callable[..., object], action: str) -> dict[str, Any]:
    """Build the input schema of *fn*: an object with one property per parameter.

    Actions are invoked with keyword arguments decoded from a JSON object, so positional-only
    parameters and ``*args`` cannot be expressed and are rejected. ``**kwargs: X`` turns
    into ``additionalProperties: X`` so the host still validates the extra values.
    *action* is the action's full name, used in error messages.
    """
    hints = _resolve_hints(fn, action)
    try:
        signature = inspect.signature(fn)
    except (TypeError, ValueError) as exc:
        raise ProviderError(f"action {action!r}: cannot inspect signature: {exc}") from exc

    def fail(param: str, why: str) -> ProviderError:
        return ProviderError(
            f"action {action!r}: parameter {param!r} {why}; give an explicit input= schema"
        )

    properties: dict[str, Any] = {}
    required: list[str] = []
    additional: Any = False
    for param in signature.parameters.values():
        if param.kind is inspect.Parameter.POSITIONAL_ONLY:
            raise fail(param.name, "is positional-only, but actions are called by keyword")
        if param.kind is inspect.Parameter.VAR_POSITIONAL:
            raise fail("*" + param.name, "is variadic positional, which JSON cannot express")
        shown = "**" + param.name if param.kind is inspect.Parameter.VAR_KEYWORD else param.name
        if param.name not in hints:
            raise fail(shown, "has no type annotation")
        try:
            schema = _schema_for(hints[param.name])
        except _Unsupported as exc:
            raise fail(shown, f"has an {_unsupported_detail(exc)}") from None
        if param.kind is inspect.Parameter.VAR_KEYWORD:
            additional = schema
            continue
        if param.default is inspect.Parameter.empty:
            required.append(param.name)
        elif _is_json_value(param.default):
            schema["default"] = _json_copy(param.default)
        properties[param.name] = schema
    return {
        "$schema": JSON_SCHEMA_DIALECT,
        "type": "object",
        "properties": properties,
        "required": required,
        "additionalProperties": additional,
    }


def derive_output_schema(fn: Callable[..., object], action: str) -> dict[str, Any]:
    """Build the output schema of *fn* from its return annotation (``{}`` if absent)."""
    hints = _resolve_hints(fn, action)
    if "return" not in hints:
        return {}
    try:
        return _schema_for(hints["return"])
    except _Unsupported as exc:
        raise ProviderError(
            f"action {action!r}: return type has an {_unsupported_detail(exc)}; "
            "give an explicit output= schema"
        ) from None


#: Whether :func:`check_schema` checks schemas against the draft 2020-12 meta-schema itself.
_meta_schema_check = True


def leave_meta_schema_check_to_host() -> None:
    """Skip the meta-schema part of :func:`check_schema` in this process (a worker calls this).

    The host checks every schema a worker announces against the meta-schema when its HELLO
    arrives (``host.catalog``), and refuses the provider with the same message this module
    would give; so a worker need not import ``jsonschema``, which costs tens of milliseconds and
    megabytes per worker. The cheap checks (a dict, JSON-serialisable) still run here.
    """
    global _meta_schema_check
    _meta_schema_check = False


def _meta_formats() -> Any:
    """jsonschema's format checker without ``regex``: it asks Python's ``re``, which refuses
    ECMA-262 syntax JSON Schema means (``\\p{Lu}``, ``\\u{1F600}``, ``[^]``). The host checks
    every pattern with its own ECMA-262 engine when the provider loads."""
    import jsonschema

    checker = jsonschema.FormatChecker()
    checker.checkers = {
        name: check
        for name, check in jsonschema.Draft202012Validator.FORMAT_CHECKER.checkers.items()
        if name != "regex"
    }
    return checker


def check_schema(schema: object, action: str, which: str) -> None:
    """Reject *schema* unless it is a valid, JSON-serialisable draft 2020-12 schema.

    Checked at registration so a typo in a hand-written schema fails when the provider is
    loaded, not later inside the host's validator. The message is one line and names the
    action, which schema (``input``/``output``) and the problem.
    """
    prefix = f"action {action!r}: invalid {which} schema"
    if not isinstance(schema, dict):
        raise ProviderError(f"{prefix}: expected a dict, got {type(schema).__name__}")
    if not _is_json_value(schema):
        raise ProviderError(f"{prefix}: not JSON-serialisable")
    if not _meta_schema_check:
        return

    import jsonschema  # deferred: only needed at registration, keeps `import providers` cheap

    try:
        jsonschema.Draft202012Validator.check_schema(schema, format_checker=_meta_formats())
    except jsonschema.SchemaError as exc:
        location = "/".join(str(part) for part in exc.absolute_path)
        where = f" at /{location}" if location else ""
        message = " ".join(str(exc.message).split())
        raise ProviderError(f"{prefix}{where}: {message}") from exc
