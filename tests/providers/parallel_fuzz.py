"""Four clean actions whose input schema the fuzz generator filters (``oneOf``), so Hypothesis
describes a strategy built from lambdas, parsing their source: fuzzed in parallel
(``--workers 4``) that failed in CPython 3.11's AST conversion (tests/test_fuzz.py)."""

from __future__ import annotations

from typing import Any

from providers import Provider

provider = Provider("parallel", version="1.0")

SCHEMA = {
    "type": "object",
    "properties": {"a": {"oneOf": [{"type": "integer"}, {"minimum": 0}]}},
    "required": ["a"],
}


def _accept(**values: Any) -> None:
    return None


for index in range(4):
    provider.action(name=f"a{index}", input=SCHEMA, output={})(_accept)
