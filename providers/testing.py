"""Hypothesis strategies for an action's input schema: ``inputs(action)``, ``invalid_inputs``.

For provider authors' own ``@given`` tests and for ``sandbox fuzz``. Why our own generator:
hypothesis-jsonschema (the usual choice) supports drafts 04-07 only and breaks on object schemas
with current Hypothesis; Schemathesis 4 has a 2020-12 generator but reaches it only through a
whole OpenAPI document and a heavy import. The schemas the SDK derives use a small subset of
2020-12 (``type``, ``properties``, ``required``, ``additionalProperties``, ``items``,
``prefixItems``, ``minItems``/``maxItems``, ``enum``, ``const``, ``anyOf``); that subset, and
the common keywords around it (bounds, lengths, ``uniqueItems``, local ``$ref``/``$defs``,
``oneOf``/``allOf``, ``dependentRequired``, ``format: uuid``...), is generated *exactly*. For
any keyword the generator does not model, the drawn values are filtered through the host's
own validator (``host.validation``), so a positive example is always valid for the host (a
generator that would have to reject too much fails Hypothesis's health check loudly rather
than lying). A schema no value satisfies, or a ``$ref`` that leads nowhere, is refused by
:func:`from_schema` at once with a ValueError saying why.

Imports Hypothesis, jsonschema and ``host.validation``: never imported by workers or by
``providers`` itself.
"""

from __future__ import annotations

import datetime as dt
import math
import re
import sys
import urllib.parse
from collections.abc import Callable, Mapping
from typing import Any

from hypothesis import reject
from hypothesis import strategies as st
from hypothesis.errors import InvalidArgument

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
_LABEL = st.from_regex(r"[a-z][a-z0-9]{0,9}", fullmatch=True)
_FORMATS: dict[str, Callable[[], Strategy]] = {
    "uuid": lambda: st.uuids().map(str),
    "date": lambda: st.dates().map(lambda d: d.isoformat()),
    "date-time": lambda: st.datetimes(timezones=st.just(dt.UTC)).map(
        lambda t: t.isoformat()
    ),
    "time": lambda: st.times().map(lambda t: t.isoformat() + "Z"),
    "duration": lambda: st.tuples(
        st.integers(0, 10**6), st.sampled_from(["Y", "M", "W", "D", "TH", "TM", "TS"])
    ).map(lambda nu: "P" + nu[1][:-1] + str(nu[0]) + nu[1][-1]),
    "email": lambda: st.tuples(_LABEL, _LABEL, _LABEL).map(lambda t: f"{t[0]}@{t[1]}.{t[2]}"),
    "hostname": lambda: st.lists(_LABEL, min_size=1, max_size=3).map(".".join),
    "uri": lambda: st.tuples(_LABEL, _LABEL, _LABEL).map(
        lambda t: f"https://{t[0]}.example/{t[1]}?q={t[2]}"
    ),
    "uri-reference": lambda: st.lists(_LABEL, max_size=3).map(lambda p: "/" + "/".join(p)),
    "json-pointer": lambda: st.lists(_LABEL, max_size=3).map(lambda p: "".join("/" + x for x in p)),
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


def _canonical(value: Any) -> Any:
    """A hashable form of a JSON value; equal forms <=> equal under JSON Schema's rules (``1``
    and ``1.0`` equal, ``true`` and ``1`` not, key order irrelevant)."""
    if value is True or value is False:
        return ("b", value)
    if isinstance(value, int | float):
        return ("n", value)
    if isinstance(value, str):
        return ("s", value)
    if isinstance(value, list | tuple):
        return ("l", tuple(_canonical(item) for item in value))
    if isinstance(value, dict):
        return ("d", frozenset((key, _canonical(item)) for key, item in value.items()))
    return ("z",)


_NOTHING = st.nothing()
_STRING_KEYWORDS = frozenset({"minLength", "maxLength", "pattern"})
_MAX_FLOAT = sys.float_info.max
_DEEP = 6


def _one_of(strategies: list[Strategy]) -> Strategy:
    """``st.one_of`` without the branches known to be empty (nothing if all are)."""
    live = [s for s in strategies if s is not _NOTHING]
    return st.one_of(live) if live else _NOTHING


def _merge(schema: Mapping[str, Any], branches: list[Any]) -> dict[str, Any] | None:
    """``schema`` with the ``allOf`` branches folded into it (the union of their properties and
    required names, the intersection of their types), None if one of them is ``false``. The
    result only guides generation: values are still checked against the schema itself."""
    merged: dict[str, Any] = {k: v for k, v in schema.items() if k != "allOf"}
    for branch in branches:
        if branch is True:
            continue
        if branch is False:
            return None
        if not isinstance(branch, Mapping):
            continue
        for key, value in branch.items():
            if key not in merged:
                merged[key] = value
            elif key == "properties" and isinstance(value, Mapping):
                props = dict(merged[key])
                for name, sub in value.items():
                    props[name] = sub if name not in props else {"allOf": [props[name], sub]}
                merged[key] = props
            elif key == "required" and isinstance(value, list):
                merged[key] = list(dict.fromkeys([*merged[key], *value]))
            elif key == "type":
                mine = {merged[key]} if isinstance(merged[key], str) else set(merged[key])
                theirs = {value} if isinstance(value, str) else set(value)
                if "number" in mine and "integer" in theirs:
                    mine.add("integer")
                if "number" in theirs and "integer" in mine:
                    theirs.add("integer")
                merged[key] = sorted(mine & theirs)
    return merged


class _Compiler:
    """Turns one schema document into a strategy; ``exact`` becomes False on the first
    keyword it does not model (the caller then filters through the validator)."""

    def __init__(self, root: Any) -> None:
        self.root = root
        self.exact = True
        self._refs: dict[str, Strategy] = {}
        #: Arrays and objects being drawn, one inside the other: past :data:`_DEEP`, each
        #: takes only what it must (a recursive definition would otherwise grow without end).
        self.depth = 0

    def _anchor(self, name: str) -> Any:
        stack = [self.root]
        while stack:
            node = stack.pop()
            if isinstance(node, Mapping):
                if node.get("$anchor") == name or node.get("$dynamicAnchor") == name:
                    return node
                stack.extend(node.values())
            elif isinstance(node, list):
                stack.extend(node)
        raise ValueError(f"$ref {'#' + name!r}: no $anchor {name!r} in the schema")

    def resolve(self, ref: str) -> Any:
        if not ref.startswith("#"):
            raise ValueError(f"only local $ref is supported, got {ref!r}")
        fragment = urllib.parse.unquote(ref[1:])
        if fragment and not fragment.startswith("/"):
            return self._anchor(fragment)
        node = self.root
        for part in fragment.split("/")[1:]:
            part = part.replace("~1", "/").replace("~0", "~")
            try:
                node = node[int(part)] if isinstance(node, list) else node[part]
            except (KeyError, IndexError, ValueError, TypeError):
                raise ValueError(f"$ref {ref!r} points to nothing in the schema") from None
        return node

    def _ref(self, ref: str) -> Strategy:
        if ref in self._refs:
            return self._refs[ref]
        # Compiled now, not when first drawn: what it holds decides ``exact`` (a target with a
        # keyword generated approximately must put the filter on), and a broken $ref must be
        # reported by from_schema itself. The deferred stands for it in recursive definitions.
        seen = [ref]
        target = self.resolve(ref)
        while isinstance(target, Mapping) and "$ref" in target and not (
            set(target) - _ANNOTATIONS - {"$ref"}
        ):
            if target["$ref"] in seen:
                raise ValueError(f"$ref cycle with no schema in between: {' -> '.join(seen)}")
            seen.append(target["$ref"])
            target = self.resolve(target["$ref"])
        holder: dict[str, Strategy] = {}
        self._refs[ref] = st.deferred(lambda: holder["strategy"])
        holder["strategy"] = self.compile(target)
        if holder["strategy"] is _NOTHING:
            self._refs[ref] = _NOTHING
        return self._refs[ref]

    def compile(self, schema: Any) -> Strategy:
        if schema is True or schema == {}:
            return json_values()
        if schema is False:
            return _NOTHING
        if not isinstance(schema, Mapping):
            raise ValueError(f"not a schema: {schema!r}")
        if "not" in schema and _accepts_everything(schema["not"]):
            return _NOTHING  # (``not: {}``: the filter would reject every value drawn)
        unknown = set(schema) - _EXACT - _ANNOTATIONS - {"format", "pattern", "multipleOf"}
        if unknown or ("format" in schema and schema["format"] not in _EXACT_FORMATS):
            self.exact = False
        if "$ref" in schema:
            base = self._ref(schema["$ref"])
            rest = {k: v for k, v in schema.items() if k != "$ref"}
            if set(rest) - _ANNOTATIONS:
                self.exact = False  # (siblings of $ref: left to the validator's filter)
            return base
        if "const" in schema or "enum" in schema:
            if set(schema) - _ANNOTATIONS - {"const" if "const" in schema else "enum"}:
                self.exact = False  # (a sibling may reject a member: filtered)
            if "const" in schema:
                return st.just(schema["const"])
            members = list(schema["enum"])
            return st.sampled_from(members) if members else _NOTHING
        if "allOf" in schema:
            self.exact = False
            merged = _merge(schema, list(schema["allOf"]))
            return _NOTHING if merged is None else self.compile(merged)
        if "anyOf" in schema or "oneOf" in schema:
            branches = schema.get("anyOf", schema.get("oneOf"))
            if "oneOf" in schema or set(schema) - _ANNOTATIONS - {"anyOf"}:
                self.exact = False  # (oneOf's "exactly one", or siblings: filtered)
            return _one_of([self.compile(b) for b in branches])
        types = schema.get("type", list(_TYPES))
        if isinstance(types, str):
            types = [types]
        return _one_of([self._typed(t, schema) for t in types])

    def _typed(self, kind: str, s: Mapping[str, Any]) -> Strategy:
        if kind == "null":
            return st.none()
        if kind == "boolean":
            return st.booleans()
        if kind == "integer":
            return self._integers(s)
        if kind == "number":
            return _one_of([self._integers(s), self._floats(s)])
        if kind == "string":
            return self._strings(s)
        if kind == "array":
            return self._arrays(s)
        if kind == "object":
            return self._objects(s)
        raise ValueError(f"unknown type {kind!r}")

    @staticmethod
    def _bounds(s: Mapping[str, Any]) -> tuple[Any, bool, Any, bool]:
        """The tightest lower and upper bounds, each with whether it is exclusive."""
        lo, lo_open, hi, hi_open = s.get("minimum"), False, s.get("maximum"), False
        if "exclusiveMinimum" in s and (lo is None or s["exclusiveMinimum"] >= lo):
            lo, lo_open = s["exclusiveMinimum"], True
        if "exclusiveMaximum" in s and (hi is None or s["exclusiveMaximum"] <= hi):
            hi, hi_open = s["exclusiveMaximum"], True
        return lo, lo_open, hi, hi_open

    def _integers(self, s: Mapping[str, Any]) -> Strategy:
        low, lo_open, high, hi_open = self._bounds(s)
        lo = None if low is None else (math.floor(low) + 1 if lo_open else math.ceil(low))
        hi = None if high is None else (math.ceil(high) - 1 if hi_open else math.floor(high))
        step = s.get("multipleOf")
        if isinstance(step, float) and step.is_integer() and abs(step) > 2**53:
            # The host, as jsonschema, divides in floats here (``instance / step``): exact
            # multiples of the float's integer value came out "not a multiple" once rounded
            # (an integer of 305 digits against 1e300). Float multiples it finds exact, filtered.
            self.exact = False
            if all(b is None or abs(b) < 1e300 for b in (lo, hi)):
                lo = None if lo is None else math.ceil(lo / step)
                hi = None if hi is None else math.floor(hi / step)
                if lo is not None and hi is not None and lo > hi:
                    return _NOTHING
                big = step
                return st.integers(min_value=lo, max_value=hi).map(lambda n: n * big)
            step = None
        if isinstance(step, float) and step.is_integer():
            step = int(step)
        if step is not None and not isinstance(step, int):
            self.exact = False  # (a fractional step: filtered)
            step = None
        if step is not None:
            lo = None if lo is None else -(-lo // step)
            hi = None if hi is None else hi // step
        if lo is not None and hi is not None and lo > hi:
            return _NOTHING
        ints = st.integers(min_value=lo, max_value=hi)
        return ints if step is None else ints.map(lambda n: n * step)

    def _floats(self, s: Mapping[str, Any]) -> Strategy:
        if "multipleOf" in s:
            self.exact = False
        low, lo_open, high, hi_open = self._bounds(s)
        if (low is not None and low > _MAX_FLOAT) or (high is not None and high < -_MAX_FLOAT):
            return _NOTHING  # (no float there; the integers cover it)
        lo = None if low is None or low < -_MAX_FLOAT else float(low)
        hi = None if high is None or high > _MAX_FLOAT else float(high)
        if lo is not None and lo < low:
            lo, lo_open = math.nextafter(lo, math.inf), False  # (an integer no float equals)
        if hi is not None and hi > high:
            hi, hi_open = math.nextafter(hi, -math.inf), False
        if lo is not None and hi is not None and (lo > hi or (lo == hi and (lo_open or hi_open))):
            return _NOTHING
        if lo is not None and hi is not None and lo_open and hi_open and (
            math.nextafter(lo, math.inf) >= hi
        ):
            return _NOTHING
        return st.floats(
            min_value=lo, max_value=hi, exclude_min=lo_open and lo is not None,
            exclude_max=hi_open and hi is not None, allow_nan=False, allow_infinity=False,
        )

    def _strings(self, s: Mapping[str, Any]) -> Strategy:
        if s.get("format") in _FORMATS:
            if set(s) & _STRING_KEYWORDS:
                self.exact = False  # (a length or a pattern on top of a format: filtered)
            return _FORMATS[s["format"]]()
        lo, hi = s.get("minLength", 0), s.get("maxLength")
        if hi is not None and lo > hi:
            return _NOTHING
        if "pattern" in s:
            self.exact = False
            return st.from_regex(s["pattern"]).filter(_ecma_search(s["pattern"]))
        return st.text(min_size=lo, max_size=hi)

    def _arrays(self, s: Mapping[str, Any]) -> Strategy:
        prefix = [self.compile(p) for p in s.get("prefixItems", [])]
        items = s.get("items", True)
        lo, hi = s.get("minItems", 0), s.get("maxItems")
        if items is False:
            hi = len(prefix) if hi is None else min(hi, len(prefix))
        rest = self.compile(items)
        if rest is _NOTHING:
            hi = len(prefix) if hi is None else min(hi, len(prefix))
        for i, strategy in enumerate(prefix):
            if strategy is _NOTHING:  # (no array reaches past this position)
                hi = i if hi is None else min(hi, i)
                break
        if hi is not None and lo > hi:
            return _NOTHING
        unique = bool(s.get("uniqueItems"))
        contains = s.get("contains")
        wanted = s.get("minContains", 1) if contains is not None else 0
        matching = self.compile(contains) if wanted else _NOTHING
        if wanted and (matching is _NOTHING or (hi is not None and wanted > hi)):
            return _NOTHING  # (no item can match, or more must than an array may hold)

        @st.composite
        def draw_array(draw: Callable[..., Any]) -> list[Any]:
            self.depth += 1
            try:
                return draw_items(draw)
            finally:
                self.depth -= 1

        def draw_items(draw: Callable[..., Any]) -> list[Any]:
            top = hi if hi is not None else max(lo, len(prefix), wanted) + 5
            if self.depth > _DEEP:
                top = max(lo, wanted)
            size = draw(st.integers(min_value=lo, max_value=max(lo, top)))
            out: list[Any] = []
            seen: set[Any] = set()
            for i in range(size):
                # (positions after the prefix get the items ``contains`` needs first)
                if wanted and i >= len(prefix) and size - i <= wanted:
                    element = draw(matching)
                else:
                    element = draw(prefix[i] if i < len(prefix) else rest)
                if unique:
                    key = _canonical(element)
                    if key in seen:
                        continue  # (shorter, still valid unless below minItems: filtered)
                    seen.add(key)
                out.append(element)
            return out

        if unique and (lo or prefix):
            # (a repeat dropped: too short, or the items after it out of their prefix places)
            self.exact = False
        return draw_array()

    def _objects(self, s: Mapping[str, Any]) -> Strategy:
        props: dict[str, Any] = dict(s.get("properties", {}))
        required = list(s.get("required", []))
        extra = s.get("additionalProperties", True)
        if "additionalProperties" not in s and "unevaluatedProperties" in s and not (
            set(s) & {"anyOf", "oneOf", "if", "$ref", "$dynamicRef", "dependentSchemas",
                      "patternProperties"}
        ):
            extra = s["unevaluatedProperties"]  # (nothing else here evaluates a property)
        depends: dict[str, list[str]] = dict(s.get("dependentRequired", {}))
        lo, hi = s.get("minProperties", 0), s.get("maxProperties")
        if lo or hi is not None:
            self.exact = False
        compiled = {k: self.compile(v) for k, v in props.items()}
        extra_values = self.compile(extra)
        names = self._names(s)

        def closure(name: str) -> list[str]:
            out, todo = [], [name]
            while todo:
                n = todo.pop()
                if n not in out:
                    out.append(n)
                    todo.extend(depends.get(n, []))
            return out

        def allowed(name: str) -> bool:
            if name in compiled:
                return compiled[name] is not _NOTHING
            return extra_values is not _NOTHING or "patternProperties" in s

        for name in required:
            if not all(allowed(n) for n in closure(name)):
                return _NOTHING  # (a required name, or one it needs, can have no value)
        if hi is not None and (lo > hi or len(set(required)) > hi):
            return _NOTHING  # (more members needed than an object may have)
        optional = [n for n in compiled if n not in required and all(map(allowed, closure(n)))]

        patterns = [
            (pattern, self.compile(sub)) for pattern, sub in s.get("patternProperties", {}).items()
        ]

        # Names for members only a pattern allows (``additionalProperties: false`` beside
        # ``patternProperties``: no other name may be added, so only ``{}`` came out, and a
        # ``minProperties`` made it unsatisfiable). From Python's regex engine, which reads
        # most ECMA-262 patterns alike; the filter has the last word, under the host's.
        pattern_names: Strategy | None = None
        if patterns and extra_values is _NOTHING:
            sources = []
            for pattern, strategy in patterns:
                try:
                    re.compile(pattern)
                except (re.error, TypeError, ValueError):
                    continue
                if strategy is not _NOTHING:
                    sources.append(st.from_regex(pattern))
            if sources:
                pattern_names = st.one_of(sources)
                self.exact = False

        def value_of(name: str) -> Strategy:
            if name in compiled:
                return compiled[name]
            for pattern, strategy in patterns:  # (a name the pattern matches: its schema)
                if _ecma_search(pattern)(name):
                    return strategy
            return extra_values if extra_values is not _NOTHING else json_values()

        @st.composite
        def draw_object(draw: Callable[..., Any]) -> dict[str, Any]:
            self.depth += 1
            try:
                return draw_members(draw)
            finally:
                self.depth -= 1

        def draw_members(draw: Callable[..., Any]) -> dict[str, Any]:
            out: dict[str, Any] = {}
            deep = self.depth > _DEEP

            def add(name: str) -> None:
                for needed in closure(name):
                    if needed not in out:
                        out[needed] = draw(value_of(needed))

            for name in required:
                add(name)
            for name in optional:
                if deep:
                    break
                if name not in out and (hi is None or len(out) < hi) and draw(st.booleans()):
                    add(name)
            for name in optional:  # (minProperties: more of the declared ones first)
                if len(out) >= lo:
                    break
                add(name)
            if extra_values is not _NOTHING:
                need = max(0, lo - len(out))
                room = (need if deep else 2 + need) if hi is None else max(0, hi - len(out))
                if names is _NOTHING or room == 0:  # (propertyNames: false)
                    if need:
                        reject()
                    keys = []
                else:
                    try:
                        keys = draw(
                            st.lists(
                                names.filter(lambda k: k not in compiled and k not in out),
                                min_size=min(need, room), max_size=room, unique=True,
                            )
                        )
                    except InvalidArgument:  # (fewer distinct names than ``need``: a const)
                        reject()
                for key in keys:
                    if key not in out:
                        out[key] = draw(extra_values)
                        add(key)
            elif pattern_names is not None:
                need = max(0, lo - len(out))
                room = (need if deep else 2 + need) if hi is None else max(0, hi - len(out))
                if room:
                    keys = draw(st.lists(
                        pattern_names.filter(lambda k: k not in compiled and k not in out),
                        min_size=min(need, room), max_size=room, unique=True,
                    ))  # fmt: skip
                    for key in keys:
                        out[key] = draw(value_of(key))
            return out

        return draw_object()

    def _names(self, s: Mapping[str, Any]) -> Strategy:
        """Names for properties the schema does not declare (``propertyNames`` applies)."""
        names = s.get("propertyNames", True)
        if isinstance(names, Mapping) and names:
            keys = self.compile({**names, "type": "string"} if "type" not in names else names)
            return keys.filter(lambda k: isinstance(k, str))
        if names is False:
            return _NOTHING
        return st.text(max_size=8)


def _ecma_search(pattern: str) -> Callable[[str], bool]:
    """A pattern's match as ECMA-262 (and the host's RE2) reads it: Python's ``$`` also
    matches before a final newline, and its ``\\s`` is not ECMA's, which the host follows."""
    from host.bounded import compiled

    search = compiled(pattern).search
    return lambda value: search(value) is not None


def _schema_of(target: Any) -> Any:
    """A schema from an SDK ``Action``, a host ``ActionDescriptor`` or a schema itself."""
    schema = getattr(target, "input_schema", target)
    if not isinstance(schema, (Mapping, bool)):
        raise TypeError(f"expected an action or a JSON Schema, got {type(target).__name__}")
    return schema


def _validator(schema: Any) -> Callable[[Any], bool]:
    """The host's own verdict (``host.validation``): its formats and its patterns (RE2, with
    ECMA-262's ``\\s``) are what the values must pass, and where it differs from jsonschema's
    (whose ``pattern`` is Python's ``re``), a value jsonschema rejects may pass the host."""
    from host.validation import SchemaValidator

    validator = SchemaValidator(schema, what="the schema")
    return lambda value: validator.problem(value) is None


class AcceptsEverything(ValueError):
    """:func:`invalid_from_schema` of a schema that every value satisfies: there is no
    invalid value to draw (not the schema's fault)."""


def from_schema(schema: Any) -> Strategy:
    """Values valid under ``schema`` (draft 2020-12). Raises ValueError, naming why, for a
    schema no value satisfies or one it cannot read (a broken ``$ref``)."""
    compiler = _Compiler(schema)
    strategy = compiler.compile(schema)
    if strategy is _NOTHING:
        raise ValueError("the schema is unsatisfiable: no value can be generated for it")
    if compiler.exact:
        return strategy
    return strategy.filter(_validator(schema))


#: Applicators that, with the schema ``true``, accept every instance.
_NO_OP_WHEN_TRUE = frozenset({
    "items", "additionalProperties", "unevaluatedProperties", "unevaluatedItems",
    "propertyNames", "then", "else", "if",
})  # fmt: skip


def _accepts_everything(schema: Any) -> bool:
    """Whether ``schema`` visibly accepts every value (``true``, only annotations, ``not:
    false``, an ``anyOf`` with such a branch, an ``allOf`` of them)."""
    if schema is True:
        return True
    if not isinstance(schema, Mapping):
        return False
    rest = {
        key for key in set(schema) - _ANNOTATIONS
        if not (key in _NO_OP_WHEN_TRUE and schema[key] is True)
        and not (key in ("then", "else") and "if" not in schema)
        and not (key == "if" and "then" not in schema and "else" not in schema)
    }
    if not rest:
        return True
    if rest == {"not"}:
        return schema["not"] is False
    if rest == {"anyOf"}:
        return any(_accepts_everything(b) for b in schema["anyOf"])
    if rest == {"allOf"}:
        return all(_accepts_everything(b) for b in schema["allOf"])
    return False


def invalid_from_schema(schema: Any) -> Strategy:
    """Values *invalid* under ``schema``: a valid value with one thing broken (a property of
    the wrong kind, a required one dropped, an unexpected one added), or any JSON value; each
    checked to be invalid."""
    if _accepts_everything(schema):
        raise AcceptsEverything("the schema accepts every value: no invalid value can be generated")
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
        elif how == "drop" and (required or value):
            # (a required one, or any: minProperties, dependentRequired, if/then...)
            value.pop(draw(st.sampled_from(required or sorted(value))), None)
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


def _not_null(value: Any) -> bool:
    return value is not None


def invalid_inputs(action: Any) -> Strategy:
    """Inputs ``action``'s schema rejects: for testing that the host refuses them. Never
    ``None``: the host takes it for "no input", ``{}`` (``Host.submit``), which the schema
    may well accept (``sandbox fuzz --mode negative`` reported that as a finding)."""
    return invalid_from_schema(_schema_of(action)).filter(_not_null)
