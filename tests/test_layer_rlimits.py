"""The rlimits layer, applied in a forked child of the test process (as in the worker)."""

from __future__ import annotations

import ctypes
import errno
import os
import signal

from policies import Policy
from sandbox.layers import LayerContext
from sandbox.layers import rlimits as layer
from tests.forking import in_child

CONTEXT = LayerContext(workdir="/tmp", read_paths=(), write_paths=())


def test_queued_signals_are_bounded() -> None:
    """Pending signals are counted per user up every user namespace: a worker under a non-root
    host queued 96,000 real-time signals and the host user's own ``sigqueue`` then failed."""

    def body() -> int:
        layer.apply(Policy(), CONTEXT)
        libc = ctypes.CDLL(None, use_errno=True)
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGRTMIN})  # they stay queued
        value = (ctypes.c_void_p * 1)()
        for queued in range(100_000):
            if libc.sigqueue(os.getpid(), int(signal.SIGRTMIN), value) != 0:
                assert ctypes.get_errno() == errno.EAGAIN
                return queued
        return queued

    assert in_child(body) <= layer.SIGPENDING
