"""Tests for the sans-IO wire format in :mod:`sandbox.protocol`.

The host treats the worker as hostile: whatever bytes a worker sends, decoding must either give a
well-typed message or raise :class:`ProtocolError` - never any other exception. These tests check
the round trip of every message type, fuzz the decoders, and pin down each specific rejection.
"""

from __future__ import annotations

import json
import math
import pickle
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sandbox import protocol
from sandbox.protocol import (
    DEFAULT_MAX_DEPTH,
    WORKER_ERROR_TYPES,
    Call,
    Failure,
    Hello,
    Ping,
    Pong,
    ProtocolError,
    Result,
    Retire,
    Shutdown,
    SpawnSpec,
    Unavailable,
    Usage,
    decode_host_message,
    decode_worker_message,
    dumps,
    encode,
    loads,
)

FAST = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# --------------------------------------------------------------------------------------------
# Strategies

json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**63)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20)
)
#: Arbitrary JSON values; ``max_leaves`` bounds the nesting far below DEFAULT_MAX_DEPTH.
json_values = st.recursive(
    json_scalars,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4)
    ),
    max_leaves=12,
)
json_objects = st.dictionaries(st.text(max_size=10), json_values, max_size=4)

texts = st.text(max_size=30)
# Usage numbers are bounded by the protocol (2**53: far above any real second or byte count).
non_negative_floats = st.floats(min_value=0.0, max_value=2.0**53, allow_nan=False)
usages = st.builds(
    Usage,
    cpu_s=non_negative_floats,
    max_rss_bytes=st.integers(min_value=0, max_value=2**53),
    cpu_total_s=non_negative_floats,
)

calls = st.builds(
    Call,
    call_id=texts,
    action=texts,
    input=json_objects,
    payload=st.none() | st.binary(max_size=64),
)
pings = st.builds(Ping, seq=st.integers())
host_messages = st.one_of(calls, st.just(Shutdown()), pings)

hellos = st.builds(
    Hello,
    token=texts,
    pid=st.integers(),
    provider=json_objects,
    actions=st.lists(json_objects, max_size=3),
    layers=st.lists(json_objects, max_size=3),
)
unavailables = st.builds(Unavailable, token=texts, message=texts, traceback=texts)
results = st.builds(Result, call_id=texts, value=json_values, usage=usages)
failures = st.builds(
    Failure,
    call_id=texts,
    error_type=st.sampled_from(WORKER_ERROR_TYPES),
    message=texts,
    traceback=texts,
    exception_type=texts,
    usage=usages,
)
retires = st.builds(Retire, reason=texts)
pongs = st.builds(Pong, seq=st.integers())
worker_messages = st.one_of(hellos, unavailables, results, failures, retires, pongs)

spawn_specs = st.builds(
    SpawnSpec,
    worker_id=texts,
    token=texts,
    endpoint=texts,
    provider_ref=texts,
    policy=json_objects,
    host_pid=st.integers(min_value=0, max_value=2**31),
    workdir=texts,
    search_path=st.lists(texts, max_size=3),
    status_fd=st.integers(min_value=-1, max_value=1024),
)

WORKER_KINDS = [b"HELLO", b"UNAVAILABLE", b"RESULT", b"FAILURE", b"RETIRE", b"PONG"]
HOST_KINDS = [b"CALL", b"SHUTDOWN", b"PING"]

ZERO_USAGE = {"cpu_s": 0.0, "max_rss_bytes": 0, "cpu_total_s": 0.0}

#: One valid body per worker kind (checked valid by test_valid_bodies_decode).
VALID_WORKER_BODIES: dict[bytes, dict[str, Any]] = {
    b"HELLO": {"token": "t", "pid": 1, "provider": {}, "actions": [{}], "layers": []},
    b"UNAVAILABLE": {"token": "t", "message": "m", "traceback": ""},
    b"RESULT": {"call_id": "c", "value": 1, "usage": dict(ZERO_USAGE)},
    b"FAILURE": {
        "call_id": "c",
        "error_type": "ActionFailed",
        "message": "m",
        "traceback": "",
        "exception_type": "",
        "usage": dict(ZERO_USAGE),
    },
    b"RETIRE": {"reason": "r"},
    b"PONG": {"seq": 3},
}
VALID_HOST_BODIES: dict[bytes, dict[str, Any]] = {
    b"CALL": {"call_id": "c", "action": "a", "input": {}},
    b"SHUTDOWN": {},
    b"PING": {"seq": 3},
}


def worker_frames(kind: bytes, body: Any) -> list[bytes]:
    return [kind, json.dumps(body).encode()]


def result_body(**overrides: Any) -> dict[str, Any]:
    body = {"call_id": "c", "value": 1, "usage": dict(ZERO_USAGE)}
    body.update(overrides)
    return body


def usage_body(**overrides: Any) -> dict[str, Any]:
    usage = dict(ZERO_USAGE)
    usage.update(overrides)
    return result_body(usage=usage)


def decode_or_protocol_error(decoder: Any, frames: list[bytes]) -> Any:
    """Decode; a ProtocolError is fine, any other exception fails the test with a clear message."""
    try:
        return decoder(frames)
    except ProtocolError:
        return None
    except Exception as exc:  # pragma: no cover - only reached on a bug
        pytest.fail(f"{decoder.__name__}({frames!r:.300}) raised {type(exc).__name__}: {exc}")


# --------------------------------------------------------------------------------------------
# 1. Round trips


@FAST
@given(worker_messages)
def test_worker_message_round_trip(message: Any) -> None:
    frames = encode(message)
    assert len(frames) == 2
    assert frames[0] == type(message).KIND
    decoded = decode_worker_message(frames)
    assert type(decoded) is type(message)
    assert decoded == message


@FAST
@given(host_messages)
def test_host_message_round_trip(message: Any) -> None:
    frames = encode(message)
    assert frames[0] == type(message).KIND
    decoded = decode_host_message(frames)
    assert type(decoded) is type(message)
    assert decoded == message


@FAST
@given(calls.filter(lambda c: c.payload is not None))
def test_call_with_payload_round_trip(call: Call) -> None:
    frames = encode(call)
    assert len(frames) == 3
    assert frames[2] == call.payload
    decoded = decode_host_message(frames)
    assert isinstance(decoded, Call)
    assert decoded.payload == call.payload
    assert decoded == call


@FAST
@given(calls.map(lambda c: Call(c.call_id, c.action, c.input)))
def test_call_without_payload_round_trip(call: Call) -> None:
    frames = encode(call)
    assert len(frames) == 2
    decoded = decode_host_message(frames)
    assert isinstance(decoded, Call)
    assert decoded.payload is None
    assert decoded == call


def test_call_with_empty_payload_keeps_it() -> None:
    call = Call("c", "a", {}, b"")
    assert decode_host_message(encode(call)) == call


@FAST
@given(calls)
def test_a_spliced_call_decodes_like_an_encoded_one(call: Call) -> None:
    from sandbox.protocol import dumps, encode_call

    frames = encode_call(call.call_id, call.action, dumps(call.input), call.payload)
    assert frames == encode(call)
    assert decode_host_message(frames) == call


def test_the_worker_accepts_a_call_at_the_input_depth_and_size_limits() -> None:
    """What the host may send (an input nested MAX_INPUT_DEPTH deep, or as large as the input
    limit) is what the worker's decoder accepts; one level more is refused."""
    from sandbox.protocol import MAX_INPUT_DEPTH, dumps, encode_call, largest_call

    value: Any = {}
    for _ in range(MAX_INPUT_DEPTH - 1):
        value = {"k": value}
    frames = encode_call("c1", "a" * 128, dumps(value))
    assert decode_host_message(frames) == Call("c1", "a" * 128, value)
    with pytest.raises(ProtocolError, match="deeper"):
        decode_host_message(encode_call("c1", "a", dumps({"k": value})))
    limit = 3 * 1024 * 1024
    text = "x" * (limit - len(b'{"s":""}'))
    frames = encode_call("c" + "9" * 20, "a" * 128, dumps({"s": text}))
    assert decode_host_message(frames, max_size=largest_call(limit)).input == {"s": text}


def test_shutdown_round_trip() -> None:
    frames = encode(Shutdown())
    assert frames == [b"SHUTDOWN", b"{}"]
    assert decode_host_message(frames) == Shutdown()


@pytest.mark.parametrize("error_type", WORKER_ERROR_TYPES)
@FAST
@given(call_id=texts, message=texts, traceback=texts, exception_type=texts, usage=usages)
def test_failure_round_trip_every_error_type(
    error_type: str, call_id: str, message: str, traceback: str, exception_type: str, usage: Usage
) -> None:
    failure = Failure(call_id, error_type, message, traceback, exception_type, usage)
    decoded = decode_worker_message(encode(failure))
    assert decoded == failure
    assert isinstance(decoded, Failure)
    assert decoded.error_type == error_type


@FAST
@given(results)
def test_usage_types_survive_round_trip(result: Result) -> None:
    decoded = decode_worker_message(encode(result))
    assert isinstance(decoded, Result)
    assert type(decoded.usage.cpu_s) is float
    assert type(decoded.usage.cpu_total_s) is float
    assert type(decoded.usage.max_rss_bytes) is int


@FAST
@given(worker_messages)
def test_worker_message_rejected_by_host_decoder(message: Any) -> None:
    with pytest.raises(ProtocolError, match="unknown message kind"):
        decode_host_message(encode(message))


@FAST
@given(host_messages)
def test_host_message_rejected_by_worker_decoder(message: Any) -> None:
    with pytest.raises(ProtocolError):
        decode_worker_message(encode(message))


@pytest.mark.parametrize("kind", HOST_KINDS)
def test_host_kinds_rejected_by_worker_decoder_with_two_frames(kind: bytes) -> None:
    with pytest.raises(ProtocolError, match="unknown message kind"):
        decode_worker_message([kind, dumps(VALID_HOST_BODIES[kind])])


@FAST
@given(spawn_specs)
def test_spawn_spec_round_trip(spec: SpawnSpec) -> None:
    assert SpawnSpec.from_bytes(spec.to_bytes()) == spec


def test_valid_bodies_decode() -> None:
    """The hand-written bodies the rejection tests mutate are valid to begin with."""
    for kind, body in VALID_WORKER_BODIES.items():
        assert kind == decode_worker_message(worker_frames(kind, body)).KIND
    for kind, body in VALID_HOST_BODIES.items():
        assert kind == decode_host_message(worker_frames(kind, body)).KIND


# --------------------------------------------------------------------------------------------
# 2. Robustness: decoding never raises anything but ProtocolError


@FUZZ
@given(st.lists(st.binary(max_size=64), max_size=5))
def test_worker_decoder_arbitrary_frames(frames: list[bytes]) -> None:
    decode_or_protocol_error(decode_worker_message, frames)


@FUZZ
@given(st.lists(st.binary(max_size=64), max_size=5))
def test_host_decoder_arbitrary_frames(frames: list[bytes]) -> None:
    decode_or_protocol_error(decode_host_message, frames)


@FUZZ
@given(st.sampled_from(WORKER_KINDS + HOST_KINDS), st.binary(max_size=200))
def test_known_kind_arbitrary_body_bytes(kind: bytes, body: bytes) -> None:
    decode_or_protocol_error(decode_worker_message, [kind, body])
    decode_or_protocol_error(decode_host_message, [kind, body])


@FUZZ
@given(st.sampled_from(WORKER_KINDS + HOST_KINDS), json_objects)
def test_known_kind_arbitrary_json_object(kind: bytes, body: dict[str, Any]) -> None:
    frames = [kind, json.dumps(body).encode()]
    decode_or_protocol_error(decode_worker_message, frames)
    decode_or_protocol_error(decode_host_message, frames)


@st.composite
def mutated_bodies(draw: st.DrawFn) -> tuple[bytes, dict[str, Any]]:
    """A valid body with some fields replaced, deleted or added: close to valid, so the field
    checks (not just the kind lookup) get exercised."""
    bodies = {**VALID_WORKER_BODIES, **VALID_HOST_BODIES}
    kind = draw(st.sampled_from(sorted(bodies)))
    body = json.loads(json.dumps(bodies[kind]))
    for name in list(body):
        action = draw(st.sampled_from(["keep", "keep", "replace", "delete"]))
        if action == "replace":
            body[name] = draw(json_values)
        elif action == "delete":
            del body[name]
    if "usage" in body and isinstance(body["usage"], dict):
        for name in list(body["usage"]):
            if draw(st.booleans()):
                body["usage"][name] = draw(json_values)
    if draw(st.booleans()):
        body.update(draw(json_objects))
    return kind, body


@FUZZ
@given(mutated_bodies())
def test_known_kind_mutated_valid_body(kind_and_body: tuple[bytes, dict[str, Any]]) -> None:
    kind, body = kind_and_body
    frames = [kind, json.dumps(body).encode()]
    for decoder in (decode_worker_message, decode_host_message):
        message = decode_or_protocol_error(decoder, frames)
        if message is not None:
            # Anything accepted must be of the right kind and survive its own round trip.
            assert kind == message.KIND
            assert decoder(encode(message)) == message


@FUZZ
@given(st.binary(max_size=200))
def test_spawn_spec_arbitrary_bytes(data: bytes) -> None:
    try:
        SpawnSpec.from_bytes(data)
    except ProtocolError:
        pass
    except Exception as exc:  # pragma: no cover - only reached on a bug
        pytest.fail(f"SpawnSpec.from_bytes({data!r}) raised {type(exc).__name__}: {exc}")


@FUZZ
@given(st.one_of(json_objects, json_values, spawn_specs.map(lambda s: json.loads(s.to_bytes()))))
def test_spawn_spec_arbitrary_json(body: Any) -> None:
    data = json.dumps(body).encode()
    try:
        spec = SpawnSpec.from_bytes(data)
    except ProtocolError:
        return
    except Exception as exc:  # pragma: no cover - only reached on a bug
        pytest.fail(f"SpawnSpec.from_bytes({data!r}) raised {type(exc).__name__}: {exc}")
    assert isinstance(spec, SpawnSpec)


# --------------------------------------------------------------------------------------------
# 3. Specific rejections


@pytest.mark.parametrize("pickle_protocol", range(pickle.HIGHEST_PROTOCOL + 1))
def test_pickle_body_rejected(pickle_protocol: int) -> None:
    body = pickle.dumps(result_body(), protocol=pickle_protocol)
    with pytest.raises(ProtocolError):
        decode_worker_message([b"RESULT", body])


@pytest.mark.parametrize("kind", WORKER_KINDS)
def test_third_frame_from_worker_rejected(kind: bytes) -> None:
    frames = [*worker_frames(kind, VALID_WORKER_BODIES[kind]), b"payload"]
    with pytest.raises(ProtocolError, match="frames"):
        decode_worker_message(frames)


@pytest.mark.parametrize("kind", [b"SHUTDOWN", b"PING"])
def test_payload_only_on_call(kind: bytes) -> None:
    frames = [*worker_frames(kind, VALID_HOST_BODIES[kind]), b"payload"]
    with pytest.raises(ProtocolError, match="only CALL"):
        decode_host_message(frames)


def test_four_frames_to_worker_rejected() -> None:
    frames = [*worker_frames(b"CALL", VALID_HOST_BODIES[b"CALL"]), b"p", b"q"]
    with pytest.raises(ProtocolError, match="frames"):
        decode_host_message(frames)


@pytest.mark.parametrize("frames", [[], [b"PONG"], [b'{"seq":1}']])
def test_too_few_frames_rejected(frames: list[bytes]) -> None:
    with pytest.raises(ProtocolError, match="frames"):
        decode_worker_message(frames)
    with pytest.raises(ProtocolError, match="frames"):
        decode_host_message(frames)


@pytest.mark.parametrize("kind", [b"", b"BOGUS", b"result", b"RESULT ", b"\xff\xfe", b"CALL"])
def test_unknown_kind_rejected(kind: bytes) -> None:
    with pytest.raises(ProtocolError, match="unknown message kind"):
        decode_worker_message([kind, dumps(VALID_WORKER_BODIES[b"RESULT"])])


@pytest.mark.parametrize(
    "body",
    [
        b'{"reason":"\xff"}',
        b'{"reason":"\xc3"}',  # truncated two-byte sequence
        b'{"reason":"\xed\xa0\x80"}',  # UTF-8-encoded surrogate
        b"\xfe\xff\x00{\x00}",
    ],
)
def test_invalid_utf8_rejected(body: bytes) -> None:
    with pytest.raises(ProtocolError, match="not JSON"):
        decode_worker_message([b"RETIRE", body])


@pytest.mark.parametrize("constant", ["NaN", "Infinity", "-Infinity"])
@pytest.mark.parametrize(
    "template",
    [
        '{"call_id":"c","value":%s,"usage":{"cpu_s":0,"max_rss_bytes":0,"cpu_total_s":0}}',
        '{"call_id":"c","value":[1,{"x":%s}],"usage":{"cpu_s":0,"max_rss_bytes":0,"cpu_total_s":0}}',
        '{"call_id":"c","value":1,"usage":{"cpu_s":%s,"max_rss_bytes":0,"cpu_total_s":0}}',
        '{"call_id":"c","value":1,"usage":{"cpu_s":0,"max_rss_bytes":0,"cpu_total_s":%s}}',
    ],
)
def test_non_finite_constants_rejected(constant: str, template: str) -> None:
    body = (template % constant).encode()
    with pytest.raises(ProtocolError):
        decode_worker_message([b"RESULT", body])


@pytest.mark.parametrize("constant", ["NaN", "Infinity", "-Infinity"])
def test_non_finite_constants_rejected_in_host_input(constant: str) -> None:
    body = b'{"call_id":"c","action":"a","input":{"x":' + constant.encode() + b"}}"
    with pytest.raises(ProtocolError):
        decode_host_message([b"CALL", body])


def _nested_value(levels: int) -> bytes:
    return dumps(result_body(value=None)).replace(b"null", b"[" * levels + b"]" * levels)


def test_depth_at_limit_accepted() -> None:
    # The body object is level 1, so DEFAULT_MAX_DEPTH - 1 levels of arrays inside it fit.
    message = decode_worker_message([b"RESULT", _nested_value(DEFAULT_MAX_DEPTH - 1)])
    assert isinstance(message, Result)
    depth, value = 0, message.value
    while isinstance(value, list):
        depth += 1
        value = value[0] if value else None
    assert depth == DEFAULT_MAX_DEPTH - 1


def test_depth_one_past_limit_rejected() -> None:
    with pytest.raises(ProtocolError, match="deeper"):
        decode_worker_message([b"RESULT", _nested_value(DEFAULT_MAX_DEPTH)])


def test_deep_nesting_rejected() -> None:
    with pytest.raises(ProtocolError, match="deeper"):
        decode_worker_message([b"RESULT", _nested_value(200)])


def test_deep_object_nesting_rejected() -> None:
    value = b'{"a":' * 200 + b"1" + b"}" * 200
    body = dumps(result_body(value=None)).replace(b"null", value)
    with pytest.raises(ProtocolError, match="deeper"):
        decode_worker_message([b"RESULT", body])


def test_custom_max_depth() -> None:
    frames = [b"RESULT", _nested_value(5)]
    assert isinstance(decode_worker_message(frames, max_depth=6), Result)
    with pytest.raises(ProtocolError):
        decode_worker_message(frames, max_depth=5)


@pytest.mark.parametrize("opener,closer", [(b"[", b"]"), (b'{"a":', b"}")])
def test_nesting_beyond_recursion_limit_is_protocol_error(opener: bytes, closer: bytes) -> None:
    levels = 100_000
    inner = opener * levels + b"1" + closer * levels
    body = dumps(result_body(value=None)).replace(b"null", inner)
    try:
        decode_worker_message([b"RESULT", body])
    except ProtocolError:
        pass
    except RecursionError:  # pragma: no cover - only reached on a bug
        pytest.fail("deep nesting raised RecursionError instead of ProtocolError")
    else:  # pragma: no cover
        pytest.fail("deep nesting was accepted")
    with pytest.raises(ProtocolError):
        loads(inner)
    with pytest.raises(ProtocolError):
        SpawnSpec.from_bytes(inner)


def test_unclosed_deep_nesting_is_protocol_error() -> None:
    with pytest.raises(ProtocolError):
        decode_worker_message([b"RESULT", b"[" * 100_000])


def test_message_larger_than_max_size_rejected() -> None:
    frames = worker_frames(b"RESULT", result_body(value="x" * 1000))
    size = sum(len(f) for f in frames)
    assert isinstance(decode_worker_message(frames, max_size=size), Result)  # exactly at limit
    with pytest.raises(ProtocolError, match="larger"):
        decode_worker_message(frames, max_size=size - 1)


def test_message_larger_than_default_max_size_rejected() -> None:
    frames = worker_frames(b"RESULT", result_body(value="x" * protocol.DEFAULT_MAX_SIZE))
    with pytest.raises(ProtocolError, match="larger"):
        decode_worker_message(frames)


def test_payload_counts_towards_max_size() -> None:
    frames = [*worker_frames(b"CALL", VALID_HOST_BODIES[b"CALL"]), b"p" * 100]
    assert isinstance(decode_host_message(frames), Call)
    with pytest.raises(ProtocolError, match="larger"):
        decode_host_message(frames, max_size=100)


@pytest.mark.parametrize(
    "kind,body",
    [
        (b"HELLO", {**VALID_WORKER_BODIES[b"HELLO"], "pid": "1"}),  # string pid
        (b"HELLO", {**VALID_WORKER_BODIES[b"HELLO"], "pid": True}),  # bool for int
        (b"HELLO", {**VALID_WORKER_BODIES[b"HELLO"], "pid": 1.0}),  # float for int
        (b"HELLO", {**VALID_WORKER_BODIES[b"HELLO"], "token": 1}),
        (b"HELLO", {**VALID_WORKER_BODIES[b"HELLO"], "provider": []}),
        (b"HELLO", {**VALID_WORKER_BODIES[b"HELLO"], "actions": {}}),
        (b"HELLO", {**VALID_WORKER_BODIES[b"HELLO"], "actions": [1]}),  # not a list of objects
        (b"HELLO", {**VALID_WORKER_BODIES[b"HELLO"], "layers": [[]]}),
        (b"UNAVAILABLE", {**VALID_WORKER_BODIES[b"UNAVAILABLE"], "traceback": None}),
        (b"RESULT", result_body(call_id=7)),
        (b"RESULT", result_body(usage=None)),
        (b"RESULT", result_body(usage=[0, 0, 0])),
        (b"RESULT", usage_body(max_rss_bytes=1.0)),  # float where an int is required
        (b"RESULT", usage_body(max_rss_bytes=True)),
        (b"RESULT", usage_body(cpu_s=True)),
        (b"RESULT", usage_body(cpu_s="0")),
        (b"RESULT", usage_body(cpu_total_s=None)),
        (b"FAILURE", {**VALID_WORKER_BODIES[b"FAILURE"], "message": ["m"]}),
        (b"FAILURE", {**VALID_WORKER_BODIES[b"FAILURE"], "error_type": 1}),
        (b"FAILURE", {**VALID_WORKER_BODIES[b"FAILURE"], "exception_type": None}),
        (b"RETIRE", {"reason": False}),
        (b"PONG", {"seq": "3"}),
        (b"PONG", {"seq": True}),
        (b"PONG", {"seq": 3.0}),
    ],
)
def test_wrong_field_type_rejected(kind: bytes, body: dict[str, Any]) -> None:
    with pytest.raises(ProtocolError, match=r"wrong type|list of objects"):
        decode_worker_message(worker_frames(kind, body))


@pytest.mark.parametrize(
    "kind,body",
    [
        (b"CALL", {**VALID_HOST_BODIES[b"CALL"], "input": []}),
        (b"CALL", {**VALID_HOST_BODIES[b"CALL"], "call_id": None}),
        (b"PING", {"seq": False}),
        (b"PING", {"seq": 1.5}),
    ],
)
def test_wrong_field_type_rejected_from_host(kind: bytes, body: dict[str, Any]) -> None:
    with pytest.raises(ProtocolError, match="wrong type"):
        decode_host_message(worker_frames(kind, body))


def test_integer_cpu_times_accepted_as_float() -> None:
    message = decode_worker_message(worker_frames(b"RESULT", usage_body(cpu_s=2, cpu_total_s=3)))
    assert isinstance(message, Result)
    assert message.usage == Usage(2.0, 0, 3.0)
    assert type(message.usage.cpu_s) is float
    assert type(message.usage.cpu_total_s) is float


def _missing_field_cases() -> list[tuple[str, bytes, str]]:
    cases = []
    for side, bodies in (("worker", VALID_WORKER_BODIES), ("host", VALID_HOST_BODIES)):
        for kind, body in bodies.items():
            cases.extend((side, kind, name) for name in body)
    for name in ZERO_USAGE:
        cases.append(("worker", b"RESULT", f"usage.{name}"))
        cases.append(("worker", b"FAILURE", f"usage.{name}"))
    return cases


@pytest.mark.parametrize("side,kind,name", _missing_field_cases())
def test_missing_field_rejected(side: str, kind: bytes, name: str) -> None:
    bodies = VALID_WORKER_BODIES if side == "worker" else VALID_HOST_BODIES
    body = json.loads(json.dumps(bodies[kind]))
    if name.startswith("usage."):
        del body["usage"][name.removeprefix("usage.")]
    else:
        del body[name]
    decoder = decode_worker_message if side == "worker" else decode_host_message
    with pytest.raises(ProtocolError, match="missing field"):
        decoder(worker_frames(kind, body))


@pytest.mark.parametrize("kind", WORKER_KINDS)
def test_extra_field_rejected_worker(kind: bytes) -> None:
    body = {**VALID_WORKER_BODIES[kind], "extra": 1}
    with pytest.raises(ProtocolError, match="unknown fields"):
        decode_worker_message(worker_frames(kind, body))


@pytest.mark.parametrize("kind", HOST_KINDS)
def test_extra_field_rejected_host(kind: bytes) -> None:
    body = {**VALID_HOST_BODIES[kind], "payload": "x"}
    with pytest.raises(ProtocolError, match="unknown fields"):
        decode_host_message(worker_frames(kind, body))


@pytest.mark.parametrize("kind", [b"RESULT", b"FAILURE"])
def test_extra_usage_field_rejected(kind: bytes) -> None:
    body = json.loads(json.dumps(VALID_WORKER_BODIES[kind]))
    body["usage"]["wall_s"] = 1.0
    with pytest.raises(ProtocolError, match="unknown usage fields"):
        decode_worker_message(worker_frames(kind, body))


@pytest.mark.parametrize(
    "error_type", ["Timeout", "WorkerCrashed", "ProtocolViolation", "", "actionfailed", "X" * 500]
)
def test_failure_error_type_outside_worker_types_rejected(error_type: str) -> None:
    assert error_type not in WORKER_ERROR_TYPES
    body = {**VALID_WORKER_BODIES[b"FAILURE"], "error_type": error_type}
    with pytest.raises(ProtocolError, match="cannot report error type"):
        decode_worker_message(worker_frames(b"FAILURE", body))


@FAST
@given(texts.filter(lambda t: t not in WORKER_ERROR_TYPES))
def test_failure_any_other_error_type_rejected(error_type: str) -> None:
    body = {**VALID_WORKER_BODIES[b"FAILURE"], "error_type": error_type}
    with pytest.raises(ProtocolError):
        decode_worker_message(worker_frames(b"FAILURE", body))


@pytest.mark.parametrize("kind", [b"RESULT", b"FAILURE"])
@pytest.mark.parametrize(
    "name,value",
    [("cpu_s", -1e-9), ("cpu_s", -1), ("max_rss_bytes", -1), ("cpu_total_s", -0.5)],
)
def test_negative_usage_rejected(kind: bytes, name: str, value: float) -> None:
    body = json.loads(json.dumps(VALID_WORKER_BODIES[kind]))
    body["usage"][name] = value
    with pytest.raises(ProtocolError, match="out of range"):
        decode_worker_message(worker_frames(kind, body))


@pytest.mark.parametrize("body", [b"[]", b'[{"seq":1}]', b"null", b"1", b'"seq"', b"true"])
def test_body_not_an_object_rejected(body: bytes) -> None:
    with pytest.raises(ProtocolError, match="JSON object"):
        decode_worker_message([b"PONG", body])
    with pytest.raises(ProtocolError, match="JSON object"):
        decode_host_message([b"PING", body])
    with pytest.raises(ProtocolError, match="JSON object"):
        SpawnSpec.from_bytes(body)


@pytest.mark.parametrize("body", [b"", b"{", b'{"seq":1', b"{'seq':1}", b'{"seq":1}x', b"\x00"])
def test_malformed_json_rejected(body: bytes) -> None:
    with pytest.raises(ProtocolError, match="not JSON"):
        decode_worker_message([b"PONG", body])


@pytest.mark.parametrize(
    "data",
    [
        b'{"worker_id":"w"}',  # missing fields
        b'{"self":1}',
        b'{"bogus":1,"worker_id":"w","token":"t","endpoint":"e","provider_ref":"p",'
        b'"policy":{},"host_pid":1,"workdir":"/"}',
        b'{"worker_id":NaN}',
    ],
)
def test_bad_spawn_spec_rejected(data: bytes) -> None:
    with pytest.raises(ProtocolError):
        SpawnSpec.from_bytes(data)


# --------------------------------------------------------------------------------------------
# Out-of-range numbers (found by this suite: they once escaped as OverflowError or inf)


@pytest.mark.parametrize("name", ["cpu_s", "cpu_total_s", "max_rss_bytes"])
def test_huge_integer_cpu_time_is_protocol_error(name: str) -> None:
    body = dumps(usage_body(**{name: 0})).replace(
        f'"{name}":0'.encode(), f'"{name}":{10**400}'.encode()
    )
    with pytest.raises(ProtocolError):
        decode_worker_message([b"RESULT", body])


@pytest.mark.parametrize("literal", ["1e400", "-1e400"])
def test_overflowing_float_literal_in_value_is_protocol_error(literal: str) -> None:
    body = dumps(result_body(value=None)).replace(b"null", literal.encode())
    with pytest.raises(ProtocolError):
        decode_worker_message([b"RESULT", body])


def test_overflowing_float_literal_in_usage_rejected() -> None:
    body = dumps(usage_body(cpu_s=0)).replace(b'"cpu_s":0', b'"cpu_s":1e400')
    with pytest.raises(ProtocolError, match="out of range"):
        decode_worker_message([b"RESULT", body])


# --------------------------------------------------------------------------------------------
# 4. The encoder refuses what the decoder would refuse


@pytest.mark.parametrize(
    "value",
    [math.nan, math.inf, -math.inf, [1, math.nan], {"a": {"b": math.inf}}],
)
def test_dumps_refuses_non_finite(value: Any) -> None:
    with pytest.raises(ValueError):
        dumps(value)


@pytest.mark.parametrize(
    "message",
    [
        Result("c", math.nan),
        Result("c", {"x": [math.inf]}),
        Result("c", 1, Usage(cpu_s=math.nan)),
        Failure("c", "ActionFailed", "m", usage=Usage(cpu_total_s=-math.inf)),
        Call("c", "a", {"x": math.nan}),
    ],
)
def test_encode_refuses_non_finite(message: Any) -> None:
    with pytest.raises(ValueError):
        encode(message)


@FAST
@given(json_values)
def test_dumps_is_compact_strict_json(value: Any) -> None:
    data = dumps(value)
    assert json.loads(data) == value
    assert loads(data) == value
    # No insignificant whitespace outside strings: compact separators.
    assert data == json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()


def test_a_call_may_tell_the_worker_not_to_poll_for_the_next_one() -> None:
    frames = protocol.encode_call("c1", "echo", protocol.dumps({"value": 1}), b"payload")
    plain = protocol.decode_host_message(frames)
    assert isinstance(plain, protocol.Call) and plain.spin is True
    quiet = protocol.decode_host_message(protocol.without_spin(frames))
    assert quiet == protocol.Call("c1", "echo", {"value": 1}, b"payload", spin=False)
    with pytest.raises(protocol.ProtocolError):
        protocol.decode_host_message([frames[0], frames[1][:-1] + b',"spin":1}'])
