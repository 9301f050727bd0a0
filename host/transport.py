"""The host's end of the wire: one Unix socket per worker, spoken by our own ZMTP codec.

The worker connects to its ``ipc://`` path with the same codec playing DEALER (``sandbox.wire``);
the host's end is no libzmq socket but :mod:`host.zmtp` over a plain ``AF_UNIX`` socket, so
everything a worker can make the host hold is bounded by the codec's budget (see ``host.zmtp``)
and the reads here:

- Each worker gets its own listening socket at the path it connects to (mode 0600, in a
  directory only the host's user can enter, or 0711 when workers run under their own uids).
  Exactly one connection is accepted: its ``SO_PEERCRED`` is checked by the caller (uid, and
  the pid must be in the worker's process tree), and once one is taken the listener is closed
  and its path unlinked, so a second connection is impossible (a connect gets ENOENT, or
  ECONNREFUSED through a bind mount of the old path).
- Reads are non-blocking and bounded per event (``READ_CHUNKS`` x ``READ_CHUNK``); the
  outbox is bounded (a worker that stops reading cannot make the host queue without end).
- No file descriptor crosses to the host. A descriptor passed with ``SCM_RIGHTS`` would be
  closed by whoever reads past it, and the last close of, say, a TCP socket lingering on a
  full buffer blocks that thread for as long as the sender chose (a red team froze the loop
  15 s this way). The listener sets ``SO_PASSRIGHTS`` off (Linux >= 6.16; the accepted
  connection inherits it, and the kernel refuses the sender's ``sendmsg``); on older kernels
  every read takes ancillary data, and a descriptor is a protocol violation, closed with
  ``SO_LINGER`` zero on a thread of its own, never on the reader's.
"""

from __future__ import annotations

import contextlib
import os
import socket
import struct
import tempfile
import threading

from host import fsutil, zmtp

#: Room for the JSON envelope around a result of ``policy.output`` bytes.
ENVELOPE_BYTES = 64 * 1024
#: Bytes read per ``recv`` and ``recv`` calls per readiness event: the loop comes back for more.
READ_CHUNK = 64 * 1024
READ_CHUNKS = 16
_CRED = struct.Struct("3i")
_buffers = threading.local()
#: ``SO_PASSRIGHTS`` (Linux >= 6.16, asm-generic value): 0 makes the kernel refuse to queue
#: ``SCM_RIGHTS`` for this socket (and for the connections a listener accepts).
SO_PASSRIGHTS = 83
#: Ancillary room for the most descriptors one message can carry (``SCM_MAX_FD``), so the
#: kernel never closes the excess itself inside the read.
_ANCILLARY = socket.CMSG_SPACE(253 * 4)


def _refuse_descriptors(sock: socket.socket) -> bool:
    """Turn ``SO_PASSRIGHTS`` off on ``sock``; False where the kernel has no such option."""
    try:
        sock.setsockopt(socket.SOL_SOCKET, SO_PASSRIGHTS, 0)
        return sock.getsockopt(socket.SOL_SOCKET, SO_PASSRIGHTS) == 0
    except OSError:
        return False


def _discard_descriptors(ancillary: list[tuple[int, int, bytes]]) -> None:
    """Close descriptors a peer passed, on a thread of their own: a socket first gets
    ``SO_LINGER`` zero (its close then resets instead of waiting), but whatever else the last
    close of the object does, it is not the reader's thread that waits for it."""
    fds = [
        fd
        for level, kind, data in ancillary
        if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS
        for (fd,) in struct.iter_unpack("i", data[: len(data) - len(data) % 4])
    ]

    def close_them() -> None:
        for fd in fds:
            try:
                sock = socket.socket(fileno=fd)
            except OSError:  # not a socket
                with contextlib.suppress(OSError):
                    os.close(fd)
                continue
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            sock.close()

    if fds:
        threading.Thread(target=close_them, name="sandbox-passed-fds", daemon=True).start()


def release(connection: socket.socket | int, refuses_descriptors: bool) -> None:
    """Close a worker's connection (or a duplicate of its descriptor). Where the kernel does
    not refuse passed descriptors, one may still wait in the connection's queue behind what
    was read (a violation stops the reading), and the last close releases it, lingering: the
    close then runs on a thread of its own, not the loop's or a caller's (a review's 8 s)."""

    def close() -> None:
        with contextlib.suppress(OSError):
            if isinstance(connection, int):
                os.close(connection)
            else:
                connection.close()

    if refuses_descriptors:
        close()
    else:
        threading.Thread(target=close, name="sandbox-close-wire", daemon=True).start()


def _read_buffer() -> bytearray:
    """This thread's read buffer (the loop reads every connection; one buffer serves all)."""
    buffer: bytearray | None = getattr(_buffers, "buffer", None)
    if buffer is None:
        buffer = _buffers.buffer = bytearray(READ_CHUNK)
    return buffer


class Channel:
    """One worker's endpoint: a listener until the worker connects, then that connection."""

    def __init__(
        self,
        path: str,
        *,
        budget: int,
        outbox_limit: int,
        peer_identity: bytes,
        max_frames: int | None,
        owner: tuple[int, int] | None = None,
    ) -> None:
        self.path = path
        self.endpoint = f"ipc://{path}"
        self.outbox_limit = outbox_limit
        self.codec = zmtp.Connection(
            budget=budget, peer_identity=peer_identity, max_frames=max_frames
        )
        # Set before the bind: a failed bind closes this half-made channel (``close``).
        self.conn: socket.socket | None = None
        self.listener: socket.socket | None = socket.socket(
            socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_NONBLOCK | socket.SOCK_CLOEXEC
        )
        #: The kernel refuses descriptors sent to it (else :meth:`read` takes them itself).
        self.refuses_descriptors = _refuse_descriptors(self.listener)
        try:
            self.listener.bind(path)
            os.chmod(path, 0o600)
            if owner is not None:  # the worker will switch to this uid: it must reach it
                os.chown(path, *owner)
            self.listener.listen(1)
        except BaseException:
            self.close()
            raise
        self._outbox = bytearray()
        self.closed = False
        #: Connections refused (wrong credentials) before the worker's own arrived.
        self.refused = 0

    def fileno(self) -> int:
        current = self.conn if self.conn is not None else self.listener
        return current.fileno() if current is not None else -1

    # ------------------------------------------------------------------ the one connection

    def accept(self) -> tuple[socket.socket, int, int, int] | None:
        """A waiting connection and its peer's (pid, uid, gid) from the kernel, or None."""
        if self.listener is None:
            return None
        try:
            conn, _ = self.listener.accept()
        except (BlockingIOError, InterruptedError):
            return None
        pid, uid, gid = _CRED.unpack(
            conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _CRED.size)
        )
        return conn, pid, uid, gid

    def adopt(self, conn: socket.socket) -> None:
        """Take ``conn`` as the worker's connection: no other is ever accepted."""
        conn.setblocking(False)
        self.conn = conn
        self._close_listener()
        self._outbox += self.codec.data_to_send()  # greeting and READY
        self.flush()

    def _close_listener(self) -> None:
        if self.listener is not None:
            self.listener.close()
            self.listener = None
        with contextlib.suppress(OSError):
            os.unlink(self.path)

    # ------------------------------------------------------------------ traffic

    def read(self) -> tuple[list[zmtp.Event], str | None]:
        """What the peer sent since the last look (bounded), and a violation if it broke the
        protocol or the budget (the events before it still count). End of file is a
        :class:`zmtp.ConnectionClosed` event."""
        events: list[zmtp.Event] = []
        conn = self.conn
        if conn is None or self.closed:
            return events, None
        buffer = _read_buffer()
        for _ in range(READ_CHUNKS):
            try:
                if self.refuses_descriptors:
                    size = conn.recv_into(buffer)
                else:
                    size, ancillary, flags, _ = conn.recvmsg_into([buffer], _ANCILLARY)
                    if ancillary or flags & socket.MSG_CTRUNC:
                        _discard_descriptors(ancillary)
                        return events, "it passed file descriptors to the host"
            except (BlockingIOError, InterruptedError):
                break
            except OSError:
                size = 0
            try:
                events += self.codec.receive_data(bytes(memoryview(buffer)[:size]))
            except zmtp.ProtocolViolation as exc:
                events += exc.events
                return events, str(exc)
            # A short read emptied the socket (or it hit end of file); the poller is level-
            # triggered, so anything that arrives meanwhile is seen on the next turn. Reading
            # on until EAGAIN cost a raised exception per event.
            if size < READ_CHUNK:
                break
        out = self.codec.data_to_send()
        if out and not self._queue(out):
            return events, "it does not read what the host sends"
        return events, None

    def send(self, frames: list[bytes]) -> bool:
        """Queue one message; False when the peer is gone or the outbox would overflow."""
        if self.conn is None or self.closed or self.codec.phase is zmtp.Phase.CLOSED:
            return False
        return self._queue(self.codec.send_message(frames))

    def _queue(self, data: bytes) -> bool:
        if len(self._outbox) + len(data) > self.outbox_limit:
            return False
        if self._outbox:
            self._outbox += data
            return True
        assert self.conn is not None
        try:
            sent = self.conn.send(data)
        except (BlockingIOError, InterruptedError):
            sent = 0
        except OSError:
            return False
        if sent < len(data):
            self._outbox += memoryview(data)[sent:]
        return True

    def flush(self) -> bool:
        """Write what the outbox holds; False if the peer is gone."""
        if self.conn is None:
            return True
        while self._outbox:
            try:
                sent = self.conn.send(self._outbox)
            except (BlockingIOError, InterruptedError):
                return True
            except OSError:
                self._outbox.clear()
                return False
            del self._outbox[:sent]
        return True

    @property
    def wants_write(self) -> bool:
        return bool(self._outbox)

    def close(self) -> None:
        self.closed = True
        self._close_listener()
        if self.conn is not None:
            release(self.conn, self.refuses_descriptors)
        self._outbox = bytearray()


class Transport:
    """The directory of the endpoints and the channels in it."""

    def __init__(
        self, *, shared_with_other_uids: bool = False, directory: str | None = None
    ) -> None:
        """``directory``: an empty directory to hold the endpoints (made here if None)."""
        self.directory = directory or tempfile.mkdtemp(prefix="sandbox-ipc-")
        # 0700, or 0711 when workers run under their own uids: they may then reach their own
        # socket (chowned to them, mode 0600) by its exact name, but not list or open others.
        os.chmod(self.directory, 0o711 if shared_with_other_uids else 0o700)

    def listen(
        self,
        worker_id: str,
        *,
        budget: int,
        outbox_limit: int,
        max_frames: int | None = 2,
        owner: tuple[int, int] | None = None,
    ) -> Channel:
        """A fresh endpoint for one worker, holding at most ``budget`` bytes of its messages."""
        return Channel(
            os.path.join(self.directory, worker_id),
            budget=budget,
            outbox_limit=outbox_limit,
            peer_identity=worker_id.encode(),
            max_frames=max_frames,
            owner=owner,
        )

    def close(self) -> None:
        fsutil.remove_tree(self.directory)
