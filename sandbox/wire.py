"""The worker's end of the wire: our ZMTP codec over a blocking Unix stream socket.

The host's end of every worker connection is :mod:`sandbox.zmtp` over an ``AF_UNIX`` socket
(``host.transport``); the worker speaks the same codec, playing DEALER, over a plain blocking
socket connected to its endpoint. Why not a pyzmq DEALER any more (``python -m
benchmarks.worker_end``, docs/architecture.md "The worker end, measured"):

- **A send is in the kernel when it returns.** ``sendall`` returns once every byte is in the
  host's socket buffer; pyzmq's ``send`` returns once the message is in a pipe to libzmq's I/O
  thread, and a worker killed right then lost it (187 of 300 trials). A result the worker sent
  is therefore always seen by the host, even if the worker dies the next instant.
- **Half the round trip.** No I/O thread hop on either side of the worker's call: 23-26 us
  median against 45-62 us for the DEALER, and a third of the worker's CPU per call.
- **No threads in the worker.** libzmq started an I/O thread and a reaper thread in every
  worker; the worker is now single-threaded, and does not import ``zmq`` at all.

The peer is the host (trusted), but the bytes still pass the codec's checks and budget: a
broken stream ends the worker with an error rather than a misread call.
"""

from __future__ import annotations

import os
import socket
import time
from collections import deque

from sandbox import zmtp
from sandbox.protocol import WORKER_SPIN_S

#: Bytes asked of the kernel per read, into one buffer kept for the worker's life: a fresh
#: ``recv(256 KiB)`` per call cost an mmap, an mremap and a munmap each time. 64 KiB: the
#: buffer is resident in every worker (a bigger CALL takes a few reads).
RECV_BYTES = 64 * 1024
#: Room for the frame headers of a CALL (at most three frames of 9 header bytes each).
FRAME_HEADERS = 64


class WireClosed(Exception):
    """The connection to the host cannot be used (not made, closed, or the host broke the
    protocol); the reason is the message. The worker can only exit then."""


class WorkerWire:
    """One blocking connection to the host; not thread-safe (the worker has one thread)."""

    def __init__(self, path: str, *, identity: bytes, budget: int) -> None:
        """Make the socket for the host's endpoint at ``path``; :meth:`connect` connects it.

        Made before the worker's layers: once seccomp is on, ``socket(AF_UNIX)`` is refused
        (a worker could otherwise connect to any pathname socket its uid may open), and
        this is the one Unix socket a worker has."""
        self._path = path
        self._codec = zmtp.Connection(
            budget=max(zmtp.MIN_BUDGET, budget + FRAME_HEADERS),
            socket_type=b"DEALER",
            peer_types=frozenset({b"ROUTER"}),
            identity=identity,
            max_frames=3,
        )
        try:
            self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
        except OSError as exc:
            raise WireClosed(f"cannot make a socket for the host: {exc}") from None
        self._connected = False
        self._inbox: deque[list[bytes]] = deque()
        self._buffer = bytearray(RECV_BYTES)
        self._view = memoryview(self._buffer)
        #: The host's READY arrived: it accepted this connection (its credentials checked).
        self.accepted = False
        #: Poll before blocking for the next message: the last one came within the spin.
        self._spin = True
        #: The worker says whether it may poll at all (it must be alone: ``sandbox.worker``).
        self.may_spin = False

    def fileno(self) -> int:
        return self._sock.fileno()

    def connect(self) -> None:
        """Connect (under every layer: the host checks the peer's uid) and queue our greeting
        and READY; a no-op once connected.

        The connection completes at once (the host listens before it spawns the worker); the
        host's greeting is read with its first message, so the handshake costs no wait here and
        the provider's import overlaps it."""
        if self._connected:
            return
        try:
            self._sock.connect(self._path)
            self._sock.sendall(self._codec.data_to_send())
        except OSError as exc:
            self._sock.close()
            raise WireClosed(f"cannot connect to the host at {self._path}: {exc}") from None
        self._connected = True

    def send_multipart(self, frames: list[bytes]) -> None:
        """Write one message; when this returns, every byte is in the host's socket buffer."""
        try:
            self._sock.sendall(self._codec.send_message(frames))
        except zmtp.ProtocolViolation as exc:
            raise WireClosed(str(exc)) from None
        except OSError as exc:  # the host closed its end (it is ending this worker)
            raise WireClosed(f"writing to the host failed: {exc}") from None

    def recv_multipart(self) -> list[bytes]:
        """The host's next message (blocking); :class:`WireClosed` at end of file or on a
        violation of the protocol.

        While messages come quickly (the last one within :data:`WORKER_SPIN_S`), the socket
        is polled for up to that long before the read blocks. On a virtual machine waking a
        vCPU that went idle costs tens of microseconds per message, more than a small call's
        work (``python -m benchmarks.spin``); once a message takes longer than the spin to
        come, the worker blocks at once until one comes quickly again. The CPU this costs is
        outside any call, at most :data:`WORKER_SPIN_S` per gap, and the host allows for it
        while the worker is alone in its tree (:attr:`may_spin`). ``sched_yield`` between
        polls gives the CPU to any other runnable task.
        """
        if self._inbox:
            return self._inbox.popleft()
        started = time.perf_counter()
        if self._spin and self.may_spin:
            deadline = started + WORKER_SPIN_S
            while not self._inbox and self._read(wait=False):
                if time.perf_counter() >= deadline:
                    break
                os.sched_yield()
        while not self._inbox:
            self._read()
        self._spin = time.perf_counter() - started < WORKER_SPIN_S
        return self._inbox.popleft()

    def wait_until_accepted(self, timeout: float) -> None:
        """Block until the host has accepted this connection (its READY came), at most
        ``timeout`` seconds. A worker about to exit must wait for this: what it wrote is in
        the socket already, but the host checks the peer's credentials when it accepts (the pid
        must be in the worker's tree), and a peer that has exited by then fails that check, so
        its last message (why it will not serve) would be refused with it."""
        self._sock.settimeout(timeout)
        try:
            while not self.accepted:
                self._read()
        except TimeoutError:
            raise WireClosed(
                f"the host did not accept the connection within {timeout:g}s"
            ) from None
        finally:
            self._sock.settimeout(None)

    def _read(self, wait: bool = True) -> bool:
        """One read: its messages to the inbox, the protocol's answers sent. ``wait=False``:
        return True at once if nothing had come (nothing was read)."""
        try:
            size = self._sock.recv_into(self._buffer, 0, 0 if wait else socket.MSG_DONTWAIT)
        except BlockingIOError:
            if wait:  # (a blocking read does not raise it)
                raise
            return True
        except TimeoutError:
            raise
        except OSError as exc:
            raise WireClosed(f"reading from the host failed: {exc}") from None
        try:
            events = self._codec.receive_data(bytes(self._view[:size]))
        except zmtp.ProtocolViolation as exc:
            raise WireClosed(f"the host broke the protocol: {exc}") from None
        for event in events:
            if isinstance(event, zmtp.Message):
                self._inbox.append(event.frames)
            elif isinstance(event, zmtp.HandshakeComplete):
                self.accepted = True
            elif isinstance(event, zmtp.ConnectionClosed):
                raise WireClosed("the host closed the connection")
        answer = self._codec.data_to_send()
        if answer:
            try:
                self._sock.sendall(answer)
            except OSError as exc:
                raise WireClosed(f"writing to the host failed: {exc}") from None
        return False

    def close(self) -> None:
        """Close the socket: what was sent is already in the host's buffer (no linger)."""
        self._sock.close()
