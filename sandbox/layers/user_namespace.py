"""User namespace: lets an unprivileged host create the other namespaces.

When the host is root it is not needed (root creates namespaces directly and the worker drops to
a dedicated uid instead, see ``uid_drop``). When the host is not root, the launcher enters a new
user namespace that maps only the host's own uid and gid, so the worker holds no privilege
outside it; ``uid_drop`` then removes the capabilities it holds inside.
"""

from __future__ import annotations

import os

from policies import Policy
from sandbox.layers import LayerContext, LayerError, Probe
from sandbox.layers._namespaces import probe_unshare
from sandbox.libc import CLONE_NEWUSER, unshare

NAME = "user_namespace"
STAGE = "launcher"


def probe() -> Probe:
    if os.geteuid() == 0:
        return Probe(True, "not needed: the host is root (the worker drops to its own uid)")
    return probe_unshare(0, "a user namespace")


def apply(policy: Policy, context: LayerContext) -> str:
    if os.geteuid() == 0:
        raise LayerError("not needed: the host is root; the worker drops to a dedicated uid")
    uid, gid = os.getuid(), os.getgid()
    try:
        unshare(CLONE_NEWUSER)
        with open("/proc/self/setgroups", "w") as f:
            f.write("deny")
        with open("/proc/self/uid_map", "w") as f:
            f.write(f"{uid} {uid} 1")
        with open("/proc/self/gid_map", "w") as f:
            f.write(f"{gid} {gid} 1")
    except OSError as exc:
        raise LayerError(str(exc)) from None
    return f"maps only uid {uid} and gid {gid}"
