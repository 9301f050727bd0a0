"""A hostile provider that tries to fool the host about the CPU and memory its calls use.

At import (provider code runs in the worker's own process) it patches the runtime's usage
report: ``sandbox.worker._cpu_seconds`` and ``PeakMemory.peak_bytes`` then claim 0 s and 0 bytes
for every call. Its actions escape the worker's own per-call CPU timer (``ITIMER_PROF``) in the
ways a provider can: burn CPU in a forked child (timers are not inherited), disarm the timer and
ignore its signal, spin in several threads, or keep a thread spinning after the result is sent.

Every spin is bounded (``seconds`` of CPU, a minute at most) so a broken sandbox cannot run away.
"""

from __future__ import annotations

import hashlib
import os
import signal
import threading
import time

import sandbox.worker
from providers import Provider

provider = Provider("usage_liar", version="1.0")

#: Generated at import: a new value means a new worker process.
TOKEN = os.urandom(8).hex()
_KEPT: list[bytearray] = []
_LIMIT_S = 60.0


def _lie() -> None:
    sandbox.worker._cpu_seconds = lambda: 0.0  # type: ignore[attr-defined]
    sandbox.worker.PeakMemory.peak_bytes = lambda self: 0  # type: ignore[method-assign]


_lie()


def _spin(seconds: float) -> None:
    """Burn ``seconds`` of this thread's CPU (hashing releases the GIL: threads run in parallel)."""
    seconds = min(seconds, _LIMIT_S)
    block = b"x" * (1 << 16)
    start = time.thread_time()
    while time.thread_time() - start < seconds:
        hashlib.sha256(block).digest()


def _disarm() -> None:
    signal.signal(signal.SIGPROF, signal.SIG_IGN)
    signal.setitimer(signal.ITIMER_PROF, 0)


@provider.action
def token() -> str:
    """This worker process's import-time token."""
    return TOKEN


@provider.action
def fork_spin(seconds: float) -> float:
    """Spin ``seconds`` of CPU in a forked child (the worker's timer does not follow it)."""
    pid = os.fork()
    if pid == 0:
        try:
            _spin(seconds)
        finally:
            os._exit(0)
    os.waitpid(pid, 0)
    return seconds


@provider.action
def disarmed_spin(seconds: float) -> float:
    """Disarm the worker's CPU timer, ignore SIGPROF, then spin."""
    _disarm()
    _spin(seconds)
    return seconds


@provider.action
def threads_spin(seconds: float, threads: int = 2) -> float:
    """Disarm the timer, then spin ``seconds`` of CPU in each of ``threads`` threads at once."""
    _disarm()
    workers = [threading.Thread(target=_spin, args=(seconds,)) for _ in range(min(threads, 8))]
    for thread in workers:
        thread.start()
    for thread in workers:
        thread.join()
    return seconds


@provider.action
def burn_and_hold(seconds: float, mebibytes: int) -> int:
    """Burn ``seconds`` of CPU and keep ``mebibytes`` of memory alive across calls, all while
    the patched runtime reports 0 s and 0 bytes."""
    block = bytearray(min(mebibytes, 1024) * 1024 * 1024)
    for i in range(0, len(block), 4096):  # touch every page: resident, not just reserved
        block[i] = 1
    _KEPT.append(block)
    _spin(seconds)
    return len(block)


@provider.action
def spin_after_result(seconds: float, children: int = 0) -> str:
    """Return at once, leaving a thread (and ``children`` forked processes, each with its own
    RLIMIT_CPU) spinning while, and after, the result is sent."""
    for _ in range(min(children, 8)):
        if os.fork() == 0:
            try:
                _spin(seconds)
            finally:
                os._exit(0)
    threading.Thread(target=_spin, args=(seconds,), daemon=True).start()
    return TOKEN


def _drop_connections() -> None:
    """Shut down every socket this process has: the host sees its connection close."""
    import socket

    for fd in range(3, 256):  # (the worker may not list /proc/self/fd)
        try:
            sock = socket.socket(fileno=fd)  # OSError for what is not a socket
        except OSError:
            continue
        try:
            sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        sock.detach()  # leave the descriptor open: only the connection ends


@provider.action(safe_rerun=True)
def die(how: str) -> None:
    """Die at once: ``exit`` (os._exit(3)), ``kill`` (SIGKILL itself), ``segv`` (SIGSEGV), or
    ``drop`` (close the connection to the host, then exit 20 ms later: a death the host sees
    as a disconnect first)."""
    if how == "drop":
        _drop_connections()
        time.sleep(0.02)
    elif how == "kill":
        os.kill(os.getpid(), signal.SIGKILL)
    elif how == "segv":
        signal.signal(signal.SIGSEGV, signal.SIG_DFL)
        os.kill(os.getpid(), signal.SIGSEGV)
    os._exit(3)
