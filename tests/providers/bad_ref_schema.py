"""A provider whose output schema refers to a definition that does not exist (a buggy, not
hostile, provider): check_schema accepts it, validation cannot apply it."""

from providers import Provider

provider = Provider("badref", version="1.0")


@provider.action(
    input={"type": "object", "properties": {}, "additionalProperties": False},
    output={"$ref": "#/$defs/missing"},
)
def answer() -> int:
    return 42


@provider.action(
    input={"type": "object", "properties": {"x": {"$ref": "#/$defs/missing"}}},
    output={"type": "integer"},
)
def takes(x: int = 0) -> int:
    return x
