"""A hostile provider that floods the host through the wire, below the worker's own SDK.

Its actions find the worker's connection to the host (the one connected Unix socket among its
descriptors, which the worker's wire uses) and write raw ZMTP bytes on it, or try to
open a second connection to the same endpoint. Every flood is bounded here (a few hundred MiB at
most, then it stops): the host is expected to end it long before.
"""

from __future__ import annotations

import errno
import json
import os
import socket
import stat
import struct
import sys
import time

from providers import Provider

provider = Provider("flooder", version="1.0")

MiB = 1024 * 1024


def _connection() -> socket.socket:
    """A duplicate of the worker's connection to the host."""
    for fd in range(3, 1024):
        try:
            if not stat.S_ISSOCK(os.fstat(fd).st_mode):
                continue
        except OSError:
            continue
        sock = socket.socket(fileno=os.dup(fd))
        try:
            if sock.family == socket.AF_UNIX and sock.getpeername():
                sock.setblocking(True)
                return sock
        except OSError:
            pass
        sock.close()
    raise RuntimeError("no connection to the host found")


def _frame(payload: bytes, more: bool) -> bytes:
    flags = 0x01 if more else 0
    if len(payload) > 255:
        return bytes((flags | 0x02,)) + struct.pack(">Q", len(payload)) + payload
    return bytes((flags, len(payload))) + payload


def _write(sock: socket.socket, chunks: object, limit: int) -> int:
    """Write chunks until ``limit`` bytes or the host stops reading; the bytes written."""
    written = 0
    try:
        for chunk in chunks:  # type: ignore[attr-defined]
            sock.sendall(chunk)
            written += len(chunk)
            if written >= limit:
                break
    except OSError:
        pass
    return written


def _linger() -> None:
    time.sleep(5)  # the host should kill us long before this ends


@provider.action
def more_frames(megabytes: int = 256) -> int:
    """One message that never ends: 64 KiB frames, each with the MORE flag."""
    sock = _connection()
    frame = _frame(b"m" * (64 * 1024), more=True)
    written = _write(sock, iter(lambda: frame, None), megabytes * MiB)
    _linger()
    return written


@provider.action
def huge_frame(megabytes: int = 256) -> int:
    """A two-frame RESULT whose second frame is announced (and streamed) far over the limit."""
    sock = _connection()
    size = megabytes * MiB
    head = _frame(b"RESULT", more=True) + bytes((0x02,)) + struct.pack(">Q", size)
    chunk = b"h" * (64 * 1024)
    written = _write(sock, iter([head]), 1)
    written += _write(sock, iter(lambda: chunk, None), size)
    _linger()
    return written


def _call_id() -> str:
    """The id of the call being run (a local of the worker's ``run_call``, up the stack)."""
    frame = sys._getframe()
    while frame is not None:
        call = frame.f_locals.get("call")
        if call is not None and isinstance(getattr(call, "call_id", None), str):
            return str(call.call_id)
        frame = frame.f_back
    raise RuntimeError("no call found")


#: Every item meets 240 subschemas: 1,500 items are ~360,000 keyword evaluations, a few
#: seconds of validation on the provider's lane (the host's thread for its slow work).
COSTLY_OUTPUT = {"type": "array", "items": {"allOf": [{"type": "integer"}] * 240}}
ITEMS = 1500


@provider.action(output=COSTLY_OUTPUT)
def flood_behind_a_busy_lane(megabytes: int = 256) -> list[int]:
    """Its own RESULT, valid but seconds to validate (on the provider's lane), then a message
    big enough to be decoded on that lane too (which waits behind the validation), then
    ``megabytes`` of complete 1 MB messages, written while the lane is busy."""
    sock = _connection()
    usage = b'{"cpu_s":0.0,"max_rss_bytes":0,"cpu_total_s":0.0}'
    result = (
        b'{"call_id":' + json.dumps(_call_id()).encode() + b',"value":['
        + b",".join([b"1"] * ITEMS) + b'],"usage":' + usage + b"}"
    )
    big = _frame(b"RESULT", more=True) + _frame(b" " * (200 * 1024), more=False)
    filler = _frame(b"RESULT", more=True) + _frame(b" " * MiB, more=False)
    written = _write(sock, iter([_frame(b"RESULT", more=True) + _frame(result, more=False)]), 1)
    written += _write(sock, iter([big]), 1)
    written += _write(sock, iter(lambda: filler, None), megabytes * MiB)
    _linger()
    return []


@provider.action
def padded_pongs(count: int = 1500, size: int = 1_000_000) -> int:
    """``count`` PONG messages the host never asked for, each padded with spaces to ``size``."""
    sock = _connection()
    body = b'{"seq":1}'.ljust(size, b" ")
    message = _frame(b"PONG", more=True) + _frame(body, more=False)
    written = _write(sock, (message for _ in range(count)), count * len(message))
    return written  # on a host that let them all through, the call ends ok


@provider.action
def garbage(megabytes: int = 64) -> int:
    """Bytes that are no ZMTP at all, on the worker's own connection."""
    sock = _connection()
    chunk = os.urandom(64 * 1024)
    written = _write(sock, iter(lambda: chunk, None), megabytes * MiB)
    _linger()
    return written


def _greeting_and_ready(identity: bytes) -> bytes:
    greeting = b"\xff" + b"\x00" * 7 + b"\x01\x7f" + b"\x03\x01" + b"NULL".ljust(20, b"\x00")
    greeting += b"\x00" * 32
    properties = b"".join(
        bytes((len(name),)) + name + struct.pack(">I", len(value)) + value
        for name, value in ((b"Socket-Type", b"DEALER"), (b"Identity", identity))
    )
    body = b"\x05READY" + properties
    return greeting + bytes((0x04, len(body))) + body


@provider.action
def second_connection(megabytes: int = 128, messages: int = 20_000) -> dict[str, object]:
    """Open another connection to this worker's endpoint; if it is taken, speak as an extra
    peer: many messages under a made-up identity, then a message that never ends."""
    path = _connection().getpeername()
    try:
        extra = socket.socket(socket.AF_UNIX)  # (EPERM under seccomp: no new Unix socket)
        extra.connect(path)
    except OSError as exc:
        return {"connected": False, "error": errno.errorcode.get(exc.errno or 0, str(exc))}
    written = _write(extra, iter([_greeting_and_ready(b"intruder")]), 1)
    junk = _frame(b"RESULT", more=True) + _frame(b"\x80\x04junk", more=False)
    written += _write(extra, (junk for _ in range(messages)), messages * len(junk))
    frame = _frame(b"m" * (64 * 1024), more=True)
    written += _write(extra, iter(lambda: frame, None), megabytes * MiB)
    return {"connected": True, "written": written}


@provider.action
def fine(x: int) -> int:
    """An honest action: the provider serves again once a fresh worker replaces a flooder."""
    return x + 1


@provider.action
def stderr_while_idle(megabytes: int = 4096, seconds: float = 30.0) -> str:
    """Leave a thread writing to stderr as fast as it can, and return: the worker is idle,
    and what it writes is beyond any log limit. Bounded here (``megabytes`` or ``seconds``,
    whichever comes first)."""
    import threading

    chunk = b"e" * (64 * 1024)

    def spew() -> None:
        deadline = time.monotonic() + seconds
        written = 0
        while written < megabytes * MiB and time.monotonic() < deadline:
            try:
                written += os.write(2, chunk)
            except OSError:
                return

    threading.Thread(target=spew, daemon=True).start()
    return "spewing"


@provider.action
def stderr_during_call(seconds: float = 3.0, chunk_kib: int = 64) -> int:
    """Write to stderr as fast as it can for ``seconds``, then return what it wrote: output
    far past any log limit, during a call (bounded by ``seconds``)."""
    chunk = b"c" * (chunk_kib * 1024)
    deadline = time.monotonic() + seconds
    written = 0
    while time.monotonic() < deadline:
        written += os.write(2, chunk)
    return written


@provider.action
def dribble(seconds: float = 2.0) -> int:
    """Write one byte at a time, alternating stdout and stderr, for ``seconds``: each read of
    the host's gets a byte or two unless it waits between reads. Bounded by ``seconds``."""
    deadline = time.monotonic() + seconds
    written = 0
    while time.monotonic() < deadline:
        written += os.write(1 + (written & 1), b"d")
    return written
