"""Actions annotated with ``int`` that JSON Schema's ``integer`` lets a caller give ``2.0``."""

from __future__ import annotations

from typing import Literal

from providers import Provider

provider = Provider("integral")


@provider.action
def repeat(text: str, n: int) -> str:
    return text * n


@provider.action
def kinds(
    choice: Literal[1, 2],
    maybe: int | None = None,
    many: list[int] | None = None,
    ratio: float = 0.0,
    pair: tuple[int, float] = (0, 0.0),
) -> dict[str, object]:
    """The Python type of what each parameter received."""
    return {
        "choice": type(choice).__name__,
        "maybe": type(maybe).__name__,
        "many": [type(x).__name__ for x in many or []],
        "ratio": type(ratio).__name__,
        "pair": [type(x).__name__ for x in pair],
    }
