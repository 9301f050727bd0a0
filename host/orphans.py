"""Reaping the processes the host started that were re-parented to it.

When the host is pid 1 of its pid namespace (an engine in a container without an init, or the
test suite under ``unshare --pid --fork``) or a child subreaper, every orphan below it becomes
its child: the init of a worker whose launcher was killed, the launchers and spare of a killed
zygote. They die at once (parent-death signal) and would stay zombies of the engine for ever.

The host must not ``waitpid(-1)``: that would steal the engine's own children (and those
``subprocess`` waits for). It reaps by identity instead: it records ``(pid, start time)`` of
every process it may inherit - each init (its launcher reports the pid on the status pipe), each
launcher a zygote forked, what a last-resort kill hit - and a sweep (on the loop's heartbeat and
at close) reaps exactly those that are now its own zombie children *and* still have the recorded
start time, so a reused pid is never reaped. Entries whose process is gone are dropped.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time

from host.logs import LOGGER

log = logging.getLogger(f"{LOGGER}.{__name__}")

#: Identities kept at most (a bound, not a working limit: live workers hold one or two each).
MAX_EXPECTED = 65536


def proc_is_ours() -> bool:
    """Whether /proc shows this process's pid namespace (else pids read there mean nothing)."""
    try:
        return os.readlink("/proc/self") == str(os.getpid())
    except OSError:
        return False


def stat_of(pid: int) -> tuple[int, str, int] | None:
    """(parent pid, state letter, start time in clock ticks) of ``pid``, or None if gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read()
    except OSError:
        return None
    fields = data[data.rfind(b")") + 2:].split()
    try:  # fields[0] is field 3 (state); start time is field 22
        return int(fields[1]), fields[0].decode("ascii", "replace"), int(fields[19])
    except (IndexError, ValueError):
        return None


def start_time(pid: int) -> int | None:
    stat = stat_of(pid)
    return None if stat is None else stat[2]


class Orphans:
    """The identities of processes the host may inherit, and the sweep that reaps them."""

    def __init__(self) -> None:
        self._usable = proc_is_ours()
        self._expected: dict[int, int] = {}

    def expect(self, pid: int, start: int | None = None) -> None:
        """Remember ``pid`` (with its start time, read now if not given) as reapable."""
        if not self._usable or pid <= 1 or len(self._expected) >= MAX_EXPECTED:
            return
        if start is None:
            start = start_time(pid)
            if start is None:
                return
        self._expected[pid] = start

    def __len__(self) -> int:
        return len(self._expected)

    def sweep(self) -> int:
        """Reap every expected process that is now our zombie child; drop the gone ones."""
        reaped = 0
        me = os.getpid()
        for pid, start in list(self._expected.items()):
            stat = stat_of(pid)
            if stat is None or stat[2] != start:
                del self._expected[pid]  # gone (reaped by its parent), or the pid was reused
                continue
            parent, state, _ = stat
            if parent != me or state not in ("Z", "X"):
                continue  # still alive, or still someone else's child: look again later
            # Our child, a zombie, with the recorded start time: it is that process, and
            # only we can reap it, so it cannot change under us between the check and here.
            with contextlib.suppress(ChildProcessError, OSError):
                if os.waitpid(pid, os.WNOHANG)[0] == pid:
                    reaped += 1
            del self._expected[pid]
        return reaped

    def ours_alive(self) -> bool:
        """Whether an expected process is our child and not yet dead (worth waiting for)."""
        me = os.getpid()
        for pid, start in self._expected.items():
            stat = stat_of(pid)
            if stat is not None and stat[2] == start and stat[0] == me and stat[1] != "Z":
                return True
        return False

    def drain(self, timeout: float) -> None:
        """At close: sweep until no expected child of ours is left alive, for up to ``timeout``."""
        deadline = time.monotonic() + timeout
        while True:
            self.sweep()
            if not self.ours_alive() or time.monotonic() > deadline:
                return
            time.sleep(0.01)
