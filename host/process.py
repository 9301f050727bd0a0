"""Starting a worker process and ending it, with nothing left behind.

The host spawns ``python -I -S`` running ``sandbox`` (the supervisor, which forks the worker; the
command line comes from :mod:`host.interpreter`) with ``subprocess`` and no ``preexec_fn``
(unsafe in a threaded parent), ``close_fds``, a new session,
an environment holding only the names the policy passes, a private working directory, and the
spawn spec on stdin (argv and environ are readable by other processes). stdout and stderr are
pipes the host drains into a bounded buffer; a third pipe carries the supervisor's final status.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import signal
import subprocess
import tempfile
from dataclasses import dataclass
from typing import Any

import psutil

from host.cgroups import WorkerCgroup
from host.interpreter import launcher_command
from policies import Policy
from sandbox.protocol import SpawnSpec

#: Largest status report read from a supervisor (it writes one short JSON line).
MAX_STATUS_BYTES = 64 * 1024


class LogCapture:
    """The worker's stdout+stderr, kept up to ``limit`` bytes per call; the rest is counted."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._chunks: list[bytes] = []
        self._kept = 0
        self.dropped = 0

    def add(self, data: bytes) -> None:
        room = self.limit - self._kept
        if room > 0:
            self._chunks.append(data[:room])
            self._kept += min(room, len(data))
        self.dropped += max(0, len(data) - max(room, 0))

    def take(self) -> str:
        """Return what was captured since the last call and start afresh."""
        text = b"".join(self._chunks).decode("utf-8", "replace")
        if self.dropped:
            text += f"\n[sandbox: {self.dropped} more bytes of output were dropped (log limit)]\n"
        self._chunks, self._kept, self.dropped = [], 0, 0
        return text

    def tail(self, chars: int = 2000) -> str:
        return b"".join(self._chunks).decode("utf-8", "replace")[-chars:]


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
        """Parse the supervisor's report defensively (it shares a uid with untrusted code)."""
        try:
            raw: Any = json.loads(data.decode("utf-8", "replace").strip() or "null")
        except ValueError:
            raw = None
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
        )


def worker_environment(policy: Policy) -> dict[str, str]:
    """Only the variable names the policy lists pass from the host; nothing else leaks."""
    return {name: os.environ[name] for name in policy.env if name in os.environ}


class WorkerProcess:
    """One spawned supervisor+worker pair and the pipes the host reads from it."""

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
    ) -> None:
        self.workdir = tempfile.mkdtemp(prefix=f"{worker_id}-", dir=workdir_root)
        self.cgroup = cgroup
        self.identity = identity
        if identity is not None:  # the worker will switch to this uid: it must own its places
            os.chown(self.workdir, *identity)
            os.chown(endpoint.removeprefix("ipc://"), *identity)
        status_read, status_write = os.pipe()
        spec = SpawnSpec(
            worker_id=worker_id,
            token=token,
            endpoint=endpoint,
            provider_ref=provider_ref,
            policy=policy.to_dict(),
            host_pid=os.getpid(),
            workdir=self.workdir,
            search_path=search_path,
            status_fd=status_write,
            required=required,
            uid=identity[0] if identity else None,
            gid=identity[1] if identity else None,
            cgroup=cgroup.membership() if cgroup else [],
            cgroup_error=cgroup_error,
        )
        try:
            self.popen = subprocess.Popen(
                launcher_command(),
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                close_fds=True,
                pass_fds=(status_write,),
                start_new_session=True,
                env=worker_environment(policy),
                cwd=self.workdir,
            )
        except BaseException:
            os.close(status_read)
            os.close(status_write)
            shutil.rmtree(self.workdir, ignore_errors=True)
            raise
        os.close(status_write)
        self.status_fd = status_read
        assert self.popen.stdin and self.popen.stdout and self.popen.stderr
        if cgroup is not None:
            try:  # before the spec is sent: the launcher runs nothing until it has read it
                cgroup.add(self.popen.pid)
            except OSError:
                cgroup.remove(timeout=0)
                self.cgroup = None
                spec = dataclasses.replace(
                    spec,
                    cgroup=[],
                    cgroup_error="the host could not move the worker into its cgroup",
                )
        try:
            self.popen.stdin.write(spec.to_bytes())
            self.popen.stdin.close()
        except OSError:
            pass  # it died already; the status pipe will say so
        self.log_fds = (self.popen.stdout.fileno(), self.popen.stderr.fileno())
        for fd in (*self.log_fds, self.status_fd):
            os.set_blocking(fd, False)
        self._status = bytearray()
        self.pid = self.popen.pid
        self.exited = False

    def read_status(self) -> bool:
        """Read from the status pipe; True at end of file (the supervisor has exited)."""
        while True:
            try:
                data = os.read(self.status_fd, 4096)
            except BlockingIOError:
                return False
            except OSError:
                return True
            if not data:
                return True
            if len(self._status) < MAX_STATUS_BYTES:
                self._status += data

    def terminate(self) -> None:
        """Ask the supervisor to kill the worker's whole tree and exit (SIGTERM)."""
        self._signal(signal.SIGTERM)

    def kill_everything(self) -> None:
        """Last resort when the supervisor does not answer: SIGKILL it and every descendant."""
        try:
            descendants = psutil.Process(self.pid).children(recursive=True)
        except psutil.Error:
            descendants = []
        self._signal(signal.SIGKILL)
        if self.cgroup is not None:
            self.cgroup.kill_all()
        for process in descendants:
            try:
                process.kill()
            except psutil.Error:
                pass

    def _signal(self, signum: int) -> None:
        if self.popen.returncode is None:
            try:
                os.kill(self.pid, signum)
            except ProcessLookupError:
                pass

    def reap(self, timeout: float) -> ExitStatus:
        """Wait for the supervisor (it exits right after its report) and parse the report."""
        try:
            self.popen.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill_everything()
            self.popen.wait()
        self.exited = True
        status = ExitStatus.parse(bytes(self._status))
        if status.unreported and self.popen.returncode is not None:
            rc = self.popen.returncode
            status.exit_code, status.signal = (rc, None) if rc >= 0 else (None, -rc)
        return status

    def close(self) -> None:
        """Close the host's pipe ends and remove the private working directory.

        ``shutil.rmtree`` unlinks symlinks instead of following them, so a link the provider
        planted in its workdir cannot make the host delete the target.
        """
        for stream in (self.popen.stdout, self.popen.stderr):
            if stream is not None:
                stream.close()
        try:
            os.close(self.status_fd)
        except OSError:
            pass
        shutil.rmtree(self.workdir, ignore_errors=True)
        if self.cgroup is not None:
            self.cgroup.remove()
