"""Bounded JSON Schema validation: no schema a provider declares, applied to any value, can cost
more than a fixed amount of work.

Schemas come from providers (untrusted), and so do results. jsonschema as it is has three ways to
spend time out of proportion to its input, all measured on the host's loop thread before this
module existed: ``pattern`` uses Python's backtracking ``re`` (``^(a+)+$`` against 30 ``a`` and a
``b`` held the GIL for seconds), ``uniqueItems`` falls back to comparing every pair (an 18 KB
array took 2 s), and ``$ref`` is expanded afresh at every use (17 levels of a definition that
refers twice to the next cost 2**17 expansions for the integer ``1``). Here:

- every regular expression a schema holds (``pattern``, the keys of ``patternProperties``, and
  the ones ``additionalProperties``/``unevaluatedProperties`` apply) runs on RE2
  (``google-re2``), whose matching time is linear in the text. RE2 has no backreferences and no
  lookaround, which ECMA-262 (the dialect JSON Schema names) has: a schema using them is rejected
  when the catalog is checked (:func:`unsupported_pattern`), naming the action and the pattern;
- ``uniqueItems`` hashes a canonical form of each item (linear; JSON Schema's equality: ``1`` and
  ``1.0`` equal, ``true`` and ``1`` not, object key order irrelevant);
- every keyword evaluation spends one step of a budget (:data:`MAX_STEPS`), every ``$ref`` or
  ``$dynamicRef`` expansion one of a smaller one (:data:`MAX_REFS`), and past a deadline (the
  call's own) the validation stops: :class:`BudgetExceeded` / :class:`DeadlineExceeded`;
- a keyword whose one evaluation does work that grows with the instance (and the schema) pays
  for that work first, out of the same budget (:data:`_PRICES`): ``patternProperties`` a step
  per key and pattern (15,000 patterns against 1,000 keys were 23 s of one step, on the loop),
  ``additionalProperties`` and ``uniqueItems`` one per key or item; the searches for what
  ``unevaluatedItems``/``unevaluatedProperties`` leave over pay one per item (times the
  patterns) and answer with a set (jsonschema's list made them quadratic: 8,000 items took
  0.4 s); and every error pays for its message, a step per :data:`MESSAGE_CHARS_PER_STEP`
  characters, since jsonschema writes the instance into it (``anyOf`` with 300 branches held
  300 copies of a 1 MB result: 290 MB), as does a ``false`` subschema, a step itself.

The keyword implementations are jsonschema's own functions, rebound to a namespace where ``re``
is RE2 and ``uniq`` is the linear one (the function objects are copied, jsonschema itself is not
changed for anyone else in the process), so their verdicts and messages stay jsonschema's.
"""

from __future__ import annotations

import functools
import math
import threading
import time
import types
from collections.abc import Callable, Iterator
from fractions import Fraction
from typing import Any

import re2
from jsonschema import Draft202012Validator, _keywords, _utils, validators

from host.ecma import ecma_pattern
from host.refcycles import ref_cycle

#: Keyword evaluations one validation may make (a keyword applied to one instance node is one).
MAX_STEPS = 1_000_000
#: ``$ref``/``$dynamicRef`` expansions one validation may make.
MAX_REFS = 20_000
#: Steps between two looks at the clock when a deadline is set.
_CLOCK_EVERY = 256
#: Characters of an error's message one budget step pays for: a validation's messages hold at
#: most ``MAX_STEPS * MESSAGE_CHARS_PER_STEP`` characters (16 M) in all.
MESSAGE_CHARS_PER_STEP = 16

_OPTIONS = re2.Options()
_OPTIONS.log_errors = False  # a pattern RE2 rejects is reported by us, not printed by RE2
#: For a first compile that only tells whether a pattern is runnable and small: RE2 stops
#: compiling once the program outgrows ``max_mem``, so this one is bounded in time (~12 ms),
#: where one with the default 8 MiB took 60 ms for the 17 characters ``(?:\p{L}{1,1000})``
#: before refusing it, holding the GIL. (The program then used is compiled with the default,
#: which leaves its DFA the memory it needs to stay fast.)
_SIZE_OPTIONS = re2.Options()
_SIZE_OPTIONS.log_errors = False
_SIZE_OPTIONS.max_mem = 512 * 1024
#: For a ``format: regex`` value, which is only asked whether it parses: RE2 says "pattern too
#: large" after the parse, so a compile this small (at most ~0.6 ms) answers.
_TINY_OPTIONS = re2.Options()
_TINY_OPTIONS.log_errors = False
_TINY_OPTIONS.max_mem = 16 * 1024

#: RE2 instructions a schema's pattern may compile to. Matching is linear in the text, but RE2
#: falls back from its DFA to its NFA when the DFA's states do not fit its memory, and the NFA
#: costs up to one instruction per character: 3,000 counted alternatives (79,506 instructions,
#: a 29 KB pattern) took 2.3 ms per character, 5.2 s for a 2,000-character result, on the loop.
#: ``^\S{1,255}$`` is 10,456, ``^[^\s]{1,100}@[^\s]{1,255}$`` 14,556.
MAX_PATTERN_PROGRAM = 20_000
#: Pattern work is counted in units of a search's worst case: characters of the text times
#: instructions of the program (~15-30 ns each in RE2's NFA on this machine; its DFA, which
#: almost every search gets, is far cheaper). A validation may spend this many (its other
#: steps are counted apart): they were once paid from the step budget, a step per 100
#: units, and 1,000 strings of 20 characters under ``^.{1,255}$`` (5,611 instructions, 6 ms
#: of real work) were "too costly". The call's deadline still ends a validation between two
#: searches.
MAX_PATTERN_WORK = 2_000_000_000
#: What a trial on the loop (and the fast path) may spend: ~3-6 ms in the worst case.
QUICK_PATTERN_WORK = 200_000
#: One search may cost at most this many units (its worst case, ~1.5-3 s): a search cannot
#: be stopped once it runs, so past the call's deadline it would still burn a CPU this long.
MAX_SEARCH_WORK = 100_000_000


class BudgetExceeded(Exception):
    """The validation needed more work than a schema may cost."""


class DeadlineExceeded(Exception):
    """The validation was still running when the call's deadline passed."""


@functools.lru_cache(maxsize=2048)
def compiled(pattern: str) -> Any:
    """``pattern`` compiled by RE2 (cached) with ECMA-262's meaning (:func:`ecma_pattern`);
    raises ``re2.error`` if RE2 cannot compile it."""
    return re2.compile(ecma_pattern(pattern), _OPTIONS)


@functools.lru_cache(maxsize=2048)
def program_size(pattern: str) -> int:
    """RE2 instructions of :func:`compiled` ``(pattern)``: a search's worst case costs about
    that many units per character of the text."""
    return int(compiled(pattern).programsize)


def unsupported_pattern(pattern: str, cache: bool = True) -> str | None:
    """Why RE2 cannot run ``pattern`` (backreference, lookaround...), or None if it can.
    ``cache=False`` for a pattern that is a value, not a schema's (``format: regex``)."""
    try:
        translated = (ecma_pattern if cache else ecma_pattern.__wrapped__)(pattern)
    except (TypeError, ValueError) as exc:
        return str(exc)
    return re2_refusal(translated)


#: How RE2 says a pattern it parsed compiles to more than its ``max_mem`` allows.
TOO_LARGE = "pattern too large"


def oversized_pattern(pattern: str, refusal: str | None) -> str | None:
    """Why a schema may not use ``pattern``, which RE2 parsed: its program is over
    :data:`MAX_PATTERN_PROGRAM`; None if it may (it is then compiled and cached: the first
    search, perhaps on the loop, does not pay for that). ``refusal``: what
    :func:`unsupported_pattern` said of it (None, or too large for ``_SIZE_OPTIONS``), so this
    compile is bounded too."""
    size = None
    if refusal is None:
        try:
            size = program_size(pattern)
        except re2.error:  # (the default options allow more than re2_refusal's)
            pass
    if size is not None and size <= MAX_PATTERN_PROGRAM:
        return None
    figure = f"{size:,}" if size is not None else "far more"
    return (
        f"the pattern {pattern[:200]!r} compiles to {figure} RE2 instructions, more than "
        f"{MAX_PATTERN_PROGRAM:,}: a search may cost that much per character (a bounded "
        "repetition of a large class, such as \\S{1,1000}, expands most; maxLength bounds "
        "a length at no cost)"
    )


def _schema_pattern_problem(pattern: str) -> str | None:
    """Why a schema may not hold ``pattern`` (RE2 cannot run it, or it is too big), or None."""
    reason = unsupported_pattern(pattern)
    if reason is not None and not reason.startswith(TOO_LARGE):
        return _pattern_message(pattern, reason)
    return oversized_pattern(pattern, reason)


def re2_refusal(translated: str, tiny: bool = False) -> str | None:
    """Why RE2 cannot compile ``translated`` (a pattern already in RE2's syntax, see
    :func:`ecma_pattern`) within ~512 KiB of program (``tiny``: 16 KiB), or None if it can;
    nothing is cached. Bounded in time (see ``_SIZE_OPTIONS``)."""
    options = _TINY_OPTIONS if tiny else _SIZE_OPTIONS
    return _refusal(lambda text: re2.compile(text, options), translated)


def pattern_search(pattern: str, text: str) -> Any:
    """RE2's search of ``pattern`` in ``text``, paid for first from the running validation's
    pattern budget, if any, by its worst case (see :data:`MAX_PATTERN_WORK`); a search over
    :data:`MAX_SEARCH_WORK` is refused (:class:`BudgetExceeded`) rather than started."""
    regex = compiled(pattern)
    budget = _LOCAL.budget
    if budget is not None:
        # (characters, not UTF-8 bytes, which RE2 steps over: up to 4x more for non-ASCII
        # text; the budgets leave room for that)
        work = len(text) * program_size(pattern)
        if work > MAX_SEARCH_WORK:
            raise BudgetExceeded(
                f"a search of a pattern of {program_size(pattern):,} RE2 instructions in "
                f"{len(text):,} characters could cost {work:,} units, more than "
                f"{MAX_SEARCH_WORK:,}"
            )
        budget.pattern_work -= work
        if budget.pattern_work < 0:
            raise BudgetExceeded("validating needed more pattern searching than it may take")
        # (no step: the keyword that searches paid for its steps; but the deadline is looked
        # at before each search, which may be a long one)
        if budget.deadline is not None and time.monotonic() > budget.deadline:
            raise DeadlineExceeded("the call's deadline passed during validation")
    return regex.search(text)


def _refusal(compile_: Callable[[str], Any], pattern: str) -> str | None:
    try:
        compile_(pattern)
    except re2.error as exc:
        reason = exc.args[0] if exc.args else exc
        if isinstance(reason, bytes):
            reason = reason.decode("utf-8", "replace")
        return str(reason)
    except (TypeError, ValueError) as exc:
        return str(exc)
    return None


def search(pattern: str, text: str) -> bool:
    return pattern_search(pattern, text) is not None


class _Re2Module:
    """Stands for ``re`` inside the rebound jsonschema functions (they call ``re.search``):
    every search a schema makes is paid for (:func:`pattern_search`)."""

    search = staticmethod(pattern_search)


def _canonical(value: Any) -> Any:
    """A hashable form of a JSON value; equal forms <=> equal under JSON Schema's rules."""
    if value is True or value is False:
        return ("b", value)
    if isinstance(value, str):
        return ("s", value)
    if isinstance(value, int | float):
        return ("n", value)  # 1 == 1.0 and hash(1) == hash(1.0), as JSON Schema wants
    if isinstance(value, list | tuple):
        return ("l", tuple(_canonical(item) for item in value))
    if isinstance(value, dict):
        return ("d", frozenset((key, _canonical(item)) for key, item in value.items()))
    if value is None:
        return ("z",)
    raise TypeError(f"not a JSON value: {type(value).__name__}")


def uniq(container: Any) -> bool:
    """Whether all items are distinct, in time linear in the container's size."""
    seen: set[Any] = set()
    for item in container:
        form = _canonical(item)
        if form in seen:
            return False
        seen.add(form)
    return True


class _Budget:
    __slots__ = ("deadline", "every", "pattern_work", "polite", "refs", "steps")

    def __init__(
        self, deadline: float | None, steps: int, refs: int, polite: bool, every: int,
        pattern_work: int,
    ) -> None:
        self.every = every
        self.steps = steps
        self.refs = refs
        self.deadline = deadline
        self.polite = polite
        self.pattern_work = pattern_work


class _Local(threading.local):
    budget: _Budget | None = None


_LOCAL = _Local()


def _spend(ref: bool = False) -> None:
    budget = _LOCAL.budget
    if budget is None:
        return
    budget.steps -= 1
    if budget.steps <= 0:
        raise BudgetExceeded("validating needed more schema steps than it may take")
    if ref:
        budget.refs -= 1
        if budget.refs <= 0:
            raise BudgetExceeded("validating needed more $ref expansions than it may take")
    if budget.steps % budget.every == 0:
        deadline = budget.deadline
        if deadline is not None and time.monotonic() > deadline:
            raise DeadlineExceeded("the call's deadline passed during validation")
        if budget.polite:
            # Off the loop: let a thread waiting for the GIL (the loop) have it now, rather
            # than after the interpreter's 5 ms switch interval.
            time.sleep(0)


def charge(steps: int) -> None:
    """Spend ``steps`` of the running validation's budget at once (none outside one): for a
    single step whose cost grows with the value it is given, such as ``format: regex``
    translating and compiling the value itself."""
    budget = _LOCAL.budget
    if budget is None or steps <= 0:
        return
    budget.steps -= steps
    if budget.steps <= 0:
        raise BudgetExceeded("validating needed more schema steps than it may take")
    deadline = budget.deadline
    if deadline is not None and time.monotonic() > deadline:
        raise DeadlineExceeded("the call's deadline passed during validation")


def run_bounded(
    work: Callable[[], Any],
    deadline: float | None = None,
    steps: int = MAX_STEPS,
    refs: int = MAX_REFS,
    polite: bool = False,
    clock_every: int = _CLOCK_EVERY,
    pattern_work: int = MAX_PATTERN_WORK,
) -> Any:
    """Run ``work`` (a validation) with a fresh budget of ``steps`` and ``refs`` on this thread;
    ``deadline`` is a ``time.monotonic()`` value past which it stops with
    :class:`DeadlineExceeded`. ``polite``: yield the GIL every few hundred steps (for work off
    the loop, so the loop's turns come at once). ``clock_every``: steps between two looks at the
    clock (1 on the loop, where a budget of milliseconds must hold whatever one step costs)."""
    outer = _LOCAL.budget
    _LOCAL.budget = _Budget(deadline, steps, refs, polite, max(1, clock_every), pattern_work)
    try:
        return work()
    finally:
        _LOCAL.budget = outer


def _rebind(function: Any, namespace: dict[str, Any]) -> Any:
    """A copy of ``function`` whose globals are ``namespace``."""
    copy = types.FunctionType(
        function.__code__, namespace, function.__name__, function.__defaults__,
        function.__closure__,
    )
    copy.__kwdefaults__ = function.__kwdefaults__
    copy.__qualname__ = function.__qualname__
    return copy


def _sized(instance: Any) -> int:
    return len(instance) if isinstance(instance, dict | list | tuple) else 0


def _patterns(schema: Any) -> int:
    patterns = schema.get("patternProperties") if isinstance(schema, dict) else None
    return len(patterns) if isinstance(patterns, dict) else 0


def _counted_finder(function: Any) -> Any:
    """A counted copy of one of jsonschema's searches for the items or properties a schema
    evaluates (for ``unevaluatedItems``/``unevaluatedProperties``). Each call looks at every
    item or key of the instance (times each of the schema's ``patternProperties``), and pays
    for that; its answer is a set, so the keyword's test of each item against it is O(1)
    (jsonschema's own list, with repeats from every branch, made the keyword quadratic)."""

    def finder(validator: Any, instance: Any, schema: Any) -> Any:
        _spend(ref=isinstance(schema, dict) and ("$ref" in schema or "$dynamicRef" in schema))
        charge(_sized(instance) * (1 + _patterns(schema)))
        found = function(validator, instance, schema)
        charge(len(found))
        return set(found)

    return finder


def _price_pattern_properties(value: Any, instance: Any) -> int:
    return len(value) * _sized(instance) if isinstance(value, dict) else 0


def _price_additional_properties(value: Any, instance: Any) -> int:
    return _sized(instance) if isinstance(instance, dict) else 0


def _price_unique_items(value: Any, instance: Any) -> int:
    return _sized(instance) if value is True else 0


#: What one evaluation of these keywords costs beyond its step, in steps, paid before it runs
#: (the keyword's value and the instance): the work it does in a loop of its own.
_PRICES: dict[str, Callable[[Any, Any], int]] = {
    "patternProperties": _price_pattern_properties,
    "additionalProperties": _price_additional_properties,  # (find_additional_properties)
    "uniqueItems": _price_unique_items,
}


def _multiple_of(validator: Any, step: Any, instance: Any, schema: Any) -> Iterator[Any]:
    """jsonschema's ``multipleOf``, exact where jsonschema's raises ``OverflowError``.

    jsonschema divides first and falls back to fractions only if the float quotient overflows;
    but the division itself overflows for an integer instance too large for a float
    (``10**400`` against ``0.1``), and so does ``0.5 % 10**400``: the exception then ended the
    validation as "the schema cannot be applied", a valid value refused. The verdict here is
    jsonschema's wherever it gives one, and otherwise the exact one on the same binary values
    (``Fraction`` of the float is the float's exact value, as in jsonschema's own fallback)."""
    if not validator.is_type(instance, "number"):
        return
    try:
        if isinstance(step, float):
            quotient = instance / step
            failed = int(quotient) != quotient
        else:
            failed = bool(instance % step)
    except OverflowError:
        if isinstance(instance, float) and not math.isfinite(instance):
            failed = True  # (no JSON number, but a Python caller can pass one)
        else:
            failed = (Fraction(instance) / Fraction(step)).denominator != 1
    if failed:
        yield _keywords.ValidationError(
            f"{_short_number(instance)} is not a multiple of {_short_number(step)}"
        )


def _short_number(number: Any) -> str:
    """``repr`` of a number, or its size when it has too many digits to print (``repr`` of an
    int over 4,300 digits raises ValueError, and a long one would fill the message)."""
    if isinstance(number, int) and number.bit_length() > 1000:
        return f"an integer of about {int(number.bit_length() * math.log10(2)) + 1:,} digits"
    return repr(number)


def _build_keywords() -> dict[str, Any]:
    utils_ns = dict(vars(_utils))
    utils_ns["re"] = _Re2Module
    utils_ns["uniq"] = uniq
    for name in ("find_evaluated_item_indexes_by_schema", "find_evaluated_property_keys_by_schema"):
        # (they recurse through their own global name, so the counted copy is what recurses)
        utils_ns[name] = _counted_finder(_rebind(getattr(_utils, name), utils_ns))
    keywords_ns = dict(vars(_keywords))
    keywords_ns["re"] = _Re2Module
    keywords_ns["uniq"] = uniq
    for name in (
        "find_additional_properties",
        "find_evaluated_item_indexes_by_schema",
        "find_evaluated_property_keys_by_schema",
    ):
        keywords_ns[name] = (
            utils_ns[name] if name.startswith("find_evaluated") else
            _rebind(getattr(_utils, name), utils_ns)
        )
    result = {}
    for keyword, function in Draft202012Validator.VALIDATORS.items():
        if keyword == "multipleOf":
            function = _multiple_of
        elif getattr(function, "__module__", None) == _keywords.__name__:
            function = _rebind(function, keywords_ns)
        result[keyword] = _counted(
            function, ref=keyword in ("$ref", "$dynamicRef"), price=_PRICES.get(keyword)
        )
    return result


def _counted(
    function: Any, ref: bool, price: Callable[[Any, Any], int] | None = None
) -> Any:
    def keyword(validator: Any, value: Any, instance: Any, schema: Any) -> Iterator[Any] | None:
        _spend(ref)
        if price is not None:
            charge(price(value, instance))
        result: Iterator[Any] | None = function(validator, value, instance, schema)
        return result

    keyword.__name__ = function.__name__
    return keyword


def _charged_descend(descend: Any) -> Any:
    """``descend`` (every subschema's evaluation goes through it), paying a step for a boolean
    subschema (no keyword of its own would count it: 40,000 ``false`` branches fit in a
    schema) and, once per error, for the error's message (see the module's notes)."""

    def charged(validator: Any, instance: Any, schema: Any, *args: Any, **kwargs: Any) -> Any:
        if schema is True or schema is False:
            _spend()
        for error in descend(validator, instance, schema, *args, **kwargs):
            if not getattr(error, "_sandbox_paid", False):
                error._sandbox_paid = True
                charge(len(error.message) // MESSAGE_CHARS_PER_STEP)
            yield error

    return charged


#: Draft 2020-12 with every keyword counted, RE2 for regular expressions and a linear
#: ``uniqueItems``. Used only inside :func:`run_bounded` (outside it, it is unbounded but still
#: linear in regexes and ``uniqueItems``).
BoundedValidator: Any = validators.create(
    meta_schema=Draft202012Validator.META_SCHEMA,
    validators=_build_keywords(),
    type_checker=Draft202012Validator.TYPE_CHECKER,
    format_checker=Draft202012Validator.FORMAT_CHECKER,
    id_of=Draft202012Validator.ID_OF,
    # (no ``version``: that would register the class as *the* validator of draft 2020-12 for
    # every user of jsonschema in the process)
    applicable_validators=Draft202012Validator._APPLICABLE_VALIDATORS,
)
# (on our class only: jsonschema's own validators are left as they are)
BoundedValidator.descend = _charged_descend(BoundedValidator.descend)


#: The only dialect a schema may name (``$schema``, at its root only).
DIALECT = "https://json-schema.org/draft/2020-12/schema"
#: Limits on one schema a provider declares (checked before anything else looks at it).
MAX_SCHEMA_BYTES = 256 * 1024
MAX_SCHEMA_DEPTH = 64

#: Keywords whose value is a subschema, a list of them, or a map of names to them.
_ONE = frozenset({
    "items", "additionalProperties", "unevaluatedProperties", "unevaluatedItems", "contains",
    "propertyNames", "not", "if", "then", "else",
})  # fmt: skip
_LIST = frozenset({"allOf", "anyOf", "oneOf", "prefixItems"})
_MAP = frozenset({"properties", "$defs", "definitions", "dependentSchemas", "patternProperties"})
#: Keywords the meta-schema checks with ``uniqueItems`` over string arrays: a non-string item
#: there would send jsonschema's own check to its quadratic comparison.
_STRING_ARRAYS = frozenset({"required", "type"})


def schema_problem(schema: Any, size: int) -> str | None:
    """Why ``schema`` (``size`` bytes serialized) may not be used, before any meta-schema check
    or validation touches it: too big, too deep, a dialect other than 2020-12 or a ``$schema``
    below the root (jsonschema would switch to another, unbounded, validator there), a string
    array the meta-schema checks for uniqueness holding something else, a regular expression
    RE2 cannot run, or a ``$ref`` cycle that never descends into the value
    (:mod:`host.refcycles`). None if it may be used. Work linear in the schema's size."""
    if size > MAX_SCHEMA_BYTES:
        return f"the schema is {size:,} bytes; the limit is {MAX_SCHEMA_BYTES:,}"
    # Every container, with its depth: the depth limit and the ``$schema`` rule hold everywhere.
    stack: list[tuple[Any, int]] = [(schema, 1)]
    while stack:
        value, depth = stack.pop()
        if depth > MAX_SCHEMA_DEPTH:
            return f"the schema nests deeper than {MAX_SCHEMA_DEPTH} levels"
        if isinstance(value, dict):
            if "$schema" in value and (value is not schema or value["$schema"] != DIALECT):
                return (
                    f"$schema {str(value['$schema'])[:80]!r} is not allowed there: only "
                    f"{DIALECT!r}, at the root"
                )
            stack.extend((item, depth + 1) for item in value.values())
        elif isinstance(value, list):
            stack.extend((item, depth + 1) for item in value)
    # Subschemas: their regular expressions and string arrays.
    schemas: list[Any] = [schema]
    while schemas:
        node = schemas.pop()
        if not isinstance(node, dict):
            continue
        for key, value in node.items():
            if key == "pattern" and isinstance(value, str):
                if (reason := _schema_pattern_problem(value)) is not None:
                    return reason
            elif key in _STRING_ARRAYS and isinstance(value, list):
                if not all(isinstance(item, str) for item in value):
                    return f"{key!r} must be a list of strings"
            elif key == "dependentRequired" and isinstance(value, dict) and not all(
                isinstance(names, list) and all(isinstance(n, str) for n in names)
                for names in value.values()
            ):
                return "'dependentRequired' must map names to lists of strings"
            if key in _ONE:
                schemas.append(value)
            elif key in _LIST and isinstance(value, list):
                schemas.extend(value)
            elif key in _MAP and isinstance(value, dict):
                if key == "patternProperties":
                    for pattern in value:
                        if (reason := _schema_pattern_problem(pattern)) is not None:
                            return reason
                    # (``additionalProperties`` beside them searches them all as one pattern)
                    joined = "|".join(value)
                    if (
                        len(value) > 1 and "additionalProperties" in node
                        and (reason := _schema_pattern_problem(joined)) is not None
                    ):
                        return (
                            "the patternProperties patterns, joined into one (as "
                            f"additionalProperties beside them searches them): {reason}"
                        )
                schemas.extend(value.values())
    return ref_cycle(schema)


#: Formats whose checker costs far more than linear time and memory per character: never tried
#: on the loop. None now: ``iri``, ``iri-reference`` and ``uri-template`` were (rfc3987_syntax's
#: Lark parser, uri_template's quadratic scan) and are checked by host.formats in linear time.
_COSTLY_FORMATS: frozenset[str] = frozenset()
#: Nodes an ``enum``/``const`` value may hold for a trial on the loop (comparing an instance
#: against each member is one step for all of them).
MAX_LOOP_ENUM_NODES = 1000


def _nodes(value: Any, limit: int) -> int:
    """Nodes of a JSON value, counting stops past ``limit``."""
    count = 0
    stack = [value]
    while stack and count <= limit:
        item = stack.pop()
        count += 1
        if isinstance(item, dict):
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return count


def loop_unsafe(schema: Any) -> str | None:
    """Why ``schema`` holds a keyword whose single step cannot be bounded in time on the loop
    (a costly ``format``, a huge ``enum``/``const``), or None. Linear in the schema's size."""
    stack = [schema]
    while stack:
        node = stack.pop()
        if isinstance(node, list):
            stack.extend(node)
        elif isinstance(node, dict):
            for key, value in node.items():
                if key == "format" and value in _COSTLY_FORMATS:
                    return f"format {value!r}"
                if key in ("enum", "const") and _nodes(value, MAX_LOOP_ENUM_NODES) > (
                    MAX_LOOP_ENUM_NODES
                ):
                    return f"{key} with more than {MAX_LOOP_ENUM_NODES:,} nodes"
                stack.append(value)
    return None


def _pattern_message(pattern: str, reason: str) -> str:
    return (
        f"the pattern {pattern[:200]!r} cannot be run by RE2, the linear-time engine the host "
        f"uses ({reason}); backreferences and lookaround are not supported"
    )
