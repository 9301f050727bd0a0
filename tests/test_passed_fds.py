"""No file descriptor crosses from a worker to the host (``host.transport``).

A descriptor passed with ``SCM_RIGHTS`` is closed by whoever reads past it; the last close of a
TCP socket lingering on a full send buffer then blocks the reading thread (the host's loop, or
a caller reading its own reply) for as long as the sender set ``SO_LINGER``: a red team froze
every provider's calls 15 s this way. Where the kernel has ``SO_PASSRIGHTS`` (Linux >= 6.16)
it refuses the worker's ``sendmsg``; elsewhere the host reads ancillary data itself, ends the
worker for a protocol violation and closes the descriptors on a thread of its own.
"""

from __future__ import annotations

import os
import socket
import struct
import tempfile
import time

import pytest

from host import Host, ProtocolViolation, transport
from tests.conftest import provider_file

PASSER = provider_file("fd_passer.py")


def _kernel_refuses_descriptors() -> bool:
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        return transport._refuse_descriptors(probe)
    finally:
        probe.close()


def test_a_worker_cannot_pass_the_host_a_descriptor(host: Host) -> None:
    host.add_provider(PASSER)
    host.add_provider("providers.examples.text")
    outcome = host.run("fd_passer.pass_pipe")
    if _kernel_refuses_descriptors():
        assert outcome.ok, outcome.error
        assert outcome.value.startswith("refused"), outcome.value
    else:  # read by the host, which ends the worker for it
        assert isinstance(outcome.error, ProtocolViolation), outcome
        assert "file descriptors" in str(outcome.error)
    assert host.call("text.echo", {"value": "still served"}) == "still served"


def _channel(directory: str) -> transport.Channel:
    return transport.Channel(
        os.path.join(directory, "w"), budget=1 << 20, outbox_limit=1 << 20,
        peer_identity=b"w", max_frames=2,
    )  # fmt: skip


def _lingering_tcp_socket() -> tuple[socket.socket, socket.socket]:
    """A TCP socket whose close would wait 15 s: its peer never reads, its buffer is full."""
    server = socket.create_server(("127.0.0.1", 0))
    client = socket.create_connection(server.getsockname())
    client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 15))
    client.setblocking(False)
    try:
        while True:
            client.send(b"x" * 65536)
    except BlockingIOError:
        pass
    return server, client


def test_without_passrights_a_passed_descriptor_is_a_violation_closed_off_the_reader() -> None:
    """The fallback for kernels without ``SO_PASSRIGHTS``, forced on: the read reports the
    violation at once (it does not wait out the linger) and the host keeps no descriptor."""
    with tempfile.TemporaryDirectory() as directory:
        channel = _channel(directory)
        channel.refuses_descriptors = False
        worker_end = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        server, lingering = _lingering_tcp_socket()
        try:
            worker_end.connect(channel.path)
            conn, _pid, _uid, _gid = channel.accept() or pytest.fail("no connection")
            if _kernel_refuses_descriptors():  # the accepted socket inherited the refusal
                conn.setsockopt(socket.SOL_SOCKET, transport.SO_PASSRIGHTS, 1)
            channel.adopt(conn)
            read_end, write_end = os.pipe()
            socket.send_fds(worker_end, [b"\0"], [lingering.fileno(), read_end])
            lingering.close()  # the host's copy is now the last one
            os.close(read_end)
            started = time.monotonic()
            _events, violation = channel.read()
            took = time.monotonic() - started
            assert violation == "it passed file descriptors to the host"
            assert took < 5, f"the read waited {took:.1f}s for a lingering close"
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:  # the pipe's last read end goes: EPIPE
                try:
                    os.write(write_end, b"x")
                except BrokenPipeError:
                    break
                time.sleep(0.05)
            else:
                pytest.fail("the host kept the passed pipe open")
            os.close(write_end)
        finally:
            worker_end.close()
            server.close()
            channel.close()


def test_without_passrights_a_descriptor_queued_behind_a_violation_is_closed_off_the_loop() -> None:
    """A review's way around the read: garbage first (the read stops at the violation), then
    a descriptor, still queued when the host closes the connection: the last close of the
    connection releases it, lingering. That close runs on a thread of its own."""
    with tempfile.TemporaryDirectory() as directory:
        channel = _channel(directory)
        channel.refuses_descriptors = False
        worker_end = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        server, lingering = _lingering_tcp_socket()
        try:
            worker_end.connect(channel.path)
            conn, _pid, _uid, _gid = channel.accept() or pytest.fail("no connection")
            if _kernel_refuses_descriptors():
                conn.setsockopt(socket.SOL_SOCKET, transport.SO_PASSRIGHTS, 1)
            channel.adopt(conn)
            worker_end.sendall(b"\xff" * 65536)  # not a ZMTP greeting
            socket.send_fds(worker_end, [b"\0"], [lingering.fileno()])
            lingering.close()
            _events, violation = channel.read()
            assert violation is not None
            started = time.monotonic()
            channel.close()
            took = time.monotonic() - started
            assert took < 5, f"closing the connection waited {took:.1f}s for a lingering close"
        finally:
            worker_end.close()
            server.close()
            channel.close()
