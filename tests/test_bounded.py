"""``host.bounded``: the same verdicts as jsonschema, in bounded time, on every path a schema
can send a value down (no sandbox here: these are the validator's own properties)."""

from __future__ import annotations

import time
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from jsonschema._utils import equal as jsonschema_equal

from host.bounded import schema_problem, uniq
from host.validation import SchemaInvalid, SchemaValidator
from providers.testing import from_schema

SLOW_KEY = "a" * 30 + "!"
json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-3, 3) | st.sampled_from([0.0, 1.0, 1.5, -2.0])
    | st.sampled_from(["", "a", "b"]),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.sampled_from("ab"), inner,
                                                                max_size=2),
    max_leaves=8,
)


def pairwise_unique(items: list[Any]) -> bool:
    """uniqueItems by its definition: no two items equal under JSON Schema's equality (which
    jsonschema's ``equal`` implements: 1 == 1.0, but 0 != false)."""
    return not any(
        jsonschema_equal(a, b) for i, a in enumerate(items) for b in items[i + 1 :]
    )


@settings(max_examples=300, deadline=None)
@given(st.lists(json_values, max_size=6))
def test_unique_items_agrees_with_the_definition(items: list[Any]) -> None:
    """The reference is the quadratic definition, not jsonschema's own ``uniq``: that sorts
    the items and compares neighbours, and Python's sort takes [0] and [false] for equal, so
    jsonschema 4.26 finds [[0], [false], [0]] unique (a sharded run's Hypothesis found it)."""
    assert uniq(items) == pairwise_unique(items), items


def test_a_duplicate_that_jsonschemas_sort_hides_is_found() -> None:
    assert uniq([[0], [False], [0]]) is False
    assert uniq([[0], [False]]) is True
    assert uniq([{"a": 1}, {"a": True}, {"a": 1.0}]) is False


@pytest.mark.parametrize(
    "schema, instance, valid",
    [
        ({"pattern": "^(a+)+$"}, SLOW_KEY, False),
        ({"patternProperties": {"^(a+)+$": {}}, "additionalProperties": False}, {SLOW_KEY: 1},
         False),
        ({"patternProperties": {"^(a+)+$": {}}, "unevaluatedProperties": False}, {SLOW_KEY: 1},
         False),
        ({"propertyNames": {"pattern": "^(a+)+$"}}, {SLOW_KEY: 1}, False),
        ({"uniqueItems": True}, [{"k": i} for i in range(3000)], True),
        ({"uniqueItems": True}, [{"k": i} for i in range(3000)] + [{"k": 0.0}], False),
    ],
)
def test_every_regex_and_unique_items_path_is_linear(
    schema: dict[str, Any], instance: Any, valid: bool
) -> None:
    """Each of these took seconds (or far longer) with jsonschema's own keywords."""
    validator = SchemaValidator(schema, what="test")
    start = time.monotonic()
    assert (validator.problem(instance) is None) == valid
    assert time.monotonic() - start < 1.0


def test_refs_inside_unevaluated_properties_are_counted() -> None:
    defs: dict[str, Any] = {
        f"d{i}": {"allOf": [{"$ref": f"#/$defs/d{i + 1}"}, {"$ref": f"#/$defs/d{i + 1}"}]}
        for i in range(24)
    }
    defs["d24"] = {"properties": {"a": {}}}
    schema = {"$defs": defs, "$ref": "#/$defs/d0", "unevaluatedProperties": False}
    validator = SchemaValidator(schema, what="test")
    start = time.monotonic()
    problem = validator.problem({"a": 1})
    assert time.monotonic() - start < 5.0
    assert problem is not None and "too costly" in problem.message


@pytest.mark.parametrize(
    "schema, reason",
    [
        ({"properties": {"x": {"$schema": "http://json-schema.org/draft-07/schema#"}}},
         "not allowed there"),
        ({"$schema": "http://json-schema.org/draft-07/schema#"}, "not allowed there"),
        ({"pattern": "(a)\\1"}, "RE2"),
        ({"patternProperties": {"(?<=a)b": {}}}, "RE2"),
        ({"required": ["a", 1] * 10}, "list of strings"),
        ({"items": {"items": {}}, "enum": [{"$schema": 1}]}, "not allowed there"),
        ({"items": {"items": {"pattern": "^[a-z]+$"}}}, None),
    ],
)
def test_schema_problems(schema: dict[str, Any], reason: str | None) -> None:
    found = schema_problem(schema, 100)
    if reason is None:
        assert found is None
    else:
        assert found is not None and reason in found
        with pytest.raises(SchemaInvalid, match="test"):
            SchemaValidator(schema, what="test")


def test_depth_and_size_limits() -> None:
    deep: dict[str, Any] = {}
    node = deep
    for _ in range(70):
        node["not"] = {}
        node = node["not"]
    assert "deeper" in (schema_problem(deep, 100) or "")
    assert "limit" in (schema_problem({}, 300 * 1024) or "")


def test_the_root_dialect_is_accepted() -> None:
    validator = SchemaValidator(
        {"$schema": "https://json-schema.org/draft/2020-12/schema", "$ref": "#/$defs/a",
         "$defs": {"a": {"type": "integer"}}},
        what="test",
    )
    assert validator.problem(1) is None
    assert validator.problem("x") is not None


def test_format_regex_of_a_huge_value_is_bounded() -> None:
    """``format: regex`` compiled the value with Python's ``re``, whose parser is Python code: a
    300 KB pattern took 3 s. RE2 compiles it in linear time; a long one RE2 cannot compile is
    not taken for a regex."""
    validator = SchemaValidator({"type": "string", "format": "regex"}, what="test")
    start = time.monotonic()
    assert validator.problem("(a|b)*" * 50000) is None
    assert validator.problem("(?=a)" * 2000) is not None
    assert validator.problem("(?=a)b") is None  # short: Python's re decides, as before
    assert time.monotonic() - start < 2.0


@pytest.mark.parametrize(
    ("value", "regex"),
    [("(?i)a", False), ("\\Aa\\z", False), ("(?P<n>a)", False), ("\\x{41}", False),
     ("\\u{41}", True)],
)
def test_format_regex_is_ecma_262s(value: str, regex: bool) -> None:
    """RE2's own syntax compiled, so ``format: regex`` took it for a regex; ECMA-262 (the
    dialect the format names) has no inline flags, \\A, \\z, (?P<name> or \\x{...}."""
    validator = SchemaValidator({"type": "string", "format": "regex"}, what="test")
    assert (validator.problem(value) is None) is regex
    assert validator.problem("(a)\\1") is None  # ECMA-262's, though RE2 cannot run it


#: ECMA-262's \s (WhiteSpace and LineTerminator), which RE2's \s ([\t\n\f\r ]) is not.
ECMA_SPACES = ["\t", "\n", "\x0b", "\f", "\r", " ", "\u00a0", "\u1680", "\u2000", "\u200a",
               "\u2028", "\u2029", "\u202f", "\u205f", "\u3000", "\ufeff"]


@pytest.mark.parametrize(
    ("pattern", "spaces"),
    [(r"^\s$", True), (r"^[\s]$", True), (r"^[x\s]$", True), (r"^\S$", False),
     (r"^[^\s]$", False)],
)
def test_pattern_space_classes_are_ecma_262s(pattern: str, spaces: bool) -> None:
    validator = SchemaValidator({"type": "string", "pattern": pattern}, what="test")
    for char in ECMA_SPACES:
        assert (validator.problem(char) is None) is spaces, (pattern, char)
        assert validator.quick(char) is spaces, (pattern, char)
    for char in ["a", "\x1c", "\x85", "\u200b"]:  # (Python's \s has \x1c and \x85; ECMA not)
        assert (validator.problem(char) is None) is not spaces, (pattern, char)
        assert validator.quick(char) is not spaces, (pattern, char)


@pytest.mark.parametrize("pattern", [r"^.$", r"^a.c$", r"^(.)+$"])
def test_pattern_dot_is_ecma_262s(pattern: str) -> None:
    """ECMA-262's ``.`` matches anything but a line terminator (\\n, \\r, U+2028, U+2029);
    RE2's (and Python's) only excludes \\n. ``[.]`` stays a dot."""
    validator = SchemaValidator({"type": "string", "pattern": pattern}, what="test")
    for char in ["\n", "\r", "\u2028", "\u2029"]:
        value = {"^.$": char, "^a.c$": f"a{char}c", "^(.)+$": f"ab{char}"}[pattern]
        assert validator.problem(value) is not None, (pattern, value)
        assert not validator.quick(value), (pattern, value)
    for char in ["x", "\t", "\x0b", "\u0085", "\U0001f600", "."]:
        value = {"^.$": char, "^a.c$": f"a{char}c", "^(.)+$": f"ab{char}"}[pattern]
        assert validator.problem(value) is None, (pattern, value)
        assert validator.quick(value), (pattern, value)
    dots = SchemaValidator({"type": "string", "pattern": r"^[.]\.$"}, what="test")
    assert dots.problem("..") is None and dots.problem("ab") is not None


def test_false_branches_pay_a_step_each_and_their_messages() -> None:
    """A ``false`` subschema is no keyword, so nothing counted it, and its error writes the
    instance into its message: 5,000 ``false`` branches (25 KB of schema) against a 100 KB
    string were 500 MB of messages. Each branch is a step now, each message pays for itself,
    and the validation stops once it has paid for 16 M characters of them."""
    validator = SchemaValidator({"anyOf": [False] * 5000}, what="test")
    problem = validator.problem("x" * 100_000)
    assert problem is not None and "too costly" in str(problem), problem
    # A few such branches are still just invalid, with jsonschema's own message.
    small = SchemaValidator({"anyOf": [False] * 3}, what="test").problem("x" * 100_000)
    assert small is not None and "not valid under any" in str(small), small


def test_pattern_properties_pay_per_key_and_pattern() -> None:
    """Within the budget the verdict is jsonschema's; past it, too costly (not a slow yes)."""
    schema = {"patternProperties": {f"^p{i}$": {"type": "integer"} for i in range(100)}}
    validator = SchemaValidator(schema, what="test")
    assert validator.problem({"p7": 1, "q": "x"}) is None
    assert "p7" in str(validator.problem({"p7": "x"}))
    assert validator.trial({f"k{i}": 0 for i in range(100)}, 2000, 1.0) is False  # undecided


@pytest.mark.parametrize(
    ("step", "instance", "multiple"),
    [
        (0.5, 10**400, True),  # jsonschema: OverflowError dividing the int by the float
        (0.1, 10**4000, False),  # (0.1 as a double is not a divisor of 10**4000)
        (2, 10**5000, True),  # a repr of over 4,300 digits raises ValueError
        (2, 10**5000 + 1, False),
        (10**400, 0.5, False),  # 0.5 % 10**400: OverflowError
        (10**400, 0, True),
        (1e-300, 1e300, False),  # the float quotient is inf: jsonschema's own fallback
        (3, 9, True),  # ordinary values keep jsonschema's verdicts
        (0.5, 1.5, True),
        (0.1, 0.3, False),
    ],
    ids=lambda v: repr(v) if not isinstance(v, int) or v.bit_length() < 64 else "big",
)
def test_multiple_of_gives_a_verdict_for_any_size(
    step: float | int, instance: float | int, multiple: bool
) -> None:
    """A value too large for a float was "the schema cannot be applied" (a valid input
    refused as InputInvalid); now every number gets the exact verdict, with a short message."""
    problem = SchemaValidator({"multipleOf": step}, what="t").problem(instance)
    if multiple:
        assert problem is None
    else:
        assert problem is not None
        assert "is not a multiple of" in problem.message, problem.message
        assert len(problem.message) < 200, problem.message


def _at_depth(depth: int, function: Any) -> Any:
    return _at_depth(depth - 1, function) if depth else function()


@pytest.mark.parametrize("applicator", ["not", "anyOf"])
def test_a_ref_cycle_is_a_problem_at_any_stack_depth(applicator: str) -> None:
    """A ``$ref`` cycling through ``not`` (or ``anyOf``) recurses to the interpreter's limit.
    Where the limit hits inside ``referencing``'s Rust code, it comes out as a pyo3
    PanicException, which is no Exception: it escaped ``problem`` and ``trial`` (on the host's
    loop thread it would end the loop). A local cycle is refused with the schema now
    (test_ref_cycles_that_never_descend_are_refused); one through an ``$id`` is not followed
    there, and whatever the caller's stack depth its verdict is a problem (or undecided, for
    the trial)."""
    uri = "https://example.com/a"
    inner: Any = {"$ref": uri}
    body = {"not": inner} if applicator == "not" else {"anyOf": [inner, {"type": "string"}]}
    validator = SchemaValidator({"$defs": {"a": {"$id": uri, **body}}, "$ref": uri}, what="t")
    for depth in range(0, 90, 3):
        problem = _at_depth(depth, lambda: validator.problem(1))
        assert problem is not None and "cannot be applied" in problem.message, (depth, problem)
        assert _at_depth(depth, lambda: validator.trial(1, 2000, 1.0)) is not None, depth


_NOT_CYCLE = {"$defs": {"a": {"not": {"$ref": "#/$defs/a"}}}, "$ref": "#/$defs/a"}


@pytest.mark.parametrize(
    ("schema", "cycle"),
    [
        (_NOT_CYCLE, "#/$defs/a -> #/$defs/a/not -> #/$defs/a"),
        ({"$ref": "#", "type": "integer"}, "# -> #"),
        ({"if": {"type": "integer"}, "then": {"$ref": "#"}}, "#/then -> # -> #/then"),
        ({"$defs": {"a": {"$anchor": "x", "allOf": [{"$ref": "#x"}]}}, "$ref": "#/$defs/a"},
         "#/$defs/a -> #/$defs/a/allOf/0 -> #/$defs/a"),
        ({"$defs": {"a": {"$ref": "#/$defs/b"}, "b": {"oneOf": [{"$ref": "#/$defs/a"}]}},
          "$ref": "#/$defs/a"}, "#/$defs/a -> #/$defs/b -> #/$defs/b/oneOf/0 -> #/$defs/a"),
        ({"$dynamicAnchor": "n", "anyOf": [{"$dynamicRef": "#n"}]}, "#/anyOf/0 -> #"),
        ({"$defs": {"a/b": {"allOf": [{"$ref": "#/$defs/a~1b"}]}}, "$ref": "#/$defs/a~1b"},
         "#/$defs/a~1b -> "),
    ],
)  # fmt: skip
def test_ref_cycles_that_never_descend_are_refused(schema: Any, cycle: str) -> None:
    """A schema applying itself to the same value without end is refused when it is read,
    naming the cycle: it could only end in a RecursionError for some values (and the fuzz
    generator could not build a strategy for it: "Cannot define a deferred strategy to be
    itself", a Hypothesis internal error at draw time)."""
    with pytest.raises(SchemaInvalid, match="without end") as caught:
        SchemaValidator(schema, what="t")
    assert cycle in str(caught.value)
    with pytest.raises(ValueError, match="without end"):
        from_schema(schema)


@pytest.mark.parametrize(
    "schema",
    [
        {"$defs": {"n": {"type": "array", "items": {"$ref": "#/$defs/n"}}}, "$ref": "#/$defs/n"},
        {"type": "object", "properties": {"l": {"$ref": "#"}, "r": {"$ref": "#"}}},
        {"$defs": {"a": {"not": {"$ref": "#/$defs/a"}}}, "type": "integer"},  # (never applied)
        {"$dynamicAnchor": "n", "type": "array", "items": {"$dynamicRef": "#n"}},
        {"$defs": {"a": {"type": "array", "items": {"$ref": "#/$defs/b"}},
                   "b": {"anyOf": [{"$ref": "#/$defs/a"}, {"type": "integer"}]}},
         "$ref": "#/$defs/a"},
        {"propertyNames": {"$ref": "#/$defs/s"}, "$defs": {"s": {"type": "string"}}},
        {"propertyNames": {"$ref": "#"}},  # (the names are strings: no propertyNames there)
        {"then": {"$ref": "#"}},  # (no ``if``: ``then`` is never applied)
    ],
)  # fmt: skip
def test_recursion_through_a_part_of_the_value_is_accepted(schema: Any) -> None:
    SchemaValidator(schema, what="t")
