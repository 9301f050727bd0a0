"""The supervisor: the process the host spawns. It forks the worker and is its reaper.

Why a separate process: a provider can start children that escape a process-group kill (setsid and
a double fork). The supervisor is a *child subreaper*, so every orphan of the worker's tree is
re-parented to it rather than to pid 1 (which, in containers, often never reaps). When the worker
dies, or the host sends SIGTERM, the supervisor kills every remaining descendant, reaps them all,
writes one JSON status line to the host's status pipe and exits. So a worker's tree is gone, with
no zombie, once the host has reaped the supervisor.

The supervisor imports only the standard library and ``sandbox.protocol``; it never runs provider
code. It waits with ``sigwaitinfo`` (SIGCHLD, SIGTERM blocked), so no signal handler runs Python
at an awkward moment.
"""

from __future__ import annotations

import json
import os
import resource
import signal
import sys
from typing import Any

from sandbox.libc import PR_SET_CHILD_SUBREAPER, PR_SET_PDEATHSIG, prctl
from sandbox.protocol import ProtocolError, SpawnSpec

#: Largest spawn spec read from stdin: the host writes a few KiB.
MAX_SPEC_BYTES = 1 << 20
#: Exit code when the supervisor itself cannot start (bad spec, dead host).
EXIT_SUPERVISOR_FAILED = 120

_WAITED = {signal.SIGCHLD, signal.SIGTERM}


def _read_spec() -> SpawnSpec:
    data = sys.stdin.buffer.read(MAX_SPEC_BYTES + 1)
    if len(data) > MAX_SPEC_BYTES:
        raise ProtocolError("spawn spec too large")
    return SpawnSpec.from_bytes(data)


def _children() -> list[int]:
    """Direct children of this (single-threaded) process."""
    pid = os.getpid()
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            return [int(p) for p in f.read().split()]
    except OSError:
        pass
    found = []  # Kernel without CONFIG_PROC_CHILDREN: scan every process's parent.
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                stat = f.read()
        except OSError:
            continue
        fields = stat[stat.rfind(")") + 2 :].split()
        if len(fields) > 1 and int(fields[1]) == pid:
            found.append(int(entry))
    return found


def _kill_and_reap_everything() -> None:
    """Kill every descendant and reap them all, until this process has no child left.

    Killing a child re-parents its own children to us (we are a subreaper), so repeating
    "kill all direct children, reap what died" reaches the whole tree, fork bombs included.
    """
    while True:
        for child in _children():
            try:
                os.kill(child, signal.SIGKILL)
            except ProcessLookupError:
                pass
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
            if pid == 0:
                os.waitpid(-1, 0)  # something is still dying: wait for it, then look again
        except ChildProcessError:
            return


def _supervise(worker_pid: int) -> dict[str, Any]:
    """Wait for the worker to end, or for the host's SIGTERM; return the status report."""
    terminated = False
    while True:
        info = signal.sigwaitinfo(_WAITED)
        # Reap first: if the worker already died on its own, a SIGTERM arriving with the
        # SIGCHLD must not be reported as the host having killed it.
        report = _reap(worker_pid, terminated)
        if report is not None:
            return report
        if info.si_signo == signal.SIGTERM and not terminated:
            terminated = True
            os.kill(worker_pid, signal.SIGKILL)


def _reap(worker_pid: int, terminated: bool) -> dict[str, Any] | None:
    """Reap whatever has exited; return the report once the worker itself is reaped."""
    while True:  # SIGCHLD coalesces, so drain until nothing is left
        try:
            pid, status, rusage = os.wait4(-1, os.WNOHANG)
        except ChildProcessError:
            return {"worker_pid": worker_pid, "lost": True, "terminated": terminated}
        if pid == 0:
            return None
        if pid == worker_pid:
            return {
                "worker_pid": worker_pid,
                "exit_code": os.WEXITSTATUS(status) if os.WIFEXITED(status) else None,
                "signal": os.WTERMSIG(status) if os.WIFSIGNALED(status) else None,
                "terminated": terminated,
                "cpu_s": rusage.ru_utime + rusage.ru_stime,
                "max_rss_bytes": rusage.ru_maxrss * 1024,
            }


def main() -> None:
    """Run the supervisor; never returns."""
    try:
        spec = _read_spec()
    except (ProtocolError, OSError) as exc:
        print(f"sandbox: cannot read the spawn spec: {exc}", file=sys.stderr)
        os._exit(EXIT_SUPERVISOR_FAILED)
    prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != spec.host_pid:
        os._exit(EXIT_SUPERVISOR_FAILED)  # the host died before we could tie our life to it
    prctl(PR_SET_CHILD_SUBREAPER, 1)
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    signal.pthread_sigmask(signal.SIG_BLOCK, _WAITED)
    sys.stdout.flush()
    worker_pid = os.fork()
    if worker_pid == 0:
        signal.pthread_sigmask(signal.SIG_SETMASK, set())
        os.close(spec.status_fd)
        code = 1
        try:
            from sandbox.worker import run

            code = run(spec)
        finally:
            os._exit(code)  # never fall back into the supervisor's code
    report = _supervise(worker_pid)
    _kill_and_reap_everything()
    try:
        os.write(spec.status_fd, json.dumps(report).encode() + b"\n")
    except OSError:
        pass
    os._exit(0)
