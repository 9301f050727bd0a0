"""The host's side of the zygote (``sandbox/zygote.py``): start it, ask it to fork, replace it.

Everything here runs on the reactor thread: the zygote is spawned from it (its parent-death
signal follows that thread, as the launchers' do), and its control socket is not shared.

A fork request carries only file descriptors; the child reads its environment, working
directory and spawn spec from its own stdin, which the host writes after moving the child into
its cgroup. The zygote answers with the child's pid and a pidfd, through which the host signals
and watches the launcher without pid-reuse races; the zygote reaps it and reports its wait
status on the control socket.

If the zygote cannot start, or dies, spawning falls back to a fresh interpreter for that worker
and a new zygote is started for the next ones; after :data:`MAX_FAILED_STARTS` zygotes in a row
fail to become ready the host stops trying and spawns fresh interpreters only. Every such event
is logged on the ``host`` logger. A zygote is replaced after :data:`MAX_FORKS` forks, to bound
how many workers share its hash seed and address-space layout (see the README, Security).
"""

from __future__ import annotations

import contextlib
import logging
import os
import select
import signal
import socket
import subprocess
import time

from host import greening
from host.interpreter import launcher_command
from host.logs import LOGGER
from host.orphans import stat_of
from policies.paths import UnsafeRulePath

log = logging.getLogger(f"{LOGGER}.{__name__}")

#: How long the first spawn waits for a starting zygote before falling back to a fresh launcher.
READY_TIMEOUT_S = 5.0
#: How long the host's loop waits for the zygote's answer to a fork request (a fork takes a
#: millisecond or two; a zygote this slow is retired and a fresh interpreter used instead).
FORK_TIMEOUT_S = 1.0
#: How long the loop waits for the zygote's note of a launcher's exit once its pidfd said so.
EXIT_NOTE_WAIT_S = 0.5
#: Zygotes that fail to become ready in a row before the host gives up on them.
MAX_FAILED_STARTS = 3
#: Forks after which a zygote is replaced (it lives on, forking nothing, until its children end).
MAX_FORKS = 256
#: How many forks before MAX_FORKS the successor is started (it needs ~100 ms to import).
SUCCESSOR_LEAD = 8
#: Exit notes kept for launchers nobody asked about yet.
MAX_EXIT_NOTES = 4096


class ZygoteError(Exception):
    """The zygote could not fork a launcher (it died, or refused); spawn a fresh one instead."""


class Zygote:
    """One zygote process and its control socket."""

    def __init__(self) -> None:
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        try:
            self.popen = subprocess.Popen(
                launcher_command("zygote", str(theirs.fileno()), str(os.getpid())),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                close_fds=True,
                pass_fds=(theirs.fileno(),),
                start_new_session=True,
                env={},
                cwd="/",
            )
        except BaseException:
            ours.close()
            raise
        finally:
            theirs.close()
        self.control = ours
        self.pid = self.popen.pid
        self.ready = False
        self.dead = False
        self.forks = 0
        self.started = time.monotonic()
        self.failure = ""
        self._exits: dict[int, int] = {}
        #: Launchers forked and not yet settled by the host (their exit notes are still due).
        self.outstanding: set[int] = set()

    # ------------------------------------------------------------------ messages

    def _receive(self, timeout: float | None) -> tuple[bytes, list[int]] | None:
        """One message (and its descriptors), or None when ``timeout`` passed first."""
        if self.dead:
            raise ZygoteError(self.failure or "the zygote is dead")
        poller = greening.real_select().poll()
        poller.register(self.control, select.POLLIN)
        if not poller.poll(None if timeout is None else max(0, int(timeout * 1000))):
            return None
        try:
            message, fds, _, _ = socket.recv_fds(self.control, 256, 1)
        except OSError as exc:
            self._died(f"its control socket failed: {exc}")
            raise ZygoteError(self.failure) from None
        if not message:
            for fd in fds:
                os.close(fd)
            self._died("it closed its control socket")
            raise ZygoteError(self.failure)
        return message, fds

    def _handle(self, message: bytes, fds: list[int]) -> tuple[str, list[str], list[int]]:
        """Split a message; record exit notes on the way (they may come at any time)."""
        kind, *fields = message.decode("ascii", "replace").split(" ", 2)
        if kind == "exit" and len(fields) == 2:
            self._exits[int(fields[0])] = int(fields[1])
            while len(self._exits) > MAX_EXIT_NOTES:
                del self._exits[next(iter(self._exits))]
        return kind, fields, fds

    def _until(self, kinds: tuple[str, ...], timeout: float) -> tuple[str, list[str], list[int]]:
        deadline = time.monotonic() + timeout
        while True:
            received = self._receive(max(0.0, deadline - time.monotonic()))
            if received is None:
                raise ZygoteError(f"no answer within {timeout:g}s")
            kind, fields, fds = self._handle(*received)
            if kind in kinds:
                return kind, fields, fds
            for fd in fds:
                os.close(fd)

    def _died(self, why: str) -> None:
        if not self.dead:
            self.dead = True
            self.failure = f"zygote (pid {self.pid}) is unusable: {why}"

    # ------------------------------------------------------------------ requests

    def wait_ready(self, timeout: float) -> bool:
        if self.ready:
            return True
        try:
            kind, fields, _ = self._until(("ready", "failed"), timeout)
        except ZygoteError as exc:
            self._died(f"it did not become ready ({exc})")
            return False
        if kind == "failed":
            self._died(" ".join(fields))
            return False
        self.ready = True
        return True

    def poll_ready(self) -> bool:
        """Whether the zygote is ready, without waiting (and without giving up on it)."""
        if self.ready or self.dead:
            return self.ready
        try:
            received = self._receive(0)
        except ZygoteError:
            return False
        if received is not None:
            kind, fields, fds = self._handle(*received)
            for fd in fds:
                os.close(fd)
            if kind == "ready":
                self.ready = True
            elif kind == "failed":
                self._died(" ".join(fields))
        return self.ready

    def fork(self, stdin: int, stdout: int, stderr: int, status: int) -> ZygoteChild:
        """Have the zygote fork a launcher whose 0..3 are these descriptors."""
        if not self.wait_ready(READY_TIMEOUT_S):
            raise ZygoteError(self.failure)
        try:
            socket.send_fds(self.control, [b"fork"], [stdin, stdout, stderr, status])
        except OSError as exc:
            self._died(f"cannot send it a request: {exc}")
            raise ZygoteError(self.failure) from None
        try:
            kind, fields, fds = self._until(("forked", "failed"), FORK_TIMEOUT_S)
        except ZygoteError as exc:
            self._died(str(exc))
            raise ZygoteError(self.failure) from None
        if kind == "failed":
            raise ZygoteError(f"the zygote could not fork: {' '.join(fields)}")
        self.forks += 1
        pid = int(fields[0])
        self.outstanding.add(pid)
        child = ZygoteChild(self, pid, fds[0] if fds else None)
        # Read while it waits on its stdin (it cannot exit yet): its identity, for reaping it
        # should the zygote die and leave it to us (``host.orphans``).
        stat = stat_of(pid)
        if stat is not None and stat[0] == self.pid:
            child.start_time = stat[2]
        return child

    def exit_status(self, pid: int, timeout: float) -> int | None:
        """The wait status of launcher ``pid`` once the zygote has reaped it; None if it has
        not within ``timeout`` (or the zygote is gone and will never say)."""
        deadline = time.monotonic() + timeout
        while pid not in self._exits:
            try:
                received = self._receive(max(0.0, deadline - time.monotonic()))
            except ZygoteError:
                return None
            if received is None:
                return None
            _, _, fds = self._handle(*received)
            for fd in fds:
                os.close(fd)
        return self._exits.pop(pid)

    def alive(self) -> bool:
        if self.dead:
            return False
        if self.popen.poll() is not None:
            self._died(f"it exited ({self.popen.returncode})")
            return False
        return True

    def retire(self) -> None:
        """Fork nothing more; the zygote exits once its last launcher has ended.

        Only our writing side is shut: its exit notes still reach us.
        """
        with contextlib.suppress(OSError):
            self.control.shutdown(socket.SHUT_WR)

    def finished(self) -> bool:
        """A retired zygote has exited (and is reaped)."""
        return self.popen.poll() is not None

    def close(self, timeout: float = 5.0) -> None:
        """Stop the zygote (end of file ends it) and reap it; SIGKILL it if it lingers."""
        self.retire()
        try:
            self.popen.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.popen.kill()
            self.popen.wait()
        self.dead = True
        self.control.close()


class ZygoteChild:
    """A launcher the zygote forked: watched and signalled through its pidfd."""

    def __init__(self, zygote: Zygote, pid: int, pidfd: int | None) -> None:
        self.zygote = zygote
        self.pid = pid
        self.pidfd = pidfd
        self.returncode: int | None = None
        self._known = False
        #: Its start time (clock ticks), when /proc could tell: its identity for reaping.
        self.start_time: int | None = None

    def _settle(self, status: int | None) -> int | None:
        self._known = True
        self.zygote.outstanding.discard(self.pid)
        self.returncode = None if status is None else os.waitstatus_to_exitcode(status)
        if self.pidfd is not None:
            os.close(self.pidfd)
            self.pidfd = None
        return self.returncode

    def poll(self) -> int | None:
        if not self._known:
            status = self.zygote.exit_status(self.pid, 0)
            if status is not None:
                self._settle(status)
        return self.returncode

    def wait(self, timeout: float | None) -> int | None:
        """Wait for the launcher to end; its exit code (negative: a signal), or None when the
        zygote died and can no longer say. Raises TimeoutError."""
        if self._known:
            return self.returncode
        if self.pidfd is not None:
            poller = greening.real_select().poll()
            poller.register(self.pidfd, select.POLLIN)
            if not poller.poll(None if timeout is None else int(timeout * 1000)):
                raise TimeoutError
            # It has exited; the zygote reaps it on SIGCHLD and reports within moments.
            status = self.zygote.exit_status(self.pid, EXIT_NOTE_WAIT_S)
            if status is None:
                self._reap_orphan()
            return self._settle(status)
        status = self.zygote.exit_status(self.pid, 1e9 if timeout is None else timeout)
        if status is None and not self.zygote.dead:
            raise TimeoutError
        return self._settle(status)

    def _reap_orphan(self) -> None:
        """The zygote died first: the launcher was re-parented, perhaps to us (a host that is
        pid 1 of its namespace, or a subreaper); then reaping it is our job."""
        with contextlib.suppress(ChildProcessError, OSError):
            os.waitpid(self.pid, os.WNOHANG)

    def send_signal(self, signum: int) -> None:
        if self._known:
            return
        with contextlib.suppress(ProcessLookupError):
            if self.pidfd is not None:
                signal.pidfd_send_signal(self.pidfd, signum)
            else:
                os.kill(self.pid, signum)

    def close(self) -> None:
        self.zygote.outstanding.discard(self.pid)
        if self.pidfd is not None:
            os.close(self.pidfd)
            self.pidfd = None


class ZygoteKeeper:
    """The reactor's zygote: started with the loop, replaced when it dies or has forked enough,
    given up on (fresh interpreters only) when it cannot start."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        self.current: Zygote | None = None
        #: Started a few forks before ``current`` reaches MAX_FORKS, so it is ready by then.
        self.successor: Zygote | None = None
        #: Zygotes replaced after MAX_FORKS: alive until their launchers end, then reaped.
        self.retired: list[Zygote] = []
        self.failed_starts = 0
        self.spawned_fresh = 0
        #: Whether a zygote of this keeper was ever ready. Until then the first spawn waits
        #: for it (once, at host start); a *replacement* that is still importing never makes
        #: the loop wait: the worker starts fresh meanwhile.
        self.was_ready = False

    def start(self) -> None:
        """Start a zygote now (on the reactor thread); it imports while the host goes on."""
        if not self.enabled or self.current is not None:
            return
        try:
            self.current = Zygote()
        except (OSError, UnsafeRulePath) as exc:  # (a refused rule fails each spawn, too)
            log.warning("cannot start a zygote (%s); spawning fresh interpreters", exc)
            self.enabled = False

    def get(self) -> Zygote | None:
        """A ready zygote to fork the next launcher, or None: spawn a fresh interpreter."""
        self._collect_retired()
        if not self.enabled:
            return None
        self._rotate()
        zygote = self.current
        if zygote is None:
            self.start()
            zygote = self.current
            if zygote is None:
                return None
        if not zygote.ready and not (zygote.alive() and zygote.poll_ready()):
            age = time.monotonic() - zygote.started
            # Only the host's very first zygote is waited for (once, at start-up); while any
            # later one is still importing, workers start fresh and the loop never waits.
            waits = not self.was_ready and self.failed_starts == 0
            if zygote.alive() and not waits and age < READY_TIMEOUT_S:
                return None
            if not (
                waits and zygote.alive() and zygote.wait_ready(max(0.0, READY_TIMEOUT_S - age))
            ):
                self.failed_starts += 1
                self._replace(zygote, zygote.failure or "it did not start")
                if self.failed_starts >= MAX_FAILED_STARTS:
                    log.warning(
                        "%d zygotes in a row failed to start; spawning fresh interpreters only",
                        self.failed_starts,
                    )
                    self.enabled = False
                return None
            self.failed_starts = 0
        elif not zygote.alive():
            self._replace(zygote, zygote.failure)
            return None
        self.was_ready = True
        self.failed_starts = 0
        return zygote

    def _rotate(self) -> None:
        """Bound how many workers share one zygote's hash seed and layout: start a successor
        shortly before ``current`` has forked MAX_FORKS launchers, then switch to it."""
        zygote = self.current
        if zygote is None:
            return
        if zygote.forks >= MAX_FORKS - SUCCESSOR_LEAD and self.successor is None:
            try:
                self.successor = Zygote()
            except (OSError, UnsafeRulePath) as exc:
                log.warning("cannot start a successor zygote: %s", exc)
        if zygote.forks >= MAX_FORKS:
            self.retired.append(zygote)
            zygote.retire()  # it ends once its launchers have; _collect_retired reaps it
            self.current, self.successor = self.successor, None

    def failed(self, zygote: Zygote, error: ZygoteError) -> None:
        """A fork request failed: this worker spawns fresh; a dead zygote is replaced."""
        if zygote.dead or not zygote.alive():
            if zygote is self.current:
                self._replace(zygote, str(error))
        else:
            log.warning("zygote could not fork (%s); spawning a fresh interpreter", error)

    def _replace(self, zygote: Zygote, why: str) -> None:
        log.warning("%s; spawning a fresh interpreter and starting a new zygote", why)
        if zygote is self.current:
            self.current = None
        if zygote.outstanding and not zygote.finished():
            # Its launchers - live workers - die with it (parent-death signal): a zygote that
            # is only slow must not take them along. Retired, it ends once they have.
            zygote.retire()
            self.retired.append(zygote)
        else:
            zygote.close(timeout=0.2)
        if self.enabled:
            self.start()

    def _collect_retired(self) -> None:
        for zygote in list(self.retired):
            # every exit note read (a zygote given up on cannot send them any more)
            if zygote.finished() and (zygote.dead or not zygote.outstanding):
                zygote.close(timeout=0)
                self.retired.remove(zygote)

    def poll(self) -> None:
        """Reap a zygote that died (it would stay a zombie until the next spawn)."""
        for zygote in (self.current, self.successor):
            if zygote is not None:
                zygote.alive()
        self._collect_retired()

    def close(self) -> None:
        """Stop every zygote (the host's workers are gone by now) and reap them."""
        for zygote in [*self.retired, self.current, self.successor]:
            if zygote is not None:
                zygote.close()
        self.retired.clear()
        self.current = self.successor = None
