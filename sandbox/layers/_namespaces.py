"""What the namespace layers share: probing whether ``unshare`` of a kind works here.

A probe forks a throw-away child that tries the ``unshare`` and reports back, so probing never
changes the calling process (``sandbox doctor`` and the host call probes).
"""

from __future__ import annotations

import os
import signal

from sandbox.layers import Probe
from sandbox.libc import CLONE_NEWUSER, unshare


def userns_possible() -> tuple[bool, str]:
    """Whether an unprivileged user namespace can be created (only needed when not root)."""
    try:
        with open("/proc/sys/user/max_user_namespaces") as f:
            if int(f.read()) == 0:
                return False, "user namespaces are disabled (user.max_user_namespaces = 0)"
    except (OSError, ValueError):
        pass
    try:
        with open("/proc/sys/kernel/unprivileged_userns_clone") as f:
            if f.read().strip() == "0" and os.geteuid() != 0:
                return False, "kernel.unprivileged_userns_clone = 0"
    except OSError:
        pass
    return True, ""


#: What a probe's child blocks (its parent handles them).
_STOP_SIGNALS = {signal.SIGINT, signal.SIGTERM, signal.SIGHUP}


def probe_unshare(flags: int, what: str) -> Probe:
    """Try ``unshare(flags)`` (with a user namespace first when not root) in a child."""
    if not os.path.exists("/proc/self/ns"):
        return Probe(False, "no namespaces on this system")
    if os.geteuid() != 0:
        ok, why = userns_possible()
        if not ok:
            return Probe(False, f"{what} needs a user namespace when not root: {why}")
        flags |= CLONE_NEWUSER
    read, write = os.pipe()
    # The child has the parent's stack and signal handlers: a Ctrl-C sent to the process group
    # (``sandbox doctor``'s) raised in both, and printed "interrupted" twice, a traceback, or
    # "Exception ignored" from an at-fork hook it landed in. The stop signals are blocked
    # across the fork (the child keeps them blocked and only ever exits); the parent's
    # handlers run once its mask is back, where whatever they raise still reaps the child.
    blocked = signal.pthread_sigmask(signal.SIG_BLOCK, _STOP_SIGNALS)
    pid = -1
    try:
        pid = os.fork()
        if pid == 0:  # pragma: no cover - runs in the child
            try:
                os.close(read)
                message = b"ok"
                try:
                    unshare(flags)
                except OSError as exc:
                    message = str(exc).encode()[:500]
                os.write(write, message)
            finally:
                os._exit(0)
        os.close(write)
        write = -1
        signal.pthread_sigmask(signal.SIG_SETMASK, blocked)  # (a pending Ctrl-C raises here)
        chunks = []
        while chunk := os.read(read, 4096):
            chunks.append(chunk)
        answer = b"".join(chunks).decode()
    finally:
        if pid != 0:  # (the parent, also when the fork failed)
            # Reaped with the stop signals blocked: a Ctrl-C landing in the wait raised out of
            # it and left the child a zombie for whoever inherits it (the leak check's run
            # saw it for seconds); a pending one raises once the child is reaped.
            signal.pthread_sigmask(signal.SIG_BLOCK, _STOP_SIGNALS)
            try:
                for fd in (read, write):
                    if fd >= 0:
                        os.close(fd)
                if pid > 0:
                    os.waitpid(pid, 0)  # (the child exits at once, whatever happened here)
            finally:
                signal.pthread_sigmask(signal.SIG_SETMASK, blocked)
    if answer == "ok":
        return Probe(True, f"{what} can be created")
    return Probe(False, answer)
