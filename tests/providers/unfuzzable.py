"""An action sandbox fuzz cannot generate inputs for, beside a fine one (tests/test_fuzz.py)."""

from providers import Provider

provider = Provider("unfuzzable", version="1.0")


@provider.action(
    input={
        "type": "object",
        "properties": {"n": {"type": "integer", "minimum": 5, "maximum": 1}},
        "required": ["n"],
    },
    output={},
)
def never(n: int) -> int:
    """No value satisfies its input schema: it can never be called."""
    return n



@provider.action
def fine(text: str) -> str:
    return text
