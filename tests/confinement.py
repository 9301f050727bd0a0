"""Confine the test run to a pid namespace of its own, whoever runs it.

The escape suite runs real attacks; under a degraded policy (``rlimits only``) a worker shares
the runner's pid namespace and uid, so ``kill(-1)`` would reach every process of that user (a
shell, an editor) if the run were not confined. So before any test runs, the suite re-executes
itself as pid 1 of a new pid namespace with its own ``/proc`` (and, when not root, inside a new
user namespace that maps only the runner's own uid and gid): a signal from any test process then
reaches only the test run, and ``/proc`` shows only its processes.

The user namespace maps the runner's uid to itself, not to 0: the code under test still sees a
non-root host and takes the non-root path (a user namespace per worker, no dedicated uids). The
re-executed interpreter holds no capability either: ``execve`` as a non-zero uid clears them.

If the namespaces cannot be created (user namespaces disabled, a seccomp filter in a container),
the run goes on unconfined and :func:`unconfined_reason` says why; the hostile tests skip then.
"""

from __future__ import annotations

import os
import signal
import sys
from typing import NoReturn

from sandbox.libc import (
    CLONE_NEWNS,
    CLONE_NEWPID,
    CLONE_NEWUSER,
    MS_NODEV,
    MS_NOEXEC,
    MS_NOSUID,
    MS_PRIVATE,
    MS_REC,
    PR_SET_PDEATHSIG,
    mount,
    prctl,
    unshare,
)

#: The inode of the machine's initial pid namespace (PROC_PID_INIT_INO, fixed by the kernel).
INITIAL_PID_NAMESPACE = 0xEFFFFFFC
#: Set in the re-executed run, so a failure to confine is reported, not retried forever.
MARKER = "ACTIONSANDBOX_TEST_CONFINED"

_why_unconfined: str | None = None


def pid_namespace() -> int:
    """The inode of this process's pid namespace (0 when /proc does not say)."""
    try:
        return os.stat("/proc/self/ns/pid").st_ino
    except OSError:
        return 0


def confined() -> bool:
    """Whether this run owns its pid namespace: it is pid 1 there, and that namespace is not the
    machine's. Then every process it can see or signal is one the run created."""
    namespace = pid_namespace()
    return os.getpid() == 1 and namespace not in (0, INITIAL_PID_NAMESPACE)


def unconfined_reason() -> str | None:
    """Why the run is not confined (None when it is)."""
    if confined():
        return None
    return _why_unconfined or "the test run is not pid 1 of a pid namespace of its own"


def confine_or_continue() -> None:
    """Re-execute the run confined, unless it already is or cannot be (then only note why).

    Returns only in the confined run or when confinement failed; otherwise this process waits for
    the confined run and exits with its status.
    """
    global _why_unconfined
    if confined():
        return
    if os.environ.get(MARKER):
        _why_unconfined = "the re-executed run did not come up as pid 1 of its own namespace"
        return
    sys.stdout.flush()
    sys.stderr.flush()
    read, write = os.pipe()
    child = os.fork()
    if child == 0:  # pragma: no cover - the namespace's creator
        os.close(read)
        _create_namespaces_and_run(write)
    os.close(write)
    with os.fdopen(read, "rb") as f:
        failure = f.read().decode(errors="replace")
    if failure:  # the namespaces could not be made: the child has exited already
        os.waitpid(child, 0)
        _why_unconfined = f"cannot create a pid namespace for the test run: {failure}"
        return
    _wait_and_exit(child)


def _wait_and_exit(child: int) -> NoReturn:
    """Wait for the confined run; pass termination on (the run is pid 1: it ignores signals
    without a handler, so SIGTERM and SIGHUP become SIGKILL of the whole namespace)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the terminal sends it to the run as well

    def stop(signum: int, frame: object) -> None:
        os.kill(child, signal.SIGKILL)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGHUP, stop)
    while True:
        try:
            _, status = os.waitpid(child, 0)
            break
        except InterruptedError:
            continue
    code = os.waitstatus_to_exitcode(status)
    os._exit(code if code >= 0 else 128 - code)


def _create_namespaces_and_run(report: int) -> NoReturn:  # pragma: no cover - child
    """In a fresh (single-threaded) child: unshare, fork the run's pid 1, wait for it."""
    try:
        prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
        uid, gid = os.getuid(), os.getgid()
        if uid == 0:
            unshare(CLONE_NEWPID | CLONE_NEWNS)
        else:
            unshare(CLONE_NEWUSER | CLONE_NEWPID | CLONE_NEWNS)
            _write("/proc/self/setgroups", "deny")
            _write("/proc/self/uid_map", f"{uid} {uid} 1")
            _write("/proc/self/gid_map", f"{gid} {gid} 1")
        run = os.fork()
    except OSError as exc:
        os.write(report, str(exc).encode()[:500] or b"failed")
        os._exit(1)
    if run == 0:
        try:
            prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
            mount("none", "/", None, MS_REC | MS_PRIVATE, None)
            mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, None)
        except OSError as exc:
            os.write(report, f"mounting /proc: {exc}".encode()[:500])
            os._exit(1)
        os.close(report)
        os.environ[MARKER] = "1"
        argv = [sys.executable, *sys.orig_argv[1:]]
        try:
            os.execv(sys.executable, argv)
        except OSError as exc:
            os.write(2, f"cannot re-execute the test run {argv}: {exc}\n".encode())
            os._exit(127)
    os.close(report)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _wait_and_exit(run)


def _write(path: str, text: str) -> None:
    with open(path, "w") as f:
        f.write(text)
