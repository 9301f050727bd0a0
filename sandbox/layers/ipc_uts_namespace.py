"""IPC and UTS namespaces: no System V IPC objects or POSIX queues shared with the host, and a
hostname of its own."""

from __future__ import annotations

from policies import Policy
from sandbox.layers import LayerContext, LayerError, Probe
from sandbox.layers._namespaces import probe_unshare
from sandbox.libc import CLONE_NEWIPC, CLONE_NEWUTS, sethostname, unshare

NAME = "ipc_uts_namespace"
STAGE = "launcher"


def probe() -> Probe:
    return probe_unshare(CLONE_NEWIPC | CLONE_NEWUTS, "IPC and UTS namespaces")


def apply(policy: Policy, context: LayerContext) -> str:
    try:
        unshare(CLONE_NEWIPC | CLONE_NEWUTS)
        sethostname("sandbox")
    except OSError as exc:
        raise LayerError(str(exc)) from None
    return "own IPC objects; hostname 'sandbox'"
