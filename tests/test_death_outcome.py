"""The rules that name a worker's death during a call (``host.deaths``), one by one.

The hostile workers of ``test_outcomes.py``, ``test_deaths.py`` and the escape suite die for
real; these tests pin the decision itself, including the order of its rules, on facts no real
death produces on demand (a report that says SIGKILL at the lifetime CPU limit, an OOM kill
counted alongside a CPU signal).
"""

from __future__ import annotations

import signal

from hypothesis import given
from hypothesis import strategies as st

from host.deaths import death_outcome, death_usage
from host.errors import (
    CpuExceeded,
    MemoryExceeded,
    ProtocolViolation,
    Usage,
    WorkerCrashed,
)
from host.process import ExitStatus
from policies import Policy

POLICY = Policy(cpu_time=2, memory="256MiB")
MEASURED = Usage(0.0, 0.5, 10 << 20, "cgroup")


def _judge(
    status: ExitStatus,
    usage: Usage = MEASURED,
    *,
    disconnected: bool = False,
    new_oom_kill: bool = False,
) -> object:
    return death_outcome(
        status, usage, POLICY, disconnected=disconnected, new_oom_kill=new_oom_kill
    )


def test_a_plain_crash_keeps_its_exit_code_and_signal() -> None:
    crashed = _judge(ExitStatus(exit_code=3))
    assert isinstance(crashed, WorkerCrashed)
    assert crashed.details["exit_code"] == 3 and "exit code 3" in crashed.message
    segfault = _judge(ExitStatus(signal=signal.SIGSEGV))
    assert isinstance(segfault, WorkerCrashed)
    assert segfault.details["signal"] == signal.SIGSEGV and "SIGSEGV" in segfault.message


def test_cpu_limit_signals_and_the_hosts_measurement_are_cpu_exceeded() -> None:
    for sig in (signal.SIGXCPU, signal.SIGPROF):
        assert isinstance(_judge(ExitStatus(signal=sig)), CpuExceeded)
    at_rlimit = ExitStatus(signal=signal.SIGKILL, cpu_s=POLICY.lifetime_cpu_seconds())
    assert isinstance(_judge(at_rlimit), CpuExceeded)
    over = Usage(0.0, POLICY.cpu_time + 0.1, 0, "cgroup")
    assert isinstance(_judge(ExitStatus(exit_code=1), over), CpuExceeded)


def test_the_workers_own_cpu_figure_alone_never_makes_cpu_exceeded() -> None:
    """Past ``cpu_time`` by the init's count, but not measured by the host: the worker's
    figures are shown, never used to decide (a provider can make them up)."""
    claimed = Usage(0.0, POLICY.cpu_time * 10, 0, "worker")
    assert isinstance(_judge(ExitStatus(exit_code=1), claimed), WorkerCrashed)


def test_memory_is_an_oom_kill_counted_or_a_sigkill_at_the_limit() -> None:
    assert isinstance(_judge(ExitStatus(signal=signal.SIGKILL), new_oom_kill=True), MemoryExceeded)
    at_limit = ExitStatus(signal=signal.SIGKILL, max_rss_bytes=POLICY.memory)
    assert isinstance(_judge(at_limit), MemoryExceeded)
    below = ExitStatus(signal=signal.SIGKILL, max_rss_bytes=POLICY.memory - 1)
    assert isinstance(_judge(below), WorkerCrashed)


def test_a_worker_that_hung_up_and_lived_on_is_a_violation_whatever_it_died_of() -> None:
    killed = ExitStatus(signal=signal.SIGKILL, terminated=True, max_rss_bytes=POLICY.memory)
    assert isinstance(_judge(killed, disconnected=True, new_oom_kill=True), ProtocolViolation)
    assert isinstance(_judge(ExitStatus(unreported=True), disconnected=True), ProtocolViolation)
    # It hung up as it died by itself (the init reported, the host did not kill it): a crash.
    assert isinstance(_judge(ExitStatus(exit_code=1), disconnected=True), WorkerCrashed)


def test_death_usage_prefers_the_hosts_measurement() -> None:
    status = ExitStatus(exit_code=1, cpu_s=3.0, max_rss_bytes=5)
    assert death_usage(MEASURED, status, 1.0) is MEASURED
    own = death_usage(Usage(), status, 1.0)
    assert (own.cpu_s, own.max_rss_bytes, own.source) == (2.0, 5, "worker")
    assert death_usage(Usage(), status, 9.0).cpu_s == 0.0  # (never negative)


@given(
    sig=st.sampled_from([None, signal.SIGKILL, signal.SIGSEGV, signal.SIGXCPU, signal.SIGPROF]),
    exit_code=st.sampled_from([None, 0, 1, 137]),
    terminated=st.booleans(),
    unreported=st.booleans(),
    cpu_s=st.floats(0, 100),
    rss=st.integers(0, 2 * POLICY.memory),
    measured_cpu=st.one_of(st.none(), st.floats(0, 10)),
    disconnected=st.booleans(),
    new_oom_kill=st.booleans(),
)
def test_the_rules_apply_in_their_order(
    sig: int | None,
    exit_code: int | None,
    terminated: bool,
    unreported: bool,
    cpu_s: float,
    rss: int,
    measured_cpu: float | None,
    disconnected: bool,
    new_oom_kill: bool,
) -> None:
    status = ExitStatus(
        exit_code=exit_code, signal=sig, terminated=terminated, cpu_s=cpu_s,
        max_rss_bytes=rss, unreported=unreported,
    )
    usage = Usage(0.0, measured_cpu, 0, "cgroup") if measured_cpu is not None else Usage()
    error = _judge(status, usage, disconnected=disconnected, new_oom_kill=new_oom_kill)
    hung_up = disconnected and ((terminated and sig == signal.SIGKILL) or unreported)
    cpu = (
        sig in (signal.SIGXCPU, signal.SIGPROF)
        or (sig == signal.SIGKILL and cpu_s >= POLICY.lifetime_cpu_seconds() - 0.5)
        or (measured_cpu is not None and measured_cpu > POLICY.cpu_time)
    )
    memory = new_oom_kill or (sig == signal.SIGKILL and rss >= POLICY.memory)
    expected = (
        ProtocolViolation if hung_up
        else CpuExceeded if cpu
        else MemoryExceeded if memory
        else WorkerCrashed
    )  # fmt: skip
    assert type(error) is expected
    assert error.usage is usage
