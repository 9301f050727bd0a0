"""host.remote.connections.ConnectionGuard on its own: which connections it ends, with a fake
kernel (peers, shutdowns, the clock). The attack itself, on a real ``sandbox serve``, is
``tests/test_remote.py::test_connections_that_never_handshake_cannot_use_up_the_servers_descriptors``."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from host.remote.connections import (
    HANDSHAKE_BYTES,
    HANDSHAKE_IVL_MS,
    MAX_HANDSHAKING,
    MAX_HANDSHAKING_PER_ADDRESS,
    ConnectionGuard,
    per_address_limit,
)


class Kernel:
    def __init__(self, limit: int = 10_000) -> None:
        self.peers: dict[int, tuple[str, int]] = {}
        self.sent: dict[int, int] = {}
        self.shut: list[int] = []
        self.now = 0.0
        self.limit = limit
        self.port = 1000

    def connect(self, address: str) -> int:
        fd = next(fd for fd in range(3, 1 << 20) if fd not in self.peers)
        self.port += 1
        self.peers[fd] = (address, self.port)
        self.sent[fd] = 0
        return fd

    def inspect(self, fd: int) -> tuple[tuple[str, int], int] | None:
        if fd not in self.peers:
            return None
        return self.peers[fd], self.sent[fd]

    def handshake(self, fd: int) -> None:
        self.sent[fd] = HANDSHAKE_BYTES

    def guard(self) -> ConnectionGuard:
        return ConnectionGuard(
            inspect=self.inspect, shut=self.shut.append, limit=lambda: self.limit,
            clock=lambda: self.now,
        )  # fmt: skip


def test_a_flood_from_one_address_pushes_out_its_own_oldest_not_another_address() -> None:
    kernel = Kernel()
    guard = kernel.guard()
    other = kernel.connect("10.0.0.2")
    assert guard.accepted(other) == []
    flood = [kernel.connect("10.0.0.1") for _ in range(MAX_HANDSHAKING_PER_ADDRESS + 5)]
    said = [guard.accepted(fd) for fd in flood]
    assert said[:MAX_HANDSHAKING_PER_ADDRESS] == [[]] * MAX_HANDSHAKING_PER_ADDRESS
    assert all(len(lines) == 1 and "10.0.0.1" in lines[0]
               for lines in said[MAX_HANDSHAKING_PER_ADDRESS:])  # fmt: skip
    assert kernel.shut == flood[:5]  # the oldest of that address, in order
    assert other not in kernel.shut
    assert guard.handshaking("10.0.0.1") == MAX_HANDSHAKING_PER_ADDRESS


def test_after_the_handshake_interval_a_connection_is_never_pushed_out() -> None:
    kernel = Kernel()
    guard = kernel.guard()
    settled = kernel.connect("10.0.0.1")
    guard.accepted(settled)
    kernel.now += HANDSHAKE_IVL_MS / 1000 + 0.1  # it completed its handshake, or was dropped
    for _ in range(3 * MAX_HANDSHAKING_PER_ADDRESS):
        guard.accepted(kernel.connect("10.0.0.1"))
    assert settled not in kernel.shut


def test_a_burst_of_clients_that_complete_their_handshakes_is_never_cut() -> None:
    kernel = Kernel()
    guard = kernel.guard()
    clients = []
    for _ in range(4 * MAX_HANDSHAKING_PER_ADDRESS):  # one address (a NAT, a process pool)
        fd = kernel.connect("10.0.0.1")
        clients.append(fd)
        assert guard.accepted(fd) == []
        kernel.handshake(fd)  # within milliseconds, long before the interval ends
    assert kernel.shut == []
    idle = kernel.connect("10.0.0.1")
    guard.accepted(idle)
    assert kernel.shut == []  # nobody handshaking to push out: within the bound


def test_a_reused_descriptor_is_not_shut_down_for_the_connection_that_had_it() -> None:
    kernel = Kernel()
    guard = kernel.guard()
    first = kernel.connect("10.0.0.1")
    guard.accepted(first)
    del kernel.peers[first]  # libzmq closed it; its end was not reported (lost event)
    reused = kernel.connect("10.0.0.9")  # the same number, another connection (or a pipe)
    assert reused == first
    for _ in range(MAX_HANDSHAKING_PER_ADDRESS + 1):
        guard.accepted(kernel.connect("10.0.0.1"))
    assert reused not in kernel.shut


def test_beyond_the_connection_limit_a_new_connection_is_closed_at_once() -> None:
    kernel = Kernel(limit=10)
    guard = kernel.guard()
    for i in range(10):
        guard.accepted(kernel.connect(f"10.0.1.{i}"))
        kernel.now += HANDSHAKE_IVL_MS / 1000  # all of them past their handshakes
    late = kernel.connect("10.0.2.1")
    assert "are open" in " ".join(guard.accepted(late))
    assert kernel.shut == [late]
    assert len(guard) == 10


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(
    st.sampled_from(["accept", "end", "wait", "handshake"]), st.integers(0, 5), st.integers(0, 40)
), max_size=400))
def test_the_bounds_hold_whatever_the_order_of_events(
    steps: list[tuple[str, int, int]],
) -> None:
    kernel = Kernel(limit=2 * MAX_HANDSHAKING + 50)
    guard = kernel.guard()
    for kind, address, pick in steps:
        if kind == "accept":
            guard.accepted(kernel.connect(f"10.0.0.{address}"))
        elif kind == "end" and kernel.peers:
            fd = sorted(kernel.peers)[pick % len(kernel.peers)]
            del kernel.peers[fd]
            guard.ended(fd)
        elif kind == "handshake" and kernel.peers:
            kernel.handshake(sorted(kernel.peers)[pick % len(kernel.peers)])
        else:
            kernel.now += pick / 10
        for fd in kernel.shut:  # what was shut down, libzmq ends (and reports)
            assert kernel.sent.get(fd, 0) < HANDSHAKE_BYTES, "cut a completed handshake"
            if kernel.peers.pop(fd, None) is not None:
                guard.ended(fd)
        kernel.shut.clear()
        assert len(guard) <= kernel.limit
        assert guard.handshaking() <= MAX_HANDSHAKING
        for i in range(6):
            assert guard.handshaking(f"10.0.0.{i}") <= MAX_HANDSHAKING_PER_ADDRESS
        assert len(guard) == len(kernel.peers)
        for i in range(6):
            held = sum(peer[0] == f"10.0.0.{i}" for peer in kernel.peers.values())
            assert held <= per_address_limit(kernel.limit)


def test_at_the_bound_in_all_the_busiest_address_loses_a_connection_not_a_lone_client() -> None:
    kernel = Kernel()
    guard = kernel.guard()
    lone = kernel.connect("192.0.2.7")  # a client mid-handshake, the oldest of all
    guard.accepted(lone)
    busy = [kernel.connect("10.9.9.9") for _ in range(MAX_HANDSHAKING_PER_ADDRESS - 1)]
    for fd in busy:
        guard.accepted(fd)
    # A flood from many addresses, one connection each, past the bound in all (by fewer than
    # the busy address holds: beyond, every address holds one, and the oldest goes).
    spread = [kernel.connect(f"10.0.{i // 250}.{i % 250}") for i in range(MAX_HANDSHAKING - 10)]
    for fd in spread:
        guard.accepted(fd)
    assert guard.handshaking() == MAX_HANDSHAKING
    assert lone not in kernel.shut  # (it was the oldest: oldest-first in all would cut it)
    assert kernel.shut == busy[:22]  # the busiest address's, oldest first


def test_a_client_that_completes_its_handshake_within_a_spread_flood_is_never_cut() -> None:
    kernel = Kernel()
    guard = kernel.guard()
    client = kernel.connect("192.0.2.7")
    guard.accepted(client)
    for i in range(4 * MAX_HANDSHAKING):
        guard.accepted(kernel.connect(f"10.1.{i // 250}.{i % 250}"))
        if i == MAX_HANDSHAKING // 2:
            kernel.handshake(client)  # done while fewer than the bound came after it
    assert client not in kernel.shut
    assert guard.handshaking() <= MAX_HANDSHAKING


def test_an_ipv6_host_is_one_address_however_many_of_its_64_it_uses() -> None:
    kernel = Kernel()
    guard = kernel.guard()
    for i in range(3 * MAX_HANDSHAKING_PER_ADDRESS):
        guard.accepted(kernel.connect(f"2001:db8:1:2::{i + 1:x}"))
    assert guard.handshaking("2001:db8:1:2::/64") == MAX_HANDSHAKING_PER_ADDRESS
    assert len(kernel.shut) == 2 * MAX_HANDSHAKING_PER_ADDRESS
    mapped = kernel.connect("::ffff:10.1.1.1")
    guard.accepted(mapped)
    assert guard.handshaking("10.1.1.1") == 1


def test_one_address_cannot_hold_every_connection_even_with_completed_handshakes() -> None:
    """An authorized key opened connections until the server's limit: every other client was
    closed at accept. One address now holds at most a quarter of the limit."""
    kernel = Kernel(limit=400)
    guard = kernel.guard()
    hog = []
    for _ in range(400):
        fd = kernel.connect("10.0.0.1")
        guard.accepted(fd)
        kernel.handshake(fd)
        hog.append(fd)
    held = [fd for fd in hog if fd not in kernel.shut]
    assert len(held) == per_address_limit(400) == 100
    other = kernel.connect("10.0.0.2")
    assert guard.accepted(other) == [] and other not in kernel.shut
