"""ECMA-262 regular expressions (the dialect JSON Schema's ``pattern`` names) spelled in RE2's
syntax, so that RE2 - linear in the text, see :mod:`host.bounded` - gives ECMA-262's verdicts.

The two dialects share most of their syntax but not all of its meaning. What differs, and what
:func:`ecma_pattern` writes instead:

- ``.`` is anything but a LineTerminator in ECMA-262 (``\\n``, ``\\r``, U+2028, U+2029); RE2's
  is ``[^\\n]``.
- ``\\s`` is ECMA-262's WhiteSpace and LineTerminator code points (no-break space, ideographic
  space, BOM...); RE2's is ``[\\t\\n\\f\\r ]``. ``\\S`` is the complement of each. Outside a class
  both are spelled out as classes; inside a class each is spelled out as members (the ranges
  between the spaces, for ``\\S``).
- ``[]`` matches nothing and ``[^]`` any character in ECMA-262; in RE2 a ``]`` right after
  ``[`` or ``[^`` is a member, so ``[]a]`` meant "``]`` or ``a``" where ECMA-262 reads an empty
  class followed by ``a]``.
- ``[:alpha:]`` inside a class is a POSIX class in RE2 and five members in ECMA-262: a ``[``
  inside a class is escaped.
- ``\\uXXXX``, ``\\cX`` and ``[\\b]`` (backspace) are ECMA-262 escapes RE2 refuses: they become
  ``\\x{XXXX}``, the control character, and ``\\x08``.

- ``\\u{X...}`` and a surrogate pair ``\\uD83D\\uDE00`` (one code point with the ``u`` flag)
  become ``\\x{...}``; ``\\p{...}``/``\\P{...}`` keep the forms both dialects read alike
  (``\\p{Lu}``, ``\\p{gc=Lu}``, ``\\p{Script=Greek}``, ``\\p{Any}``, ``\\p{ASCII}``).
- RE2 syntax that is no ECMA-262 (``(?i)``, ``(?U)``, ``(?s)``, ``(?P<n>``, ``\\A``, ``\\z``,
  ``\\Q``, ``\\a``, ``\\x{41}``, ``\\pL``, ``\\p{Greek}``, octal ``\\12``/``\\10``...) is
  refused (:class:`PatternError`) rather than given RE2's meaning: with the ``u`` flag JSON
  Schema asks for these are errors, and Annex B reads most as literals. A few Annex B spellings
  with one meaning are kept (a lone ``]``, ``{`` or ``}``, ``\\%``, ``[\\d-a]``), but not in a
  pattern that also uses what only the ``u`` flag allows (Annex B reads ``\\u{41}`` as 41 ``u``).

What RE2 cannot run at all (backreferences, lookaround) still fails to compile, and the schema is
refused by :func:`host.bounded.unsupported_pattern`. The translation is checked against an
ECMA-262 engine (``regress``) by a differential test (``tests/test_ecma.py``).
"""

from __future__ import annotations

import functools
import re

#: ECMA-262's ``\s`` as the members of an RE2 class: its WhiteSpace and LineTerminator code
#: points.
ECMA_SPACE = (
    "\\t\\n\\x0b\\f\\r \\x{a0}\\x{1680}\\x{2000}-\\x{200a}\\x{2028}\\x{2029}\\x{202f}"
    "\\x{205f}\\x{3000}\\x{feff}"
)
#: The same code points, one by one.
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
#: ECMA-262's complement of ``\\s``, as the members of an RE2 class (a class holding ``\\S``).
ECMA_NON_SPACE = (
    "\\x00-\\x08\\x0e-\\x1f\\x21-\\x9f\\x{a1}-\\x{167f}\\x{1681}-\\x{1fff}\\x{200b}-\\x{2027}"
    "\\x{202a}-\\x{202e}\\x{2030}-\\x{205e}\\x{2060}-\\x{2fff}\\x{3001}-\\x{fefe}"
    "\\x{ff00}-\\x{10ffff}"
)
#: ECMA-262's SyntaxCharacters and "/": escaped, they are themselves in both dialects.
_SYNTAX = frozenset("^$\\.*+?()[]{}|/")
#: Escapes that are one control character in both dialects.
_CONTROL = frozenset("fnrtv")
#: General_Category values both RE2 and ECMA-262 know by these names.
_CATEGORIES = frozenset((
    "C", "Cc", "Cf", "Co", "Cs", "L", "Ll", "Lm", "Lo", "Lt", "Lu", "M", "Mc", "Me", "Mn", "N",
    "Nd", "Nl", "No", "P", "Pc", "Pd", "Pe", "Pf", "Pi", "Po", "Ps", "S", "Sc", "Sk", "Sm", "So",
    "Z", "Zl", "Zp", "Zs",
))
#: A braced quantifier (``{2}``, ``{2,}``, ``{2,5}``); any other ``{`` is a literal (Annex B).
_BRACES = re.compile(r"\{[0-9]+(?:,[0-9]*)?\}")


class PatternError(ValueError):
    """Not an ECMA-262 pattern, or one RE2 would give another meaning: the host refuses it."""


class Unrunnable(PatternError):
    """An ECMA-262 construct RE2 cannot run (a backreference): the pattern is ECMA-262's."""


class _Reading:
    """What the translation met so far: the two kinds of syntax that may not be mixed."""

    __slots__ = ("annex_b", "unicode")

    def __init__(self) -> None:
        self.annex_b = ""  # an Annex B spelling (the u flag refuses it), or ""
        self.unicode = ""  # a u-flag-only spelling (Annex B reads it otherwise), or ""

    def saw(self, annex_b: str = "", unicode: str = "") -> None:
        self.annex_b = self.annex_b or annex_b
        self.unicode = self.unicode or unicode
        if self.annex_b and self.unicode:
            raise PatternError(
                f"{self.unicode!r} needs the u flag, which refuses {self.annex_b!r} "
                "(escape it)"
            )
#: The escapes that stand for a set of characters (never one end of a range).
_SET_ESCAPES = frozenset("sSdDwW")


def _hex(digits: str) -> str:
    return f"\\x{{{int(digits, 16):x}}}"


def _escape(pattern: str, i: int, reading: _Reading, in_class: bool) -> tuple[str, int]:
    """The RE2 spelling of the escape at ``pattern[i]`` (a backslash, not the last character)
    outside or inside a class, with the index after it; ``\\s`` and ``\\S`` are left to the
    caller. Raises :class:`PatternError` for an escape ECMA-262 (``u`` flag) has not, or reads
    otherwise than RE2 would."""
    escaped = pattern[i + 1]
    if escaped in _SYNTAX or escaped in _CONTROL or escaped in "dDwW":
        return pattern[i : i + 2], i + 2
    if escaped == "-" or (escaped.isascii() and not escaped.isalnum() and escaped != "_"):
        # \- (a class member with the u flag) and \% (Annex B): the character itself.
        if not in_class or escaped != "-":
            reading.saw(annex_b=pattern[i : i + 2])
        return pattern[i : i + 2], i + 2
    if escaped == "u":
        code = pattern[i + 2 : i + 6]
        if len(code) == 4 and set(code) <= _HEX:
            value = int(code, 16)
            low = pattern[i + 8 : i + 12]
            if 0xD800 <= value <= 0xDBFF and pattern[i + 6 : i + 8] == "\\u" and len(low) == 4 and (
                set(low) <= _HEX and 0xDC00 <= int(low, 16) <= 0xDFFF
            ):  # a surrogate pair: one code point with the u flag
                reading.saw(unicode=pattern[i : i + 12])
                value = 0x10000 + ((value - 0xD800) << 10) + (int(low, 16) - 0xDC00)
                return f"\\x{{{value:x}}}", i + 12
            return f"\\x{{{value:x}}}", i + 6
        end = pattern.find("}", i + 3)
        digits = pattern[i + 3 : end]
        if code[:1] == "{" and end > 0 and digits and set(digits) <= _HEX and (
            int(digits, 16) <= 0x10FFFF
        ):
            reading.saw(unicode=pattern[i : end + 1])
            return _hex(digits), end + 1
    elif escaped == "x":
        code = pattern[i + 2 : i + 4]
        if len(code) == 2 and set(code) <= _HEX:
            return _hex(code), i + 4
    elif escaped == "c":
        letter = pattern[i + 2 : i + 3]
        if letter.isascii() and letter.isalpha():
            return f"\\x{{{ord(letter) % 32:x}}}", i + 3
    elif escaped == "0" and not pattern[i + 2 : i + 3].isdigit():
        return "\\x00", i + 2
    elif escaped in "bB":
        if not in_class:
            return pattern[i : i + 2], i + 2
        if escaped == "b":
            return "\\x08", i + 2
    elif escaped in "pP":
        return _property(pattern, i, reading)
    elif escaped in "123456789" or escaped == "k":
        raise Unrunnable(f"backreferences are not supported: {pattern[i : i + 3]!r}")
    raise PatternError(f"not an ECMA-262 escape (with the u flag): {pattern[i : i + 3]!r}")


def _property(pattern: str, i: int, reading: _Reading) -> tuple[str, int]:
    r"""``\p{...}``/``\P{...}`` at ``pattern[i]`` in RE2's syntax, where both dialects read it
    alike: a General_Category value by its short name, a Script by its long one, Any, ASCII."""
    end = pattern.find("}", i + 3)
    if pattern[i + 2 : i + 3] != "{" or end < 0:
        raise PatternError(f"not an ECMA-262 property escape: {pattern[i : i + 3]!r}")
    letter, body = pattern[i + 1], pattern[i + 3 : end]
    name, _, value = body.rpartition("=")
    spelled = ""
    if name in ("", "gc", "General_Category") and value in _CATEGORIES | {"Any"} and (
        value != "Any" or not name
    ):
        spelled = f"\\{letter}{{{value}}}"
    elif name in ("sc", "Script") and value.isascii() and value.replace("_", "").isalpha() and (
        value not in _CATEGORIES and value != "Any"
    ):
        spelled = f"\\{letter}{{{value}}}"  # RE2 refuses a script it does not know
    elif not name and value == "ASCII":
        spelled = "\\x00-\\x7f" if letter == "p" else "\\x{80}-\\x{10ffff}"
        spelled = f"[{spelled}]"
    if not spelled:
        raise PatternError(f"a property RE2 does not read as ECMA-262 does: {pattern[i:end + 1]!r}")
    reading.saw(unicode=pattern[i : end + 1])
    return spelled, end + 1


def _class(pattern: str, i: int, reading: _Reading) -> tuple[str, int]:
    """The class that opens at ``pattern[i]`` (a ``[``) in RE2's syntax, with the index after
    its ``]``. An unterminated class is passed on as it is, for RE2 to refuse."""
    start = i
    i += 1
    negated = pattern[i : i + 1] == "^"
    if negated:
        i += 1
    members: list[str] = []
    after_set = False  # the last member was a class escape (\s, \d...): no range may follow
    # The last member ended a range (a-z): a "-" after it is a member, in every reading
    # ([a-a-\w] is a, "-" and \w; it was taken for Annex B's [a-\w] and refused).
    after_range = False
    in_range = False  # the last member was a "-" between two members: the next ends a range
    while i < len(pattern) and pattern[i] != "]":
        char = pattern[i]
        ends_range, in_range = in_range, False
        if char == "-" and after_range:
            members.append("\\-")
            after_range = after_set = False
            i += 1
            continue
        after_range = False
        before_set = pattern[i + 1 : i + 2] == "\\" and pattern[i + 2 : i + 3] in _SET_ESCAPES
        if char == "-" and (after_set or before_set) and members and pattern[i + 1 : i + 2] != "]":
            # [\s-a] and [a-\d] (Annex B) are members and a "-" (no class is a range's end);
            # spelled out, the class would be a range to RE2.
            reading.saw(annex_b=pattern[i - 2 : i + 3])
            members.append("\\-")
            after_set = False
            i += 1
            continue
        after_set = char == "\\" and pattern[i + 1 : i + 2] in _SET_ESCAPES
        after_range = ends_range and not after_set
        if char == "\\" and i + 1 < len(pattern):
            escaped = pattern[i + 1]
            if escaped == "s":
                members.append(ECMA_SPACE)
                i += 2
            elif escaped == "S":
                members.append(ECMA_NON_SPACE)
                i += 2
            else:
                text, i = _escape(pattern, i, reading, in_class=True)
                # ([\p{ASCII}] is a class of its own outside a class)
                members.append(text[1:-1] if text.startswith("[") else text)
            continue
        in_range = char == "-" and bool(members) and pattern[i + 1 : i + 2] != "]"
        # RE2 reads "[:" inside a class as a POSIX class ([[:alpha:]]); ECMA-262 as members.
        members.append("\\[" if char == "[" else char)
        i += 1
    if i >= len(pattern):  # no closing "]"
        return pattern[start:], len(pattern)
    body = "".join(members)
    if not body:
        return (ANYTHING if negated else NOTHING), i + 1
    return (f"[^{body}]" if negated else f"[{body}]"), i + 1


def _group(pattern: str, i: int) -> tuple[str, int]:
    """The opening of the group at ``pattern[i]`` (a ``(``), with the index after it. Refuses
    RE2's own group syntax (flags, ``(?P<name>``); lookaround is left for RE2 to refuse."""
    if pattern[i + 1 : i + 2] != "?":
        return "(", i + 1
    kind = pattern[i + 2 : i + 4]
    if kind[:1] in (":", "=", "!") or kind in ("<=", "<!"):
        return pattern[i : i + 3], i + 3
    if kind[:1] == "<":
        # A named group: RE2 checks the name (it allows one name twice in a row, ECMA-262 only
        # in two alternatives; names mean nothing without backreferences).
        return "(?<", i + 3
    raise PatternError(f"not an ECMA-262 group: {pattern[i : i + 4]!r}")


@functools.lru_cache(maxsize=2048)
def ecma_pattern(pattern: str) -> str:
    """``pattern``, an ECMA-262 regular expression, in RE2's syntax with ECMA-262's meaning
    (see the module docstring for what changes); raises :class:`PatternError` for one RE2
    would read otherwise."""
    if not any(c in pattern for c in ".\\[({}]"):
        return pattern
    reading = _Reading()
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
                text, i = _escape(pattern, i, reading, in_class=False)
                out.append(text)
            continue
        if char == "[":
            text, i = _class(pattern, i, reading)
            out.append(text)
            continue
        if char == "(":
            text, i = _group(pattern, i)
            out.append(text)
            continue
        if char == "{":
            braces = _BRACES.match(pattern, i)
            if braces:
                out.append(braces.group())
                i = braces.end()
                continue
            reading.saw(annex_b="{")
        elif char in "}]":
            reading.saw(annex_b=char)
        out.append(ECMA_DOT if char == "." else char)
        i += 1
    return "".join(out)
