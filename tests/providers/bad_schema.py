"""A provider with a hand-written schema that is not JSON Schema: a workers leaves the
meta-schema check to the host, which must refuse the provider naming the action."""

from providers import Provider

provider = Provider("badschema", version="1.0")


@provider.action(output={"type": "nonsense"})
def f() -> int:
    return 1
