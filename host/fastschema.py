"""A fast accept-path for the common, simple JSON Schemas; jsonschema stays the authority.

Every call validates its input and its output. jsonschema walks a schema through generic keyword
dispatch, which costs several microseconds even for ``{"type": "object", ...}`` - a large part of a
call's host-side cost. Most action schemas (the SDK derives them from annotations) use a handful
of keywords, so :func:`compile_schema` turns such a schema into nested Python closures that answer
one question: *is this instance valid?*

The contract, checked by a Hypothesis differential test against ``Draft202012Validator`` on
generated schemas and instances (``tests/test_fastschema.py``):

- ``compile_schema`` returns None for any schema using a keyword outside :data:`SUPPORTED` and
  :data:`ANNOTATIONS` (``$ref``, ``format``, ``anyOf``, ``patternProperties``...). The caller then
  uses jsonschema alone.
- A compiled check returns exactly what ``Draft202012Validator(schema).is_valid`` returns, but
  for a value whose pattern searches would cost more than :data:`FAST_PATTERN_WORK` in the
  worst case (characters times RE2 instructions, see ``host.bounded.MAX_PATTERN_WORK``):
  then it gives up and says False, and the bounded validator, which pays for each search from
  its budget, decides. Every other check is linear in the value: the fast path runs on the
  host's loop for small results, unbounded by any budget.

Only acceptance is decided here. A rejected instance goes to jsonschema for the error message (the
user sees jsonschema's own words), so a disagreement could at worst cost time, never let an
invalid instance through - which is what the differential test guards.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable, Sized
from typing import Any

import re2

from host.bounded import QUICK_PATTERN_WORK, compiled, program_size

Check = Callable[[Any], bool]

#: Pattern work (characters searched times the pattern's RE2 instructions) one fast check may
#: do: ~3-6 ms in RE2's NFA, its worst case, on this machine (a search of a 79,506-instruction
#: program took 2.3 ms per character, on the loop, when this was unbounded).
FAST_PATTERN_WORK = QUICK_PATTERN_WORK


class _PatternWork(threading.local):
    left = 0


_WORK = _PatternWork()


class _TooCostly(Exception):
    """The value's pattern searches would cost more than :data:`FAST_PATTERN_WORK`."""

#: Keywords with validation meaning that this module implements.
SUPPORTED = frozenset(
    {
        "type",
        "properties",
        "required",
        "additionalProperties",
        "items",
        "enum",
        "const",
        "minimum",
        "maximum",
        "exclusiveMinimum",
        "exclusiveMaximum",
        "minLength",
        "maxLength",
        "pattern",
        "minItems",
        "maxItems",
        "minProperties",
        "maxProperties",
    }
)
#: Keywords without validation meaning (draft 2020-12 annotations and metadata). ``$schema`` is
#: one only at the root, where the validator's draft is fixed: inside a subschema jsonschema
#: switches to the draft it names (in draft 4, ``1.0`` is no integer), so there it is unsupported.
ANNOTATIONS = frozenset(
    {
        "$comment",
        "title",
        "description",
        "default",
        "examples",
        "deprecated",
        "readOnly",
        "writeOnly",
    }
)


class _Unsupported(Exception):
    """The schema uses something this module does not implement: use jsonschema alone."""


def compile_schema(schema: Any) -> Check | None:
    """A check equivalent to jsonschema's ``is_valid`` for ``schema``, or None if unsupported.

    ``schema`` must already have passed ``Draft202012Validator.check_schema``.
    """
    if isinstance(schema, dict) and "$schema" in schema:
        schema = {k: v for k, v in schema.items() if k != "$schema"}
    patterns: list[str] = []
    try:
        check = _compile(schema, patterns)
    except (_Unsupported, re.error, re2.error, RecursionError):
        return None
    if not patterns:
        return check

    def bounded(value: Any) -> bool:
        _WORK.left = FAST_PATTERN_WORK
        try:
            return check(value)
        except _TooCostly:
            return False

    return bounded


def _is_integer(value: Any) -> bool:
    if isinstance(value, bool):
        return False
    return isinstance(value, int) or (isinstance(value, float) and value.is_integer())


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


_TYPE_TESTS: dict[str, Check] = {
    "object": lambda v: isinstance(v, dict),
    "array": lambda v: isinstance(v, list),
    "string": lambda v: isinstance(v, str),
    "integer": _is_integer,
    "number": _is_number,
    "boolean": lambda v: isinstance(v, bool),
    "null": lambda v: v is None,
}


def _accept(_: Any) -> bool:
    return True


def _reject(_: Any) -> bool:
    return False


def _compile(schema: Any, patterns: list[str]) -> Check:
    """``patterns``: the patterns compiled into the check are added to it."""
    if schema is True:
        return _accept
    if schema is False:
        return _reject
    if not isinstance(schema, dict):
        raise _Unsupported
    unknown = schema.keys() - SUPPORTED - ANNOTATIONS
    if unknown:
        raise _Unsupported
    checks: list[Check] = []
    if "type" in schema:
        checks.append(_type_check(schema["type"]))
    if "enum" in schema:
        checks.append(_string_choice(schema["enum"]))
    if "const" in schema:
        checks.append(_string_choice([schema["const"]]))
    checks.extend(_number_checks(schema))
    checks.extend(_string_checks(schema, patterns))
    checks.extend(_array_checks(schema, patterns))
    checks.extend(_object_checks(schema, patterns))
    if not checks:
        return _accept
    if len(checks) == 1:
        return checks[0]
    all_checks = tuple(checks)
    return lambda value: all(check(value) for check in all_checks)


def _type_check(types: Any) -> Check:
    names = [types] if isinstance(types, str) else list(types)
    tests = tuple(_TYPE_TESTS[name] for name in names)
    if len(tests) == 1:
        return tests[0]
    return lambda value: any(test(value) for test in tests)


def _string_choice(values: list[Any]) -> Check:
    """``enum``/``const`` of strings only; other values compare by jsonschema's own equality
    rules (``1 == True`` is false there, ``[1] == [1.0]`` true...), which are not copied here."""
    if not values or not all(isinstance(v, str) for v in values):
        raise _Unsupported
    allowed = frozenset(values)
    return lambda value: isinstance(value, str) and value in allowed


def _number_checks(schema: dict[str, Any]) -> list[Check]:
    checks: list[Check] = []
    if "minimum" in schema:
        low = schema["minimum"]
        checks.append(lambda v: not _is_number(v) or v >= low)
    if "maximum" in schema:
        high = schema["maximum"]
        checks.append(lambda v: not _is_number(v) or v <= high)
    if "exclusiveMinimum" in schema:
        xlow = schema["exclusiveMinimum"]
        checks.append(lambda v: not _is_number(v) or v > xlow)
    if "exclusiveMaximum" in schema:
        xhigh = schema["exclusiveMaximum"]
        checks.append(lambda v: not _is_number(v) or v < xhigh)
    return checks


def _size_checks(schema: dict[str, Any], kind: type[Sized], fewest: str, most: str) -> list[Check]:
    """``minLength``/``maxLength`` and the like: ``len`` bounds that apply to one JSON type only
    (``len`` of a str counts code points, as jsonschema does)."""
    checks: list[Check] = []
    if fewest in schema:
        low = schema[fewest]
        checks.append(lambda v: not isinstance(v, kind) or len(v) >= low)
    if most in schema:
        high = schema[most]
        checks.append(lambda v: not isinstance(v, kind) or len(v) <= high)
    return checks


def _string_checks(schema: dict[str, Any], patterns: list[str]) -> list[Check]:
    checks = _size_checks(schema, str, "minLength", "maxLength")
    if "pattern" in schema:
        # RE2, as the host's jsonschema (``host.bounded``): linear time, whatever the pattern,
        # but up to one step per instruction of its program per character: paid for.
        pattern = schema["pattern"]
        search, size = compiled(pattern).search, program_size(pattern)
        patterns.append(pattern)

        def matches(v: Any) -> bool:
            if not isinstance(v, str):
                return True
            left = _WORK.left - len(v) * size
            if left < 0:
                raise _TooCostly
            _WORK.left = left
            return search(v) is not None

        checks.append(matches)
    return checks


def _array_checks(schema: dict[str, Any], patterns: list[str]) -> list[Check]:
    checks = _size_checks(schema, list, "minItems", "maxItems")
    if "items" in schema:
        item = _compile(schema["items"], patterns)
        checks.append(lambda v: not isinstance(v, list) or all(item(x) for x in v))
    return checks


def _object_checks(schema: dict[str, Any], patterns: list[str]) -> list[Check]:
    checks = _size_checks(schema, dict, "minProperties", "maxProperties")
    if "required" in schema:
        required = tuple(schema["required"])
        checks.append(lambda v: not isinstance(v, dict) or all(k in v for k in required))
    properties = {
        name: _compile(sub, patterns) for name, sub in schema.get("properties", {}).items()
    }
    if properties:
        # Over the value's members, not the schema's properties: linear in the value (22,000
        # declared properties against 5,000 empty objects were 110 million lookups, 4.7 s on
        # the loop, for a 15 KB result).
        lookup = properties.get

        def members_match(v: Any) -> bool:
            if not isinstance(v, dict):
                return True
            for name, member in v.items():
                check = lookup(name)
                if check is not None and not check(member):
                    return False
            return True

        checks.append(members_match)
    if "additionalProperties" in schema:
        extra = _compile(schema["additionalProperties"], patterns)
        if extra is not _accept:
            checks.append(
                lambda v: not isinstance(v, dict)
                or all(extra(value) for key, value in v.items() if key not in properties)
            )
    return checks
