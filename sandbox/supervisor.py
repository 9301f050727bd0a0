"""The processes between the host and the worker: the launcher and the init.

``python -I -S`` running ``sandbox`` (``host.interpreter``) starts the *launcher* (or the zygote
forks one: ``sandbox/zygote.py``; the code from ``main`` on is the same). It reads the spawn spec
from stdin, ties its life to its parent - the host, or the zygote - (parent-death signal), enters
new namespaces (user, pid, mount, network, IPC/UTS, as the policy and the machine allow) and
forks the *init*. Because the pid namespace was unshared just before, the init is pid 1 of it:
it mounts a fresh ``/proc`` and a private ``/tmp``, forks the *worker* (which applies the
remaining layers and only then imports provider code) and reaps.

Why the init: a provider can start children that escape a process-group kill (setsid and a double
fork). The init is their reaper (pid 1 of the namespace, or a child subreaper without one). When
the worker dies, or the host asks with SIGTERM (the launcher forwards it), the init kills every
remaining process, reaps them all, writes one JSON status line for the host and exits; with a pid
namespace the kernel then guarantees nothing in it survives. Nothing is left for the machine's
pid 1 to reap (in containers it often never does).

Both processes import only the standard library and this package; they never run provider code.
They wait with ``sigwaitinfo`` (SIGCHLD and SIGTERM blocked), so no signal handler runs Python at
an awkward moment.
"""

from __future__ import annotations

import json
import mmap
import os
import resource
import signal
import sys
import time
from dataclasses import dataclass, field
from typing import Any

from policies import Policy
from sandbox.layers import LayerContext, LayerReport, RequiredLayerMissing, apply_layers
from sandbox.libc import PR_SET_CHILD_SUBREAPER, PR_SET_PDEATHSIG, prctl
from sandbox.protocol import ProtocolError, SpawnSpec

#: Largest spawn spec read from stdin: the host writes a few KiB.
MAX_SPEC_BYTES = 1 << 20
#: Exit code when the launcher itself cannot start (bad spec, dead host).
EXIT_SUPERVISOR_FAILED = 120

_WAITED = {signal.SIGCHLD, signal.SIGTERM}


@dataclass
class StartState:
    """What the launcher and init learnt, inherited by the worker through fork."""

    reports: list[LayerReport] = field(default_factory=list)
    #: Why a required layer failed; the worker then refuses to load the provider.
    failure: str | None = None
    #: Whether /tmp is a private tmpfs (the worker may write there).
    private_tmp: bool = False
    #: What the worker may read and write, computed by the init before it builds the mounts.
    context: LayerContext | None = None
    #: A page the init shares with the worker: the id of the last call the worker received.
    receipt: CallReceipt | None = None


#: Longest call id kept in a receipt (the host's ids are far shorter).
RECEIPT_BYTES = 64


class CallReceipt:
    """The id of the last call the worker received, in memory shared with its init.

    The worker marks a call here right after reading it and before any provider code runs for
    it; the init reads it after the worker died and puts it in its report. So the host can
    tell a call the worker never received - it ran nowhere and may simply be sent again - from
    one it may have run. No system call is involved: a shared anonymous mapping made before
    the fork. Provider code can overwrite it; the host bounds what a false receipt can do.
    """

    def __init__(self) -> None:
        self._page = mmap.mmap(-1, RECEIPT_BYTES)  # MAP_SHARED | MAP_ANONYMOUS

    def mark(self, call_id: str) -> None:
        self._page[:] = call_id.encode("ascii", "replace")[:RECEIPT_BYTES].ljust(
            RECEIPT_BYTES, b"\0"
        )

    def read(self) -> str:
        return bytes(self._page).rstrip(b"\0").decode("ascii", "replace")


def _read_spec() -> SpawnSpec:
    data = sys.stdin.buffer.read(MAX_SPEC_BYTES + 1)
    if len(data) > MAX_SPEC_BYTES:
        raise ProtocolError("spawn spec too large")
    return SpawnSpec.from_bytes(data)


def _children() -> list[int]:
    """Direct children of this (single-threaded) process."""
    pid = os.getpid()
    try:
        with open(f"/proc/self/task/{pid}/children") as f:
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

    Killing a child re-parents its own children to us (we are a reaper), so repeating
    "kill all direct children, reap what died" reaches the whole tree, fork bombs included.
    """
    killed: set[int] = set()
    while True:
        for child in _children():
            if child not in killed:  # each process is signalled once: linear, not quadratic
                killed.add(child)
                try:
                    os.kill(child, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        try:
            reaped = False
            while True:  # reap everything that has died so far
                pid, _ = os.waitpid(-1, os.WNOHANG)
                if pid == 0:
                    break
                killed.discard(pid)  # a pid may be reused by a new child: signal that one too
                reaped = True
            if not reaped:
                pid, _ = os.waitpid(-1, 0)  # something is still dying: wait, then look again
                killed.discard(pid)
        except ChildProcessError:
            return


#: ``PF_EXITING`` in /proc/<pid>/stat's flags: the process is in the kernel's exit path.
_PF_EXITING = 0x4


def _exiting(pid: int) -> bool:
    """Whether ``pid`` is already dying on its own (in the exit path, or a zombie).

    A process closes its files - its connection to the host - in the middle of its exit, before
    it becomes a zombie and its parent is told. So the host can see the disconnect and ask us to
    kill a worker that is already dying; the order "it died, then we were asked" is told here.
    """
    try:
        if os.readlink("/proc/self") != str(os.getpid()):
            return False  # another pid namespace's /proc: its <pid> is not our worker
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
    except OSError:
        return False
    fields = stat[stat.rfind(b")") + 2 :].split()
    try:
        return fields[0] in (b"Z", b"X", b"x") or bool(int(fields[6]) & _PF_EXITING)
    except (IndexError, ValueError):
        return False


def _supervise(worker_pid: int) -> dict[str, Any]:
    """Wait for the worker to end, or for the host's SIGTERM; return the status report.

    ``terminated`` in the report means the worker was alive when the host's request came and
    we killed it; a worker that was already dying by then (see :func:`_exiting`) died on its
    own, and the report says so, so the host never mistakes a crash for its own kill.
    """
    terminated = False
    while True:
        info = signal.sigwaitinfo(_WAITED)
        # Reap first: if the worker already died on its own, a SIGTERM arriving with the
        # SIGCHLD must not be reported as the host having killed it.
        report = _reap(worker_pid, terminated)
        if report is not None:
            return report
        if info.si_signo == signal.SIGTERM and not terminated:
            if _exiting(worker_pid):
                continue  # its SIGCHLD follows; the report says it died by itself
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
                # CLOCK_MONOTONIC, the host's clock too (no time namespace is used): the worker
                # was dead by then, so a call the host sent later never reached it.
                "dead_by": time.monotonic(),
                "exit_code": os.WEXITSTATUS(status) if os.WIFEXITED(status) else None,
                "signal": os.WTERMSIG(status) if os.WIFSIGNALED(status) else None,
                "terminated": terminated,
                "cpu_s": rusage.ru_utime + rusage.ru_stime,
                "max_rss_bytes": rusage.ru_maxrss * 1024,
            }


def _say_unbounded(report: LayerReport) -> LayerReport:
    """A mount namespace that was not applied says what that means for the worker's writes."""
    from sandbox.layers.mount_namespace import NAME, UNBOUNDED

    if report.name != NAME or report.applied or UNBOUNDED in report.detail:
        return report
    return LayerReport(report.name, False, f"{report.detail}; {UNBOUNDED}")


def _prepare_mounts(spec: SpawnSpec, policy: Policy, start: StartState) -> None:
    """In the init: private /proc, /tmp and workdir, the rest read-only, the ipc socket kept."""
    from policies.paths import UnsafeRulePath
    from sandbox.layers import LayerError, mount_namespace
    from sandbox.worker import layer_context

    applied = {r.name for r in start.reports if r.applied}
    if "mount_namespace" not in applied or start.failure:
        return
    try:
        context = layer_context(spec, policy, private_tmp=True)
    except UnsafeRulePath as exc:  # no worker starts with a rule that undoes the confinement
        start.failure = str(exc)
        return
    try:
        # Everything the worker may use that lives under the host's /tmp stays reachable.
        keep = [spec.workdir, spec.endpoint.removeprefix("ipc://")]
        keep += [p for p in (*context.read_paths, *context.write_paths) if os.path.exists(p)]
        owner = None
        if spec.uid is not None:  # the worker's own storage belongs to the uid it drops to
            owner = (spec.uid, spec.gid if spec.gid is not None else spec.uid)
        mount_namespace.prepare(
            policy,
            keep,
            new_proc="pid_namespace" in applied,
            workdir=spec.workdir,
            writable=list(policy.write),
            owner=owner,
        )
        start.private_tmp = True
        start.context = context
        if spec.uid is not None:  # a dedicated uid must be able to reach what it may read
            mount_namespace.expose(list(start.context.read_paths))
    except (LayerError, OSError) as exc:
        if "mount_namespace" in spec.required:
            start.failure = str(RequiredLayerMissing("mount_namespace", str(exc)))
        reason = f"{exc}; {mount_namespace.UNBOUNDED}"
        start.reports = [
            LayerReport(r.name, False, reason) if r.name == "mount_namespace" else r
            for r in start.reports
        ]


def _run_init(spec: SpawnSpec, policy: Policy, start: StartState) -> None:
    """The init process: prepare mounts, fork the worker, reap, report, exit. Never returns."""
    code = 0
    try:
        prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
        prctl(PR_SET_CHILD_SUBREAPER, 1)  # without a pid namespace, orphans still come here
        _prepare_mounts(spec, policy, start)
        start.receipt = CallReceipt()
        sys.stdout.flush()
        worker_pid = os.fork()
        if worker_pid == 0:
            signal.pthread_sigmask(signal.SIG_SETMASK, set())
            os.close(spec.status_fd)
            worker_code = 1
            try:
                from sandbox.worker import run

                worker_code = run(spec, start)
            except BaseException:
                import traceback

                traceback.print_exc()
            finally:
                os._exit(worker_code)  # never fall back into the init's code
        report = _supervise(worker_pid)
        report["received"] = start.receipt.read()
        _kill_and_reap_everything()
        try:
            os.write(spec.status_fd, json.dumps(report).encode() + b"\n")
        except OSError:
            pass
    except BaseException:
        import traceback

        traceback.print_exc()
        code = EXIT_SUPERVISOR_FAILED
        _kill_and_reap_everything()
    os._exit(code)


def _forward_until_exit(init_pid: int) -> None:
    """The launcher's loop: pass the host's SIGTERM on to the init, exit when the init does."""
    while True:
        info = signal.sigwaitinfo(_WAITED)
        if info.si_signo == signal.SIGTERM:
            try:
                os.kill(init_pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        try:
            pid, _ = os.waitpid(init_pid, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == init_pid:
            return


def main() -> None:
    """Run the launcher; never returns."""
    try:
        spec = _read_spec()
        policy = Policy.from_mapping(spec.policy)
    except (ProtocolError, OSError, ValueError) as exc:
        print(f"sandbox: cannot read the spawn spec: {exc}", file=sys.stderr)
        os._exit(EXIT_SUPERVISOR_FAILED)
    prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != (spec.parent_pid or spec.host_pid):
        os._exit(EXIT_SUPERVISOR_FAILED)  # the parent died before we could tie our life to it
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    start = StartState()
    context = LayerContext(workdir=spec.workdir)
    try:
        start.reports = apply_layers(
            "launcher", policy, context, required=spec.required, skip=policy.skip
        )
    except RequiredLayerMissing as exc:
        start.failure = str(exc)
    start.reports = [_say_unbounded(r) for r in start.reports]
    signal.pthread_sigmask(signal.SIG_BLOCK, _WAITED)
    sys.stdout.flush()
    init_pid = os.fork()
    if init_pid == 0:
        _run_init(spec, policy, start)
    try:  # the host may inherit the init if we are killed: it reaps it by this pid
        os.write(spec.status_fd, json.dumps({"init_pid": init_pid}).encode() + b"\n")
    except OSError:
        pass
    os.close(spec.status_fd)
    _forward_until_exit(init_pid)
    os._exit(0)
