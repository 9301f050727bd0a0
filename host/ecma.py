"""ECMA-262 regular expressions (the dialect JSON Schema's ``pattern`` names) spelled in RE2's
syntax, so that RE2 - linear in the text, see :mod:`host.bounded` - gives ECMA-262's verdicts.

The two dialects share most of their syntax but not all of its meaning. What differs, and what
:func:`ecma_pattern` writes instead:

- ``.`` is anything but a LineTerminator in ECMA-262 (``\\n``, ``\\r``, U+2028, U+2029); RE2's
  is ``[^\\n]``.
- ``\\s`` is ECMA-262's WhiteSpace and LineTerminator code points (no-break space, ideographic
  space, BOM...); RE2's is ``[\\t\\n\\f\\r ]``. ``\\S`` is the complement of each. Outside a class
  both are spelled out as classes; inside a class ``\\s`` is spelled out as members, and a class
  holding ``\\S`` becomes ``(?:[rest]|[^space])`` (or, negated, the spaces its other members do
  not hold: RE2 has no class subtraction).
- ``[]`` matches nothing and ``[^]`` any character in ECMA-262; in RE2 a ``]`` right after
  ``[`` or ``[^`` is a member, so ``[]a]`` meant "``]`` or ``a``" where ECMA-262 reads an empty
  class followed by ``a]``.
- ``[:alpha:]`` inside a class is a POSIX class in RE2 and five members in ECMA-262: a ``[``
  inside a class is escaped.
- ``\\uXXXX``, ``\\cX`` and ``[\\b]`` (backspace) are ECMA-262 escapes RE2 refuses: they become
  ``\\x{XXXX}``, the control character, and ``\\x08``.

What RE2 cannot run at all (backreferences, lookaround) still fails to compile, and the schema is
refused by :func:`host.bounded.unsupported_pattern`. The translation is checked against an
ECMA-262 engine (``regress``) by a differential test (``tests/test_ecma.py``).
"""

from __future__ import annotations

import functools

import re2

#: ECMA-262's ``\s`` as the members of an RE2 class: its WhiteSpace and LineTerminator code
#: points.
ECMA_SPACE = (
    "\\t\\n\\x0b\\f\\r \\x{a0}\\x{1680}\\x{2000}-\\x{200a}\\x{2028}\\x{2029}\\x{202f}"
    "\\x{205f}\\x{3000}\\x{feff}"
)
#: The same code points, one by one (for the negated classes that hold ``\S``).
ECMA_SPACE_CHARS = (
    "\t\n\x0b\f\r \u00a0\u1680" + "".join(chr(c) for c in range(0x2000, 0x200B))
    + "\u2028\u2029\u202f\u205f\u3000\ufeff"
)
#: ECMA-262's ``.`` (no ``s`` flag): anything but a LineTerminator.
ECMA_DOT = "[^\\n\\r\\x{2028}\\x{2029}]"
#: ``[]`` and ``[^]`` of ECMA-262.
NOTHING = "[^\\x00-\\x{10ffff}]"
ANYTHING = "[\\x00-\\x{10ffff}]"

_HEX = frozenset("0123456789abcdefABCDEF")
#: The escapes that stand for a set of characters (never one end of a range).
_SET_ESCAPES = frozenset("sSdDwW")
_OPTIONS = re2.Options()
_OPTIONS.log_errors = False


def _escape(pattern: str, i: int) -> tuple[str, int]:
    """The RE2 spelling of the escape at ``pattern[i]`` (a backslash) outside or inside a class,
    with the index after it; ``\\s`` and ``\\S`` are left to the caller."""
    escaped = pattern[i + 1]
    if escaped == "u" and len(pattern) >= i + 6 and set(pattern[i + 2 : i + 6]) <= _HEX:
        return f"\\x{{{pattern[i + 2 : i + 6]}}}", i + 6
    if escaped == "c" and i + 2 < len(pattern) and pattern[i + 2].isascii() and (
        pattern[i + 2].isalpha()
    ):
        return f"\\x{{{ord(pattern[i + 2]) % 32:02x}}}", i + 3
    return pattern[i : i + 2], i + 2


def _class(pattern: str, i: int) -> tuple[str, int]:
    """The class that opens at ``pattern[i]`` (a ``[``) in RE2's syntax, with the index after
    its ``]``. An unterminated class is passed on as it is, for RE2 to refuse."""
    start = i
    i += 1
    negated = pattern[i : i + 1] == "^"
    if negated:
        i += 1
    members: list[str] = []
    non_space = False  # the class holds \S
    after_set = False  # the last member was a class escape (\s, \d...): no range may follow
    while i < len(pattern) and pattern[i] != "]":
        char = pattern[i]
        before_set = pattern[i + 1 : i + 2] == "\\" and pattern[i + 2 : i + 3] in _SET_ESCAPES
        if char == "-" and (after_set or before_set):
            # [\s-a] and [a-\d] are members and a "-" in ECMA-262 (no class is a range's end);
            # spelled out, the class would be a range to RE2.
            members.append("\\-")
            after_set = False
            i += 1
            continue
        after_set = char == "\\" and pattern[i + 1 : i + 2] in _SET_ESCAPES
        if char == "\\" and i + 1 < len(pattern):
            escaped = pattern[i + 1]
            if escaped == "s":
                members.append(ECMA_SPACE)
                i += 2
            elif escaped == "S":
                non_space = True
                i += 2
            elif escaped == "b":
                members.append("\\x08")
                i += 2
            else:
                text, i = _escape(pattern, i)
                members.append(text)
            continue
        # RE2 reads "[:" inside a class as a POSIX class ([[:alpha:]]); ECMA-262 as members.
        members.append("\\[" if char == "[" else char)
        i += 1
    if i >= len(pattern):  # no closing "]"
        return pattern[start:], len(pattern)
    body = "".join(members)
    return _spell_class(body, negated, non_space), i + 1


def _spell_class(body: str, negated: bool, non_space: bool) -> str:
    if not non_space:
        if not body:
            return ANYTHING if negated else NOTHING
        return f"[^{body}]" if negated else f"[{body}]"
    if not negated:
        return f"(?:[{body}]|[^{ECMA_SPACE}])" if body else f"[^{ECMA_SPACE}]"
    # [^X\S]: neither in X nor a non-space, so the spaces X does not hold.
    held = _members(body)
    spaces = "".join(f"\\x{{{ord(c):x}}}" for c in ECMA_SPACE_CHARS if c not in held)
    return f"[{spaces}]" if spaces else NOTHING


def _members(body: str) -> frozenset[str]:
    """Which of ECMA-262's spaces the class body ``body`` (RE2 syntax) holds."""
    if not body:
        return frozenset()
    try:
        regex = re2.compile(f"[{body}]", _OPTIONS)
    except re2.error:
        return frozenset()  # RE2 refuses the whole pattern anyway
    return frozenset(c for c in ECMA_SPACE_CHARS if regex.fullmatch(c))


@functools.lru_cache(maxsize=2048)
def ecma_pattern(pattern: str) -> str:
    """``pattern``, an ECMA-262 regular expression, in RE2's syntax with ECMA-262's meaning
    (see the module docstring for what changes)."""
    if not any(c in pattern for c in ".\\["):
        return pattern
    out: list[str] = []
    i = 0
    while i < len(pattern):
        char = pattern[i]
        if char == "\\" and i + 1 < len(pattern):
            escaped = pattern[i + 1]
            if escaped == "s":
                out.append(f"[{ECMA_SPACE}]")
                i += 2
            elif escaped == "S":
                out.append(f"[^{ECMA_SPACE}]")
                i += 2
            else:
                text, i = _escape(pattern, i)
                out.append(text)
            continue
        if char == "[":
            text, i = _class(pattern, i)
            out.append(text)
            continue
        out.append(ECMA_DOT if char == "." else char)
        i += 1
    return "".join(out)
