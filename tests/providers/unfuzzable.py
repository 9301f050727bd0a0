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


# Unsatisfiable in ways the generator does not see when it builds the strategy: Hypothesis
# fails at draw time (InvalidArgument; Unsatisfiable after every try is filtered out).
@provider.action(
    input={"type": "object", "propertyNames": {"const": "a"}, "minProperties": 2},
    output={},
)
def one_name_two_keys(**values: int) -> int:
    return len(values)


@provider.action(
    input={"type": "object", "required": ["a", "b"], "maxProperties": 1},
    output={},
)
def two_required_one_allowed(**values: int) -> int:
    return len(values)


@provider.action
def fine(text: str) -> str:
    return text
