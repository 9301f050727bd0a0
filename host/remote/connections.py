"""Bounds on the TCP connections ``sandbox serve`` holds, before and after their handshakes.

Anyone who can reach the port can open connections and send nothing. libzmq keeps each until
its handshake interval passes (30 s by default), a descriptor each, and the server's process is
also the host: at the descriptor limit no client could connect, and no worker could start. An
authorized key could do the same with connections it completed. So:

- a handshake gets :data:`HANDSHAKE_IVL_MS` (the server sets it on its socket), and libzmq
  drops a connection that has not completed one by then;
- a connection is *handshaking* while it is within that interval and the peer has
  acknowledged fewer bytes from the server than a successful handshake takes
  (:data:`HANDSHAKE_BYTES`, read from the kernel's ``TCP_INFO``: the server sends its READY
  only once ZAP authorized the key, so only an authorized peer gets past them; the bytes the
  *peer* sent say nothing, a flood sends a greeting and the start of a long HELLO, then
  stalls). At most :data:`MAX_HANDSHAKING_PER_ADDRESS` connections from one address (an IPv6
  peer's /64, which one host may hold whole) and :data:`MAX_HANDSHAKING` in all are
  handshaking: a new one beyond the first bound pushes out the oldest handshaking one of its
  address, beyond the second the oldest of the address that holds the most. A flood cannot
  keep a client from its turn then (it only shortens the time its own address's connections
  have), and a burst of clients from one address that complete their handshakes is never cut;
- all connections together stay below half the process's descriptor limit
  (:func:`connection_limit`), and those of one address below a quarter of that
  (:func:`per_address_limit`); a connection beyond either is closed as soon as it is
  accepted. (An authorized key on many addresses can still hold every connection: ZAP's
  requests carry no descriptor, so connections cannot be counted per key.)

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
import ipaddress
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


def per_address_limit(limit: int) -> int:
    """Open connections one address may hold, of ``limit`` in all: a quarter, and at least
    as many as may be handshaking from it."""
    return max(MAX_HANDSHAKING_PER_ADDRESS, limit // 4)


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
    #: What the per-address bounds count it under (:func:`_address` of ``peer``).
    address: str
    accepted: float
    #: Counted among the handshaking (until it ends or its interval passes).
    handshaking: bool = True


def inspect(fd: int) -> tuple[tuple[str, int], int] | None:
    """The remote (address, port) of the TCP socket ``fd`` and how many bytes the peer has
    acknowledged of what was sent on it, or None (no TCP socket, or closed); unknown (before
    Linux 4.1), none. Acknowledged, not sent: ``tcpi_bytes_sent`` counts retransmissions too,
    so a peer that withholds its ACKs would make the greeting and WELCOME it was sent count
    twice, past the bytes of an authorized handshake; a peer cannot acknowledge more than
    was sent."""
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
    acked = 0
    if len(info) >= _BYTES_ACKED_AT + 8:
        (acked,) = struct.unpack_from("=Q", info, _BYTES_ACKED_AT)
    return (str(peer[0]), int(peer[1])), acked


#: ``struct tcp_info``: its size asked for, and where ``tcpi_bytes_acked`` (a u64) is.
_TCP_INFO_BYTES = 256
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
        #: Open connections per address (see :func:`_address`), handshaking or not.
        self._open_count: dict[str, int] = {}
        self._order: collections.deque[_Connection] = collections.deque()
        self._by_address: dict[str, collections.deque[_Connection]] = {}
        self._count: dict[str, int] = {}
        self._handshaking = 0
        self._next_expiry = 0.0

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
        stale = self._open.get(fd)  # (its end was not reported)
        if stale is not None:
            self._forget(stale)
        limit = self._limit()
        if len(self._open) >= limit:
            self._expire_missing()
        seen = self._inspect(fd)
        peer = seen[0] if seen else None
        address = address_key(peer)
        if len(self._open) >= limit:
            self._shut(fd)
            return [f"closed a connection from {_name(peer)}: {len(self._open)} are open"]
        if self._open_count.get(address, 0) >= per_address_limit(limit):
            # One address (one host: a key's owner, authorized or not) may not take every
            # connection the server allows: those of others still get in.
            self._shut(fd)
            return [
                f"closed a connection from {_name(peer)}: {self._open_count[address]} are "
                "open from its address"
            ]
        connection = _Connection(fd, peer, address, self._clock())
        self._open[fd] = connection
        self._open_count[address] = self._open_count.get(address, 0) + 1
        self._order.append(connection)
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
        while self._handshaking > bound and self._count:
            # The oldest of the address holding the most: a flood spread over many addresses
            # then cuts its own connections, not a lone client's half-done handshake.
            busiest = max(self._count, key=self._count.__getitem__)
            before = self._handshaking
            said += self._push_out(
                self._by_address[busiest], f"in all, the most from {busiest or '?'}",
                lambda: self._handshaking, bound,
            )  # fmt: skip
            if self._handshaking == before:
                break  # (nothing could be pushed out: cannot happen while one is counted)
        return said

    def ended(self, fd: int) -> None:
        """libzmq ended the connection on ``fd``."""
        connection = self._open.get(fd)
        if connection is not None:
            self._forget(connection)

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
                self._forget(connection)
                continue
            if seen[1] >= self._handshake_bytes:  # it was authorized: not a flood's
                self._stop_counting(connection)
                continue
            held = count()
            self._forget(connection)
            self._shut(connection.fd)
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

    def _forget(self, connection: _Connection) -> None:
        """The connection is no longer open (or no longer ours to count)."""
        if self._open.get(connection.fd) is connection:
            del self._open[connection.fd]
            address = connection.address
            self._open_count[address] -= 1
            if not self._open_count[address]:
                del self._open_count[address]
        self._stop_counting(connection)

    def _stop_counting(self, connection: _Connection) -> None:
        if not connection.handshaking:
            return
        connection.handshaking = False
        self._handshaking -= 1
        address = connection.address
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
                self._forget(connection)


def address_key(peer: tuple[str, int] | None) -> str:
    """What a per-address bound counts by: an IPv4 address (also one mapped into IPv6), or
    an IPv6 peer's /64 (which one host may hold whole). Also the metrics port's."""
    if peer is None:
        return ""
    host = peer[0]
    if ":" not in host:
        return host
    try:
        parsed = ipaddress.IPv6Address(host.split("%", 1)[0])
    except ValueError:
        return host
    if parsed.ipv4_mapped is not None:
        return str(parsed.ipv4_mapped)
    return str(ipaddress.IPv6Network((parsed, 64), strict=False))


def _name(peer: tuple[str, int] | None) -> str:
    return f"{peer[0]}:{peer[1]}" if peer else "an unknown peer"
