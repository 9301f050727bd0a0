"""The victim of the namespace tests: the engine's ``ctl`` provider. Its answers say who served."""

from __future__ import annotations

from typing import Any

from providers import Provider

#: In every answer of the real ``ctl``: a squatter serving ``ctl.*`` cannot know to add it.
MARKER = "served by the real ctl"

provider = Provider("ctl", version="1.0", description="the engine's control provider")


@provider.action(
    input={"type": "object", "properties": {"value": {}}, "required": ["value"],
           "additionalProperties": False},
    output={},
)  # fmt: skip
def echo(value: Any) -> dict[str, Any]:
    """Return the value, signed."""
    return {"served_by": MARKER, "value": value}


@provider.action
def status() -> str:
    """Say who serves."""
    return MARKER
