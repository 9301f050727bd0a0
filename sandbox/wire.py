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

import socket
from collections import deque

from sandbox import zmtp

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
        """Connect to the host's endpoint at ``path`` and queue our greeting and READY.

        The connection completes at once (the host listens before it spawns the worker); the
        host's greeting is read with its first message, so the handshake costs no wait here and
        the provider's import overlaps it."""
        self._codec = zmtp.Connection(
            budget=max(zmtp.MIN_BUDGET, budget + FRAME_HEADERS),
            socket_type=b"DEALER",
            peer_types=frozenset({b"ROUTER"}),
            identity=identity,
            max_frames=3,
        )
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
        try:
            self._sock.connect(path)
            self._sock.sendall(self._codec.data_to_send())
        except OSError as exc:
            self._sock.close()
            raise WireClosed(f"cannot connect to the host at {path}: {exc}") from None
        self._inbox: deque[list[bytes]] = deque()
        self._buffer = bytearray(RECV_BYTES)
        self._view = memoryview(self._buffer)
        #: The host's READY arrived: it accepted this connection (its credentials checked).
        self.accepted = False

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
        violation of the protocol."""
        while not self._inbox:
            self._read()
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

    def _read(self) -> None:
        """One read: its messages to the inbox, the protocol's answers sent."""
        try:
            size = self._sock.recv_into(self._buffer)
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

    def close(self) -> None:
        """Close the socket: what was sent is already in the host's buffer (no linger)."""
        self._sock.close()
