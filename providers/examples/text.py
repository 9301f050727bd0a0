"""A small, well-behaved text provider.

It doubles as documentation of the SDK: derived schemas (``word_count``), ``Literal`` enums
with defaults (``regex_search``), an explicit schema (``echo``) and ``TypedDict`` output
(``stats``). ``regex_search`` is deliberately risky: a pathological pattern backtracks
catastrophically, and only the host's wall-time limit stops it.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Literal, TypedDict

from providers import Provider

provider = Provider(
    "text",
    version="1.0",
    description="Simple text utilities (word counts, regex search, case conversion).",
)

RegexFlag = Literal["IGNORECASE", "MULTILINE", "DOTALL"]


class TextStats(TypedDict):
    """Result of :func:`stats`; a TypedDict so the output schema is derived exactly."""

    lines: int
    words: int
    chars: int


@provider.action(safe_rerun=True)
def word_count(text: str) -> int:
    """Count whitespace-separated words."""
    return len(text.split())


# Pure, but not marked safe_rerun: a pathological pattern that timed out once would only
# time out again, so a retry would just double the damage.
@provider.action
def regex_search(pattern: str, text: str, flags: Sequence[RegexFlag] = ()) -> list[str]:
    """Return every match of a regular expression in the text.

    Each element is the full match (group 0), even when the pattern has groups, unlike
    ``re.findall``. Patterns are untrusted: ``(a+)+$`` against ``"a" * 40 + "b"`` runs for
    ages, and there is intentionally no protection here; the host's time limit applies.
    An invalid pattern raises ``re.error``.
    """
    compiled_flags = re.NOFLAG
    for flag in flags:
        compiled_flags |= re.RegexFlag[flag]
    return [m.group(0) for m in re.finditer(pattern, text, compiled_flags)]


@provider.action(
    input={
        "type": "object",
        "properties": {"value": {}},
        "required": ["value"],
        "additionalProperties": False,
    },
    output={},
    safe_rerun=True,
)
def echo(value: object) -> object:
    """Return the value unchanged (round-trip benchmarks)."""
    return value


@provider.action(safe_rerun=True)
def upper(text: str) -> str:
    """Convert the text to upper case."""
    return text.upper()


@provider.action(safe_rerun=True)
def stats(text: str) -> TextStats:
    """Count lines, words and characters of the text."""
    return TextStats(lines=len(text.splitlines()), words=len(text.split()), chars=len(text))
