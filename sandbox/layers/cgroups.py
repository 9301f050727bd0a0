"""cgroups: memory (with swap), pids and CPU limits on the worker's whole process tree.

The trusted host creates the cgroup and moves the launcher into it before the launcher runs
anything (see ``host/cgroups.py``); here the worker checks that it really is a member, so the
HELLO report says what holds rather than what was intended.
"""

from __future__ import annotations

import os

from policies import Policy
from sandbox.layers import LayerContext, LayerError, Probe

NAME = "cgroups"
STAGE = "worker"


def probe() -> Probe:
    if os.path.exists("/sys/fs/cgroup/cgroup.controllers"):
        return Probe(True, "cgroup v2 (usable where the host's cgroup is delegated)", "v2")
    if os.path.isdir("/sys/fs/cgroup/memory"):
        return Probe(True, "cgroup v1 (usable when the host is root)", "v1")
    return Probe(False, "no cgroup filesystem at /sys/fs/cgroup")


def apply(policy: Policy, context: LayerContext) -> str:
    if not context.cgroup:
        raise LayerError(context.cgroup_error or "the host created no cgroup for this worker")
    try:
        with open("/proc/self/cgroup") as f:
            lines = {line.strip() for line in f}
    except OSError as exc:
        raise LayerError(f"cannot read /proc/self/cgroup: {exc.strerror}") from None
    membership = {line.split(":", 1)[1] for line in lines if ":" in line}
    missing = [m for m in context.cgroup if m not in membership]
    if missing:
        raise LayerError(f"not a member of {', '.join(missing)}")
    return (
        f"memory {policy.memory // (1024 * 1024)}MiB incl. swap, pids, CPU quota "
        f"for the whole tree ({len(context.cgroup)} hierarchies)"
    )
