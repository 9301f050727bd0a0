"""Starting a worker process and ending it, with nothing left behind.

The host spawns ``python -I -S`` running ``sandbox`` (the supervisor, which forks the worker; the
command line comes from :mod:`host.interpreter`) with ``subprocess`` and no ``preexec_fn``
(unsafe in a threaded parent), ``close_fds``, a new session,
an environment holding only the names the policy passes, a private working directory, and the
spawn spec on stdin (argv and environ are readable by other processes). stdout and stderr are
pipes the host drains into a bounded buffer; a third pipe carries the supervisor's final status.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import posix  # os.read that eventlet's patching of os never replaces (host.greening)
import signal
import subprocess
import tempfile
import threading
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any, Protocol

import psutil

from host import fsutil
from host.cgroups import WorkerCgroup
from host.interpreter import launcher_command
from host.orphans import start_time
from host.zygote import ZygoteChild, ZygoteError, ZygoteKeeper
from policies import Policy
from sandbox.protocol import ZYGOTE_STATUS_FD, SpawnSpec, encode_preamble

#: Largest status report read from a supervisor (it writes one short JSON line).
MAX_STATUS_BYTES = 64 * 1024


@dataclass(frozen=True)
class CapturedLogs:
    """What a worker printed during one call: each stream apart, in its own order, and both
    as they arrived (``combined``; across the two streams the order is only as good as the
    provider's flushing: a pipe-buffered ``print`` may arrive after a later stderr write)."""

    combined: str = ""
    stdout: str = ""
    stderr: str = ""


NOTHING_CAPTURED = CapturedLogs()


class LogCapture:
    """The worker's stdout and stderr, up to ``limit`` bytes per call together; the rest is
    counted and said to be dropped (in ``stderr`` and ``combined``).

    Kept as three buffers (both streams as they arrived, and each apart), so it holds at most
    twice the limit however the output is cut up: kept as one piece per read, a worker writing
    one byte at a time, alternating streams, made the host hold ~200 bytes per byte captured
    (446 MiB for a 4 MiB limit) and join a million pieces on the loop at the call's end."""

    STDOUT, STDERR = 0, 1

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._combined = bytearray()
        self._streams = (bytearray(), bytearray())
        self.dropped = 0

    @property
    def full(self) -> bool:
        """Whether anything more it is given is only counted."""
        return len(self._combined) >= self.limit

    def add(self, data: bytes, stream: int = STDERR) -> None:
        room = self.limit - len(self._combined)
        if room > 0:
            kept = data[:room] if len(data) > room else data
            self._combined.extend(kept)
            self._streams[stream].extend(kept)
        self.dropped += max(0, len(data) - max(room, 0))

    def take(self) -> CapturedLogs:
        """Return what was captured since the last call and start afresh."""
        if not self._combined and not self.dropped:  # (most calls print nothing)
            return NOTHING_CAPTURED
        combined = self._combined.decode("utf-8", "replace")
        stdout, stderr = (b.decode("utf-8", "replace") for b in self._streams)
        if self.dropped:
            notice = f"\n[sandbox: {self.dropped} more bytes of output were dropped (log limit)]\n"
            combined, stderr = combined + notice, stderr + notice
        self._combined = bytearray()
        self._streams = (bytearray(), bytearray())
        self.dropped = 0
        return CapturedLogs(combined, stdout, stderr)

    def tail(self, chars: int = 2000) -> str:
        return self._combined[-4 * chars:].decode("utf-8", "replace")[-chars:]


@dataclass
class ExitStatus:
    """How a worker ended, from its supervisor's report (or what the host could tell without)."""

    exit_code: int | None = None
    signal: int | None = None
    #: The supervisor killed the worker because the host asked (timeout, violation, close).
    terminated: bool = False
    cpu_s: float = 0.0
    max_rss_bytes: int = 0
    #: No report arrived: the supervisor itself died (or was killed by the host as a last resort).
    unreported: bool = False
    #: When the init had reaped the worker (CLOCK_MONOTONIC, the host's ``time.monotonic``):
    #: a call sent after this never reached the worker.
    dead_by: float | None = None
    #: The id of the last call the worker received (None: not reported).
    received: str | None = None

    def describe(self) -> str:
        if self.signal is not None:
            try:
                name = signal.Signals(self.signal).name
            except ValueError:
                name = str(self.signal)
            return f"killed by signal {name}"
        if self.exit_code is not None:
            return f"exit code {self.exit_code}"
        return "ended without a status report"

    @classmethod
    def parse(cls, data: bytes) -> ExitStatus:
        """Parse the supervisor's report defensively (it shares a uid with untrusted code).

        The pipe carries JSON lines: the launcher's note of its init's pid, then the init's
        report; the report is the last line that is not such a note.
        """
        raw: Any = None
        for line in data.decode("utf-8", "replace").splitlines():
            parsed = _json_object(line)
            if parsed is not None and "init_pid" not in parsed:
                raw = parsed
        if not isinstance(raw, dict):
            return cls(unreported=True)

        def num(key: str, kind: type | tuple[type, ...]) -> Any:
            value = raw.get(key)
            return value if isinstance(value, kind) and not isinstance(value, bool) else None

        return cls(
            exit_code=num("exit_code", int),
            signal=num("signal", int),
            terminated=raw.get("terminated") is True,
            cpu_s=float(num("cpu_s", (int, float)) or 0.0),
            max_rss_bytes=int(num("max_rss_bytes", int) or 0),
            dead_by=float(dead_by) if (dead_by := num("dead_by", (int, float))) is not None
            else None,
            received=raw.get("received") if isinstance(raw.get("received"), str) else None,
        )


def _json_object(line: str) -> dict[str, Any] | None:
    try:
        value = json.loads(line)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def worker_environment(policy: Policy) -> dict[str, str]:
    """Only the variable names the policy lists pass from the host; nothing else leaks."""
    return {name: os.environ[name] for name in policy.env if name in os.environ}


class FreshLauncher:
    """A launcher started as a fresh interpreter (``subprocess``): the reference spawn path."""

    def __init__(self, popen: subprocess.Popen[bytes]) -> None:
        self.popen = popen
        self.pid = popen.pid

    @property
    def returncode(self) -> int | None:
        return self.popen.returncode

    def poll(self) -> int | None:
        return self.popen.poll()

    def wait(self, timeout: float | None) -> int | None:
        try:
            return self.popen.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            raise TimeoutError from None

    def send_signal(self, signum: int) -> None:
        if self.popen.returncode is None:
            try:
                os.kill(self.pid, signum)
            except ProcessLookupError:
                pass

    def close(self) -> None:
        pass


class Launcher(Protocol):
    """What the host needs of a launcher, however it was started (fresh or by the zygote)."""

    pid: int

    @property
    def returncode(self) -> int | None: ...

    def poll(self) -> int | None: ...

    def wait(self, timeout: float | None) -> int | None: ...

    def send_signal(self, signum: int) -> None: ...

    def close(self) -> None: ...


class WorkerProcess:
    """One spawned supervisor+worker pair and the pipes the host reads from it.

    The launcher is either a fresh interpreter or a child forked by the zygote (``zygotes``
    given and usable); everything after the spawn - the cgroup move before the spec is written,
    the spec on stdin, the status and log pipes - is the same for both.
    """

    def __init__(
        self,
        *,
        worker_id: str,
        token: str,
        endpoint: str,
        provider_ref: str,
        policy: Policy,
        workdir_root: str,
        search_path: list[str],
        required: list[str],
        identity: tuple[int, int] | None = None,
        cgroup: WorkerCgroup | None = None,
        cgroup_error: str = "",
        zygotes: ZygoteKeeper | None = None,
        spare: ForkedLauncher | None = None,
    ) -> None:
        """``spare``: a launcher the zygote forked ahead of need, already in ``cgroup``."""
        self.workdir = tempfile.mkdtemp(prefix=f"{worker_id}-", dir=workdir_root)
        self.cgroup = cgroup
        self.identity = identity
        if identity is not None:  # the worker will switch to this uid: it must own its places
            os.chown(self.workdir, *identity)
            os.chown(endpoint.removeprefix("ipc://"), *identity)
        spec = SpawnSpec(
            worker_id=worker_id,
            token=token,
            endpoint=endpoint,
            provider_ref=provider_ref,
            policy=policy.to_dict(),
            host_pid=os.getpid(),
            workdir=self.workdir,
            search_path=search_path,
            required=required,
            uid=identity[0] if identity else None,
            gid=identity[1] if identity else None,
            cgroup=cgroup.membership() if cgroup else [],
            cgroup_error=cgroup_error,
        )
        env = worker_environment(policy)
        try:
            started = None
            if zygotes is not None:
                started = self._from_zygote(spare, zygotes, spec, env)
            if started is None:
                started = self._fresh(spec, env)
        except BaseException:
            fsutil.remove_tree(self.workdir)
            raise
        self.launcher, spec_pipe, self.log_fds, self.status_fd, spec, preamble = started
        #: How the launcher was started: "zygote" or "fresh".
        self.spawn_kind = "fresh" if isinstance(self.launcher, FreshLauncher) else "zygote"
        if cgroup is not None and spare is None:  # (a spare was moved when it was forked)
            try:  # before the spec is sent: the launcher runs nothing until it has read it
                cgroup.add(self.launcher.pid)
            except OSError:
                cgroup.remove(timeout=0)
                self.cgroup = None
                spec = dataclasses.replace(
                    spec,
                    cgroup=[],
                    cgroup_error="the host could not move the worker into its cgroup",
                )
        try:
            _write_all(spec_pipe, preamble + spec.to_bytes())
        except OSError:
            pass  # it died already; the status pipe will say so
        finally:
            os.close(spec_pipe)
        for fd in (*self.log_fds, self.status_fd):
            os.set_blocking(fd, False)
        self._status = bytearray()
        self.pid = self.launcher.pid
        self.exited = False
        self._closed = False
        #: Told (pid, start time) of processes the host may inherit (``host.orphans``).
        self.adopt: Callable[[int, int], None] | None = None

    def _fresh(
        self, spec: SpawnSpec, env: dict[str, str]
    ) -> tuple[Launcher, int, tuple[int, int], int, SpawnSpec, bytes]:
        status_read, status_write = os.pipe()
        spec = dataclasses.replace(spec, status_fd=status_write, parent_pid=os.getpid())
        try:
            popen = subprocess.Popen(
                launcher_command(),
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                close_fds=True,
                pass_fds=(status_write,),
                start_new_session=True,
                env=env,
                cwd=self.workdir,
            )
        except BaseException:
            os.close(status_read)
            raise
        finally:
            os.close(status_write)
        assert popen.stdin and popen.stdout and popen.stderr
        # The host uses raw descriptors for both kinds of launcher: take copies and close the
        # file objects, so no object closes a (by then reused) descriptor number later.
        spec_pipe = os.dup(popen.stdin.fileno())
        log_fds = (os.dup(popen.stdout.fileno()), os.dup(popen.stderr.fileno()))
        for stream in (popen.stdin, popen.stdout, popen.stderr):
            stream.close()
        return FreshLauncher(popen), spec_pipe, log_fds, status_read, spec, b""

    def _from_zygote(
        self, forked: ForkedLauncher | None, zygotes: ZygoteKeeper, spec: SpawnSpec,
        env: dict[str, str],
    ) -> tuple[Launcher, int, tuple[int, int], int, SpawnSpec, bytes] | None:
        """Fork the launcher from the zygote (or take the spare one); None if it cannot."""
        if forked is None:
            forked = fork_from_zygote(zygotes)
            if forked is None:
                return None
        spec = dataclasses.replace(spec, status_fd=ZYGOTE_STATUS_FD, parent_pid=forked.parent_pid)
        preamble = encode_preamble(env, self.workdir)
        return (forked.child, forked.spec_pipe, forked.log_fds, forked.status_fd, spec,
                preamble)  # fmt: skip

    def read_status(self) -> bool:
        """Read from the status pipe; True at end of file (the supervisor has exited)."""
        while True:
            try:
                data = posix.read(self.status_fd, 4096)
            except BlockingIOError:
                return False
            except OSError:
                return True
            if not data:
                return True
            if len(self._status) < MAX_STATUS_BYTES:
                self._status += data

    def init_pid(self) -> int | None:
        """The pid of the worker's init, as its launcher reported it (None until it has)."""
        for line in bytes(self._status).decode("utf-8", "replace").splitlines():
            parsed = _json_object(line)
            if parsed is not None:
                pid = parsed.get("init_pid")
                if isinstance(pid, int) and not isinstance(pid, bool) and pid > 1:
                    return pid
        return None

    @property
    def returncode(self) -> int | None:
        """The launcher's exit code once reaped (negative: the signal that ended it)."""
        return self.launcher.returncode

    def terminate(self) -> None:
        """Ask the supervisor to kill the worker's whole tree and exit (SIGTERM)."""
        self.launcher.send_signal(signal.SIGTERM)

    def kill_everything(self) -> None:
        """Last resort when the supervisor does not answer: SIGKILL it and every descendant."""
        try:
            descendants = psutil.Process(self.pid).children(recursive=True)
        except psutil.Error:
            descendants = []
        adopt = self.adopt
        if adopt is not None:  # killed, they may be re-parented to the host: it reaps them
            for process in descendants:
                start = start_time(process.pid)
                if start is not None and process.is_running():  # (read from that process)
                    adopt(process.pid, start)
        self.launcher.send_signal(signal.SIGKILL)
        if self.cgroup is not None:
            self.cgroup.kill_all()
        for process in descendants:
            try:
                process.kill()
            except psutil.Error:
                pass

    def reap(self, timeout: float) -> ExitStatus:
        """Wait for the supervisor (it exits right after its report) and parse the report."""
        try:
            rc = self.launcher.wait(timeout)
        except TimeoutError:
            self.kill_everything()
            rc = self.launcher.wait(None)
        self.exited = True
        status = ExitStatus.parse(bytes(self._status))
        if status.unreported and rc is not None:
            status.exit_code, status.signal = (rc, None) if rc >= 0 else (None, -rc)
        return status

    def close(
        self,
        remove_tree: Callable[[str], object] = fsutil.remove_tree,
        later: Callable[[Callable[[], object], str], None] | None = None,
    ) -> None:
        """Close the host's pipe ends, remove the private working directory and the cgroup.

        Runs once (a second call does nothing: a descriptor number closed twice may by then
        belong to someone else) and never raises: each step goes on if another failed.
        ``remove_tree`` removes the workdir; the reactor passes its janitor's, which does it
        off the loop. Either way links are unlinked, never followed (``host.fsutil``), so a
        link the provider planted in its workdir cannot make the host delete the target.
        ``later(job, what)``, if given, runs the cgroup's removal (which waits for the tree's
        last processes to leave it) in the background too.
        """
        if self._closed:
            return
        self._closed = True
        for fd in (*self.log_fds, self.status_fd):
            try:
                os.close(fd)
            except OSError:
                pass
        with contextlib.suppress(Exception):
            self.launcher.close()
        try:
            remove_tree(self.workdir)
        except Exception:  # pragma: no cover - the removers never raise
            pass
        group = self.cgroup
        if group is not None:
            if later is not None:
                later(group.remove, f"removing cgroup {group.directories}")
            else:
                with contextlib.suppress(Exception):
                    group.remove()


@dataclass
class ForkedLauncher:
    """A launcher the zygote forked, blocked on its stdin, and the host's ends of its pipes."""

    child: ZygoteChild
    #: The zygote's pid: the parent the launcher checks it has.
    parent_pid: int
    spec_pipe: int
    log_fds: tuple[int, int]
    status_fd: int

    def discard(self) -> None:
        """Kill it (it has run nothing but the zygote's code), reap it, close the pipes."""
        self.child.send_signal(signal.SIGKILL)
        for fd in (self.spec_pipe, *self.log_fds, self.status_fd):
            with contextlib.suppress(OSError):
                os.close(fd)
        with contextlib.suppress(TimeoutError):
            self.child.wait(2.0)
        self.child.close()


def fork_from_zygote(zygotes: ZygoteKeeper) -> ForkedLauncher | None:
    """Have the zygote fork a launcher with four fresh pipes; None (logged) if it cannot."""
    zygote = zygotes.get()
    if zygote is None:
        return None
    pipes: list[tuple[int, int]] = []
    try:
        for _ in range(4):  # stdin, stdout, stderr, status
            pipes.append(os.pipe())
    except OSError:
        for fd in (fd for pair in pipes for fd in pair):
            os.close(fd)
        raise
    child_ends = [pipes[0][0], pipes[1][1], pipes[2][1], pipes[3][1]]
    ours = [pipes[0][1], pipes[1][0], pipes[2][0], pipes[3][0]]
    try:
        child = zygote.fork(*child_ends)
    except ZygoteError as exc:
        for fd in ours:
            os.close(fd)
        zygotes.failed(zygote, exc)
        return None
    finally:
        for fd in child_ends:  # the child has its copies (or there is no child)
            os.close(fd)
    return ForkedLauncher(child, zygote.pid, ours[0], (ours[1], ours[2]), ours[3])


class SpareLauncher:
    """One launcher forked while the host is idle and moved into a fresh cgroup.

    Moving a process into a cgroup v1 waits for an RCU grace period (10-20 ms, the kernel's
    ``cgroup_threadgroup_rwsem``); a spare takes that, and the fork, off the next spawn. The
    move runs on a thread of its own: it is a blocking write that would otherwise stall the
    host's loop (and every other call's deadline) for as long. The spare has run nothing but
    the zygote's code: it waits for its environment and spawn spec on stdin. Its cgroup gets
    the worker's policy limits when it is taken.
    """

    def __init__(self, forked: ForkedLauncher, cgroup: WorkerCgroup) -> None:
        self.forked = forked
        self.cgroup = cgroup
        #: True once the launcher is in its cgroup, False if it could not be moved.
        self.moved: Future[bool] = Future()
        self._mover = threading.Thread(target=self._move, name="sandbox-spare", daemon=True)
        self._mover.start()

    def _move(self) -> None:
        try:
            self.cgroup.add(self.forked.child.pid)
        except OSError:
            self.moved.set_result(False)
        else:
            self.moved.set_result(True)

    @classmethod
    def make(
        cls, zygotes: ZygoteKeeper, new_cgroup: Callable[[], WorkerCgroup]
    ) -> SpareLauncher | None:
        try:
            group = new_cgroup()
        except OSError:
            return None
        try:
            forked = fork_from_zygote(zygotes)
        except OSError:
            forked = None
        if forked is None:
            group.remove(timeout=0)
            return None
        return cls(forked, group)

    def pending(self) -> bool:
        """Still being moved into its cgroup (neither usable nor to be thrown away yet)."""
        return not self.moved.done()

    def take(self, policy: Policy) -> bool:
        """Give its cgroup ``policy``'s limits; False if it is not usable."""
        child = self.forked.child
        if not self.moved.done() or not self.moved.result():
            return False
        if child.poll() is not None or not child.zygote.alive():
            return False
        try:
            self.cgroup.limit(policy)
        except OSError:
            return False
        return True

    def discard(self) -> None:
        # Let the move finish first (within a grace period): once the launcher is killed and
        # reaped, its pid could be reused, and the mover would move that process instead.
        self._mover.join(timeout=5)
        self.forked.discard()
        self.cgroup.remove()


def _write_all(fd: int, data: bytes) -> None:
    """Write all of ``data`` to a blocking pipe (the spec is a few KiB: one write, usually)."""
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]
