"""A provider for the Mistral integration tests (loaded through tests/mistral_data/sandbox.toml)."""

import time

from providers import Provider

provider = Provider("flow", version="1.0")


@provider.action(
    input={
        "type": "object",
        "properties": {
            "text": {"type": "string"},
            "min_length": {"type": "integer", "default": 1},
            "tags": {"type": "array", "items": {"type": "string"}, "default": ["a", "b"]},
        },
        "required": ["text"],
        "additionalProperties": False,
    },
    output={"type": "integer"},
    safe_rerun=True,
)
def count(text, min_length=1, tags=None):
    """Count the words of at least min_length characters."""
    return sum(1 for word in text.split() if len(word) >= min_length)


@provider.action(input={"type": "object", "properties": {"value": {}}}, output={})
def boom(value=None):
    raise RuntimeError(f"boom {value}")


@provider.action(input={"type": "object", "properties": {}}, output={})
def hang():
    while True:
        time.sleep(1)


@provider.action(
    input={
        "type": "object",
        "properties": {"mistral_execution": {"type": "object"}},
        "additionalProperties": False,
    },
    output={},
)
def whoami(mistral_execution):
    return mistral_execution
