"""A provider that tries to hand the host a file descriptor over its own wire (``SCM_RIGHTS``):
whoever reads past a passed descriptor closes it, and the last close of a lingering TCP socket
blocks that thread for as long as the sender chose. The host must refuse or discard them."""

from __future__ import annotations

import os
import socket

from providers import Provider

provider = Provider("fd_passer")


def _wire() -> socket.socket:
    """The worker's connection to the host: its one connected Unix stream socket."""
    for fd in range(3, 256):  # (the worker may not list /proc/self/fd)
        try:
            sock = socket.socket(fileno=fd)
        except OSError:
            continue
        try:
            if sock.family == socket.AF_UNIX and sock.type == socket.SOCK_STREAM:
                sock.getpeername()
                return socket.socket(fileno=os.dup(fd))
        except OSError:
            pass
        finally:
            sock.detach()
    raise RuntimeError("no connected Unix socket found")


@provider.action
def pass_pipe() -> str:
    """Send one byte with a pipe's read end attached; say what the kernel answered."""
    read_end, write_end = os.pipe()
    wire = _wire()
    try:
        socket.send_fds(wire, [b"\0"], [read_end])
    except OSError as exc:
        return f"refused: {os.strerror(exc.errno or 0)}"
    finally:
        wire.close()
        os.close(read_end)
        os.close(write_end)
    return "sent"
