"""A call whose child the kernel OOM-kills while the call itself ends ok, and crashes for the
calls after it (tests/test_outcomes.py): the OOM kill belongs to the first call only."""

from __future__ import annotations

import os
import time

from providers import Provider

provider = Provider("oom_child", version="1.0")


@provider.action
def children_over_the_limit(children: int = 2, mib: int = 180) -> list[int]:
    """Fork children that together use more than the worker's memory limit (each below the
    address-space limit); the kernel kills one. Returns how each ended (a signal number, or
    minus its exit code)."""
    pids = []
    for _ in range(min(children, 4)):
        pid = os.fork()
        if pid == 0:
            try:
                block = bytearray(min(mib, 512) * 1024 * 1024)
                for i in range(0, len(block), 4096):
                    block[i] = 1
                time.sleep(1)
            finally:
                os._exit(0)
        pids.append(pid)
    ends = []
    for pid in pids:
        _, status = os.waitpid(pid, 0)
        ends.append(os.WTERMSIG(status) if os.WIFSIGNALED(status) else -os.WEXITSTATUS(status))
    return ends


@provider.action
def crash(code: int = 7) -> int:
    os._exit(code)


@provider.action(safe_rerun=True)
def crash_again(code: int = 7) -> int:
    os._exit(code)
