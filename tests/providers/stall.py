"""A hostile provider whose schemas make validating cheap-looking values expensive, for the
host's stall tests. Each attack is bounded (seconds on an unbounded validator, not hours):

- ``backtrack``: ``^(a+)+$`` against 26 ``a`` and a ``!``: ~2**26 steps of a backtracking
  engine (Python's ``re``, which holds the GIL), linear on RE2;
- ``unique``: ``uniqueItems`` over 1,500 objects (18 KB): jsonschema cannot sort objects, so it
  compares every pair;
- ``doubled``: 17 definitions each referring twice to the next: 2**17 ``$ref`` expansions to
  check the integer 1.

The same schemas are the inputs of ``take_*``, for the caller's side.
"""

from __future__ import annotations

from typing import Any

from providers import Provider

provider = Provider("stall", version="1.0")

BACKTRACK = {"type": "string", "pattern": "^(a+)+$"}
HOSTILE_TEXT = "a" * 26 + "!"
UNIQUE = {"type": "array", "uniqueItems": True}
LEVELS = 17


def _doubled() -> dict[str, Any]:
    defs: dict[str, Any] = {
        f"d{i}": {"allOf": [{"$ref": f"#/$defs/d{i + 1}"}, {"$ref": f"#/$defs/d{i + 1}"}]}
        for i in range(LEVELS)
    }
    defs[f"d{LEVELS}"] = {"type": "integer"}
    return {"$defs": defs, "$ref": "#/$defs/d0"}


DOUBLED = _doubled()
EMPTY = {"type": "object", "properties": {}, "additionalProperties": False}


@provider.action(input=EMPTY, output=BACKTRACK)
def backtrack() -> str:
    return HOSTILE_TEXT


@provider.action(input=EMPTY, output=UNIQUE)
def unique() -> list[dict[str, int]]:
    return [{"k": i} for i in range(1500)]


#: ``\S`` this many times: 600 KB, 900 KB in JSON, within the 1 MiB default ``output``.
REGEX_ESCAPES = 300_000


@provider.action(input=EMPTY, output={"type": "string", "format": "regex"})
def regex() -> str:
    return "\\S" * REGEX_ESCAPES


@provider.action(input=EMPTY, output=DOUBLED)
def doubled() -> int:
    return 1


@provider.action(
    input={"type": "object", "properties": {"text": BACKTRACK}, "required": ["text"]},
    output={"type": "integer"},
)
def take_text(text: str) -> int:
    return len(text)


@provider.action(
    input={"type": "object", "properties": {"items": UNIQUE}, "required": ["items"]},
    output={"type": "integer"},
)
def take_items(items: list[Any]) -> int:
    return len(items)


@provider.action(
    input={
        "type": "object",
        "properties": {"n": {"$ref": "#/$defs/d0"}},
        "required": ["n"],
        "$defs": DOUBLED["$defs"],
    },
    output={"type": "integer"},
)
def take_number(n: int) -> int:
    return n


#: ``take_many``: every item of a 12 KB array (small enough to be checked inline, under
#: ``sandbox serve``'s 16 KiB) meets 240 subschemas: about 960,000 keyword evaluations, just
#: within the validation budget, several seconds of validation for one small request.
MANY_CHECKS = {"allOf": [{"type": "integer"}] * 240}
MANY_ITEMS = 4000


@provider.action(
    input={
        "type": "object",
        "properties": {"items": {"type": "array", "items": MANY_CHECKS}},
        "required": ["items"],
    },
    output={"type": "integer"},
)
def take_many(items: list[int]) -> int:
    return len(items)


#: ``nested``: a result of many small containers (3.6 MB of ``[[[[[i]]]]]``): decoding and
#: checking it costs the host about a second per MB, which must not be the loop's second.
NESTED_ITEMS = 200_000


@provider.action(input=EMPTY, output={"type": "array"})
def nested() -> list[Any]:
    return [[[[[i]]]] for i in range(NESTED_ITEMS)]


# One keyword step whose work grows with the value (and the schema): each was paid as a single
# step of the budget, whatever it cost.

#: ``patterns``: 3,000 ``patternProperties`` (44 KB of schema) against a 200-key result (1.7
#: KB, small enough to be judged first on the loop): 600,000 regex searches in one step, 1.2 s
#: of the loop per call.
PATTERNS = {"type": "object", "patternProperties": {f"^p{i}$": {} for i in range(3000)}}
PATTERN_KEYS = 200


@provider.action(input=EMPTY, output=PATTERNS)
def patterns() -> dict[str, int]:
    return {f"k{i}": i for i in range(PATTERN_KEYS)}


#: ``unevaluated_items`` / ``unevaluated_properties``: jsonschema tested each item against a
#: list of the evaluated ones, quadratic (8,000 items took 0.4 s: 60,000 about 22 s).
LEFT_OVER = 60_000
UNEVALUATED_ITEMS = {"type": "array", "items": True, "unevaluatedItems": False}
UNEVALUATED_PROPERTIES = {
    "type": "object", "additionalProperties": True, "unevaluatedProperties": False,
}  # fmt: skip


@provider.action(input=EMPTY, output=UNEVALUATED_ITEMS)
def unevaluated_items() -> list[int]:
    return list(range(LEFT_OVER))


@provider.action(input=EMPTY, output=UNEVALUATED_PROPERTIES)
def unevaluated_properties() -> dict[str, int]:
    return {f"k{i}": 0 for i in range(LEFT_OVER)}


@provider.action(
    input={"type": "object", "properties": {"items": UNEVALUATED_ITEMS}, "required": ["items"]},
    output={"type": "integer"},
)
def take_left_over(items: list[int]) -> int:
    return len(items)


#: ``messages``: 300 branches that each fail on a 1 MB string, and jsonschema writes the
#: instance into every error's message: 300 copies held at once, 290 MB of the host's memory.
MESSAGE_BRANCHES = 300
MESSAGE_CHARS = 1_000_000


@provider.action(input=EMPTY, output={"anyOf": [{"type": "integer"}] * MESSAGE_BRANCHES})
def messages() -> str:
    return "x" * MESSAGE_CHARS


#: ``thrash``: a pattern RE2 accepts, of 18,023 instructions (under the host's 20,000), whose
#: DFA has too many states to keep: RE2 falls back to its NFA, up to one instruction per
#: character, 1.0 s for this 16,000-character result (small enough to be judged on the loop),
#: where the fast path searched it unbounded. Its worst case is now paid for first.
THRASH = {
    "type": "string",
    "pattern": "".join(f"[ab]*{'ab'[i % 2]}[ab]{{999}}" for i in range(18)) + "c",
}
THRASH_TEXT = "ab" * 8000


@provider.action(input=EMPTY, output=THRASH)
def thrash() -> str:
    return THRASH_TEXT


@provider.action(
    input={"type": "object", "properties": {"text": THRASH}, "required": ["text"]},
    output={"type": "integer"},
)
def take_thrash(text: str) -> int:
    return len(text)


#: ``members``: 4,000 declared properties against 5,000 empty objects (a 15 KB result): the
#: fast path looked up every declared property in every object, 20 million lookups, about a
#: second of the loop (the red team's 22,000 properties: 4.7 s). It walks the objects' own
#: members now. (More properties cost the catalog check, off the loop: jsonschema's
#: meta-schema check of 18,000 took 11 s.)
MEMBERS = {
    "type": "array",
    "items": {"type": "object", "properties": {f"p{i}": {} for i in range(4_000)}},
}


@provider.action(input=EMPTY, output=MEMBERS)
def members() -> list[dict[str, int]]:
    return [{} for _ in range(5000)]


@provider.action(
    input={"type": "object", "properties": {"items": MEMBERS}, "required": ["items"]},
    output={"type": "integer"},
)
def take_members(items: list[Any]) -> int:
    return len(items)
