"""Which typed error a call gets when its worker dies while running it.

The reactor gathers the facts - the init's exit report, the host's own measurement of the
tree, whether the worker had dropped its connection, whether the cgroup counted a new OOM
kill - and :func:`death_outcome` decides from those alone: no I/O, no clock, so each rule is
tested by itself (``tests/test_death_outcome.py``) as well as by the hostile workers of the
suite. The order of the rules matters and is the contract:

1. a worker that dropped its connection and was then killed (or whose init never reported) is
   a ``ProtocolViolation``, whatever it died of: it stopped talking and lived on;
2. CPU: a CPU-limit signal (SIGXCPU, SIGPROF), a SIGKILL at the lifetime ``RLIMIT_CPU``, or
   the host's measurement past ``cpu_time`` is ``CpuExceeded``;
3. memory: a new OOM kill in the tree's cgroup, or a SIGKILL at a peak of at least the
   ``memory`` limit, is ``MemoryExceeded``;
4. anything else is ``WorkerCrashed``, with the exit code or signal.
"""

from __future__ import annotations

import signal

from host.errors import (
    CpuExceeded,
    MemoryExceeded,
    ProtocolViolation,
    SandboxError,
    Usage,
    WorkerCrashed,
)
from host.process import ExitStatus
from policies import Policy

#: Signals the CPU limits send: the worker's own CPU timer (SIGPROF) and RLIMIT_CPU's soft
#: limit (SIGXCPU).
CPU_SIGNALS = frozenset({signal.SIGXCPU, signal.SIGPROF})
#: How close to the lifetime ``RLIMIT_CPU`` a SIGKILL's CPU must come to be taken for it (the
#: hard limit kills with SIGKILL; the init's figure is rounded to ticks).
RLIMIT_CPU_SLACK_S = 0.5


def death_usage(measured: Usage, status: ExitStatus, reported_total_s: float) -> Usage:
    """What the dead worker's call used: the host's measurement when it has one (``source``
    ``"cgroup"``); else the init's count of the worker's CPU less what the worker had
    reported before this call (``reported_total_s``), marked as the worker's."""
    if measured.source == "cgroup":
        return measured
    return Usage(
        0.0, max(0.0, status.cpu_s - reported_total_s), status.max_rss_bytes, "worker"
    )


def death_outcome(
    status: ExitStatus,
    usage: Usage,
    policy: Policy,
    *,
    disconnected: bool,
    new_oom_kill: bool,
) -> SandboxError:
    """The error of a call whose worker died running it (see the module's rules).

    ``usage``: from :func:`death_usage`; ``disconnected``: the worker had closed its
    connection before it died; ``new_oom_kill``: its cgroup counted an OOM kill since the
    last call the worker survived."""
    killed_by_host = status.terminated and status.signal == signal.SIGKILL
    if disconnected and (killed_by_host or status.unreported):
        return ProtocolViolation(
            "the worker closed its connection to the host and lived on; it was killed",
            usage=usage,
        )
    at_rlimit = status.signal == signal.SIGKILL and status.cpu_s >= (
        policy.lifetime_cpu_seconds() - RLIMIT_CPU_SLACK_S
    )
    over_budget = usage.source == "cgroup" and usage.cpu_s > policy.cpu_time
    if status.signal in CPU_SIGNALS or at_rlimit or over_budget:
        return CpuExceeded(
            f"the action used more than its CPU-time limit of {policy.cpu_time:g}s",
            usage=usage,
        )
    if new_oom_kill:
        return MemoryExceeded(
            "the worker's process tree exceeded its memory limit and was OOM-killed",
            usage=usage,
        )
    if status.signal == signal.SIGKILL and status.max_rss_bytes >= policy.memory:
        return MemoryExceeded("the worker was killed for exceeding its memory limit", usage=usage)
    return WorkerCrashed(
        f"the worker died during the call ({status.describe()})",
        usage=usage,
        exit_code=status.exit_code,
        signal=status.signal,
    )
