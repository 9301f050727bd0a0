"""One pair of actions per ``format`` of draft 2020-12: ``in_<format>`` takes a string of that
format, ``out_<format>`` returns whatever string it is given under an output schema with that
format. The host must refuse a bad value both ways (InputInvalid, OutputInvalid)."""

from __future__ import annotations

from collections.abc import Callable

from providers import Provider

FORMATS = (
    "date-time", "date", "time", "duration", "email", "idn-email", "hostname", "idn-hostname",
    "ipv4", "ipv6", "uri", "uri-reference", "iri", "iri-reference", "uuid", "uri-template",
    "json-pointer", "relative-json-pointer", "regex",
)  # fmt: skip

provider = Provider("formats", description="one input and one output check per format")


def _echo() -> Callable[[str], str]:
    def echo(value: str) -> str:
        return value

    return echo


def _string_input(schema: dict[str, object]) -> dict[str, object]:
    return {
        "type": "object",
        "properties": {"value": schema},
        "required": ["value"],
        "additionalProperties": False,
    }


for _format in FORMATS:
    _name = _format.replace("-", "_")
    _typed = {"type": "string", "format": _format}
    provider.action(name=f"in_{_name}", input=_string_input(_typed), output={"type": "string"})(
        _echo()
    )
    provider.action(
        name=f"out_{_name}", input=_string_input({"type": "string"}), output=_typed
    )(_echo())
