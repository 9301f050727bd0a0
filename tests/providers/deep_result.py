"""An honest provider whose results nest deeply: past the host's bound they are the action's
``OutputInvalid``, not a protocol violation of the worker."""

from __future__ import annotations

import secrets

from providers import Provider

provider = Provider("deep_result")
TOKEN = secrets.token_hex(8)


@provider.action
def nest(levels: int) -> object:
    """``levels`` lists, each inside the one before (built without recursion)."""
    value: list[object] = []
    for _ in range(levels - 1):
        value = [value]
    return value


@provider.action
def nest_tuples(levels: int) -> object:
    """The same with tuples, which JSON encodes as arrays too."""
    value: tuple[object, ...] = ()
    for _ in range(levels - 1):
        value = (value,)
    return value


@provider.action
def token() -> str:
    return TOKEN
