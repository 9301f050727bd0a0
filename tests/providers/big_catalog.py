"""A provider with a catalog at the host's limit (1,000 actions, each with distinct schemas
the fast path does not cover): checking it costs the host seconds of CPU, which must be spent
off the loop, once; ``die`` ends the worker so a respawn can be watched."""

import os
from typing import Any

from providers import Provider

provider = Provider("big", version="1.0")
COUNT = 999


def _make(index: int) -> Any:
    def action(x: int = 0) -> int:
        return x + index

    return action


for index in range(COUNT):
    provider.action(
        name=f"a{index}",
        input={
            "type": "object",
            "properties": {"x": {"type": "integer", "minimum": -index - 1, "format": "int32"}},
            "patternProperties": {f"^y{index}": {"type": "string"}},
        },
        output={"anyOf": [{"type": "integer", "minimum": -index}, {"type": "null"}]},
    )(_make(index))


@provider.action
def die() -> None:
    os._exit(3)
