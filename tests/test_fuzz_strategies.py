"""providers.testing: every positive example is valid under the HOST's validator, every
negative one is not, over the schemas the SDK derives and a corpus of draft 2020-12 schemas."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal, TypedDict

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from host.validation import SchemaValidator
from providers import Provider
from providers.examples import text
from providers.testing import from_schema, inputs, invalid_from_schema

sdk = Provider("derived")


class Point(TypedDict):
    x: int
    y: float


@sdk.action
def scalars(a: str, b: int, c: float, d: bool, e: None = None) -> int:
    return 0


@sdk.action
def containers(
    xs: list[int], m: dict[str, str], t: tuple[int, str], opt: int | None = None
) -> list[str]:
    return []


@sdk.action
def literals(mode: Literal["a", "b"], flags: Sequence[Literal["x", "y"]] = ()) -> Point:
    return Point(x=0, y=0.0)


@sdk.action
def nested(p: Point, ps: list[Point], u: int | str = 0) -> None:
    return None


CORPUS: list[dict[str, Any]] = [
    {"type": "object", "properties": {"id": {"type": "string", "format": "uuid"}},
     "required": ["id"]},
    {"type": "object", "properties": {"pair": {"type": "array", "prefixItems": [
        {"type": "integer"}, {"type": "string"}], "items": False, "minItems": 2}},
     "required": ["pair"], "additionalProperties": False},
    {"type": "object", "properties": {"a": {"type": "integer"}, "b": {"type": "integer"}},
     "dependentRequired": {"a": ["b"]}},
    {"type": "object", "properties": {"a": {"type": "string"}},
     "unevaluatedProperties": False},
    {"type": "object", "$defs": {"node": {"type": "object", "properties": {
        "value": {"type": "integer"}, "children": {"type": "array", "items": {"$ref":
        "#/$defs/node"}, "maxItems": 2}}, "required": ["value"], "additionalProperties": False}},
     "properties": {"tree": {"$ref": "#/$defs/node"}}, "required": ["tree"]},
    {"type": "object", "properties": {"n": {"type": "integer", "minimum": 3,
        "exclusiveMaximum": 10, "multipleOf": 3}, "x": {"type": "number", "minimum": 0,
        "maximum": 1}}, "required": ["n", "x"]},
    {"type": "object", "properties": {"s": {"type": "string", "minLength": 2, "maxLength": 5},
        "code": {"type": "string", "pattern": "^[A-Z]{3}-[0-9]{2}$"}},
     "required": ["s", "code"]},
    {"type": "object", "properties": {"tags": {"type": "array", "items": {"enum": [1, 2, 3]},
        "uniqueItems": True}, "k": {"const": "fixed"}}, "required": ["tags"]},
    {"type": "object", "properties": {"v": {"oneOf": [{"type": "integer"},
        {"type": "string", "maxLength": 3}]}, "w": {"anyOf": [{"type": "null"},
        {"type": "boolean"}]}}, "required": ["v"], "minProperties": 1, "maxProperties": 2},
    {"type": "object", "patternProperties": {"^x_": {"type": "integer"}},
     "additionalProperties": False},
    {"type": "object", "properties": {"when": {"type": "string", "format": "date"}},
     "required": ["when"]},
]

SCHEMAS = [a.input_schema for a in sdk.actions.values()] + [
    a.input_schema for a in text.provider.actions.values()
] + CORPUS
IDS = [f"sdk.{n}" for n in sdk.actions] + [f"text.{n}" for n in text.provider.actions] + [
    f"corpus{i}" for i in range(len(CORPUS))
]
FAST = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@pytest.mark.parametrize("schema", SCHEMAS, ids=IDS)
@FAST
@given(data=st.data())
def test_positive_examples_are_valid_for_the_host(schema: dict[str, Any], data: Any) -> None:
    validator = SchemaValidator(schema, what="test")
    value = data.draw(from_schema(schema))
    assert validator.problem(value) is None, value


@pytest.mark.parametrize("schema", SCHEMAS, ids=IDS)
@FAST
@given(data=st.data())
def test_negative_examples_are_invalid_for_the_host(schema: dict[str, Any], data: Any) -> None:
    validator = SchemaValidator(schema, what="test")
    value = data.draw(invalid_from_schema(schema))
    assert validator.problem(value) is not None, value


@FAST
@given(inputs(text.provider.actions["regex_search"]))
def test_inputs_takes_an_sdk_action(value: dict[str, Any]) -> None:
    assert set(value) >= {"pattern", "text"}
    assert set(value.get("flags", [])) <= {"IGNORECASE", "MULTILINE", "DOTALL"}
