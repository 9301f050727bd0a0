"""A provider whose output schema uses an ECMA-262 lookahead, which RE2 cannot run: the host
rejects its catalog (naming the action and the pattern) rather than fall back to a
backtracking engine."""

from providers import Provider

provider = Provider("lookahead", version="1.0")


@provider.action(
    input={"type": "object", "properties": {}, "additionalProperties": False},
    output={"type": "string", "pattern": "^(?=.*[0-9]).+$"},
)
def code() -> str:
    return "a1"
