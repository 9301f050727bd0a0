"""Bounds on the TCP connections ``sandbox serve`` holds, before and after their handshakes.

Anyone who can reach the port can open connections and send nothing. libzmq keeps each until
its handshake interval passes (30 s by default), a descriptor each, and the server's process is
also the host: at the descriptor limit no client could connect, and no worker could start. An
authorized key could do the same with connections it completed. So:

- a handshake gets :data:`HANDSHAKE_IVL_MS` (the server sets it on its socket), and libzmq
  drops a connection that has not completed one by then;
- a connection is *handshaking* while it is within that interval and the server has sent it
  fewer bytes than a successful handshake takes (:data:`HANDSHAKE_BYTES`, read from the
  kernel's ``TCP_INFO``: the server sends its READY only once ZAP authorized the key, so
  only an authorized peer gets past them; the bytes the *peer* sent say nothing, a flood
  sends a greeting and the start of a long HELLO, then stalls). At most
  :data:`MAX_HANDSHAKING_PER_ADDRESS` connections from one address and :data:`MAX_HANDSHAKING`
  in all are handshaking: a new one beyond either bound pushes out the oldest handshaking one
  (of that address, or of all). A flood of idle connections cannot keep a client from its turn
  then (it only shortens the time its own address's connections have), and a burst of clients
  from one address that complete their handshakes is never cut;
- all connections together stay below half the process's descriptor limit
  (:func:`connection_limit`); a connection beyond that is closed as soon as it is accepted.

libzmq tells the server through its socket monitor when it accepted a connection (with the
descriptor) and when one ended, but not which connection completed a handshake (that event
carries no descriptor): hence the bytes. A descriptor is reused at once, so before one is
shut down its peer address is checked against the one recorded at acceptance: a descriptor
that now belongs to another connection (or to a worker's pipe) is left alone. Shutting a
connection down (``shutdown(2)``, never ``close``: the descriptor stays libzmq's) makes libzmq
end it itself.
"""

from __future__ import annotations

import collections
import contextlib
import resource
import socket
import struct
import time
from collections.abc import Callable
from dataclasses import dataclass

#: How long a connection has to complete its ZMTP/CURVE handshake (libzmq's default is 30 s).
HANDSHAKE_IVL_MS = 5000
#: What the server has sent a CURVE client once its handshake succeeded: greeting (64),
#: WELCOME (170), READY (67 measured; 40 is more than ZAP's refusal, an ERROR of 12, sends).
HANDSHAKE_BYTES = 64 + 170 + 40
#: The same for the NULL mechanism (``--insecure``): greeting and READY (43; an ERROR is 12).
NULL_HANDSHAKE_BYTES = 64 + 30
#: Connections within their handshake interval, from one address and in all.
MAX_HANDSHAKING_PER_ADDRESS = 32
MAX_HANDSHAKING = 256


def connection_limit() -> int:
    """Connections the server may hold: half of its descriptors (the host needs the rest for
    its workers), read each time (an operator may change the limit of a running server)."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    return max(8, soft // 2)


def raise_descriptor_limit() -> None:
    """The soft descriptor limit up to the hard one (servers commonly start at 1024)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY:
        hard = 1 << 20
    if soft != resource.RLIM_INFINITY and soft < hard:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


@dataclass(eq=False)
class _Connection:
    fd: int
    peer: tuple[str, int] | None
    accepted: float
    #: Counted among the handshaking (until it ends or its interval passes).
    handshaking: bool = True


def inspect(fd: int) -> tuple[tuple[str, int], int] | None:
    """The remote (address, port) of the TCP socket ``fd`` and how many bytes were sent on it,
    or None (no TCP socket, or closed). Before Linux 4.19 the bytes the peer acknowledged;
    unknown (before 4.1), none."""
    try:
        sock = socket.socket(fileno=fd)
    except OSError:
        return None
    try:
        peer = sock.getpeername()
        info = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, _TCP_INFO_BYTES)
    except OSError:
        return None
    finally:
        sock.detach()  # the descriptor is libzmq's
    if not (isinstance(peer, tuple) and len(peer) >= 2):
        return None
    sent = 0
    if len(info) >= _BYTES_SENT_AT + 8:
        (sent,) = struct.unpack_from("=Q", info, _BYTES_SENT_AT)
    elif len(info) >= _BYTES_ACKED_AT + 8:
        (sent,) = struct.unpack_from("=Q", info, _BYTES_ACKED_AT)
    return (str(peer[0]), int(peer[1])), sent


#: ``struct tcp_info``: its size asked for, and where ``tcpi_bytes_sent`` and
#: ``tcpi_bytes_acked`` (u64s) are.
_TCP_INFO_BYTES = 256
_BYTES_SENT_AT = 200
_BYTES_ACKED_AT = 120


def shut_down(fd: int) -> None:
    """End the connection on ``fd`` (libzmq sees the end and closes it)."""
    try:
        sock = socket.socket(fileno=fd)
    except OSError:
        return
    try:
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)
    finally:
        sock.detach()


Inspect = Callable[[int], "tuple[tuple[str, int], int] | None"]


class ConnectionGuard:
    """The connections the monitor reported, and which of them to end (see the module).

    Every operation is amortised O(1) however fast connections come: the handshaking ones are
    kept in order of acceptance, in all and per address, with counts; an entry that ended,
    outlived its interval or was sent a handshake's bytes is dropped from the counts at once and
    from the queues when it reaches their front."""

    def __init__(
        self,
        *,
        inspect: Inspect = inspect,
        shut: Callable[[int], None] = shut_down,
        limit: Callable[[], int] = connection_limit,
        clock: Callable[[], float] = time.monotonic,
        handshake_bytes: int = HANDSHAKE_BYTES,
    ) -> None:
        self._inspect, self._shut, self._limit, self._clock = inspect, shut, limit, clock
        self._handshake_bytes = handshake_bytes
        self._open: dict[int, _Connection] = {}
        self._order: collections.deque[_Connection] = collections.deque()
        self._by_address: dict[str, collections.deque[_Connection]] = {}
        self._count: dict[str, int] = {}
        self._handshaking = 0
        self._next_expiry = 0.0
        self.refused = 0
        self.evicted = 0

    def __len__(self) -> int:
        return len(self._open)

    def handshaking(self, address: str | None = None) -> int:
        """Connections counted as handshaking (from ``address``, or in all)."""
        self._age()
        return self._handshaking if address is None else self._count.get(address, 0)

    def accepted(self, fd: int) -> list[str]:
        """A connection was accepted on ``fd``: what was done beyond the bounds, as lines for
        the log (none, mostly)."""
        self._age()
        stale = self._open.pop(fd, None)  # (its end was not reported)
        if stale is not None:
            self._stop_counting(stale)
        limit = self._limit()
        if len(self._open) >= limit:
            self._expire_missing()
        seen = self._inspect(fd)
        peer = seen[0] if seen else None
        if len(self._open) >= limit:
            self._shut(fd)
            self.refused += 1
            return [f"closed a connection from {_name(peer)}: {len(self._open)} are open"]
        connection = _Connection(fd, peer, self._clock())
        self._open[fd] = connection
        self._order.append(connection)
        address = peer[0] if peer else ""
        self._by_address.setdefault(address, collections.deque()).append(connection)
        self._count[address] = self._count.get(address, 0) + 1
        self._handshaking += 1
        said = []
        if self._count[address] > MAX_HANDSHAKING_PER_ADDRESS:
            said += self._push_out(
                self._by_address[address], f"from {address or '?'}",
                lambda: self._count.get(address, 0), MAX_HANDSHAKING_PER_ADDRESS,
            )  # fmt: skip
        bound = min(MAX_HANDSHAKING, max(1, limit // 2))
        if self._handshaking > bound:
            said += self._push_out(self._order, "in all", lambda: self._handshaking, bound)
        return said

    def ended(self, fd: int) -> None:
        """libzmq ended the connection on ``fd``."""
        connection = self._open.pop(fd, None)
        if connection is not None:
            self._stop_counting(connection)

    def _push_out(
        self,
        queue: collections.deque[_Connection],
        where: str,
        count: Callable[[], int],
        bound: int,
    ) -> list[str]:
        """While more than ``bound`` of ``queue`` are counted as handshaking, look again at the
        oldest (it may have sent its handshake since, or be gone) and end it if it still is."""
        while queue and count() > bound:
            connection = queue[0]
            if not connection.handshaking:
                queue.popleft()
                continue
            seen = self._inspect(connection.fd)
            if seen is None or seen[0] != connection.peer:  # gone, and the number reused
                if self._open.get(connection.fd) is connection:
                    del self._open[connection.fd]
                self._stop_counting(connection)
                continue
            if seen[1] >= self._handshake_bytes:  # it was authorized: not a flood's
                self._stop_counting(connection)
                continue
            held = count()
            del self._open[connection.fd]
            self._stop_counting(connection)
            self._shut(connection.fd)
            self.evicted += 1
            return [
                f"closed the oldest connection still in its handshake ({held} {where} were), "
                f"from {_name(connection.peer)}"
            ]
        return []

    def _age(self) -> None:
        """Stop counting connections whose handshake interval has passed."""
        since = self._clock() - HANDSHAKE_IVL_MS / 1000
        while self._order and (not self._order[0].handshaking or self._order[0].accepted < since):
            self._stop_counting(self._order.popleft())

    def _stop_counting(self, connection: _Connection) -> None:
        if not connection.handshaking:
            return
        connection.handshaking = False
        self._handshaking -= 1
        address = connection.peer[0] if connection.peer else ""
        self._count[address] -= 1
        queue = self._by_address[address]
        while queue and not queue[0].handshaking:
            queue.popleft()
        if not self._count[address]:
            del self._count[address]
            del self._by_address[address]

    def _expire_missing(self) -> None:
        """Forget connections whose end the monitor did not report (its queue is bounded):
        checked when the count reaches the limit, which a lost event must not hold (at most
        once a second: it asks the kernel about every connection)."""
        now = self._clock()
        if now < self._next_expiry:
            return
        self._next_expiry = now + 1.0
        for fd, connection in list(self._open.items()):
            seen = self._inspect(fd)
            if connection.peer is None or seen is None or seen[0] != connection.peer:
                del self._open[fd]
                self._stop_counting(connection)


def _name(peer: tuple[str, int] | None) -> str:
    return f"{peer[0]}:{peer[1]}" if peer else "an unknown peer"
