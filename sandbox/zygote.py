"""The zygote: a pre-started, single-threaded process from which launchers are forked.

A fresh launcher (``python -I -S`` running ``sandbox``, see ``host.interpreter``) spends most of
its start-up creating an interpreter and importing the worker runtime. The zygote pays that once:
the host starts it the same way with the arguments ``zygote <control fd> <host pid>``, it
imports the runtime (this package, the policy model, the provider SDK) and
then forks a new launcher whenever the host asks. The forked child runs exactly the code of a
fresh launcher (``sandbox.supervisor.main``): same layers, same order, confinement before any
provider import.

What the zygote never does, and why:

- It never creates a ZeroMQ context and never starts a thread: ``fork`` copies only the calling
  thread, so a forked child of a threaded process can inherit locks held by threads that no
  longer exist. It checks ``/proc/self/task`` before serving and refuses to serve otherwise.
- It never imports provider code: a provider's top-level code is untrusted and would then sit,
  unconfined, in every later worker.
- It never sees a worker's secrets. A fork request carries nothing but file descriptors
  (``SCM_RIGHTS``): the read end of the spec pipe (the child's stdin), the stdout and stderr log
  pipes and the write end of the status pipe. The host writes the child's environment, working
  directory and spawn spec (with its one-time token) into the child's own stdin, so none of it
  ever passes through the zygote's memory, which every later child inherits.

Control socket (``SOCK_SEQPACKET``: one message per datagram, descriptors attached)::

    host -> zygote   b"fork"  + [stdin, stdout, stderr, status]
    zygote -> host   b"ready <pid>"                 once, when the runtime is imported
                     b"forked <pid>" + [pidfd]      the new launcher (pidfd when available)
                     b"failed <reason>"             no launcher was forked
                     b"exit <pid> <wait status>"    a launcher it forked was reaped

The zygote reaps its children itself (it is their parent; a ``SIGCHLD`` wakes its poll loop
through ``signal.set_wakeup_fd``) and reports each exit, so the host still learns how a launcher
ended. It is a child subreaper, so an init orphaned by a killed launcher is reaped here too.
Its life is tied to the host (parent-death signal, and end of file on the control socket); the
launchers it forks tie theirs to it, and the host passes the zygote's pid as their expected
parent. What a fork cannot renew - the hash seed and the address-space layout are those of the
zygote - is documented in the README (Security); the host replaces a zygote after a number of
forks to bound how many workers share them.
"""

from __future__ import annotations

import fcntl
import gc
import os
import resource
import select
import signal
import socket
import sys
import traceback
from typing import NoReturn

from sandbox import protocol
from sandbox.libc import PR_SET_CHILD_SUBREAPER, PR_SET_PDEATHSIG, prctl

#: Descriptors of one fork request, in this order; they become the child's 0, 1, 2 and 3.
REQUEST_FDS = 4
#: Where the status pipe's write end lives in a forked launcher (the spec names it).
STATUS_FD = protocol.ZYGOTE_STATUS_FD
#: Exit code when the zygote cannot start, or a forked child cannot become a launcher.
EXIT_ZYGOTE_FAILED = 121


def _preload() -> None:
    """Import what every launcher, init and worker imports, and nothing of any provider."""
    import importlib.machinery  # the worker's provider lookup
    import importlib.util  # noqa: F401

    import policies.paths
    import providers  # (the SDK: our code, imported before confinement anyway)
    import providers.integers  # noqa: F401  (the worker's; compiled per spawn without a .pyc)
    import sandbox.supervisor
    import sandbox.worker  # noqa: F401
    from sandbox import layers
    from sandbox.layers import seccomp

    policies.paths.preload()  # the user database, read through NSS once, not per launcher
    for module in layers._modules():
        prepare = getattr(module, "prepare_stage", None)
        if prepare is not None:
            prepare()  # load shared libraries (libseccomp) once, here
    seccomp.prebuild()  # the filters every worker loads, built once


def _threads() -> int:
    try:
        return len(os.listdir("/proc/self/task"))
    except OSError:
        return 1


def _send(control: socket.socket, message: bytes, fds: list[int] | None = None) -> None:
    if fds:
        socket.send_fds(control, [message], fds)
    else:
        control.send(message)


def _read_exact(fd: int, size: int) -> bytes:
    data = bytearray()
    while len(data) < size:
        chunk = os.read(fd, size - len(data))
        if not chunk:
            raise EOFError("stdin closed before the preamble was complete")
        data += chunk
    return bytes(data)


def read_preamble(fd: int = 0) -> tuple[dict[str, str], str]:
    """The environment and working directory the host wrote ahead of the spawn spec.

    Read with ``os.read`` straight from the descriptor, so ``sys.stdin``'s buffer is still empty
    and the launcher then reads the spec from it exactly as a fresh one does.
    """
    prefix = _read_exact(fd, 4)
    return protocol.decode_preamble(_read_exact(fd, protocol.preamble_size(prefix)))


def _become_launcher(fds: list[int], control: socket.socket, wake: tuple[int, int]) -> NoReturn:
    """In the forked child: shed everything of the zygote, then run a fresh launcher's code."""
    code = EXIT_ZYGOTE_FAILED
    try:
        signal.set_wakeup_fd(-1)
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        prctl(PR_SET_CHILD_SUBREAPER, 0)  # not inherited by fork, but say so explicitly
        os.setsid()  # a session of its own, as start_new_session=True gives a fresh one
        control.detach()  # the object must not close a reused descriptor number later
        # Move the received descriptors out of the way, then onto 0..3 (inheritable, as a
        # fresh launcher's are), and close every other descriptor: the control socket, the
        # wake-up pipe and anything the runtime's imports opened.
        base = max([*fds, *wake, STATUS_FD]) + 1
        high = [fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, base) for fd in fds]
        for target, fd in enumerate(high):
            os.dup2(fd, target)
        os.closerange(STATUS_FD + 1, resource.getrlimit(resource.RLIMIT_NOFILE)[0])
        env, cwd = read_preamble(0)
        os.environ.clear()
        os.environ.update(env)
        os.chdir(cwd)
        del sys.argv[1:]  # a fresh launcher has no arguments (ours named the control socket)
        from sandbox.supervisor import main

        main()  # never returns
    except BaseException:
        traceback.print_exc()
        sys.stderr.flush()
    os._exit(code)


class _Zygote:
    """The zygote's loop: fork on request, reap and report, exit at end of file."""

    def __init__(self, control: socket.socket) -> None:
        self.control = control
        self.children: set[int] = set()
        self.wake = os.pipe()
        for fd in self.wake:
            os.set_blocking(fd, False)
            os.set_inheritable(fd, False)
        signal.set_wakeup_fd(self.wake[1], warn_on_full_buffer=False)
        signal.signal(signal.SIGCHLD, lambda signum, frame: None)

    def serve(self) -> NoReturn:
        _send(self.control, b"ready %d" % os.getpid())
        poller = select.poll()
        poller.register(self.control.fileno(), select.POLLIN)
        poller.register(self.wake[0], select.POLLIN)
        draining = False
        while True:
            for fd, _ in poller.poll():
                if fd == self.wake[0]:
                    self._drain_wake()
                    self._reap()
                elif not draining and not self._on_request():
                    # End of file: the host is closing, or replaced us. Fork nothing more and
                    # exit once the launchers we forked have ended (their exit notes still go
                    # out: the host shut only its writing side).
                    draining = True
                    poller.unregister(self.control.fileno())
            if draining and not self.children:
                self._reap()
                os._exit(0)

    def _drain_wake(self) -> None:
        try:
            while os.read(self.wake[0], 512):
                pass
        except BlockingIOError:
            pass

    def _reap(self) -> None:
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            if pid in self.children:  # else an orphaned init we adopted as subreaper
                self.children.discard(pid)
                try:
                    _send(self.control, b"exit %d %d" % (pid, status))
                except OSError:
                    self._shutdown()

    def _on_request(self) -> bool:
        """Handle one request; False at end of file (the host closed or died)."""
        try:
            message, fds, flags, _ = socket.recv_fds(self.control, 64, REQUEST_FDS + 1)
        except OSError:
            return False
        if not message and not fds:
            return False
        if message != b"fork" or len(fds) != REQUEST_FDS or flags & socket.MSG_CTRUNC:
            for fd in fds:
                os.close(fd)
            _send(self.control, b"failed malformed request")
            return True
        self._fork(fds)
        return True

    def _fork(self, fds: list[int]) -> None:
        sys.stdout.flush()
        sys.stderr.flush()
        try:
            pid = os.fork()
        except OSError as exc:
            for fd in fds:
                os.close(fd)
            _send(self.control, b"failed fork: " + str(exc).encode()[:200])
            return
        if pid == 0:
            _become_launcher(fds, self.control, self.wake)
        for fd in fds:
            os.close(fd)
        self.children.add(pid)
        pidfd: int | None = None
        try:  # our child, and only we reap it: the pid cannot have been reused yet
            pidfd = os.pidfd_open(pid)
        except (OSError, AttributeError):
            pass
        try:
            _send(self.control, b"forked %d" % pid, [pidfd] if pidfd is not None else None)
        finally:
            if pidfd is not None:
                os.close(pidfd)

    def _shutdown(self) -> NoReturn:
        """The host is gone or closing: end every launcher (they end their trees), reap, exit."""
        for pid in list(self.children):
            try:
                os.kill(pid, signal.SIGTERM)  # the launcher passes it on to its init
            except ProcessLookupError:
                pass
        signal.alarm(5)  # a launcher that does not end in time: SIGALRM ends us, PDEATHSIG it
        while True:
            try:
                os.waitpid(-1, 0)
            except ChildProcessError:
                break
        os._exit(0)


def main(argv: list[str]) -> NoReturn:
    """``sandbox zygote <control fd> <host pid>`` (``host.zygote`` starts it); never returns."""
    try:
        control_fd, host_pid = int(argv[0]), int(argv[1])
    except (IndexError, ValueError):
        print("usage: python -I -m sandbox zygote <control fd> <host pid>", file=sys.stderr)
        os._exit(EXIT_ZYGOTE_FAILED)
    prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != host_pid:
        os._exit(EXIT_ZYGOTE_FAILED)  # the host died before we could tie our life to it
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    prctl(PR_SET_CHILD_SUBREAPER, 1)
    control = socket.socket(fileno=control_fd)
    os.set_inheritable(control_fd, False)
    try:
        _preload()
    except Exception as exc:
        _send(control, b"failed cannot import the runtime: " + repr(exc).encode()[:300])
        os._exit(EXIT_ZYGOTE_FAILED)
    threads = _threads()
    if threads != 1:
        _send(control, b"failed the zygote has %d threads; it forks only single-threaded" % threads)
        os._exit(EXIT_ZYGOTE_FAILED)
    # Objects imported so far are never collected: keep the collector from touching (and so
    # copying) their pages in every child.
    gc.freeze()
    _Zygote(control).serve()
