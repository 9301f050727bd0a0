"""A hostile provider whose output schemas hold keywords a single step of which costs far more
than its size suggests, for ``tests/test_red_loop.py``:

- ``iri``: ``format: iri`` on a 1 KB string (``rfc3987``'s regex backtracked: about a
  second; host.formats' check is linear);
- ``enum``: items of an ``enum`` of 20,000 members, and 12 results not among them (comparing
  one against it and wording the error, which quotes the whole enum, is one keyword step).
"""

from __future__ import annotations

from providers import Provider

provider = Provider("red_schemas", version="1.0")

EMPTY = {"type": "object", "properties": {}, "additionalProperties": False}
IRI_TEXT = "http://" + "a" * 1000
MEMBERS = 20_000


@provider.action(input=EMPTY, output={"type": "string", "format": "iri"})
def iri() -> str:
    return IRI_TEXT


@provider.action(
    input=EMPTY,
    output={"type": "array", "items": {"enum": [{"k": i} for i in range(MEMBERS)]}},
)
def enum() -> list[dict[str, int]]:
    return [{"k": -1}] * 12
