"""ZMTP 3.x, the ZeroMQ wire protocol, sans-IO: bytes in, events out, no sockets (the h11 way).

The host's end of every worker connection is this codec (through :mod:`host.zmtp`); it lives
in the stdlib-only ``sandbox`` package so that the confined worker can speak it too without
importing ``host`` or ``zmq`` (:mod:`sandbox.wire` is the worker's end). What a worker
may make the host hold is decided here and nowhere else: libzmq keeps every frame of an
unfinished multipart message, with no byte budget, while this codec holds at most ``budget``
bytes for its peer (the greeting, a partial frame header, the frames of the message being
received) and raises :class:`ProtocolViolation` - its only error - the moment a frame header
announces more than that, a message has more frames than allowed, a command arrives that the
host did not ask for, or bytes come that the state does not allow.

What is spoken (RFC 23 ZMTP/3.0 and RFC 37 ZMTP/3.1): the 64-byte greeting (signature, version
3.0 or 3.1, mechanism NULL only, as-server 0 as NULL requires), the NULL handshake (one READY
command each way, with the ``Socket-Type`` and ``Identity`` properties), short and long frames
with the MORE flag, and the PING/PONG commands of 3.1. The worker end is this codec playing
DEALER to the host's ROUTER; both interoperate with real libzmq peers (tests/test_zmtp.py checks
it), and ROUTER and DEALER share the framing (the routing id is never on the wire).
"""

from __future__ import annotations

import struct
from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from enum import Enum

#: Flag bits of a frame's first byte (everything else must be zero).
MORE = 0x01
LONG = 0x02
COMMAND = 0x04
_RESERVED = 0xF8

GREETING_SIZE = 64
#: Largest command (READY, PING, PONG, ERROR) accepted; a READY with the two properties is
#: well under 600 bytes, a PING at most 24.
MAX_COMMAND_BYTES = 4096
#: The smallest budget: room for the greeting, or for one command with its header.
MIN_BUDGET = GREETING_SIZE + MAX_COMMAND_BYTES + 9
#: Outstanding PINGs the codec remembers (a PONG must answer one of them).
MAX_OUTSTANDING_PINGS = 4
MECHANISM = b"NULL".ljust(20, b"\x00")
_ULONG = struct.Struct(">Q")
_UINT = struct.Struct(">I")


class ProtocolViolation(Exception):
    """The peer broke the protocol or the budget; the connection is finished.

    ``events``: what the same ``receive_data`` call completed before the offending byte (a
    whole message followed by garbage in one read still counts as sent)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.events: list[Event] = []


@dataclass(frozen=True)
class HandshakeComplete:
    """The peer's READY arrived: its properties (names lower-cased)."""

    properties: dict[str, bytes]


@dataclass(frozen=True)
class Message:
    """A whole multipart message (at least one frame)."""

    frames: list[bytes]


@dataclass(frozen=True)
class Pong:
    """The peer answered one of our PINGs (``send_ping``) with this context."""

    context: bytes


@dataclass(frozen=True)
class ConnectionClosed:
    """The peer closed the connection (end of file)."""


Event = HandshakeComplete | Message | Pong | ConnectionClosed


class Phase(Enum):
    GREETING = "greeting"
    HANDSHAKE = "handshake"
    TRAFFIC = "traffic"
    CLOSED = "closed"


def greeting(minor: int = 1) -> bytes:
    """Our 64-byte greeting: signature, version 3.``minor``, NULL, as-server 0, filler."""
    signature = b"\xff" + b"\x00" * 7 + b"\x01" + b"\x7f"
    return signature + bytes((3, minor)) + MECHANISM + b"\x00" + b"\x00" * 31


def _frame_header(flags: int, size: int) -> bytes:
    if size > 255:
        return bytes((flags | LONG,)) + _ULONG.pack(size)
    return bytes((flags, size))


def encode_command(name: bytes, body: bytes) -> bytes:
    data = bytes((len(name),)) + name + body
    return _frame_header(COMMAND, len(data)) + data


def encode_properties(properties: Iterable[tuple[bytes, bytes]]) -> bytes:
    return b"".join(
        bytes((len(name),)) + name + _UINT.pack(len(value)) + value
        for name, value in properties
    )


def encode_message(frames: Sequence[bytes]) -> bytes:
    """The wire bytes of one multipart message (pure: no state)."""
    if not frames:
        raise ValueError("a message has at least one frame")
    parts: list[bytes] = []
    last = len(frames) - 1
    for index, frame in enumerate(frames):
        size = len(frame)
        flags = MORE if index < last else 0
        parts.append(_frame_header(flags, size))
        parts.append(frame)
    return b"".join(parts)


@dataclass
class Connection:
    """One ZMTP connection's state, either end. Not thread-safe.

    ``budget``: the most bytes of one message (payload plus frame headers) the peer may make
    this side hold; ``set_budget`` changes it between messages. ``max_frames``: frames per
    message (None: any number, still within the budget). ``peer_types``: the socket types the
    peer's READY may announce. ``peer_identity``: the Identity it must announce, if given.
    ``answer_pings``: whether a PING from the peer is answered (ZMTP 3.1) or is a violation
    (the host's workers never enable heartbeats, so a PING there is not asked for).
    """

    budget: int
    socket_type: bytes = b"ROUTER"
    peer_types: frozenset[bytes] = frozenset({b"DEALER"})
    identity: bytes = b""
    peer_identity: bytes | None = None
    max_frames: int | None = None
    answer_pings: bool = False
    phase: Phase = Phase.GREETING
    properties: dict[str, bytes] = field(default_factory=dict)
    peer_minor: int = -1
    _out: bytearray = field(default_factory=bytearray)
    _greeting: bytearray = field(default_factory=bytearray)
    _header: bytearray = field(default_factory=bytearray)
    #: Size of the frame being read (-1: reading a header); its flags and header length.
    _size: int = -1
    _flags: int = 0
    _payload: bytearray = field(default_factory=bytearray)
    _frames: list[bytes] = field(default_factory=list)
    #: Bytes charged to the message being received (payloads and headers so far).
    _charged: int = 0
    _pings: deque[bytes] = field(default_factory=deque)

    def __post_init__(self) -> None:
        self.set_budget(self.budget)
        ready = encode_properties(
            ((b"Socket-Type", self.socket_type), (b"Identity", self.identity))
        )
        self._out += greeting() + encode_command(b"READY", ready)

    # ------------------------------------------------------------------ outgoing

    def data_to_send(self) -> bytes:
        """Bytes the protocol itself must send (greeting, READY, answers); empties the queue."""
        data = bytes(self._out)
        self._out.clear()
        return data

    def send_message(self, frames: Sequence[bytes]) -> bytes:
        """The bytes of one message, to write after anything ``data_to_send`` returned."""
        if self.phase is Phase.CLOSED:
            raise ProtocolViolation("the connection is closed")
        return encode_message(frames)

    def send_ping(self, context: bytes = b"", ttl_deciseconds: int = 0) -> bytes:
        """A ZMTP 3.1 PING; the peer's PONG with the same context becomes a :class:`Pong`."""
        if len(context) > 16:
            raise ValueError("a PING context is at most 16 bytes")
        if len(self._pings) >= MAX_OUTSTANDING_PINGS:
            raise ValueError("too many PINGs outstanding")
        self._pings.append(bytes(context))
        return encode_command(b"PING", struct.pack(">H", ttl_deciseconds) + context)

    def set_budget(self, budget: int) -> None:
        if budget < MIN_BUDGET:
            raise ValueError(f"a budget is at least {MIN_BUDGET} bytes")
        self.budget = budget

    # ------------------------------------------------------------------ incoming

    def buffered(self) -> int:
        """Bytes of the peer's this side holds now (never more than the budget)."""
        return (
            len(self._greeting)
            + len(self._header)
            + len(self._payload)
            + sum(len(f) for f in self._frames)
        )

    def receive_data(self, data: bytes) -> list[Event]:
        """Feed bytes read from the peer (``b""``: end of file); the events they complete.

        Raises :class:`ProtocolViolation` at the first byte that breaks the protocol or the
        budget; the connection is closed then and accepts nothing further."""
        if self.phase is Phase.CLOSED:
            if not data:
                return []
            raise ProtocolViolation("bytes after the connection closed")
        if not data:
            self._close()
            return [ConnectionClosed()]
        events: list[Event] = []
        try:
            self._receive(memoryview(data), events)
        except ProtocolViolation as exc:
            self._close()
            exc.events = events
            raise
        return events

    def _close(self) -> None:
        self.phase = Phase.CLOSED
        self._greeting = bytearray()
        self._header = bytearray()
        self._payload = bytearray()
        self._frames = []
        self._charged = 0

    def _receive(self, view: memoryview, events: list[Event]) -> None:
        pos, end = 0, len(view)
        while pos < end:
            if self.phase is Phase.GREETING:
                take = min(GREETING_SIZE - len(self._greeting), end - pos)
                start = len(self._greeting)
                self._greeting += view[pos : pos + take]
                pos += take
                self._check_greeting(start)
                if len(self._greeting) == GREETING_SIZE:
                    self.peer_minor = self._greeting[11]
                    self._greeting = bytearray()
                    self.phase = Phase.HANDSHAKE
                continue
            if self._size < 0:  # a frame header
                if not self._header and end - pos >= 9:  # fast path: the whole header is here
                    flags = view[pos]
                    if flags & LONG:
                        self._start_frame(flags, _ULONG.unpack_from(view, pos + 1)[0], 9)
                        pos += 9
                    else:
                        self._start_frame(flags, view[pos + 1], 2)
                        pos += 2
                else:
                    if not self._header:
                        self._header.append(view[pos])
                        pos += 1
                        if self._header[0] & _RESERVED:
                            raise ProtocolViolation(f"reserved frame flags {self._header[0]:#x}")
                        continue
                    need = (9 if self._header[0] & LONG else 2) - len(self._header)
                    take = min(need, end - pos)
                    self._header += view[pos : pos + take]
                    pos += take
                    if take < need:
                        continue
                    header = self._header
                    self._header = bytearray()
                    size = _ULONG.unpack_from(header, 1)[0] if header[0] & LONG else header[1]
                    self._start_frame(header[0], size, len(header))
                if self._size == 0:
                    self._frame_done(b"", events)
                continue
            # the frame's payload
            need = self._size - len(self._payload)
            if not self._payload and end - pos >= need:  # fast path: all of it is here
                frame = bytes(view[pos : pos + need])
                pos += need
            else:
                take = min(need, end - pos)
                self._payload += view[pos : pos + take]
                pos += take
                if take < need:
                    continue
                frame, self._payload = bytes(self._payload), bytearray()
            self._frame_done(frame, events)

    def _check_greeting(self, start: int) -> None:
        """Check the greeting bytes from ``start`` on, as they arrive."""
        g = self._greeting
        for i in range(start, len(g)):
            byte = g[i]
            if i == 0 and byte != 0xFF:
                raise ProtocolViolation("not a ZMTP greeting (signature)")
            if i == 9 and not byte & 0x01:
                raise ProtocolViolation("a ZMTP 1.0 peer (only 3.x is spoken)")
            if i == 10 and byte != 3:
                raise ProtocolViolation(f"ZMTP version {byte} (only 3.x is spoken)")
            if i == 11 and byte not in (0, 1):
                raise ProtocolViolation(f"ZMTP version 3.{byte} (3.0 and 3.1 are spoken)")
            if 12 <= i < 32 and byte != MECHANISM[i - 12]:
                raise ProtocolViolation("a security mechanism other than NULL")
            if i == 32 and byte != 0:
                raise ProtocolViolation("as-server set with the NULL mechanism")

    def _start_frame(self, flags: int, size: int, header_len: int) -> None:
        if flags & _RESERVED:
            raise ProtocolViolation(f"reserved frame flags {flags:#x}")
        if flags & COMMAND:
            if flags & MORE:
                raise ProtocolViolation("a command with the MORE flag")
            if self._frames:
                raise ProtocolViolation("a command inside a multipart message")
            if size > MAX_COMMAND_BYTES:
                raise ProtocolViolation(f"a command of {size} bytes")
        else:
            if self.phase is not Phase.TRAFFIC:
                raise ProtocolViolation("a message frame before the handshake finished")
            if self.max_frames is not None and len(self._frames) >= self.max_frames:
                raise ProtocolViolation(f"a message of more than {self.max_frames} frames")
            cost = header_len + size
            # (9: room for the next frame's header, held before it is charged)
            if self._charged + cost + 9 > self.budget:
                raise ProtocolViolation(
                    f"a message over the budget of {self.budget} bytes "
                    f"(a frame of {size} bytes after {self._charged})"
                )
            self._charged += cost
        self._flags = flags
        self._size = size

    def _frame_done(self, frame: bytes, events: list[Event]) -> None:
        flags = self._flags
        self._size = -1
        if flags & COMMAND:
            self._command(frame, events)
            return
        self._frames.append(frame)
        if not flags & MORE:
            events.append(Message(self._frames))
            self._frames = []
            self._charged = 0

    # ------------------------------------------------------------------ commands

    def _command(self, body: bytes, events: list[Event]) -> None:
        if not body or len(body) < 1 + body[0]:
            raise ProtocolViolation("a malformed command")
        name = body[1 : 1 + body[0]]
        rest = body[1 + body[0] :]
        if self.phase is Phase.HANDSHAKE:
            if name != b"READY":
                if name == b"ERROR":
                    raise ProtocolViolation(f"the peer sent ERROR {_error_reason(rest)!r}")
                raise ProtocolViolation(f"command {name[:20]!r} during the handshake")
            self.properties = self._ready(rest)
            self.phase = Phase.TRAFFIC
            events.append(HandshakeComplete(dict(self.properties)))
        elif name == b"PING" and self.answer_pings and self.peer_minor >= 1:
            if len(rest) < 2 or len(rest) > 18:
                raise ProtocolViolation("a malformed PING")
            self._out += encode_command(b"PONG", rest[2:])
        elif name == b"PONG" and self.peer_minor >= 1:
            if not self._pings or rest != self._pings[0]:
                raise ProtocolViolation("a PONG that answers no PING")
            events.append(Pong(self._pings.popleft()))
        elif name == b"ERROR":
            raise ProtocolViolation(f"the peer sent ERROR {_error_reason(rest)!r}")
        else:
            raise ProtocolViolation(f"command {name[:20]!r}, which was not asked for")

    def _ready(self, data: bytes) -> dict[str, bytes]:
        properties: dict[str, bytes] = {}
        pos = 0
        while pos < len(data):
            size = data[pos]
            name_end = pos + 1 + size
            if size == 0 or name_end + 4 > len(data):
                raise ProtocolViolation("a malformed READY property")
            name = data[pos + 1 : name_end].decode("ascii", "replace").lower()
            value_size = _UINT.unpack_from(data, name_end)[0]
            value_end = name_end + 4 + value_size
            if value_end > len(data):
                raise ProtocolViolation("a malformed READY property value")
            if name in properties:
                raise ProtocolViolation(f"READY property {name[:40]!r} twice")
            properties[name] = data[name_end + 4 : value_end]
            pos = value_end
        socket_type = properties.get("socket-type")
        if socket_type not in self.peer_types:
            raise ProtocolViolation(f"peer socket type {socket_type!r:.40}")
        if self.peer_identity is not None and properties.get("identity") != self.peer_identity:
            raise ProtocolViolation("the peer announced another identity")
        return properties


def _error_reason(data: bytes) -> str:
    if not data:
        return ""
    return data[1 : 1 + data[0]].decode("ascii", "replace")
