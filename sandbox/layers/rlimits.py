"""Resource limits with soft = hard, so provider code can lower but never raise them.

These are per-process backstops: the host's wall deadline, the per-call CPU timer and (in a later
layer) cgroups cover the whole process tree. ``RLIMIT_CPU`` is a *lifetime* budget for the worker
(a hard limit cannot be raised again), sized so a worker serves several calls before it retires
itself; the per-call CPU limit is an ``ITIMER_PROF`` armed by the worker loop around every call.
"""

from __future__ import annotations

import os
import resource

from policies import Policy
from sandbox.layers import LayerContext, LayerError, Probe
from sandbox.procfs import tasks_of

NAME = "rlimits"
STAGE = "worker"

#: Signals the worker's tree may have queued at once. The kernel counts them per user up every
#: user namespace, so under a non-root host (a shared user) a worker queueing 96,000 real-time
#: signals made the host user's own ``sigqueue``/``timer_create`` fail; the kernel's own
#: signals (the CPU timer, a kill) are queued whatever the limit.
SIGPENDING = 128


def _count_processes_of(uid: int) -> int:
    """How many tasks ``uid`` already has: RLIMIT_NPROC counts them all (threads too), not
    just ours; counting processes only left a non-root worker less than the policy grants."""
    return tasks_of(uid)


def limits_for(policy: Policy) -> dict[int, int]:
    """The rlimits (resource -> value, soft = hard) that ``policy`` asks for."""
    uid = os.geteuid()
    # NPROC is per uid. Under a shared uid, grant the policy's processes on top of what the uid
    # already runs, or the worker could not even start; a dedicated uid makes it exact.
    nproc = policy.processes if uid == 0 else policy.processes + _count_processes_of(uid)
    return {
        resource.RLIMIT_CPU: policy.lifetime_cpu_seconds(),
        resource.RLIMIT_DATA: policy.memory,
        resource.RLIMIT_NOFILE: policy.open_files,
        resource.RLIMIT_NPROC: nproc,
        resource.RLIMIT_FSIZE: policy.file_size,
        resource.RLIMIT_CORE: 0,
        resource.RLIMIT_SIGPENDING: SIGPENDING,
        resource.RLIMIT_MSGQUEUE: 0,  # POSIX message queues: bytes per user, like signals
    }


_NAMES = {
    resource.RLIMIT_CPU: "CPU",
    resource.RLIMIT_DATA: "DATA",
    resource.RLIMIT_NOFILE: "NOFILE",
    resource.RLIMIT_NPROC: "NPROC",
    resource.RLIMIT_FSIZE: "FSIZE",
    resource.RLIMIT_CORE: "CORE",
    resource.RLIMIT_SIGPENDING: "SIGPENDING",
    resource.RLIMIT_MSGQUEUE: "MSGQUEUE",
}


def probe() -> Probe:
    return Probe(True, "setrlimit(2) is available")


def apply(policy: Policy, context: LayerContext) -> str:
    applied = []
    for which, value in limits_for(policy).items():
        _soft, hard = resource.getrlimit(which)
        if hard != resource.RLIM_INFINITY and hard < value:
            value = hard  # already stricter: keep the stricter one
        try:
            resource.setrlimit(which, (value, value))
        except (OSError, ValueError) as exc:
            raise LayerError(f"setrlimit {_NAMES[which]}={value}: {exc}") from None
        applied.append(f"{_NAMES[which]}={value}")
    if os.geteuid() == 0 and context.uid is None:
        applied.append("(NPROC is not enforced by the kernel for root)")
    return " ".join(applied)
