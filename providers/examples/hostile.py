"""A provider whose actions misbehave on purpose, to prove the sandbox contains them.

Safety rule: every action is bounded *by construction*, so that even if the sandbox failed
completely it would not take down the (root, dev) machine running the tests:

* CPU spins and sleeps last at most ``MAX_SECONDS`` (120 s);
* memory allocation stops at ``MAX_MIB`` (8192 MiB) in total;
* the fork bomb stops at ``MAX_PROCESSES`` (5000) children, which never fork themselves
  and exit on their own after a bounded sleep;
* output floods stop at ``MAX_FLOOD_MIB`` (1024 MiB).

Arguments beyond the caps are silently clamped. Nothing here talks to the network except
``open_socket``, which only ever connects to the host/port it is given (loopback by default).
Never run these actions outside a sandbox except in deliberate, supervised experiments.
"""

from __future__ import annotations

import math
import os
import re
import socket
import time
from typing import cast

from providers import Provider

provider = Provider(
    "hostile",
    version="1.0",
    description="Deliberately misbehaving actions used to test sandbox containment.",
)

MiB = 1024 * 1024
MAX_SECONDS = 120.0
MAX_MIB = 8192
MAX_PROCESSES = 5000
MAX_FLOOD_MIB = 1024
MAX_CHILDREN = 64
MAX_CHILD_HOLD_SECONDS = 30.0


def _seconds(value: float, cap: float = MAX_SECONDS) -> float:
    """Clamp a duration into [0, cap]; NaN counts as 0 so nothing can loop forever."""
    if not value > 0:
        return 0.0
    return min(float(value), cap)


def _count(value: int, cap: int, minimum: int = 0) -> int:
    return max(minimum, min(int(value), cap))


@provider.action
def spin(seconds: float = 60) -> int:
    """Burn CPU in a pure-Python loop for up to ``seconds`` (max 120); returns iterations.

    Tests CPU-time / wall-time limits for code that keeps returning to the interpreter.
    """
    deadline = time.monotonic() + _seconds(seconds)
    iterations = 0
    while True:
        iterations += 1
        if iterations % 4096 == 0 and time.monotonic() >= deadline:
            return iterations


@provider.action
def spin_native(seconds: float = 60) -> bool:
    """Burn CPU inside a single C call (catastrophic regex backtracking) for ~``seconds``.

    While the regex engine runs, the interpreter never regains control, so signal handlers
    and in-process timeouts cannot stop it: only killing the process does. The input size is
    calibrated (each extra character doubles the work) to target ``seconds`` (max 120), so
    the bound holds only approximately, e.g. on a throttled CPU it runs longer. The host's
    wall-time limit is the real stop; the calibration only keeps an escaped run finite.
    Returns whether the (impossible) match succeeded, i.e. always False.
    """
    target = _seconds(seconds)
    pattern = re.compile(r"(a+)+$")
    base = 20
    started = time.perf_counter()
    pattern.match("a" * base + "b")
    per_base = max(time.perf_counter() - started, 1e-6)
    extra = math.log2(target / per_base) if target > per_base else 0.0
    size = max(1, min(64, base + math.ceil(extra)))
    return pattern.match("a" * size + "b") is not None


@provider.action
def sleep(seconds: float = 60) -> float:
    """Sleep for up to ``seconds`` (max 120) without using CPU; returns seconds slept.

    Tests that the host enforces wall time, not just CPU time.
    """
    started = time.monotonic()
    time.sleep(_seconds(seconds))
    return time.monotonic() - started


@provider.action
def allocate(limit_mib: int = 4096, step_mib: int = 16) -> int:
    """Allocate zeroed (hence touched, resident) memory in steps up to ``limit_mib`` MiB.

    Max 8192 MiB. Tests the memory limit against gradual growth. MemoryError is deliberately
    not caught: the sandbox, not this action, should decide what happens. Returns MiB held.
    """
    limit = _count(limit_mib, MAX_MIB)
    step = _count(step_mib, 1024, minimum=1)
    chunks: list[bytearray] = []
    allocated = 0
    while allocated + step <= limit:
        chunks.append(bytearray(step * MiB))
        allocated += step
    return allocated


@provider.action
def allocate_once(mib: int = 4096) -> int:
    """Make one zeroed allocation of ``mib`` MiB (max 8192); returns its size in MiB.

    Tests the memory limit against a single large request.
    """
    block = bytearray(_count(mib, MAX_MIB) * MiB)
    return len(block) // MiB


@provider.action
def allocate_in_children(children: int = 8, mib_each: int = 512, hold_seconds: float = 30.0) -> int:
    """Fork ``children`` processes that each allocate ``mib_each`` MiB and hold it.

    Tests that the memory limit covers the whole process tree, not just the worker. At most
    64 children; ``mib_each`` is reduced so the total stays within 8192 MiB; each child holds
    its memory for at most 30 s, then exits. Returns how many children exited successfully.
    """
    count = _count(children, MAX_CHILDREN, minimum=1)
    each = _count(mib_each, MAX_MIB // count)
    hold = _seconds(hold_seconds, MAX_CHILD_HOLD_SECONDS)
    pids: list[int] = []
    for _ in range(count):
        try:
            pid = os.fork()
        except OSError:
            break
        if pid == 0:  # child: never return into the worker's code
            status = 1
            try:
                block = bytearray(each * MiB)
                time.sleep(hold)
                del block
                status = 0
            finally:
                os._exit(status)
        pids.append(pid)
    succeeded = 0
    for pid in pids:
        _, status = os.waitpid(pid, 0)
        if os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0:
            succeeded += 1
    return succeeded


@provider.action
def fork_bomb(limit: int = 2000, child_seconds: float = 30) -> int:
    """Fork up to ``limit`` children (max 5000) that sleep ``child_seconds`` (max 120).

    Tests the process-count limit. Children never fork themselves (growth is linear, not
    exponential) and exit on their own, so an escaped run still ends. The parent does not
    wait for them; it returns how many forks succeeded.
    """
    total = _count(limit, MAX_PROCESSES)
    nap = _seconds(child_seconds)
    forked = 0
    for _ in range(total):
        try:
            pid = os.fork()
        except OSError:
            break
        if pid == 0:
            try:
                time.sleep(nap)
            finally:
                os._exit(0)
        forked += 1
    return forked


@provider.action
def double_fork(seconds: float = 60) -> int:
    """Daemonise a grandchild (fork, setsid, fork) that sleeps ``seconds`` (max 120).

    The classic escape from a process-group kill: the grandchild is in a new session and
    reparented away from the worker. The action then sleeps ``seconds`` itself so the host
    has to time it out; if it does return, the result is the grandchild's pid.
    """
    nap = _seconds(seconds)
    read_fd, write_fd = os.pipe()
    middle = os.fork()
    if middle == 0:
        try:
            os.close(read_fd)
            os.setsid()
            grandchild = os.fork()
            if grandchild == 0:
                os.close(write_fd)
                try:
                    time.sleep(nap)
                finally:
                    os._exit(0)
            os.write(write_fd, str(grandchild).encode())
        finally:
            os._exit(0)
    os.close(write_fd)
    try:
        os.waitpid(middle, 0)
        data = b""
        while chunk := os.read(read_fd, 64):
            data += chunk
    finally:
        os.close(read_fd)
    grandchild_pid = int(data) if data else -1
    time.sleep(nap)
    return grandchild_pid


@provider.action
def flood_stdout(megabytes: int = 300) -> int:
    """Write ``megabytes`` MiB (max 1024) straight to file descriptor 1.

    Tests that the host drains or discards worker output instead of deadlocking on a full
    pipe or buffering it all in memory. Returns bytes written.
    """
    remaining = _count(megabytes, MAX_FLOOD_MIB) * MiB
    chunk = memoryview(b"x" * (64 * 1024))
    written = 0
    while remaining > 0:
        n = os.write(1, chunk[: min(len(chunk), remaining)])
        written += n
        remaining -= n
    return written


@provider.action
def huge_result(megabytes: int = 64) -> str:
    """Return a string of ``megabytes`` MiB (max 1024) to test result-size limits."""
    return "x" * (_count(megabytes, MAX_FLOOD_MIB) * MiB)


@provider.action(name="exit")
def exit_process(code: int = 3) -> None:
    """Terminate the worker immediately with ``os._exit(code)`` (no cleanup, no reply)."""
    os._exit(_count(code, 255))


@provider.action
def segfault() -> None:
    """Crash the worker with a real SIGSEGV by reading address 0 through ctypes."""
    import ctypes

    ctypes.string_at(0)


@provider.action
def raise_error(message: str = "boom") -> None:
    """Raise ``ValueError(message)``; tests that ordinary failures are reported cleanly."""
    raise ValueError(message)


@provider.action
def read_file(path: str = "/etc/shadow") -> str:
    """Read the first 200 characters of ``path``; tests filesystem read confinement."""
    with open(path, encoding="utf-8", errors="replace") as handle:
        return handle.read(200)


@provider.action
def write_file(path: str, text: str = "pwned") -> bool:
    """Write ``text`` to ``path``; tests filesystem write confinement."""
    with open(path, "w", encoding="utf-8") as handle:
        handle.write(text)
    return True


@provider.action
def open_socket(host: str = "127.0.0.1", port: int = 9, timeout: float = 1.0) -> str:
    """Create a TCP socket and connect to ``host:port`` (loopback by default).

    Tests network confinement: returns "connected" on success and raises the OSError
    otherwise, so a sandbox that forbids socket creation shows up as an error.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(_seconds(timeout, 30.0))
        sock.connect((host, port))
    return "connected"


@provider.action
def wrong_output() -> int:
    """Declared to return an int but returns a string, to trigger output validation."""
    return cast(int, "not an int")


@provider.action
def getpid() -> int:
    """Return the worker's pid (lets tests check which process ran the action)."""
    return os.getpid()


@provider.action
def getppid() -> int:
    """Return the worker's parent pid (lets tests check the process tree)."""
    return os.getppid()
