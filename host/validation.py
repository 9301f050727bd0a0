"""JSON Schema validation of action inputs and outputs, in the host.

Validators are built once per action when the catalog is learnt, with formats checked; simple
schemas also get a fast accept-path (``host.fastschema``), proven equal to jsonschema by a
differential test, so a valid instance rarely pays for jsonschema's generic dispatch. Errors are
reported by JSON path (``$.items[2].name``) with jsonschema's own message, choosing the most
relevant error when there are several (``best_match``), so a user sees one clear reason.
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
import time
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from jsonschema import Draft202012Validator, FormatChecker
from jsonschema.exceptions import SchemaError, ValidationError, best_match

from host.bounded import (
    MAX_REFS,
    MAX_STEPS,
    QUICK_PATTERN_WORK,
    TOO_LARGE,
    BoundedValidator,
    BudgetExceeded,
    DeadlineExceeded,
    charge,
    loop_unsafe,
    re2_refusal,
    run_bounded,
    schema_problem,
)
from host.ecma import PatternError, Unrunnable, ecma_pattern
from host.fastschema import compile_schema
from host.formats import is_iri, is_iri_reference, is_uri_template

__all__ = ["DeadlineExceeded", "Problem", "SchemaInvalid", "SchemaValidator"]

#: The ``format`` checkers of draft 2020-12. jsonschema registers a checker only when the
#: package it needs imports (the packages of its ``format-nongpl`` extra this project depends
#: on; ``iri``, ``iri-reference`` and ``uri-template`` are host.formats'), and skips a
#: format it has no checker for: an instance would then pass unchecked.
_FORMATS: FormatChecker = FormatChecker()
_FORMATS.checkers = dict(Draft202012Validator.FORMAT_CHECKER.checkers)
#: Longest string ``format: regex`` compiles with Python's ``re`` (whose parser is Python code:
#: a 1 MB pattern took 3 s); a longer one is a regex only if RE2 compiles it (linear).
MAX_PYTHON_REGEX = 4096


#: Budget steps (:func:`host.bounded.charge`) ``format: regex`` spends per character of the
#: value (the translation, Python code, costs about a step's time per character) and per this
#: many characters of the translation RE2 parses (~55 ns each: ``\S`` becomes 95 characters,
#: so a 1 MB value of them was 47 MB of pattern and 2.6 s of RE2 holding the GIL).
REGEX_STEPS_PER_CHAR = 1
REGEX_TRANSLATED_CHARS_PER_STEP = 16
#: And per compile by RE2, whatever the length: the compile stops at 16 KiB of program
#: (``host.bounded.re2_refusal``), at most ~0.6 ms (``\p{L}{1,1000}``, 17 characters, took
#: 60 ms with RE2's default limit). (1,000 steps a compile refused a list of 1,000 regexes.)
REGEX_COMPILE_STEPS = 100


def _is_regex(instance: object) -> bool:
    if not isinstance(instance, str):
        return True
    # Translated once (uncached: the value is untrusted), then compiled by RE2; both are paid
    # for from the validation's budget first, since each is one keyword step whatever its size.
    charge(len(instance) * REGEX_STEPS_PER_CHAR)
    try:
        translated = ecma_pattern.__wrapped__(instance)
        charge(len(translated) // REGEX_TRANSLATED_CHARS_PER_STEP + REGEX_COMPILE_STEPS)
        reason = re2_refusal(translated, tiny=True)
        if reason is None or reason.startswith(TOO_LARGE):  # (parsed: a regex, only a big one)
            return True
    except Unrunnable:
        pass  # ECMA-262's (a backreference), RE2 cannot run it: Python's re decides below
    except PatternError:
        return False  # RE2's syntax or Annex B mixed with u-only syntax, no ECMA-262 regex
    if len(instance) > MAX_PYTHON_REGEX:
        return False
    re.compile(instance)  # (re.error: not a regex)
    return True


_FORMATS.checkers["regex"] = (_is_regex, re.error)
# Linear-time checkers (host.formats) in place of jsonschema's (rfc3987_syntax: seconds per
# 5,000 characters and 1.2 s to import; uri_template: quadratic), installed or not.
_FORMATS.checkers["iri"] = (is_iri, ())
_FORMATS.checkers["iri-reference"] = (is_iri_reference, ())
_FORMATS.checkers["uri-template"] = (is_uri_template, ())

#: The formats draft 2020-12 defines (jsonschema's documented list for it), every one of which
#: the host validates; see :func:`unchecked_formats`.
DRAFT_2020_12_FORMATS = frozenset(
    {
        "date-time", "date", "time", "duration", "email", "idn-email", "hostname",
        "idn-hostname", "ipv4", "ipv6", "uri", "uri-reference", "iri", "iri-reference", "uuid",
        "uri-template", "json-pointer", "relative-json-pointer", "regex",
    }
)  # fmt: skip


def unchecked_formats() -> frozenset[str]:
    """Formats of draft 2020-12 this installation cannot check (a dependency is missing)."""
    return DRAFT_2020_12_FORMATS - frozenset(_FORMATS.checkers)


class SchemaInvalid(ValueError):
    """A schema a provider declared is not valid JSON Schema (draft 2020-12)."""


#: jsonschema's messages quote the value that failed (``[...] is not of type 'object'``): one
#: about a 1 MiB input was 1.5 MB, sent back to the caller (or a remote client) as the error.
#: Longer messages keep their start and their end (where the verdict is) around a note.
MAX_MESSAGE_CHARS = 2000


def short_message(message: str) -> str:
    """``message``, at most about :data:`MAX_MESSAGE_CHARS` long."""
    if len(message) <= MAX_MESSAGE_CHARS:
        return message
    head, tail = MAX_MESSAGE_CHARS * 3 // 4, MAX_MESSAGE_CHARS // 4
    left_out = len(message) - head - tail
    return f"{message[:head]} [... {left_out:,} characters left out ...] {message[-tail:]}"


@dataclass(frozen=True)
class Problem:
    """Why an instance does not match: where (a JSON path) and what (at most about
    :data:`MAX_MESSAGE_CHARS` long)."""

    path: str
    message: str

    def __post_init__(self) -> None:
        object.__setattr__(self, "message", short_message(self.message))

    def __str__(self) -> str:
        return f"{self.path}: {self.message}"


def json_path(parts: Iterable[Any]) -> str:
    """``["items", 2, "name"]`` -> ``$.items[2].name``."""
    text = "$"
    for part in parts:
        if isinstance(part, int):
            text += f"[{part}]"
        elif isinstance(part, str) and part.isidentifier():
            text += f".{part}"
        else:
            text += f"[{part!r}]"
    return text


#: Schemas that passed the meta-schema check (the SHA-256 of their canonical JSON, so a big one
#: costs no more to remember than a small one), most recent last. Checking one costs about a
#: millisecond for a small schema, far more for one near the size limit - most of a worker's
#: HELLO handling - and the same schemas come back whenever a provider is loaded again or by
#: another host of this process.
_CHECKED: OrderedDict[bytes, None] = OrderedDict()
_CHECKED_MAX = 4096
_CHECKED_LOCK = threading.Lock()


def _check_schema(schema: Any, what: str) -> None:
    """Raise :class:`SchemaInvalid` unless ``schema`` is valid JSON Schema (draft 2020-12) the
    host can apply with bounded work (``host.bounded.schema_problem``)."""
    try:
        canonical = json.dumps(schema, sort_keys=True, separators=(",", ":")).encode()
    except (TypeError, ValueError, RecursionError):
        canonical = None  # not JSON: the check below says so
    key = None
    if canonical is not None:
        # Before the meta-schema check, whose own cost must stay bounded too.
        reason = schema_problem(schema, len(canonical))
        if reason is not None:
            raise SchemaInvalid(f"{what}: {reason}")
        key = hashlib.sha256(canonical).digest()
        with _CHECKED_LOCK:
            if key in _CHECKED:
                _CHECKED.move_to_end(key)
                return
    try:
        # With the host's own format checker: the meta-schema says a ``pattern`` is a
        # ``regex``, and jsonschema's checker asks Python's ``re``, which refused ECMA-262
        # syntax the host runs (``\p{Lu}``, ``\u{1F600}``, ``[^]``).
        Draft202012Validator.check_schema(schema, format_checker=_FORMATS)
    except SchemaError as exc:  # worded as the provider SDK words it (providers.schemas)
        location = "/".join(str(part) for part in exc.absolute_path)
        where = f" at /{location}" if location else ""
        raise SchemaInvalid(f"{what}{where}: {' '.join(str(exc.message).split())}") from None
    if key is not None:
        with _CHECKED_LOCK:
            _CHECKED[key] = None
            while len(_CHECKED) > _CHECKED_MAX:
                _CHECKED.popitem(last=False)


def _propagates(exc: BaseException) -> bool:
    """Whether an exception out of jsonschema is the caller's (an interrupt, an exit) rather
    than the schema's. Not only ``Exception`` is the schema's: a schema whose ``$ref`` cycles
    through ``not`` recurses until the interpreter's limit, and where that limit is reached
    inside ``referencing``'s Rust registry it becomes a pyo3 ``PanicException``, a
    BaseException (at about one stack depth in seven, tests/test_bounded.py); on the host's
    loop it would end the loop (``Reactor.run`` takes a BaseException for a crash), and every
    call of every provider with it."""
    return isinstance(exc, (KeyboardInterrupt, SystemExit, GeneratorExit))


class SchemaValidator:
    """One compiled schema; :meth:`problem` returns ``None`` when the instance is valid."""

    def __init__(self, schema: Any, *, what: str) -> None:
        if not isinstance(schema, (dict, bool)):
            raise SchemaInvalid(f"{what}: a schema must be a JSON object")
        _check_schema(schema, what)
        self.schema = schema
        if isinstance(schema, dict) and "$schema" in schema:  # (the dialect, checked above)
            schema = {k: v for k, v in schema.items() if k != "$schema"}
        self._validator = BoundedValidator(schema, format_checker=_FORMATS)
        #: Accepts valid instances without jsonschema when the schema is simple enough; None
        #: otherwise. Rejections always go to jsonschema, for its message and its verdict.
        self._fast = compile_schema(schema)
        #: Why a trial on the loop must not be attempted (one step of it is unbounded), or None.
        self.loop_unsafe = loop_unsafe(schema)

    @property
    def has_fast_path(self) -> bool:
        return self._fast is not None

    def quick(self, instance: Any) -> bool:
        """True if the fast path accepts ``instance`` (work linear in its size, patterns on
        RE2); False means only :meth:`problem` can tell."""
        if self._fast is None:
            return False
        try:
            return self._fast(instance)
        except RecursionError:
            return False  # a very deep instance: let jsonschema give the verdict

    def trial(self, instance: Any, steps: int, seconds: float) -> Problem | bool | None:
        """:meth:`problem` within a small budget (``steps`` keyword evaluations, about
        ``seconds``): its verdict, or False if it could not decide within it."""
        if self.quick(instance):
            return None
        if self.loop_unsafe is not None:
            return False
        try:
            error: ValidationError | None = run_bounded(
                lambda: best_match(self._validator.iter_errors(instance)),
                time.monotonic() + seconds, steps=steps, refs=steps, clock_every=1,
                pattern_work=QUICK_PATTERN_WORK,
            )
        except (DeadlineExceeded, BudgetExceeded):
            return False
        except BaseException as exc:
            if _propagates(exc):
                raise
            return False  # (let the full validation give its message)
        if error is None:
            return None
        return Problem(json_path(error.absolute_path), error.message)

    def problem(
        self, instance: Any, deadline: float | None = None, polite: bool = False
    ) -> Problem | None:
        """Why ``instance`` does not match, or None. Bounded: at most ``host.bounded.MAX_STEPS``
        keyword evaluations (a schema that needs more is a problem of its own), and past
        ``deadline`` (a ``time.monotonic()`` value) it raises :class:`DeadlineExceeded`, the only
        exception it raises: a schema the provider declared may still be broken in ways
        ``check_schema`` does not see (a ``$ref`` to nowhere), and that must fail the call, not
        the host."""
        if self.quick(instance):
            return None
        try:
            error: ValidationError | None = run_bounded(
                lambda: best_match(self._validator.iter_errors(instance)), deadline,
                polite=polite,
            )
        except DeadlineExceeded:
            raise
        except BudgetExceeded as exc:
            return Problem(
                "$", f"the schema is too costly to apply to this value ({exc}: at most "
                f"{MAX_STEPS:,} steps, {MAX_REFS:,} $ref expansions)",
            )
        except BaseException as exc:
            if _propagates(exc):
                raise
            return Problem(
                "$", f"the schema cannot be applied: {type(exc).__name__}: {str(exc)[:300]}"
            )
        if error is None:
            return None
        return Problem(json_path(error.absolute_path), error.message)
