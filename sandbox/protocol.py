"""The wire format between host and worker, sans-IO.

Bytes in, typed messages out, and back; no sockets and no clocks, so every rule here can be tested
with Hypothesis in isolation (the h11 way). Both sides import this module; it must stay small and
import nothing but the standard library.

A message is a list of ZeroMQ frames: ``[kind, body]`` where ``kind`` is a short ASCII word and
``body`` is UTF-8 JSON. Host-to-worker messages may carry one extra binary frame (a payload the host
chose to send, e.g. a pickled callable). Worker-to-host messages are JSON only: the host treats the
worker as hostile, so it never decodes anything but bounded JSON from it, and anything else - an
unknown kind, a third frame, bytes that are not JSON, NaN, an over-deep or oversized body, a field
of the wrong type - raises :class:`ProtocolError`, the only exception decoding may raise.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any

#: Largest nesting of arrays/objects accepted in a body; deeper JSON is a protocol violation.
DEFAULT_MAX_DEPTH = 100
#: Largest message accepted when the caller does not say otherwise.
DEFAULT_MAX_SIZE = 16 * 1024 * 1024
#: Deepest engine input the host sends (the input object itself is level 1). It is the same
#: bound as for what a worker sends; the CALL body around the input adds one level, which
#: :func:`decode_host_message` allows for, so every input the host accepts reaches the worker.
MAX_INPUT_DEPTH = DEFAULT_MAX_DEPTH
#: Room for the CALL body around an input (call id, action name: names are short identifiers).
CALL_ENVELOPE_BYTES = 4 * 1024
#: How long an idle worker polls for the host's next message before it blocks, while messages
#: come quickly and it is alone in its tree (``sandbox.wire``, ``sandbox.worker``). The host
#: allows that poll as CPU outside calls, at most this much per gap between a result and the
#: next call (``host.usage.TreeMeter._tasks``).
WORKER_SPIN_S = 0.0015
#: Tasks of a worker's tree that are the sandbox's own: the launcher, the init, the worker.
TREE_TASKS = 3
#: The worker's own work between sending a result and reading its next message (the loop
#: back to its read; ~30 us measured), which the host also allows outside calls per gap: a
#: legitimate worker called back to back for 27 s at ``cpu_time=1`` was killed for it.
WORKER_TAIL_S = 0.0002

#: Error types a worker may report for a failed call. Everything else is decided by the host.
WORKER_ERROR_TYPES = (
    "ActionFailed",
    "MemoryExceeded",
    "OutputTooLarge",
    "OutputInvalid",
    "CpuExceeded",
)


class ProtocolError(Exception):
    """Bytes that do not form a valid message. The host kills a worker that sends them."""


# --------------------------------------------------------------------------------------------
# Messages


@dataclass(frozen=True)
class Usage:
    """Resource use of one call as measured inside the worker."""

    cpu_s: float = 0.0
    max_rss_bytes: int = 0
    #: The worker's cumulative CPU time after the call; lets the host account for a call that
    #: killed its worker (the supervisor reports the total at death).
    cpu_total_s: float = 0.0


@dataclass(frozen=True)
class Call:
    """Host to worker: run ``action`` (its short name) with an already validated input."""

    call_id: str
    action: str
    input: dict[str, Any]
    payload: bytes | None = None
    #: Whether the worker may poll for its next call after this one (``sandbox.wire``): the
    #: host says no while calls wait for its workers, whose polls would then take CPU from the
    #: host's loop, the bottleneck (the next call comes when the loop gets to it anyway).
    spin: bool = True
    KIND = b"CALL"


@dataclass(frozen=True)
class Shutdown:
    """Host to worker: finish nothing further and exit cleanly."""

    KIND = b"SHUTDOWN"


@dataclass(frozen=True)
class Ping:
    """Host to worker: answer with :class:`Pong` carrying the same ``seq``."""

    seq: int
    KIND = b"PING"


@dataclass(frozen=True)
class Hello:
    """Worker to host, first message: proves the token and announces the catalog and layers."""

    token: str
    pid: int
    provider: dict[str, Any]
    actions: list[dict[str, Any]]
    layers: list[dict[str, Any]]
    KIND = b"HELLO"


@dataclass(frozen=True)
class Unavailable:
    """Worker to host, instead of HELLO: the provider could not be loaded or a layer failed."""

    token: str
    message: str
    traceback: str = ""
    KIND = b"UNAVAILABLE"


@dataclass(frozen=True)
class Result:
    """Worker to host: the call returned ``value`` (not yet validated: the host does that)."""

    call_id: str
    value: Any
    usage: Usage = field(default_factory=Usage)
    KIND = b"RESULT"


@dataclass(frozen=True)
class Failure:
    """Worker to host: the call ended in an error the worker observed itself."""

    call_id: str
    error_type: str
    message: str
    traceback: str = ""
    exception_type: str = ""
    usage: Usage = field(default_factory=Usage)
    #: The exception is one the action declares it raises on purpose (SDK ``raises=``, a
    #: subclass too: the worker has the classes, the host only their names).
    declared: bool = False
    KIND = b"FAILURE"


@dataclass(frozen=True)
class Retire:
    """Worker to host: this worker will serve no more calls and is exiting (e.g. CPU budget)."""

    reason: str
    KIND = b"RETIRE"


@dataclass(frozen=True)
class Pong:
    """Worker to host: the answer to :class:`Ping`."""

    seq: int
    KIND = b"PONG"


HostMessage = Call | Shutdown | Ping
WorkerMessage = Hello | Unavailable | Result | Failure | Retire | Pong
Message = HostMessage | WorkerMessage

_HOST_KINDS: dict[bytes, type[Any]] = {m.KIND: m for m in (Call, Shutdown, Ping)}
_WORKER_KINDS: dict[bytes, type[Any]] = {
    m.KIND: m for m in (Hello, Unavailable, Result, Failure, Retire, Pong)
}


# --------------------------------------------------------------------------------------------
# Encoding


#: Built once: ``json.dumps`` with options builds a new encoder on every call.
_ENCODER = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def dumps(value: Any) -> bytes:
    """Compact, strict JSON (no NaN or Infinity, which are not JSON)."""
    return _ENCODER.encode(value).encode()


#: Field names per message type, looked up once (``dataclasses.fields`` is slow on a hot path).
_FIELD_NAMES: dict[type[Any], tuple[str, ...]] = {}


def _body(message: Message) -> dict[str, Any]:
    """The message's fields as a JSON object; shallow (``asdict`` would deep-copy the input)."""
    cls = type(message)
    names = _FIELD_NAMES.get(cls)
    if names is None:
        names = _FIELD_NAMES[cls] = tuple(f.name for f in fields(message) if f.name != "payload")
    body = {name: getattr(message, name) for name in names}
    if body.get("spin") is True:  # a CALL's default: not on the wire (see without_spin)
        del body["spin"]
    usage = body.get("usage")
    if isinstance(usage, Usage):
        body["usage"] = _usage_body(usage)
    return body


def _usage_body(usage: Usage) -> dict[str, Any]:
    return {
        "cpu_s": usage.cpu_s,
        "max_rss_bytes": usage.max_rss_bytes,
        "cpu_total_s": usage.cpu_total_s,
    }


def encode(message: Message) -> list[bytes]:
    """Turn a message into frames. Raises ``ValueError`` if a value is not JSON-serialisable."""
    frames = [message.KIND, dumps(_body(message))]
    payload = getattr(message, "payload", None)
    if payload is not None:
        frames.append(payload)
    return frames


def encode_result(call_id: str, encoded_value: bytes, usage: Usage) -> list[bytes]:
    """A RESULT whose value the worker already encoded with :func:`dumps` (to check its size):
    the body is spliced around it instead of encoding the value a second time. Decodes exactly
    like ``encode(Result(call_id, value, usage))``."""
    body = b"".join(
        (
            b'{"call_id":',
            dumps(call_id),
            b',"value":',
            encoded_value,
            b',"usage":',
            dumps(_usage_body(usage)),
            b"}",
        )
    )
    return [Result.KIND, body]


def encode_call(
    call_id: str, action: str, encoded_input: bytes, payload: bytes | None = None
) -> list[bytes]:
    """A CALL whose input the host already encoded with :func:`dumps` (to check and measure
    exactly the bytes that are sent): the body is spliced around it. Decodes exactly like
    ``encode(Call(call_id, action, input, payload))``."""
    body = b"".join(
        (b'{"call_id":', dumps(call_id), b',"action":', dumps(action), b',"input":',
         encoded_input, b"}")
    )  # fmt: skip
    return [Call.KIND, body] if payload is None else [Call.KIND, body, payload]


def without_spin(frames: list[bytes]) -> list[bytes]:
    """The frames of :func:`encode_call` with ``"spin":false`` added to the body (see
    :attr:`Call.spin`)."""
    body = frames[1]
    return [frames[0], body[:-1] + b',"spin":false}', *frames[2:]]


def largest_call(input_limit: int) -> int:
    """The biggest CALL (all frames) a worker accepts when its policy's ``input`` limit is
    ``input_limit``: the host refuses larger inputs before sending, so every CALL fits."""
    return input_limit + CALL_ENVELOPE_BYTES


# --------------------------------------------------------------------------------------------
# Decoding


def _reject_constant(name: str) -> Any:
    raise ProtocolError(f"{name} is not valid JSON")


def _finite_float(text: str) -> float:
    """A JSON number literal too large for a float (``1e400``) would parse to infinity."""
    value = float(text)
    if not math.isfinite(value):
        raise ProtocolError(f"number {text[:20]} is out of range")
    return value


#: Built once, like the encoder; rejects NaN/Infinity and numbers beyond a float's range.
_DECODER = json.JSONDecoder(parse_constant=_reject_constant, parse_float=_finite_float)
#: The same without the per-float hook, for a text in which no float can overflow.
_SHORT_DECODER = json.JSONDecoder(parse_constant=_reject_constant)
#: An exponent of three digits or more (the only way a short literal exceeds a float's range).
_LONG_EXPONENT = re.compile(rb"[eE][+-]?[0-9]{3}")


def loads(data: bytes, *, max_depth: int = DEFAULT_MAX_DEPTH) -> Any:
    """Parse strict JSON with a nesting bound; any failure is a :class:`ProtocolError`."""
    # A float literal overflows to infinity only with an exponent of 3+ digits or 309+ digits
    # of mantissa: a short text without such an exponent needs no check per float (the hook
    # cost a Python call for each of a RESULT's three usage floats).
    short = len(data) < 300 and _LONG_EXPONENT.search(data) is None
    try:
        text = data.decode("utf-8")
        value = (_SHORT_DECODER if short else _DECODER).decode(text)
    except ProtocolError:
        raise
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise ProtocolError(f"body is not JSON: {type(exc).__name__}") from None
    if _may_break_bounds(data, max_depth):
        _check_depth(value, max_depth)
    return value


def _may_break_bounds(data: bytes, max_depth: int) -> bool:
    """Whether the walk of :func:`_check_depth` is needed, decided on the raw bytes in C.

    A container nested at depth d needs d opening brackets in the text, so a text with at most
    ``max_depth`` of them cannot nest too deep (brackets inside strings only over-count). A lone
    surrogate can only come from a ``\\u`` escape: valid UTF-8 never decodes to one. Most
    messages (a small call, a small result) have neither, and skip a walk that cost a third of
    a small message's decoding."""
    return b"\\u" in data or data.count(b"[") + data.count(b"{") > max_depth


#: The deepest result value the host decodes: the RESULT body is one level above it.
MAX_RESULT_DEPTH = DEFAULT_MAX_DEPTH - 1


def result_depth_problem(value: Any, encoded: bytes) -> str | None:
    """Why the host would refuse ``value`` (encoded as ``encoded``) for its nesting, or None:
    the worker asks before it sends, so a deep result is the action's ``OutputInvalid``, not a
    protocol violation that costs the worker its life."""
    if not _may_break_bounds(encoded, MAX_RESULT_DEPTH):
        return None
    try:
        _check_depth(value, MAX_RESULT_DEPTH)
    except ProtocolError as exc:
        return f"the result {str(exc).removeprefix('body ')} (the most the host reads)"
    return None


def _check_text(text: str) -> None:
    """A JSON escape such as ``"\\ud800"`` decodes to a lone surrogate: not text, and a string
    that raises on ``.encode()`` wherever the host later uses it."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise ProtocolError("a string holds a lone surrogate (not valid Unicode text)") from None


def _check_depth(value: Any, max_depth: int) -> None:
    """Walk the value once, iteratively: bound the nesting (so later recursive code such as a
    validator cannot blow the stack) and reject strings that are not valid Unicode."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, str):
            _check_text(item)
            continue
        if isinstance(item, dict):
            for key in item:
                _check_text(key)
            children: Sequence[Any] = list(item.values())
        elif isinstance(item, list | tuple):  # (a worker's result: dumps writes tuples as arrays)
            children = item
        else:
            continue
        if depth > max_depth:
            raise ProtocolError(f"body nests deeper than {max_depth} levels")
        stack.extend((child, depth + 1) for child in children)


def _require(body: Mapping[str, Any], name: str, kind: type | tuple[type, ...]) -> Any:
    if name not in body:
        raise ProtocolError(f"missing field {name!r}")
    value = body[name]
    if kind is Any:
        return value
    # bool is an int in Python; a JSON true must not pass for a number.
    if isinstance(value, bool) and bool not in (kind if isinstance(kind, tuple) else (kind,)):
        raise ProtocolError(f"field {name!r} has the wrong type")
    if not isinstance(value, kind):
        raise ProtocolError(f"field {name!r} has the wrong type")
    if isinstance(value, float) and not math.isfinite(value):
        raise ProtocolError(f"field {name!r} is not finite")
    return value


#: Bound on usage numbers (seconds or bytes): far above anything real, small enough for a float.
_MAX_USAGE = 2**53


_USAGE_FIELDS = {"cpu_s": (int, float), "max_rss_bytes": (int,), "cpu_total_s": (int, float)}


def _usage(body: Mapping[str, Any]) -> Usage:
    raw = _require(body, "usage", dict)
    if raw.keys() != _USAGE_FIELDS.keys():
        missing = sorted(_USAGE_FIELDS.keys() - raw.keys())
        raise ProtocolError(f"missing field {missing[0]!r}" if missing else "unknown usage fields")
    for name, kinds in _USAGE_FIELDS.items():  # (every message has one: kept to plain checks)
        value = raw[name]
        if type(value) not in kinds:  # exact types: a JSON true is no number
            raise ProtocolError(f"field {name!r} has the wrong type")
        if not 0 <= value <= _MAX_USAGE:  # (also rules out NaN)
            raise ProtocolError(f"usage field {name!r} is out of range")
    return Usage(float(raw["cpu_s"]), int(raw["max_rss_bytes"]), float(raw["cpu_total_s"]))


def _list_of_dicts(body: Mapping[str, Any], name: str) -> list[dict[str, Any]]:
    items = _require(body, name, list)
    if not all(isinstance(item, dict) for item in items):
        raise ProtocolError(f"field {name!r} must be a list of objects")
    return items  # type: ignore[no-any-return]


def _build(cls: type[Any], body: Mapping[str, Any]) -> Message:
    """Check the body's fields against the message type and construct it."""
    if cls is Hello:
        fields: dict[str, Any] = {
            "token": _require(body, "token", str),
            "pid": _require(body, "pid", int),
            "provider": _require(body, "provider", dict),
            "actions": _list_of_dicts(body, "actions"),
            "layers": _list_of_dicts(body, "layers"),
        }
    elif cls is Unavailable:
        fields = {
            "token": _require(body, "token", str),
            "message": _require(body, "message", str),
            "traceback": _require(body, "traceback", str),
        }
    elif cls is Result:
        fields = {
            "call_id": _require(body, "call_id", str),
            "value": _require(body, "value", Any),
            "usage": _usage(body),
        }
    elif cls is Failure:
        error_type = _require(body, "error_type", str)
        if error_type not in WORKER_ERROR_TYPES:
            raise ProtocolError(f"a worker cannot report error type {error_type[:40]!r}")
        fields = {
            "call_id": _require(body, "call_id", str),
            "error_type": error_type,
            "message": _require(body, "message", str),
            "traceback": _require(body, "traceback", str),
            "exception_type": _require(body, "exception_type", str),
            "usage": _usage(body),
        }
        if "declared" in body:
            fields["declared"] = _require(body, "declared", bool)
    elif cls is Retire:
        fields = {"reason": _require(body, "reason", str)}
    elif cls in (Pong, Ping):
        fields = {"seq": _require(body, "seq", int)}
    elif cls is Call:
        fields = {
            "call_id": _require(body, "call_id", str),
            "action": _require(body, "action", str),
            "input": _require(body, "input", dict),
        }
        if "spin" in body:
            fields["spin"] = _require(body, "spin", bool)
    else:  # Shutdown
        fields = {}
    extra = set(body) - set(fields)
    if extra:
        raise ProtocolError(f"unknown fields {sorted(extra)[:5]!r}")
    return cls(**fields)  # type: ignore[no-any-return]


def _decode(
    frames: Sequence[bytes],
    kinds: Mapping[bytes, type[Any]],
    *,
    allow_payload: bool,
    max_size: int,
    max_depth: int,
) -> Message:
    if not 2 <= len(frames) <= (3 if allow_payload else 2):
        raise ProtocolError(
            f"expected 2{' or 3' if allow_payload else ''} frames, got {len(frames)}"
        )
    if sum(len(f) for f in frames) > max_size:
        raise ProtocolError(f"message larger than {max_size} bytes")
    kind = bytes(frames[0])
    cls = kinds.get(kind)
    if cls is None:
        raise ProtocolError(f"unknown message kind {kind[:20]!r}")
    body = loads(bytes(frames[1]), max_depth=max_depth)
    if not isinstance(body, dict):
        raise ProtocolError("body must be a JSON object")
    message = _build(cls, body)
    if len(frames) == 3:
        if cls is not Call:
            raise ProtocolError("only CALL carries a binary payload")
        assert isinstance(message, Call)
        message = replace(message, payload=bytes(frames[2]))
    return message


def decode_worker_message(
    frames: Sequence[bytes],
    *,
    max_size: int = DEFAULT_MAX_SIZE,
    max_depth: int = DEFAULT_MAX_DEPTH,
) -> WorkerMessage:
    """Decode what a worker sent. Only JSON, only known kinds; raises :class:`ProtocolError`."""
    return _decode(  # type: ignore[return-value]
        frames, _WORKER_KINDS, allow_payload=False, max_size=max_size, max_depth=max_depth
    )


def decode_host_message(
    frames: Sequence[bytes],
    *,
    max_size: int = DEFAULT_MAX_SIZE,
    max_depth: int = MAX_INPUT_DEPTH + 1,
) -> HostMessage:
    """Decode what the host sent (the worker trusts the host, but still checks the shape).

    ``max_depth`` counts the CALL body, one level above the input; ``max_size`` should be
    :func:`largest_call` of the worker's input limit."""
    return _decode(  # type: ignore[return-value]
        frames, _HOST_KINDS, allow_payload=True, max_size=max_size, max_depth=max_depth
    )


# --------------------------------------------------------------------------------------------
# The spawn spec: what the host tells a new worker over its stdin pipe (never argv or environ,
# which other processes can read).


@dataclass(frozen=True)
class SpawnSpec:
    """Everything a worker needs to start, sent once over stdin as JSON."""

    worker_id: str
    token: str
    endpoint: str
    provider_ref: str
    policy: dict[str, Any]
    host_pid: int
    workdir: str
    #: Directories prepended to ``sys.path`` so ``package.module`` references resolve the way
    #: they would for ``python -m`` in the host's working directory (``-I`` drops the cwd).
    search_path: list[str] = field(default_factory=list)
    #: The write end of the pipe on which the supervisor reports how the worker ended.
    status_fd: int = -1
    #: The layers that must be applied (the host resolved the policy's defaults for this machine).
    required: list[str] = field(default_factory=list)
    #: The unprivileged uid and gid to switch to when the host is root.
    uid: int | None = None
    gid: int | None = None
    #: ``controller:path`` lines of the cgroup(s) the host moved the launcher into, or why none.
    cgroup: list[str] = field(default_factory=list)
    cgroup_error: str = ""
    #: The pid the launcher's parent must have: the zygote that forked it, or 0 for the host
    #: (``host_pid``). A launcher whose parent is another process was orphaned before it could
    #: tie its life to its parent, and exits.
    parent_pid: int = 0

    def to_bytes(self) -> bytes:
        return dumps(asdict(self))

    @classmethod
    def from_bytes(cls, data: bytes) -> SpawnSpec:
        body = loads(data)
        if not isinstance(body, dict):
            raise ProtocolError("spawn spec must be a JSON object")
        try:
            return cls(**body)
        except TypeError as exc:
            raise ProtocolError(f"bad spawn spec: {exc}") from None


# ------------------------------------------------------------------ zygote-forked launchers

#: Where the status pipe's write end lives in a launcher forked by the zygote (0..2 are the
#: spec pipe and the log pipes, as for a fresh launcher).
ZYGOTE_STATUS_FD = 3
#: Largest preamble a launcher forked by the zygote reads from stdin.
MAX_PREAMBLE_BYTES = 1 << 20


def encode_preamble(env: dict[str, str], cwd: str) -> bytes:
    """What the host writes to a zygote-forked launcher's stdin before the spawn spec: the
    environment and working directory a fresh launcher would get from ``exec``. They travel on
    the child's own stdin so the zygote, whose memory every later child inherits, never holds
    them."""
    body = dumps({"env": env, "cwd": cwd})
    return len(body).to_bytes(4, "big") + body


def decode_preamble(body: bytes) -> tuple[dict[str, str], str]:
    """The inverse of :func:`encode_preamble`, given the body after its length prefix."""
    raw = loads(body)
    if not isinstance(raw, dict) or set(raw) != {"env", "cwd"}:
        raise ProtocolError("malformed preamble")
    env, cwd = raw["env"], raw["cwd"]
    if not isinstance(env, dict) or not isinstance(cwd, str):
        raise ProtocolError("malformed preamble")
    if not all(isinstance(k, str) and isinstance(v, str) for k, v in env.items()):
        raise ProtocolError("malformed preamble environment")
    return env, cwd


def preamble_size(prefix: bytes) -> int:
    size = int.from_bytes(prefix, "big")
    if len(prefix) != 4 or size > MAX_PREAMBLE_BYTES:
        raise ProtocolError("preamble too large")
    return size
