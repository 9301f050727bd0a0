"""The host's end of the wire: one ZeroMQ ROUTER, one ipc endpoint per worker.

Every option that could drop a message or hang is set on purpose: ``ROUTER_MANDATORY`` (sending to
a gone peer fails loudly instead of vanishing), ``LINGER 0`` (closing never waits), bounded HWMs
and a ``MAXMSGSIZE`` per endpoint. libzmq drops a connection that sends an oversized frame without
telling the ROUTER which peer it was; binding each worker to its *own* endpoint makes the socket
monitor's DISCONNECTED event name the worker, so the host can kill it for the violation.
The endpoints live in a directory only the host's user can enter (0700).
"""

from __future__ import annotations

import os
import tempfile

import zmq
from zmq.utils.monitor import parse_monitor_message

from host import fsutil

#: Room for the JSON envelope around a result of ``policy.output`` bytes.
ENVELOPE_BYTES = 64 * 1024


class Transport:
    """Owned by the reactor thread: ZeroMQ sockets are not thread-safe."""

    def __init__(
        self, *, shared_with_other_uids: bool = False, directory: str | None = None
    ) -> None:
        """``directory``: an empty directory to hold the endpoints (made here if None)."""
        self.context = zmq.Context(io_threads=1)
        self.router: zmq.Socket[bytes] = self.context.socket(zmq.ROUTER)
        self.router.setsockopt(zmq.ROUTER_MANDATORY, 1)
        self.router.setsockopt(zmq.LINGER, 0)
        self.router.setsockopt(zmq.SNDHWM, 1000)
        self.router.setsockopt(zmq.RCVHWM, 1000)
        self.monitor: zmq.Socket[bytes] = self.router.get_monitor_socket(zmq.EVENT_DISCONNECTED)
        self.monitor.setsockopt(zmq.LINGER, 0)
        self.directory = directory or tempfile.mkdtemp(prefix="sandbox-ipc-")
        # 0700, or 0711 when workers run under their own uids: they may then reach their own
        # socket (chowned to them, mode 0600) by its exact name, but not list or open others.
        os.chmod(self.directory, 0o711 if shared_with_other_uids else 0o700)

    def bind_worker(self, worker_id: str, max_message_bytes: int) -> str:
        """A fresh endpoint for one worker, accepting messages up to ``max_message_bytes``."""
        self.router.setsockopt(zmq.MAXMSGSIZE, max_message_bytes)
        endpoint = f"ipc://{self.directory}/{worker_id}"
        self.router.bind(endpoint)
        os.chmod(endpoint.removeprefix("ipc://"), 0o600)
        return endpoint

    def unbind(self, endpoint: str) -> None:
        try:
            self.router.unbind(endpoint)
        except zmq.ZMQError:
            pass
        try:
            os.unlink(endpoint.removeprefix("ipc://"))
        except OSError:
            pass

    def send(self, worker_id: str, frames: list[bytes]) -> bool:
        """Send without blocking; False when the peer is gone or its queue is full."""
        try:
            self.router.send_multipart([worker_id.encode(), *frames], flags=zmq.NOBLOCK)
        except zmq.ZMQError:
            return False
        return True

    def receive(self, limit: int = 256) -> list[tuple[bytes, list[bytes]]]:
        """Everything waiting (up to ``limit`` messages): (routing id, frames)."""
        messages = []
        for _ in range(limit):
            try:
                frames = self.router.recv_multipart(flags=zmq.NOBLOCK)
            except zmq.Again:
                break
            messages.append((frames[0], frames[1:]))
        return messages

    def disconnected_endpoints(self) -> list[str]:
        """Endpoints whose connection libzmq dropped since the last look."""
        endpoints: list[str] = []
        while True:
            try:
                frames = self.monitor.recv_multipart(flags=zmq.NOBLOCK)
            except zmq.Again:
                return endpoints
            event = parse_monitor_message(frames)
            if event["event"] == zmq.EVENT_DISCONNECTED:
                endpoints.append(event["endpoint"].decode())

    def close(self) -> None:
        try:
            self.router.disable_monitor()
        except zmq.ZMQError:
            pass
        self.monitor.close(linger=0)
        self.router.close(linger=0)
        self.context.term()
        fsutil.remove_tree(self.directory)
