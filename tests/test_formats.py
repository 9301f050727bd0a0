"""Every ``format`` of draft 2020-12 is enforced on inputs and outputs (issue 9, class 7).

jsonschema checks a format only when the package its checker needs is installed, and silently
skips it otherwise: in a plain venv ``date-time``, ``uri``, ``hostname`` and eight more passed
unchecked. The project depends on the checkers' packages (and checks ``iri``,
``iri-reference`` and ``uri-template`` itself, ``host.formats``); these calls go through a real
host and worker, one valid and one invalid value per format, both ways.

The differential tests compare ``host.formats`` with the packages jsonschema would use. Those
are not installed in the project's environment (there, jsonschema would import them in every
process, 1.2 s for rfc3987_syntax's grammar): CI installs them with ``pip install --target`` in
the directory ``SANDBOX_FORMAT_REFERENCES`` names, which only this module adds to its path.
"""

from __future__ import annotations

import ipaddress
import os
import re
import sys
from collections.abc import Iterator

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from host import Host, InputInvalid, OutputInvalid
from host.fastschema import compile_schema
from host.formats import is_iri, is_iri_reference, is_uri_template
from host.validation import _FORMATS, DRAFT_2020_12_FORMATS, unchecked_formats
from tests.conftest import TEST_PROVIDERS

_REFERENCES = os.environ.get("SANDBOX_FORMAT_REFERENCES")
if _REFERENCES and _REFERENCES not in sys.path:
    sys.path.append(_REFERENCES)

#: format -> (a valid value, an invalid one).
EXAMPLES = {
    "date-time": ("2024-01-02T03:04:05Z", "2024-13-02T03:04:05Z"),
    "date": ("2024-01-02", "2024-02-30"),
    "time": ("03:04:05Z", "25:00:00Z"),
    "duration": ("P1DT2H", "P1H"),
    "email": ("a@example.com", "not-an-email"),
    "idn-email": ("用户@例子.广告", "no-at-sign"),
    "hostname": ("example.com", "-bad-.example.com"),
    "idn-hostname": ("例子.广告", "-bad-.例子"),
    "ipv4": ("192.0.2.1", "256.0.0.1"),
    "ipv6": ("2001:db8::1", "2001:db8:::1"),
    "uri": ("https://example.com/a?b=c", "no scheme here"),
    "uri-reference": ("../a/b?c=d", "http://[bad"),
    "iri": ("https://例子.广告/路径", "关系/路径"),
    "iri-reference": ("../路径?q=值", "http://[bad"),
    "uuid": ("123e4567-e89b-12d3-a456-426614174000", "123e4567e89b12d3a456426614174000"),
    "uri-template": ("https://example.com/{id}", "https://example.com/{id"),
    "json-pointer": ("/a/b~0c", "a/b"),
    "relative-json-pointer": ("0/a", "/a"),
    "regex": ("^a+$", "a("),
}


@pytest.fixture(scope="module")
def formats_host() -> Iterator[Host]:
    with Host() as host:
        host.add_provider(str(TEST_PROVIDERS / "formats.py"))
        yield host


def test_every_format_of_the_draft_has_a_checker() -> None:
    assert set(EXAMPLES) == DRAFT_2020_12_FORMATS
    assert unchecked_formats() == frozenset()


@pytest.mark.parametrize("fmt", sorted(EXAMPLES))
def test_a_format_is_enforced_on_input(formats_host: Host, fmt: str) -> None:
    good, bad = EXAMPLES[fmt]
    action = f"formats.in_{fmt.replace('-', '_')}"
    assert formats_host.call(action, {"value": good}) == good
    with pytest.raises(InputInvalid, match=r"\$\.value"):
        formats_host.call(action, {"value": bad})


@pytest.mark.parametrize("fmt", sorted(EXAMPLES))
def test_a_format_is_enforced_on_output(formats_host: Host, fmt: str) -> None:
    good, bad = EXAMPLES[fmt]
    action = f"formats.out_{fmt.replace('-', '_')}"
    assert formats_host.call(action, {"value": good}) == good
    with pytest.raises(OutputInvalid):
        formats_host.call(action, {"value": bad})


def test_the_fast_path_leaves_formats_to_jsonschema() -> None:
    """The fast accept-path must never say yes to a value the format checker rejects: a
    schema with ``format`` anywhere is not compiled."""
    assert compile_schema({"type": "string", "format": "uri"}) is None
    nested = {"type": "object", "properties": {"a": {"type": "string", "format": "date"}}}
    assert compile_schema(nested) is None


# --- host.formats: the linear-time iri, iri-reference and uri-template checkers --------------

VALID_IRIS = [
    "https://例子.广告/路径",
    "http://[::1]/",
    "http://[2001:db8::8:800:200c:417a]:8080/a",
    "http://[::ffff:192.0.2.1]/",
    "http://[1:2:3:4:5:6:7:8]",
    "http://[v1f.a:b!]/",
    "ftp://user:pw@host:21/p%20q?x=%C3%A9#frag/?",
    "urn:isbn:0451450523",
    "a:",
    "mailto:a@b.c",
    "x:/\u00a0\ud7ff\uf900\ufdcf\ufdf0\uffef\U00010000\U000efffd",
    "x:a?\ue000\uf8ff\U000f0000\U0010fffd",  # iprivate: in the query only
    "http://1.2.3.4:/",
]
INVALID_IRIS = [
    "关系/路径",  # no scheme
    "",
    "1a:b",  # a scheme starts with a letter
    "http://[bad",
    "http://[1:2:3:4:5:6:7:8:9]/",
    "http://[1::2::3]/",
    "http://[12345::]/",
    "http://[v.x]/",  # IPvFuture needs a hex digit
    "http://a/%zz",
    "http://a/%4",
    "http://a/%",
    "x:a b",
    "x:a\\b",
    "x:<a>",
    "x:\u009f",  # below ucschar
    "x:\ud7ff\ue000",  # U+E000 is iprivate, not ucschar: not in a path
    "x:\ufdd0",  # a noncharacter between two ucschar ranges
    "x:\ufffe",
    "x:\U0001fffe",
    "x:a#\ue000",  # iprivate not in a fragment
    "x:a#b#c",
    "http://a:8x/",
    "x:\ud800",  # a lone surrogate
]
VALID_REFERENCES = ["../路径?q=值", "", "//a", "#f", "?q", "a/b:c", "/a:b", "%41"]
INVALID_REFERENCES = ["http://[bad", "a:b:c d", ":a", "%zz", "a b", "//[::1"]

VALID_TEMPLATES = [
    "",
    "https://example.com/{id}",
    "{var}{+var}{#var}{.var}{/var}{;var}{?var}{&var}",
    "{=a}{,a}{!a}{@a}{|a}",  # reserved operators
    "{a,b.c,d_e:3,f*}",
    "{var:1}{var:9999}",
    "{%41b}",
    "{a.b.c}",
    "x%20y/é/\ue000",
    "!#$&()*+,-./09:;=?@AZ[]_az~",
]
INVALID_TEMPLATES = [
    "{var:10000}",
    "{var:0}",
    "{var:}",
    "{}",
    "{",
    "}",
    "{a}}",
    "{{a}",
    "https://example.com/{id",
    "{a b}",
    "{a..b}",
    "{.a}{a.}",
    "{a,}",
    "{++a}",
    "{a:3*}",
    "{%4}",
    "a'b",  # ' is not among the literals
    "a b",
    'a"b',
    "<a>",
    "a\\b",
    "a^b",
    "a`b",
    "a|b",
    "%zz",
    "\ud800",
]


@pytest.mark.parametrize("value", VALID_IRIS)
def test_a_valid_iri(value: str) -> None:
    assert is_iri(value) and is_iri_reference(value)


@pytest.mark.parametrize("value", INVALID_IRIS)
def test_an_invalid_iri(value: str) -> None:
    assert not is_iri(value)


@pytest.mark.parametrize("value", VALID_REFERENCES)
def test_a_valid_iri_reference(value: str) -> None:
    assert is_iri_reference(value)


@pytest.mark.parametrize("value", INVALID_REFERENCES)
def test_an_invalid_iri_reference(value: str) -> None:
    assert not is_iri_reference(value)


@pytest.mark.parametrize("value", VALID_TEMPLATES)
def test_a_valid_uri_template(value: str) -> None:
    assert is_uri_template(value)


@pytest.mark.parametrize("value", INVALID_TEMPLATES)
def test_an_invalid_uri_template(value: str) -> None:
    assert not is_uri_template(value)


def test_the_linear_checkers_are_the_hosts() -> None:
    """Registered whether or not jsonschema found rfc3987_syntax / uri_template."""
    assert _FORMATS.checkers["iri"][0] is is_iri
    assert _FORMATS.checkers["iri-reference"][0] is is_iri_reference
    assert _FORMATS.checkers["uri-template"][0] is is_uri_template
    assert not _FORMATS.conforms("http://[::1", "iri")
    assert _FORMATS.conforms(12, "iri")  # a format applies to strings only


def test_a_long_iri_is_checked() -> None:
    """A 200,000-character IRI is checked (rfc3987_syntax took seconds per 5,000)."""
    assert is_iri("http://a/" + "é" * 200_000)
    assert not is_iri("http://a/" + "é" * 200_000 + " ")
    assert is_uri_template("{a}" * 70_000) and not is_uri_template("{a}" * 70_000 + "{")


#: Where the references depart from the RFCs (we follow the RFCs): rfc3987_syntax rejects most
#: IPv6 literals with "::" ("[::1]", "[1::2]", "[fe80::1:2]"; it accepts "[1::2:3:4:5:6:7]"),
#: which RFC 3986 3.2.2 admits (IPv6address = [ *5( h16 ":" ) h16 ] "::" h16 / ...); our
#: IPv6 rule is checked against Python's ipaddress instead (test_ipv6_agrees_with_ipaddress)...
_IPV6_COMPRESSED = re.compile(r"\[[^\]]*::")
#: ... and uri_template rejects a prefix of 4 digits (RFC 6570 2.4.1: max-length =
#: %x31-39 0*3DIGIT, "less than 10000") and a pct-encoded varname (2.3: varchar = ALPHA /
#: DIGIT / "_" / pct-encoded) and an op-reserve operator (2.2: operator = op-level2 /
#: op-level3 / op-reserve; "=" "," "!" "@" "|" are in the grammar, reserved for extensions) ...
_TEMPLATE_STRICTER_REFERENCE = re.compile(r":[1-9][0-9]{3}[*,}]|\{[^{}]*%|\{[=,!@|]")
#: ... and accepts any character but a brace outside expressions (2.1: the literals exclude
#: space, " ' < > \\ ^ ` |, controls, non-ucschar and bad pct-encodings) and "a..b" as a
#: varname (2.3: varname = varchar *( ["."] varchar )) ...
_OUTSIDE_EXPRESSIONS = re.compile(r"\{[^{}]*\}")
_RFC_LITERAL = re.compile(
    r"(?:[!#$&(-;=?-\[\]_a-z~\xa0-\ud7ff\ue000-\ufdcf\ufdf0-\uffef]|%[0-9A-Fa-f]{2})*"
)


#: It also accepts a trailing ",", ";" "/" "=" after an expression's first character ("{a/b}",
#: "{0;}"), a "." not between two varchars ("{a.}") and a prefix with a leading zero
#: ("{a:01}"; 2.4.1: max-length = %x31-39 0*3DIGIT); 2.2: the operator is the first character.
_LAX_EXPRESSION = re.compile(r",\}|:0|\{[^{}]+[;/=]|\{[^{}]*\.(?![A-Za-z0-9_%])")


def _reference_laxer(value: str) -> bool:
    rest = _OUTSIDE_EXPRESSIONS.sub("", value).replace("{", "").replace("}", "")
    return (
        ".." in value
        or _LAX_EXPRESSION.search(value) is not None
        or _RFC_LITERAL.fullmatch(rest) is None
    )


#: The grammars' alphabet, so that generated strings are often (nearly) valid.
ALPHABET = ":/?#[]@!$&'()*+,;=%-._~aZ09vFé\ue000\ufdd0{}|^ "


def _iris() -> st.SearchStrategy[str]:
    seg = st.text(alphabet="aZ09-._~!$&'()*+,;=:@é%", max_size=6)
    host = st.one_of(
        st.text(alphabet="aZ09-.é%", max_size=6),
        st.sampled_from(["[::1]", "[1:2::3]", "[v1.a]", "1.2.3.4", "[::1.2.3.4]", "[1::2::3]"]),
    )
    return st.builds(
        lambda scheme, auth, segs, q, f: scheme + auth + "/".join(segs) + q + f,
        st.sampled_from(["http:", "a+b:", "x:", "", "1:"]),
        st.one_of(st.just(""), host.map(lambda h: "//" + h), host.map(lambda h: "//u@" + h + ":8")),
        st.lists(seg, max_size=4),
        st.one_of(st.just(""), st.text(alphabet="?a\ue000/%é", max_size=4).map(lambda q: "?" + q)),
        st.one_of(st.just(""), st.text(alphabet="#a/?%é", max_size=4).map(lambda f: "#" + f)),
    )


def _templates() -> st.SearchStrategy[str]:
    var = st.from_regex(r"\A[a-zA-Z0-9_%.]{0,4}(:[0-9]{1,5}|\*)?\Z")
    expr = st.builds(
        lambda op, vs: "{" + op + ",".join(vs) + "}",
        st.sampled_from(["", "+", "#", ".", "/", ";", "?", "&", "=", ",", "!", "@", "|", "++"]),
        st.lists(var, max_size=3),
    )
    return st.lists(st.one_of(expr, st.text(alphabet=ALPHABET, max_size=3)), max_size=4).map(
        "".join
    )


@settings(max_examples=400, deadline=None)
@given(st.one_of(st.text(alphabet=ALPHABET, max_size=12), _iris()))
def test_iri_agrees_with_rfc3987_syntax(value: str) -> None:
    syntax = pytest.importorskip(
        "rfc3987_syntax",
        reason="the reference is not installed (pip install --target DIR rfc3987-syntax, "
        "and SANDBOX_FORMAT_REFERENCES=DIR)",
    )
    expected_iri = syntax.is_valid_syntax("iri", value)
    expected_ref = syntax.is_valid_syntax("iri_reference", value)
    if _IPV6_COMPRESSED.search(value) and (is_iri(value), is_iri_reference(value)) > (
        expected_iri,
        expected_ref,
    ):
        return  # rfc3987_syntax rejects "[::1]": see _IPV6_COMPRESSED
    assert is_iri(value) == expected_iri, value
    assert is_iri_reference(value) == expected_ref, value


@settings(max_examples=400, deadline=None)
@given(st.one_of(st.text(alphabet=ALPHABET, max_size=12), _templates()))
def test_uri_template_agrees_with_uri_template(value: str) -> None:
    reference = pytest.importorskip(
        "uri_template",
        reason="the reference is not installed (pip install --target DIR uri-template, "
        "and SANDBOX_FORMAT_REFERENCES=DIR)",
    )
    ours = is_uri_template(value)
    theirs = reference.validate(value)
    if ours and not theirs and _TEMPLATE_STRICTER_REFERENCE.search(value):
        return  # see _TEMPLATE_STRICTER_REFERENCE
    if theirs and not ours and _reference_laxer(value):
        return  # see _OUTSIDE_EXPRESSIONS
    assert ours == theirs, value


@settings(max_examples=400, deadline=None)
@given(
    st.one_of(
        st.text(alphabet="0123456789abcdefABCDEFg:.", max_size=24),
        st.from_regex(r"\A([0-9a-f]{1,4}:){0,7}(:[0-9a-f]{1,4}){0,7}(:[0-9.]{7,9})?\Z"),
    )
)
def test_ipv6_agrees_with_ipaddress(text: str) -> None:
    """The IPv6address rule against an independent reference, Python's ipaddress (RFC 4291's
    text forms, which RFC 3986 3.2.2 follows)."""
    try:
        ipaddress.IPv6Address(text)
        expected = True
    except ValueError:
        expected = False
    assert is_iri(f"http://[{text}]/") == expected, text
