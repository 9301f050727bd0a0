"""A provider that announces more actions than the host accepts (1,500; the limit is 1,000),
each with a distinct schema: on a host without the limit, checking them held the loop."""

from typing import Any

from providers import Provider

provider = Provider("huge", version="1.0")
COUNT = 1500


def _make(index: int) -> Any:
    def action(x: int = 0) -> int:
        return x + index

    return action


for index in range(COUNT):
    provider.action(
        name=f"a{index}",
        input={"type": "object", "properties": {f"x{index}": {"type": "integer"}}},
        output={"type": "integer", "minimum": -index},
    )(_make(index))
