"""The host's patterns mean what ECMA-262 says: RE2, given :func:`host.ecma.ecma_pattern`'s
spelling, finds a match exactly where an ECMA-262 engine (``regress``, the Rust crate's Python
binding) does, for generated patterns over the places the two dialects differ: ``.``, ``\\s`` and
``\\S`` inside and outside classes, ``[]`` and ``[^]``, a leading ``]``, ``[:`` in a class,
``\\uXXXX``, ``\\cX``, ``[\\b]`` and class escapes next to a ``-``."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from host.bounded import compiled, unsupported_pattern
from host.ecma import ECMA_SPACE_CHARS

regress = pytest.importorskip("regress", reason="the ECMA-262 reference engine (test extra)")

#: Characters the texts are made of: some of every kind the dialects treat differently.
TEXT_CHARS = "ab-]^[:_0\t\n\r \u00a0\u2028\u3000\ufeff\x08\x0a\x0bA"

CLASS_MEMBERS = st.sampled_from([
    "a", "b", "0", "_", " ", "-", "^", ":", "[", "\\]", "\\s", "\\S", "\\d", "\\D", "\\w", "\\W",
    "\\b", "\\u00a0", "\\u0041", "\\cJ", "\\t", "\\n", "a-c", "\\s-a", "a-\\d", "\\u2028",
])
ATOMS = st.sampled_from([
    "a", "b", "A", "0", "-", ":", " ", ".", "\\s", "\\S", "\\d", "\\w", "\\W", "\\u00a0",
    "\\u3000", "\\u0041", "\\cJ", "\\cM", "\\t", "\\n", "\\]", "\\[", "\\^", "\\.", "\\-",
    "[]", "[^]", "[]a]", "[^]a]",
])


@st.composite
def character_class(draw: st.DrawFn) -> str:
    negated = "^" if draw(st.booleans()) else ""
    members = draw(st.lists(CLASS_MEMBERS, min_size=0, max_size=4))
    return f"[{negated}{''.join(members)}]"


def patterns() -> st.SearchStrategy[str]:
    atom = st.one_of(ATOMS, character_class())
    quantified = st.tuples(atom, st.sampled_from(["", "", "*", "+", "?", "{1,2}"])).map(
        "".join
    )
    sequence = st.lists(quantified, min_size=1, max_size=4).map("".join)
    return st.tuples(
        st.sampled_from(["", "^"]),
        st.lists(sequence, min_size=1, max_size=2).map("|".join),
        st.sampled_from(["", "$"]),
    ).map(lambda parts: f"{parts[0]}(?:{parts[1]}){parts[2]}")


def ecma_finds(pattern: str, text: str) -> bool | None:
    """ECMA-262's verdict, or None if it is no ECMA-262 pattern. With the ``u`` flag, as JSON
    Schema asks; a pattern only Annex B's grammar allows (``[]a]``: a lone ``]``) is read by
    it. The two readings agree on what else the texts hold (no astral code points)."""
    for flags in ("u", ""):
        try:
            regex = regress.Regex(pattern, flags)
        except Exception:
            continue
        return regex.find(text) is not None
    return None


@settings(max_examples=1500, deadline=None)
@given(patterns(), st.lists(st.text(TEXT_CHARS, max_size=6), min_size=1, max_size=4))
def test_re2_with_the_ecma_spelling_agrees_with_an_ecma_engine(
    pattern: str, texts: list[str]
) -> None:
    if ecma_finds(pattern, "") is None:
        return  # not valid ECMA-262 (with the u flag): nothing to agree on
    assert unsupported_pattern(pattern) is None, f"refused an ECMA-262 pattern: {pattern!r}"
    for text in texts:
        ours = compiled(pattern).search(text) is not None
        assert ours == ecma_finds(pattern, text), (pattern, text)


@pytest.mark.parametrize(
    ("pattern", "text", "expected"),
    [
        ("^[\\S]+$", "a\u00a0b", False),  # RE2's \S holds the no-break space
        ("^[^\\S]$", "\u3000", True),
        ("^[a\\S]$", "\ufeff", False),
        ("[]a]", "a]", False),  # ECMA-262: an empty class, then "a]"
        ("^[^]$", "\n", True),
        ("^\\u0041$", "A", True),  # RE2 refused \u
        ("^[[:alpha:]]$", "x", False),  # RE2: a POSIX class
        ("^[[:alpha:]]$", ":]", True),
        ("^[\\b]$", "\x08", True),
        ("^\\cJ$", "\n", True),
        ("^[\\s-a]$", "-", True),
    ],
)
def test_known_differences_between_the_dialects(pattern: str, text: str, expected: bool) -> None:
    assert ecma_finds(pattern, text) is expected  # the reference says so
    assert (compiled(pattern).search(text) is not None) is expected


def test_every_ecma_space_is_a_space_and_nothing_else_is() -> None:
    assert all(ecma_finds("^\\s$", c) for c in ECMA_SPACE_CHARS)
    others = [chr(c) for c in range(0x3100) if chr(c) not in ECMA_SPACE_CHARS]
    assert not any(ecma_finds("^\\s$", c) for c in others[:: 7])
    assert all(compiled("^[^\\S]$").search(c) for c in ECMA_SPACE_CHARS)
