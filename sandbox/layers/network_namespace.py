"""Network namespace: with ``network = false`` the worker has only a loopback that is down.

No connection can leave it: there is no interface to send on, not even to the host's loopback.
The host's ipc endpoint is a filesystem socket, which a network namespace does not hide.
"""

from __future__ import annotations

from policies import Policy
from sandbox.layers import LayerContext, LayerError, Probe
from sandbox.layers._namespaces import probe_unshare
from sandbox.libc import CLONE_NEWNET, unshare

NAME = "network_namespace"
STAGE = "launcher"


def probe() -> Probe:
    return probe_unshare(CLONE_NEWNET, "a network namespace")


def apply(policy: Policy, context: LayerContext) -> str:
    if policy.network:
        raise LayerError("not applied: the policy allows the network")
    try:
        unshare(CLONE_NEWNET)
    except OSError as exc:
        raise LayerError(str(exc)) from None
    return "empty network namespace (loopback down)"
