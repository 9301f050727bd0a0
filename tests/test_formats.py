"""Every ``format`` of draft 2020-12 is enforced on inputs and outputs (issue 9, class 7).

jsonschema checks a format only when the package its checker needs is installed, and silently
skips it otherwise: in a plain venv ``date-time``, ``uri``, ``hostname`` and eight more passed
unchecked. The project now depends on ``jsonschema[format-nongpl]``; these calls go through a
real host and worker, one valid and one invalid value per format, both ways.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from host import Host, InputInvalid, OutputInvalid
from host.fastschema import compile_schema
from host.validation import DRAFT_2020_12_FORMATS, unchecked_formats
from tests.conftest import TEST_PROVIDERS

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
