"""The provider behind ``host.SandboxExecutor``: runs a cloudpickled callable, confined.

The host sends ``(fn, args, kwargs)`` pickled in the call's binary frame (host to worker is the
trusted direction). The result goes back as JSON in an envelope: ``{"kind": "json", "value": v}``,
``{"kind": "bytes", "data": base64}``, or, only when the host opted in with ``results="pickle"``,
``{"kind": "pickle", "data": base64}``. An exception raised by the callable propagates and becomes
``ActionFailed`` with its type name, message and traceback.
"""

from __future__ import annotations

import base64
from typing import Any

from providers import Provider
from sandbox.worker import current_payload

provider = Provider("executor", version="1.0", description="runs pickled callables")

_INPUT = {
    "type": "object",
    "properties": {"results": {"enum": ["json", "pickle"]}},
    "required": ["results"],
    "additionalProperties": False,
}
_OUTPUT = {
    "type": "object",
    "properties": {"kind": {"enum": ["json", "bytes", "pickle"]}},
    "required": ["kind"],
}


@provider.action(name="call", input=_INPUT, output=_OUTPUT)
def call(results: str) -> dict[str, Any]:
    """Unpickle the callable from the call's payload, run it, wrap the result."""
    import cloudpickle

    payload = current_payload()
    if payload is None:
        raise ValueError("no callable was sent with the call")
    fn, args, kwargs = cloudpickle.loads(payload)
    value = fn(*args, **kwargs)
    if results == "pickle":
        return {"kind": "pickle", "data": base64.b64encode(cloudpickle.dumps(value)).decode()}
    if isinstance(value, bytes | bytearray | memoryview):
        return {"kind": "bytes", "data": base64.b64encode(bytes(value)).decode()}
    return {"kind": "json", "value": value}
