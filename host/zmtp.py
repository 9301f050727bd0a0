"""The host's name for the ZMTP codec, which lives in :mod:`sandbox.zmtp`.

The worker end must not import ``host`` (nor ``zmq``), so the one codec both ends speak lives
in the stdlib-only sandbox package; this module re-exports it so ``from host import zmtp``
keeps working and the host and worker can never drift apart.
"""

from sandbox.zmtp import (
    COMMAND,
    GREETING_SIZE,
    LONG,
    MAX_COMMAND_BYTES,
    MAX_OUTSTANDING_PINGS,
    MECHANISM,
    MIN_BUDGET,
    MORE,
    Connection,
    ConnectionClosed,
    Event,
    HandshakeComplete,
    Message,
    Phase,
    Pong,
    ProtocolViolation,
    encode_command,
    encode_message,
    encode_properties,
    greeting,
)

__all__ = [
    "COMMAND",
    "GREETING_SIZE",
    "LONG",
    "MAX_COMMAND_BYTES",
    "MAX_OUTSTANDING_PINGS",
    "MECHANISM",
    "MIN_BUDGET",
    "MORE",
    "Connection",
    "ConnectionClosed",
    "Event",
    "HandshakeComplete",
    "Message",
    "Phase",
    "Pong",
    "ProtocolViolation",
    "encode_command",
    "encode_message",
    "encode_properties",
    "greeting",
]
