"""The pipes the loop watches for every worker: its stdout and stderr, and its status pipe.

They sit in one epoll set, which the loop's poller watches as one descriptor: an iteration of
the loop costs the same with one worker or hundreds. This module reads a worker's output into
its capture (``host.process.LogCapture``) and, once the capture is full, moves what comes to
/dev/null in the kernel (``splice``) instead of copying it into the host to drop it; when to
read, pause or throttle a worker's output is the reactor's decision (``Reactor._on_output``).
The status pipe is only registered here: the reactor reads it (``WorkerProcess.read_status``).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import posix  # os.read that eventlet's patching of os never replaces
import select
import struct
import termios
from types import ModuleType
from typing import Generic, Literal, Protocol, TypeVar

from host.process import CapturedLogs, LogCapture, WorkerProcess

#: Bytes read from (or moved out of) an output pipe at a time.
LOG_CHUNK = 64 * 1024

PipeKind = Literal["log", "status"]


class Piped(Protocol):
    """What this module needs of a worker: its process (the pipes) and its output capture."""

    process: WorkerProcess
    logs: LogCapture
    #: Whether its output pipes are unwatched (see :meth:`WorkerPipes.watch`).
    logs_paused: bool


W = TypeVar("W", bound=Piped)


def readable_bytes(fd: int) -> int | None:
    """Bytes waiting in a pipe (FIONREAD); None when the kernel cannot say."""
    try:
        waiting: int = struct.unpack("i", fcntl.ioctl(fd, termios.FIONREAD, b"\0\0\0\0"))[0]
    except OSError:
        return None
    return waiting


class WorkerPipes(Generic[W]):
    """Every watched pipe and whose it is. Used on the loop thread only (or under its lock)."""

    def __init__(self, select_module: ModuleType) -> None:
        """``select_module``: the real ``select`` (under eventlet: ``host.greening``)."""
        self._epoll = select_module.epoll()
        self._owners: dict[int, tuple[W, PipeKind]] = {}
        #: Where output past a worker's log limit goes; None where the kernel cannot splice
        #: into it (then it is read and dropped).
        self._devnull: int | None = None
        try:
            self._devnull = os.open(os.devnull, os.O_WRONLY | os.O_CLOEXEC)
        except BaseException:
            self._epoll.close()
            raise

    def fileno(self) -> int:
        return int(self._epoll.fileno())

    def register(self, worker: W) -> None:
        process = worker.process
        for fd in process.log_fds:
            self._owners[fd] = (worker, "log")
            self._epoll.register(fd, select.EPOLLIN)
        self._owners[process.status_fd] = (worker, "status")
        self._epoll.register(process.status_fd, select.EPOLLIN)

    def ready(self) -> list[int]:
        """The pipes that are readable now (or ended). Ask :meth:`owner` for each when it is
        handled: an earlier handler may have forgotten it, and its number may be reused."""
        return [fd for fd, _ in self._epoll.poll(0)]

    def owner(self, fd: int) -> tuple[W, PipeKind] | None:
        return self._owners.get(fd)

    def watched(self, fd: int) -> bool:
        return fd in self._owners

    def forget(self, fd: int) -> None:
        if self._owners.pop(fd, None) is not None:
            with contextlib.suppress(OSError):  # closed already: epoll dropped it itself
                self._epoll.unregister(fd)

    def forget_all(self, process: WorkerProcess) -> None:
        for fd in (*process.log_fds, process.status_fd):
            self.forget(fd)

    def watch(self, worker: W, watched: bool) -> None:
        """Watch a worker's output pipes again, or stop watching them (the writer then waits
        on a full pipe). An ended pipe is reported at any interest (EPOLLHUP)."""
        for fd in worker.process.log_fds:
            if fd in self._owners:
                with contextlib.suppress(OSError):  # closed already: epoll dropped it itself
                    self._epoll.modify(fd, select.EPOLLIN if watched else 0)
        worker.logs_paused = not watched

    def drain(self, worker: W, fd: int, limit: int = 8) -> None:
        """Read up to ``limit`` chunks of one output pipe into the worker's capture; past its
        limit they are only counted. A pipe that ended is forgotten."""
        for _ in range(limit):
            if worker.logs.full and self._devnull is not None:
                # Past the log limit, what comes is only counted: moved to /dev/null in the
                # kernel, not copied into this process and dropped.
                try:
                    moved = os.splice(fd, self._devnull, LOG_CHUNK, flags=os.SPLICE_F_NONBLOCK)
                except BlockingIOError:
                    return
                except OSError as exc:
                    if exc.errno not in (errno.EINVAL, errno.ENOSYS):
                        moved = 0  # (read would fail too: the pipe is unusable)
                    else:  # no splice here: read and drop, from now on
                        with contextlib.suppress(OSError):
                            os.close(self._devnull)
                        self._devnull = None
                        continue
                if not moved:
                    self.forget(fd)
                    return
                worker.logs.dropped += moved
            else:
                try:
                    data = posix.read(fd, LOG_CHUNK)
                except BlockingIOError:
                    return
                except OSError:
                    data = b""
                if not data:
                    self.forget(fd)
                    return
                worker.logs.add(data, worker.process.log_fds.index(fd))

    def take(self, worker: W) -> CapturedLogs:
        """What the worker printed since its capture was last taken, read to the end of the
        pipes (asked first how much waits there: an empty pipe's read raised an exception)."""
        for fd in worker.process.log_fds:
            if fd in self._owners and readable_bytes(fd) != 0:
                self.drain(worker, fd, limit=16)
        return worker.logs.take()

    def discard_waiting(self, worker: W) -> None:
        """Empty the pipes of a worker whose output was left in them (a pipe's worth each, a
        few times over if a writer refills them meanwhile)."""
        for fd in worker.process.log_fds:
            for _ in range(4):
                try:
                    if self._devnull is not None:
                        os.splice(fd, self._devnull, LOG_CHUNK, flags=os.SPLICE_F_NONBLOCK)
                    else:
                        posix.read(fd, LOG_CHUNK)
                except OSError:  # (empty, or closed: EOF and errors are the loop's to see)
                    break

    def close(self) -> None:
        self._epoll.close()
        if self._devnull is not None:
            with contextlib.suppress(OSError):
                os.close(self._devnull)
            self._devnull = None
