"""A provider whose actions take over the worker's own connection to the host and speak garbage.

This is the threat the host's protocol checks exist for: a hostile input that gains code
execution in the worker can send anything on the worker's connection.
"""

from __future__ import annotations

import gc
import json
import pickle
import time

from providers import Provider
from sandbox.wire import WorkerWire

provider = Provider("takeover", version="1.0")


def _socket() -> WorkerWire:
    """The worker's own connection object (well-framed ZMTP, any content)."""
    for obj in gc.get_objects():
        if isinstance(obj, WorkerWire):
            return obj
    raise RuntimeError("no worker connection found")


def _send_and_wait(frames: list[bytes]) -> bool:
    _socket().send_multipart(frames)
    time.sleep(5)  # the host should kill us long before this ends
    return True


@provider.action
def garbage() -> bool:
    """Send bytes that are not a message."""
    return _send_and_wait([b"\xff\xfe\x00", b"not json at all"])


@provider.action
def unknown_kind() -> bool:
    """Send a well-formed body under a kind the protocol does not have."""
    return _send_and_wait([b"EXEC", b'{"code": "import os"}'])


@provider.action
def pickled_result() -> bool:
    """Send a RESULT whose body is a pickle, hoping the host unpickles it."""
    return _send_and_wait([b"RESULT", pickle.dumps({"call_id": "x", "value": 1})])


@provider.action
def oversized(megabytes: int = 8) -> bool:
    """Send one frame far over the host's message size limit."""
    return _send_and_wait([b"RESULT", b"x" * (megabytes * 1024 * 1024)])


@provider.action
def foreign_result() -> bool:
    """Answer a call this worker is not running."""
    body = {
        "call_id": "c999999",
        "value": 1,
        "usage": {"cpu_s": 0, "max_rss_bytes": 0, "cpu_total_s": 0},
    }
    return _send_and_wait([b"RESULT", json.dumps(body).encode()])


@provider.action
def fine(x: int) -> int:
    """A well-behaved action, to check the host still serves."""
    return x + 1


@provider.action
def lone_surrogate() -> bool:
    """Send a RESULT holding a string that is not valid Unicode (a lone surrogate escape)."""
    body = (b'{"call_id": "' + _current_call_id().encode() + b'", "value": "\\ud800", '
            b'"usage": {"cpu_s": 0, "max_rss_bytes": 0, "cpu_total_s": 0}}')
    return _send_and_wait([b"RESULT", body])


def _current_call_id() -> str:
    """The id of the call being run, found in the worker's own state."""
    import sys

    frame = sys._getframe()
    while frame is not None:
        call = frame.f_locals.get("call")
        if call is not None and hasattr(call, "call_id"):
            return str(call.call_id)
        frame = frame.f_back  # type: ignore[assignment]
    return "unknown"
