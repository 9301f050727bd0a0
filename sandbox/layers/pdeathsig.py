"""Parent-death signal: the worker dies with SIGKILL the moment its supervisor does.

Without it, a host that crashes leaves workers running forever (the StackStorm failure). The
supervisor sets it relative to the host too; this layer covers the worker process itself.
"""

from __future__ import annotations

import os
import signal
import sys

from policies import Policy
from sandbox.layers import LayerContext, LayerError, Probe
from sandbox.libc import PR_SET_PDEATHSIG, prctl

NAME = "pdeathsig"
STAGE = "worker"


def probe() -> Probe:
    if not sys.platform.startswith("linux"):
        return Probe(False, "prctl(PR_SET_PDEATHSIG) is Linux-only")
    return Probe(True, "prctl(PR_SET_PDEATHSIG) is available")


def apply(policy: Policy, context: LayerContext) -> str:
    expected_parent = os.getppid()
    try:
        prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    except OSError as exc:
        raise LayerError(str(exc)) from None
    # The parent may have died between fork and prctl; then the signal never comes. (Under a
    # pid namespace the parent is the namespace's init, pid 1, whose death ends us anyway.)
    if os.getppid() != expected_parent:
        raise LayerError("the supervisor died before the parent-death signal was set")
    return "SIGKILL when the supervisor exits"
