"""The host's ZMTP codec (``host.zmtp``) against real libzmq peers, and under fuzzing.

The differential tests connect a real pyzmq socket to the codec over a Unix socket and check that
arbitrary multipart messages cross identically in both directions, with the codec playing ROUTER
to a pyzmq DEALER (the host's role) and DEALER to a pyzmq ROUTER. The fuzz tests feed arbitrary
byte streams, cut arbitrarily: the only exception ever raised is the codec's own
``ProtocolViolation``, and it never holds more than its budget.
"""

from __future__ import annotations

import itertools
import socket
import struct
import tempfile
from collections.abc import Iterator

import pytest
import zmq
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from host import zmtp

frames_st = st.lists(
    st.one_of(
        st.binary(max_size=40),
        st.binary(min_size=250, max_size=600),  # around the short/long frame boundary
        st.builds(lambda n, b: b * n, st.integers(1000, 70_000), st.binary(min_size=1, max_size=1)),
    ),
    min_size=1,
    max_size=5,
)
messages_st = st.lists(frames_st, min_size=1, max_size=6)
BUDGET = 1 << 20


def _read_messages(sock: socket.socket, codec: zmtp.Connection, count: int) -> list[list[bytes]]:
    got: list[list[bytes]] = []
    while len(got) < count:
        data = sock.recv(65536)
        assert data, "the peer closed the connection"
        for event in codec.receive_data(data):
            if isinstance(event, zmtp.Message):
                got.append(event.frames)
    return got


def _handshake(sock: socket.socket, codec: zmtp.Connection) -> dict[str, bytes]:
    sock.sendall(codec.data_to_send())
    while True:
        data = sock.recv(65536)
        assert data
        for event in codec.receive_data(data):
            assert isinstance(event, zmtp.HandshakeComplete)
            return event.properties


@pytest.fixture(scope="module")
def context() -> Iterator[zmq.Context[zmq.Socket[bytes]]]:
    ctx: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
    yield ctx
    ctx.term()


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(to_host=messages_st, to_worker=messages_st)
def test_codec_as_router_and_a_pyzmq_dealer_exchange_messages_identically(
    context: zmq.Context[zmq.Socket[bytes]],
    to_host: list[list[bytes]],
    to_worker: list[list[bytes]],
) -> None:
    with tempfile.TemporaryDirectory() as directory:
        path = f"{directory}/s"
        listener = socket.socket(socket.AF_UNIX)
        listener.bind(path)
        listener.listen(1)
        dealer = context.socket(zmq.DEALER)
        dealer.setsockopt(zmq.LINGER, 0)
        dealer.setsockopt(zmq.IDENTITY, b"w-1")
        dealer.setsockopt(zmq.RCVTIMEO, 5000)
        dealer.connect(f"ipc://{path}")
        conn, _ = listener.accept()
        conn.settimeout(5)
        try:
            codec = zmtp.Connection(budget=BUDGET, peer_identity=b"w-1")
            properties = _handshake(conn, codec)
            assert properties["socket-type"] == b"DEALER"
            for frames in to_host:
                dealer.send_multipart(frames)
            assert _read_messages(conn, codec, len(to_host)) == to_host
            for frames in to_worker:
                conn.sendall(codec.send_message(frames))
            assert [dealer.recv_multipart() for _ in to_worker] == to_worker
        finally:
            dealer.close()
            conn.close()
            listener.close()


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(to_router=messages_st, to_codec=messages_st)
def test_codec_as_dealer_and_a_pyzmq_router_exchange_messages_identically(
    context: zmq.Context[zmq.Socket[bytes]],
    to_router: list[list[bytes]],
    to_codec: list[list[bytes]],
) -> None:
    with tempfile.TemporaryDirectory() as directory:
        path = f"{directory}/r"
        router = context.socket(zmq.ROUTER)
        router.setsockopt(zmq.LINGER, 0)
        router.setsockopt(zmq.RCVTIMEO, 5000)
        router.bind(f"ipc://{path}")
        conn = socket.socket(socket.AF_UNIX)
        conn.settimeout(5)
        conn.connect(path)
        try:
            codec = zmtp.Connection(
                budget=BUDGET, socket_type=b"DEALER", peer_types=frozenset({b"ROUTER"}),
                identity=b"codec",
            )  # fmt: skip
            assert _handshake(conn, codec)["socket-type"] == b"ROUTER"
            for frames in to_router:
                conn.sendall(codec.send_message(frames))
            assert [router.recv_multipart() for _ in to_router] == [
                [b"codec", *frames] for frames in to_router
            ]
            for frames in to_codec:
                router.send_multipart([b"codec", *frames])
            assert _read_messages(conn, codec, len(to_codec)) == to_codec
        finally:
            router.close()
            conn.close()


# ---------------------------------------------------------------------------------- fuzzing

READY = zmtp.encode_command(
    b"READY", zmtp.encode_properties([(b"Socket-Type", b"DEALER"), (b"Identity", b"w")])
)
PREFIX = zmtp.greeting() + READY


def _feed(codec: zmtp.Connection, data: bytes, cuts: list[int]) -> None:
    """Feed ``data`` cut at ``cuts``; only ProtocolViolation may escape, and the codec never
    holds more than its budget."""
    points = sorted({c % (len(data) + 1) for c in cuts} | {0, len(data)})
    try:
        for start, end in itertools.pairwise(points):
            codec.receive_data(data[start:end])
            assert codec.buffered() <= codec.budget
        codec.receive_data(b"")
    except zmtp.ProtocolViolation:
        assert codec.phase is zmtp.Phase.CLOSED
        assert codec.buffered() == 0


@settings(max_examples=400, deadline=None)
@given(
    data=st.binary(max_size=4096),
    cuts=st.lists(st.integers(0, 5000), max_size=20),
    budget=st.integers(zmtp.MIN_BUDGET, zmtp.MIN_BUDGET + 5000),
)
def test_arbitrary_bytes_raise_only_protocol_violation(
    data: bytes, cuts: list[int], budget: int
) -> None:
    _feed(zmtp.Connection(budget=budget, max_frames=3), data, cuts)


frame_st = st.tuples(
    st.integers(0, 255),  # flags, any bits
    st.integers(0, 2**64 - 1) | st.integers(0, 2000),  # size as announced
    st.binary(max_size=2000),  # payload actually sent (may be shorter or longer)
)


@settings(max_examples=400, deadline=None)
@given(
    frames=st.lists(frame_st, max_size=12),
    cuts=st.lists(st.integers(0, 10_000), max_size=20),
    budget=st.integers(zmtp.MIN_BUDGET, zmtp.MIN_BUDGET + 3000),
    long_header=st.booleans(),
)
def test_a_valid_handshake_then_hostile_frames_stay_within_the_budget(
    frames: list[tuple[int, int, bytes]], cuts: list[int], budget: int, long_header: bool
) -> None:
    stream = bytearray(PREFIX)
    for flags, size, payload in frames:
        if long_header or size > 255:
            stream += bytes((flags | zmtp.LONG,)) + struct.pack(">Q", size)
        else:
            stream += bytes((flags & ~zmtp.LONG, size))
        stream += payload
    _feed(zmtp.Connection(budget=budget, max_frames=3, peer_identity=b"w"), bytes(stream), cuts)


def test_an_endless_more_chain_is_a_violation_at_once() -> None:
    codec = zmtp.Connection(budget=10_000, max_frames=None)
    codec.receive_data(PREFIX)
    frame = bytes((zmtp.MORE | zmtp.LONG,)) + struct.pack(">Q", 1000) + b"x" * 1000
    with pytest.raises(zmtp.ProtocolViolation, match="budget"):
        for _ in range(100):
            codec.receive_data(frame)
            assert codec.buffered() <= 10_000


def test_a_frame_announced_over_the_budget_is_refused_before_its_bytes() -> None:
    codec = zmtp.Connection(budget=1 << 20)
    codec.receive_data(PREFIX)
    with pytest.raises(zmtp.ProtocolViolation, match="budget"):
        codec.receive_data(bytes((zmtp.LONG,)) + struct.pack(">Q", 1 << 30))


@pytest.mark.parametrize(
    "command",
    [
        zmtp.encode_command(b"PING", b"\x00\x10ctx"),
        zmtp.encode_command(b"PONG", b"ctx"),
        zmtp.encode_command(b"SUBSCRIBE", b"topic"),
        zmtp.encode_command(b"ERROR", b"\x03bye"),
    ],
)
def test_commands_the_host_did_not_ask_for_are_violations(command: bytes) -> None:
    codec = zmtp.Connection(budget=1 << 20)
    codec.receive_data(PREFIX)
    with pytest.raises(zmtp.ProtocolViolation):
        codec.receive_data(command)


def test_a_pong_answering_our_ping_is_an_event() -> None:
    codec = zmtp.Connection(budget=1 << 20)
    codec.receive_data(PREFIX)
    codec.send_ping(b"abc")
    assert codec.receive_data(zmtp.encode_command(b"PONG", b"abc")) == [zmtp.Pong(b"abc")]


@pytest.mark.parametrize(
    ("greeting", "reason"),
    [
        (b"\x00" + zmtp.greeting()[1:], "signature"),
        (zmtp.greeting()[:10] + b"\x02\x00" + zmtp.greeting()[12:], "version 2"),
        (zmtp.greeting()[:12] + b"PLAIN".ljust(20, b"\x00") + zmtp.greeting()[32:], "NULL"),
        (zmtp.greeting()[:32] + b"\x01" + zmtp.greeting()[33:], "as-server"),
    ],
)
def test_greetings_other_than_zmtp3_null_are_refused(greeting: bytes, reason: str) -> None:
    with pytest.raises(zmtp.ProtocolViolation, match=reason):
        zmtp.Connection(budget=zmtp.MIN_BUDGET).receive_data(greeting)


def test_a_peer_of_the_wrong_socket_type_or_identity_is_refused() -> None:
    codec = zmtp.Connection(budget=1 << 20, peer_identity=b"other")
    with pytest.raises(zmtp.ProtocolViolation, match="identity"):
        codec.receive_data(PREFIX)
    pub = zmtp.encode_command(b"READY", zmtp.encode_properties([(b"Socket-Type", b"PUB")]))
    with pytest.raises(zmtp.ProtocolViolation, match="socket type"):
        zmtp.Connection(budget=1 << 20).receive_data(zmtp.greeting() + pub)


def test_a_violation_keeps_the_messages_completed_before_it() -> None:
    codec = zmtp.Connection(budget=1 << 20)
    with pytest.raises(zmtp.ProtocolViolation) as info:
        codec.receive_data(PREFIX + zmtp.encode_message([b"RESULT", b"{}"]) + b"\xff")
    assert zmtp.Message([b"RESULT", b"{}"]) in info.value.events
