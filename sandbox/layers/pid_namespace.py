"""pid namespace: the worker sees only its own processes and cannot signal anything else.

The launcher unshares it, so the init process it forks next is pid 1 of the new namespace. When
that init exits, the kernel kills every process left in the namespace and reaps them: killing a
worker kills everything it started, wherever it re-parented itself.
"""

from __future__ import annotations

from policies import Policy
from sandbox.layers import LayerContext, LayerError, Probe
from sandbox.layers._namespaces import probe_unshare
from sandbox.libc import CLONE_NEWPID, unshare

NAME = "pid_namespace"
STAGE = "launcher"


def probe() -> Probe:
    return probe_unshare(CLONE_NEWPID, "a pid namespace")


def apply(policy: Policy, context: LayerContext) -> str:
    try:
        unshare(CLONE_NEWPID)
    except OSError as exc:
        raise LayerError(str(exc)) from None
    return "own pid namespace; its init reaps and takes every process with it"
