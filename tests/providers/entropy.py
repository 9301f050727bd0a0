"""What a worker got at start: its randomness, pids and descriptors (zygote isolation tests)."""

from __future__ import annotations

import os
import random

from providers import Provider

provider = Provider("entropy", version="1.0")


@provider.action
def state() -> dict[str, object]:
    """Fresh randomness from ``random`` (re-seeded after fork) and the kernel, and who we are."""
    return {
        "random": random.getrandbits(64),
        "urandom": os.urandom(16).hex(),
        "pid": os.getpid(),
        "env": dict(os.environ),
        "cwd": os.getcwd(),
    }


@provider.action
def inet_socket() -> str:
    """Whether this worker may make an AF_INET socket: "made", or the error's name."""
    import errno
    import socket

    try:
        socket.socket(socket.AF_INET, socket.SOCK_STREAM).close()
    except OSError as exc:
        return errno.errorcode.get(exc.errno or 0, str(exc))
    return "made"
