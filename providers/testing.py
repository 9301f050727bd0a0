"""Hypothesis strategies for an action's input schema: ``inputs(action)``, ``invalid_inputs``.

For provider authors' own ``@given`` tests and for ``sandbox fuzz``. Why our own generator:
hypothesis-jsonschema (the usual choice) supports drafts 04-07 only and breaks on object schemas
with current Hypothesis; Schemathesis 4 has a 2020-12 generator but reaches it only through a
whole OpenAPI document and a heavy import. The schemas the SDK derives use a small subset of
2020-12 (``type``, ``properties``, ``required``, ``additionalProperties``, ``items``,
``prefixItems``, ``minItems``/``maxItems``, ``enum``, ``const``, ``anyOf``); that subset, and
the common keywords around it (bounds, lengths, ``uniqueItems``, local ``$ref``/``$defs``,
``oneOf``/``allOf``, ``dependentRequired``, ``format: uuid``...), is generated *exactly*. For
any keyword the generator does not model, the drawn values are filtered through the draft
2020-12 validator, so a positive example is always schema-valid (a generator that would have
to reject too much fails Hypothesis's health check loudly rather than lying).

Imports Hypothesis and jsonschema: never imported by workers or by ``providers`` itself.
"""

from __future__ import annotations

import datetime as dt
import json
import math
from collections.abc import Callable, Mapping
from typing import Any

from hypothesis import strategies as st

__all__ = ["from_schema", "inputs", "invalid_from_schema", "invalid_inputs", "json_values"]

Strategy = st.SearchStrategy[Any]

#: Keywords that only annotate: they never change which values are valid.
_ANNOTATIONS = frozenset(
    {
        "$schema", "$id", "$comment", "$anchor", "title", "description", "default", "examples",
        "deprecated", "readOnly", "writeOnly", "$defs", "definitions", "contentMediaType",
        "contentEncoding",
    }
)
_TYPES = ("null", "boolean", "integer", "number", "string", "array", "object")
#: Keywords this generator models exactly, per type (others make the schema "inexact").
_EXACT = frozenset(
    {
        "type", "enum", "const", "anyOf", "oneOf", "allOf", "$ref", "properties", "required",
        "additionalProperties", "items", "prefixItems", "minItems", "maxItems", "uniqueItems",
        "minLength", "maxLength", "minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum",
        "dependentRequired", "minProperties", "maxProperties",
    }
)
_FORMATS: dict[str, Callable[[], Strategy]] = {
    "uuid": lambda: st.uuids().map(str),
    "date": lambda: st.dates().map(lambda d: d.isoformat()),
    "date-time": lambda: st.datetimes(timezones=st.just(dt.UTC)).map(
        lambda t: t.isoformat()
    ),
    "ipv4": lambda: st.ip_addresses(v=4).map(str),
    "ipv6": lambda: st.ip_addresses(v=6).map(str),
}
_EXACT_FORMATS = frozenset(_FORMATS)


def json_values(max_leaves: int = 8) -> Strategy:
    """Any JSON value (no NaN or infinity), small."""
    scalars = (
        st.none()
        | st.booleans()
        | st.integers(min_value=-(2**53), max_value=2**53)
        | st.floats(allow_nan=False, allow_infinity=False)
        | st.text(max_size=20)
    )
    return st.recursive(
        scalars,
        lambda inner: st.lists(inner, max_size=4)
        | st.dictionaries(st.text(max_size=8), inner, max_size=4),
        max_leaves=max_leaves,
    )


def _canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True)


class _Compiler:
    """Turns one schema document into a strategy; ``exact`` becomes False on the first
    keyword it does not model (the caller then filters through the validator)."""

    def __init__(self, root: Any) -> None:
        self.root = root
        self.exact = True
        self._refs: dict[str, Strategy] = {}

    def resolve(self, ref: str) -> Any:
        if not ref.startswith("#"):
            raise ValueError(f"only local $ref is supported, got {ref!r}")
        node = self.root
        for part in ref[1:].lstrip("/").split("/") if ref != "#" else []:
            part = part.replace("~1", "/").replace("~0", "~")
            node = node[int(part)] if isinstance(node, list) else node[part]
        return node

    def compile(self, schema: Any) -> Strategy:
        if schema is True or schema == {}:
            return json_values()
        if schema is False:
            return st.nothing()
        if not isinstance(schema, Mapping):
            raise ValueError(f"not a schema: {schema!r}")
        unknown = set(schema) - _EXACT - _ANNOTATIONS - {"format", "pattern", "multipleOf"}
        if unknown or ("format" in schema and schema["format"] not in _EXACT_FORMATS):
            self.exact = False
        if "$ref" in schema:
            ref = schema["$ref"]
            if ref not in self._refs:
                self._refs[ref] = st.deferred(lambda: self.compile(self.resolve(ref)))
            base = self._refs[ref]
            rest = {k: v for k, v in schema.items() if k != "$ref"}
            if set(rest) - _ANNOTATIONS:
                self.exact = False  # (siblings of $ref: left to the validator's filter)
            return base
        if "const" in schema:
            return st.just(schema["const"])
        if "enum" in schema:
            return st.sampled_from(list(schema["enum"]))
        if "allOf" in schema:
            self.exact = False
            first, *_ = schema["allOf"] or [True]
            rest = {k: v for k, v in schema.items() if k != "allOf"}
            return self.compile(first) if not set(rest) - _ANNOTATIONS else self.compile(rest)
        if "anyOf" in schema or "oneOf" in schema:
            branches = schema.get("anyOf", schema.get("oneOf"))
            if "oneOf" in schema or set(schema) - _ANNOTATIONS - {"anyOf"}:
                self.exact = False  # (oneOf's "exactly one", or siblings: filtered)
            return st.one_of([self.compile(b) for b in branches])
        types = schema.get("type", list(_TYPES))
        if isinstance(types, str):
            types = [types]
        return st.one_of([self._typed(t, schema) for t in types])

    def _typed(self, kind: str, s: Mapping[str, Any]) -> Strategy:
        if kind == "null":
            return st.none()
        if kind == "boolean":
            return st.booleans()
        if kind == "integer":
            return self._integers(s)
        if kind == "number":
            return self._integers(s) | self._floats(s)
        if kind == "string":
            return self._strings(s)
        if kind == "array":
            return self._arrays(s)
        if kind == "object":
            return self._objects(s)
        raise ValueError(f"unknown type {kind!r}")

    def _integers(self, s: Mapping[str, Any]) -> Strategy:
        lo, hi = s.get("minimum"), s.get("maximum")
        if "exclusiveMinimum" in s:
            lo = max(lo, s["exclusiveMinimum"]) if lo is not None else s["exclusiveMinimum"]
            lo = math.floor(lo) + 1
        if "exclusiveMaximum" in s:
            hi = min(hi, s["exclusiveMaximum"]) if hi is not None else s["exclusiveMaximum"]
            hi = math.ceil(hi) - 1
        lo = None if lo is None else math.ceil(lo)
        hi = None if hi is None else math.floor(hi)
        ints = st.integers(min_value=lo, max_value=hi)
        step = s.get("multipleOf")
        if isinstance(step, int) and not isinstance(step, bool) and step > 0:
            ints = st.integers(
                min_value=None if lo is None else -(-lo // step),
                max_value=None if hi is None else hi // step,
            ).map(lambda n: n * step)
        return ints

    def _floats(self, s: Mapping[str, Any]) -> Strategy:
        if "multipleOf" in s:
            self.exact = False
        return st.floats(
            min_value=s.get("minimum", s.get("exclusiveMinimum")),
            max_value=s.get("maximum", s.get("exclusiveMaximum")),
            exclude_min="exclusiveMinimum" in s and "minimum" not in s,
            exclude_max="exclusiveMaximum" in s and "maximum" not in s,
            allow_nan=False,
            allow_infinity=False,
        )

    def _strings(self, s: Mapping[str, Any]) -> Strategy:
        if s.get("format") in _FORMATS:
            return _FORMATS[s["format"]]()
        if "pattern" in s:
            self.exact = False
            return st.from_regex(s["pattern"]).filter(_ecma_search(s["pattern"]))
        return st.text(min_size=s.get("minLength", 0), max_size=s.get("maxLength"))

    def _arrays(self, s: Mapping[str, Any]) -> Strategy:
        prefix = [self.compile(p) for p in s.get("prefixItems", [])]
        items = s.get("items", True)
        lo, hi = s.get("minItems", 0), s.get("maxItems")
        if items is False:
            hi = len(prefix) if hi is None else min(hi, len(prefix))
        rest = self.compile(items) if items is not False else st.nothing()
        unique = bool(s.get("uniqueItems"))

        @st.composite
        def draw_array(draw: Callable[..., Any]) -> list[Any]:
            top = hi if hi is not None else max(lo, len(prefix)) + 5
            size = draw(st.integers(min_value=lo, max_value=max(lo, top)))
            out: list[Any] = []
            seen: set[str] = set()
            for i in range(size):
                element = draw(prefix[i] if i < len(prefix) else rest)
                if unique:
                    key = _canonical(element)
                    if key in seen:
                        continue  # (shorter, still valid unless below minItems: filtered)
                    seen.add(key)
                out.append(element)
            return out

        if unique and lo:
            self.exact = False
        return draw_array()

    def _objects(self, s: Mapping[str, Any]) -> Strategy:
        props: dict[str, Any] = dict(s.get("properties", {}))
        required = list(s.get("required", []))
        extra = s.get("additionalProperties", True)
        depends: dict[str, list[str]] = dict(s.get("dependentRequired", {}))
        lo, hi = s.get("minProperties", 0), s.get("maxProperties")
        if lo or hi is not None:
            self.exact = False
        compiled = {k: self.compile(v) for k, v in props.items()}
        for name in required:
            compiled.setdefault(name, self.compile(extra) if extra is not False else json_values())
        extra_values = self.compile(extra) if extra is not False else None

        @st.composite
        def draw_object(draw: Callable[..., Any]) -> dict[str, Any]:
            out: dict[str, Any] = {}
            for name in required:
                out[name] = draw(compiled[name])
            for name, strategy in compiled.items():
                if name not in out and draw(st.booleans()):
                    out[name] = draw(strategy)
            if extra_values is not None:
                keys = draw(
                    st.lists(st.text(max_size=8).filter(lambda k: k not in compiled), max_size=2)
                )
                for key in keys:
                    out[key] = draw(extra_values)
            for name in list(out):
                for needed in depends.get(name, []):
                    if needed not in out:
                        fallback = extra_values if extra_values is not None else json_values()
                        out[needed] = draw(compiled.get(needed, fallback))
            return out

        return draw_object()


def _ecma_search(pattern: str) -> Callable[[str], bool]:
    """A pattern's match as ECMA-262 (and the host's RE2) reads it: Python's ``$`` also
    matches before a final newline, which the host does not accept."""
    import re2

    compiled = re2.compile(pattern)
    return lambda value: compiled.search(value) is not None


def _schema_of(target: Any) -> Any:
    """A schema from an SDK ``Action``, a host ``ActionDescriptor`` or a schema itself."""
    schema = getattr(target, "input_schema", target)
    if not isinstance(schema, (Mapping, bool)):
        raise TypeError(f"expected an action or a JSON Schema, got {type(target).__name__}")
    return schema


def _validator(schema: Any) -> Callable[[Any], bool]:
    from jsonschema import Draft202012Validator

    checker = Draft202012Validator.FORMAT_CHECKER
    validator = Draft202012Validator(schema, format_checker=checker)
    return validator.is_valid  # type: ignore[no-any-return]


def from_schema(schema: Any) -> Strategy:
    """Values valid under ``schema`` (draft 2020-12)."""
    compiler = _Compiler(schema)
    strategy = compiler.compile(schema)
    if compiler.exact:
        return strategy
    return strategy.filter(_validator(schema))


def invalid_from_schema(schema: Any) -> Strategy:
    """Values *invalid* under ``schema``: a valid value with one thing broken (a property of
    the wrong kind, a required one dropped, an unexpected one added), or any JSON value; each
    checked to be invalid."""
    valid = from_schema(schema)
    props = dict(schema.get("properties", {})) if isinstance(schema, Mapping) else {}
    required = list(schema.get("required", [])) if isinstance(schema, Mapping) else []

    @st.composite
    def broken(draw: Callable[..., Any]) -> Any:
        value = draw(valid)
        if not isinstance(value, dict):
            return draw(json_values())
        how = draw(st.sampled_from(["wrong", "drop", "add"]))
        if how == "wrong" and props:
            value[draw(st.sampled_from(sorted(props)))] = draw(json_values(4))
        elif how == "drop" and required:
            value.pop(draw(st.sampled_from(required)), None)
        else:
            value[draw(st.text(min_size=1, max_size=8))] = draw(json_values(4))
        return value

    is_valid = _validator(schema)
    anything = json_values(4).filter(lambda v: not isinstance(v, dict))
    return (broken() | anything).filter(lambda v: not is_valid(v))


def inputs(action: Any) -> Strategy:
    """Inputs valid for ``action`` (an SDK ``Action``, a host ``ActionDescriptor`` or an input
    schema): ``@given(inputs(provider.actions["upper"]))``."""
    return from_schema(_schema_of(action))


def invalid_inputs(action: Any) -> Strategy:
    """Inputs ``action``'s schema rejects: for testing that the host refuses them."""
    return invalid_from_schema(_schema_of(action))
