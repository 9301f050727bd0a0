"""The fast accept-path agrees with jsonschema on generated schemas and instances.

``host.fastschema`` may only serve validation if it accepts and rejects exactly what
``Draft202012Validator`` does. Hypothesis generates schemas from the supported keywords (nested,
combined) and instances that are partly random JSON and partly built to sit near the schema's
boundaries, and every pair is checked both ways.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from jsonschema import Draft202012Validator, FormatChecker

from host.fastschema import compile_schema
from host.validation import SchemaInvalid, SchemaValidator

NAMES = st.sampled_from(["a", "b", "c", "name", "value", "0", ""])
SHORT_TEXT = st.text(alphabet="ab\u00e9\U0001f600 ", max_size=4)
NUMBERS = st.one_of(
    st.integers(-5, 5),
    st.floats(-5, 5, allow_nan=False).map(lambda f: round(f * 2) / 2),
    st.sampled_from([0.0, 1.0, -1.0, 2**53, 10**20]),
)
JSON = st.recursive(
    st.one_of(st.none(), st.booleans(), NUMBERS, SHORT_TEXT),
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(NAMES, inner, max_size=4)
    ),
    max_leaves=12,
)
TYPES = st.sampled_from(["object", "array", "string", "integer", "number", "boolean", "null"])


def _leaf_keywords() -> st.SearchStrategy[dict[str, Any]]:
    count = st.integers(0, 3)
    return st.fixed_dictionaries(
        {},
        optional={
            "type": st.one_of(TYPES, st.lists(TYPES, min_size=1, max_size=3, unique=True)),
            "enum": st.lists(SHORT_TEXT, min_size=1, max_size=3, unique=True),
            "const": SHORT_TEXT,
            "minimum": NUMBERS,
            "maximum": NUMBERS,
            "exclusiveMinimum": NUMBERS,
            "exclusiveMaximum": NUMBERS,
            "minLength": count,
            "maxLength": count,
            "pattern": st.sampled_from(["^a", "b$", "a+", "^$", "\u00e9"]),
            "minItems": count,
            "maxItems": count,
            "minProperties": count,
            "maxProperties": count,
            "required": st.lists(NAMES, max_size=3, unique=True),
            "title": st.just("annotations change nothing"),
            # Inside a subschema, $schema switches jsonschema to that draft's rules.
            "$schema": st.sampled_from(
                [
                    "https://json-schema.org/draft/2020-12/schema",
                    "http://json-schema.org/draft-04/schema#",
                    "http://json-schema.org/draft-07/schema#",
                ]
            ),
        },
    )


def _with_children(children: st.SearchStrategy[Any]) -> st.SearchStrategy[dict[str, Any]]:
    return st.tuples(
        _leaf_keywords(),
        st.fixed_dictionaries(
            {},
            optional={
                "properties": st.dictionaries(NAMES, children, max_size=3),
                "additionalProperties": children,
                "items": children,
            },
        ),
    ).map(lambda parts: {**parts[0], **parts[1]})


SCHEMAS = st.recursive(
    st.one_of(st.booleans(), _leaf_keywords()), _with_children, max_leaves=6
)


def _near(schema: Any) -> st.SearchStrategy[Any]:
    """Instances shaped by the schema (its property names and constants), so that valid ones
    turn up often, not only random JSON that most schemas reject."""
    if not isinstance(schema, dict):
        return JSON
    options: list[st.SearchStrategy[Any]] = [JSON]
    for keyword in ("enum",):
        if keyword in schema:
            options.append(st.sampled_from(schema[keyword]))
    if "const" in schema:
        options.append(st.just(schema["const"]))
    properties = schema.get("properties", {})
    if properties or "required" in schema:
        names = sorted({*properties, *schema.get("required", [])})
        options.append(
            st.fixed_dictionaries(
                {},
                optional={name: _near(properties.get(name, True)) for name in names},
            )
        )
    if "items" in schema:
        options.append(st.lists(_near(schema["items"]), max_size=3))
    return st.one_of(options)


@st.composite
def schema_and_instances(draw: st.DrawFn) -> tuple[Any, list[Any]]:
    schema = draw(SCHEMAS)
    instances = draw(st.lists(_near(schema), min_size=1, max_size=8))
    return schema, instances


def _below_root(schema: Any) -> list[Any]:
    if not isinstance(schema, dict):
        return []
    return [*schema.get("properties", {}).values(), schema.get("additionalProperties"),
            schema.get("items")]


@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(schema_and_instances())
def test_fast_check_agrees_with_jsonschema(case: tuple[Any, list[Any]]) -> None:
    schema, instances = case
    Draft202012Validator.check_schema(schema)
    check = compile_schema(schema)
    if check is None:  # only a $schema below the root may make it fall back to jsonschema
        assert "$schema" in json.dumps(_below_root(schema)), schema
        return
    reference = Draft202012Validator(schema, format_checker=FormatChecker())
    for instance in instances:
        assert check(instance) == reference.is_valid(instance), (schema, instance)


def test_both_verdicts_occur_in_the_generated_cases() -> None:
    """The differential test is only worth something if it sees valid and invalid instances."""
    verdicts: set[bool] = set()

    @settings(max_examples=300, deadline=None, database=None)
    @given(schema_and_instances())
    def collect(case: tuple[Any, list[Any]]) -> None:
        schema, instances = case
        if "$schema" in json.dumps(_below_root(schema)):
            return  # (the fast path falls back for these; and jsonschema's draft-04 rules
            # raise TypeError on a boolean subschema, which draft 4 has not: a flaky failure)
        reference = Draft202012Validator(schema)
        verdicts.update(reference.is_valid(i) for i in instances)

    collect()
    assert verdicts == {True, False}


def test_unsupported_keywords_fall_back_to_jsonschema() -> None:
    for schema in (
        {"$ref": "#/$defs/x", "$defs": {"x": {"type": "string"}}},
        {"format": "email"},
        {"anyOf": [{"type": "string"}]},
        {"properties": {"a": {"format": "date"}}},
        {"enum": [1, True]},
        {"patternProperties": {"^a": {"type": "string"}}},
        {"prefixItems": [{"type": "string"}]},
        {"multipleOf": 0.1},
        {"uniqueItems": True},
        {"properties": {"n": {"$schema": "http://json-schema.org/draft-04/schema#"}}},
    ):
        assert compile_schema(schema) is None, schema


def test_rejections_keep_jsonschema_messages() -> None:
    """The fast path only accepts; a rejected instance gets jsonschema's own message and path."""
    validator = SchemaValidator(
        {
            "type": "object",
            "properties": {"n": {"type": "integer", "minimum": 1}},
            "required": ["n"],
            "additionalProperties": False,
        },
        what="input",
    )
    assert validator.problem({"n": 3}) is None
    problem = validator.problem({"n": 0})
    assert problem is not None
    assert (problem.path, problem.message) == ("$.n", "0 is less than the minimum of 1")
    problem = validator.problem({"n": 1, "x": 2})
    assert problem is not None and "Additional properties are not allowed" in problem.message


def _cache_key(schema: Any) -> bytes:
    canonical = json.dumps(schema, sort_keys=True, separators=(",", ":")).encode()
    return hashlib.sha256(canonical).digest()


def test_a_checked_schema_is_remembered_and_an_invalid_one_never_is() -> None:
    """The meta-schema check is cached by the hash of the schema's canonical JSON; only valid
    schemas go in, so an invalid one is refused every time it comes back."""
    from host import validation

    schema = {"type": "object", "properties": {"zz_cache_probe": {"type": "string"}}}
    SchemaValidator(schema, what="input")
    assert _cache_key(schema) in validation._CHECKED
    reordered = {"properties": {"zz_cache_probe": {"type": "string"}}, "type": "object"}
    assert SchemaValidator(reordered, what="input").problem({"zz_cache_probe": 1}) is not None
    bad = {"type": "no-such-type"}
    for _ in range(2):
        with pytest.raises(SchemaInvalid):
            SchemaValidator(bad, what="input")
    assert _cache_key(bad) not in validation._CHECKED


def test_a_big_schema_is_remembered_too() -> None:
    """A schema near the size limit was never kept (its JSON as the key: 4,096 of them would
    have been a GiB), so its meta-schema check, the costliest, ran again at every load of it;
    its hash is kept now, 32 bytes whatever its size."""
    from host import validation

    properties = {f"zz_big_{i}": {"type": "string"} for i in range(4000)}
    schema = {"type": "object", "properties": properties}
    assert len(json.dumps(schema)) > 64 * 1024
    SchemaValidator(schema, what="input")
    assert _cache_key(schema) in validation._CHECKED
    assert all(len(key) == 32 for key in validation._CHECKED)
