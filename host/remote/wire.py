"""The messages between ``RemoteHost`` and ``sandbox serve``: strict JSON frames, bounded.

Nothing from the network is ever unpickled. A request is ``[envelope, input]`` (a call) or
``[envelope]`` (anything else); the envelope is a small JSON object, the input the JSON the
engine's ``encode_input`` produced. A reply is one JSON object naming the request's ``id``.
Both sides decode with :func:`sandbox.protocol.loads` (strict, depth-bounded) behind a socket
``MAXMSGSIZE``, and the server treats a decoded input exactly as a local engine's: it goes
through ``Host.submit`` (plain copy, size limit, schema) like any other.
"""

from __future__ import annotations

from typing import Any

from host.calling import checked_timeout, positive_seconds
from host.catalog import ActionDescriptor, CatalogInvalid, descriptors_from_hello
from host.errors import ERROR_TYPES, Outcome, ProtocolViolation, SandboxError, Usage
from sandbox import protocol

#: Largest message either side accepts (the socket drops bigger ones before they are read).
MAX_MESSAGE_BYTES = 256 * 1024 * 1024
#: Largest request envelope: an id, an action name and a timeout.
MAX_ENVELOPE_BYTES = 4096
#: What a frame may hold beyond a call's encoded input (which the providers' policies bound).
FRAME_SLACK_BYTES = 64 * 1024
MAX_ID_LENGTH = 64
MAX_ACTION_LENGTH = 300
OPS = ("call", "cancel", "ack", "ping", "hello", "providers", "stats")


class BadRequest(ValueError):
    """A request that is not the protocol: answered with an error, never acted on.
    ``request_id``: the request's id, when it had a good one (the answer carries it)."""

    def __init__(self, message: str, request_id: str = "") -> None:
        super().__init__(message)
        self.request_id = request_id


def request(op: str, request_id: str, **fields: Any) -> bytes:
    return protocol.dumps({"op": op, "id": request_id, **fields})


def frame_limit(input_limit: int) -> int:
    """The largest frame a server accepts whose providers accept inputs of ``input_limit``
    bytes encoded (an input is sent as its encoding, the envelope is smaller still)."""
    return min(max(input_limit, MAX_ENVELOPE_BYTES) + FRAME_SLACK_BYTES, MAX_MESSAGE_BYTES)


def parse_envelope(frame: bytes) -> dict[str, Any]:
    """The checked envelope of a client's request. Raises :class:`BadRequest`."""
    if len(frame) > MAX_ENVELOPE_BYTES:
        raise BadRequest(f"request envelope of {len(frame)} bytes (at most {MAX_ENVELOPE_BYTES})")
    try:
        body = protocol.loads(frame, max_depth=2)
    except protocol.ProtocolError as exc:
        raise BadRequest(f"request envelope: {exc}") from None
    if not isinstance(body, dict):
        raise BadRequest("request envelope is not a JSON object")
    request_id, op = body.get("id"), body.get("op")
    if not isinstance(request_id, str) or not 0 < len(request_id) <= MAX_ID_LENGTH:
        raise BadRequest(f"request id must be a string of 1-{MAX_ID_LENGTH} characters")
    # (from here the id is good: the refusal names it, so the client's call ends with it)
    if op not in OPS:
        raise BadRequest(f"unknown op {str(op)[:40]!r}; known: {', '.join(OPS)}", request_id)
    if op == "call":
        action, timeout = body.get("action"), body.get("timeout")
        if not isinstance(action, str) or not 0 < len(action) <= MAX_ACTION_LENGTH:
            raise BadRequest(
                f"action must be a string of 1-{MAX_ACTION_LENGTH} characters", request_id
            )
        if timeout is not None and not positive_seconds(timeout):
            raise BadRequest("timeout must be a positive number of seconds or null", request_id)
        if isinstance(timeout, int):  # (a JSON integer may be too big for a float)
            body["timeout"] = float(timeout)
    return body


#: A caller's ``timeout`` as sent to a server (the server refuses what it refuses).
client_timeout = checked_timeout


def outcome_reply(request_id: str, outcome: Outcome, *, ack: bool = False) -> bytes:
    """A call's reply; ``ack`` asks the client to confirm it read it (see ``Server``'s drain)."""
    extra = {"ack": True} if ack else {}
    try:
        return protocol.dumps({"id": request_id, "outcome": outcome.to_dict(), **extra})
    except (TypeError, ValueError):  # a detail that is not JSON: say so rather than drop it
        error = ProtocolViolation("the call's outcome could not be encoded for the network")
        failure = Outcome.failure(error).to_dict()
        return protocol.dumps({"id": request_id, "outcome": failure, **extra})


def _usage(data: Any) -> Usage:
    if not isinstance(data, dict):
        return Usage()
    reported = data.get("worker_reported")
    return Usage(
        wall_s=float(data.get("wall_s", 0.0)),
        cpu_s=float(data.get("cpu_s", 0.0)),
        max_rss_bytes=int(data.get("max_rss_bytes", 0)),
        source=str(data.get("source", "")),
        worker_reported=(
            (float(reported.get("cpu_s", 0.0)), int(reported.get("max_rss_bytes", 0)))
            if isinstance(reported, dict)
            else None
        ),
    )


def decode_outcome(data: Any) -> Outcome:
    """An :class:`Outcome` from a reply's ``outcome`` object (the shape of ``to_dict``)."""
    if not isinstance(data, dict) or not isinstance(data.get("ok"), bool):
        raise BadRequest("reply outcome is not an object with a boolean 'ok'")
    try:
        usage = _usage(data.get("usage"))
    except (TypeError, ValueError, OverflowError) as exc:  # (10**400 is no float)
        raise BadRequest(f"reply outcome has a bad usage: {type(exc).__name__}") from None
    logs, stdout, stderr = (
        text if isinstance(text := data.get(key, ""), str) else ""
        for key in ("logs", "stdout", "stderr")
    )
    attempts = data.get("attempts", 1)
    attempts = attempts if isinstance(attempts, int) and not isinstance(attempts, bool) else 1
    if data["ok"]:
        return Outcome(ok=True, value=data.get("result"), usage=usage, logs=logs,
                       attempts=attempts, stdout=stdout, stderr=stderr)  # fmt: skip
    error = data.get("error")
    if not isinstance(error, dict):
        raise BadRequest("reply outcome has neither a result nor an error")
    cls: type[SandboxError] = ERROR_TYPES.get(str(error.get("type")), ProtocolViolation)
    message = str(error.get("message", ""))
    details = {
        k: v for k, v in error.items() if k not in ("type", "message") and isinstance(k, str)
    }
    return Outcome.failure(
        cls(message, usage=usage, **details), logs=logs, attempts=attempts,
        stdout=stdout, stderr=stderr,
    )


def parse_reply(frame: bytes) -> dict[str, Any]:
    try:
        body = protocol.loads(frame)
    except protocol.ProtocolError as exc:
        raise BadRequest(f"reply: {exc}") from None
    if not isinstance(body, dict) or not isinstance(body.get("id"), str):
        raise BadRequest("reply is not a JSON object with an id")
    return body


def decode_catalog(entries: Any, endpoint: str) -> list[ActionDescriptor]:
    """The descriptors of a remote host's catalog (``ActionDescriptor.to_dict()`` entries, as
    ``sandbox serve`` and the Ray actor send them), each provider's checked as a HELLO's is;
    :class:`ProtocolViolation` naming ``endpoint`` if they do not hold."""
    by_provider: dict[str, list[dict[str, Any]]] = {}
    for entry in entries if isinstance(entries, list) else []:
        if isinstance(entry, dict):
            by_provider.setdefault(str(entry.get("provider")), []).append(entry)
    try:
        return [
            d
            for provider, actions in by_provider.items()
            for d in descriptors_from_hello(provider, actions)
        ]
    except CatalogInvalid as exc:
        raise ProtocolViolation(f"{endpoint} sent an invalid catalog: {exc}") from None
