"""The host measures and enforces CPU and memory itself, from the worker tree's cgroup.

The provider ``usage_liar`` patches the worker runtime's usage report to claim nothing and
escapes the worker's own CPU timer (a forked child, a disarmed timer, threads, a thread left
spinning after the result). These tests need cgroups (root on v1, a delegated v2 subtree).
"""

from __future__ import annotations

import statistics
import time

import pytest

from host import CpuExceeded, Host
from host.cgroups import probe
from policies import Policy
from tests.conftest import provider_file

LIAR = provider_file("usage_liar.py")
MiB = 1024 * 1024

pytestmark = pytest.mark.skipif(
    probe().version == 0, reason="needs cgroups: the host measures the tree there"
)


def _liar(host: Host, **policy: object) -> None:
    settings: dict[str, object] = {"wall_time": 30, "cpu_time": 1, "memory": "512MiB"}
    settings.update(policy)
    host.add_provider(LIAR, policy=Policy(**settings))  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("action", "payload"),
    [
        ("fork_spin", {"seconds": 3}),
        ("disarmed_spin", {"seconds": 3}),
        ("threads_spin", {"seconds": 3, "threads": 2}),
    ],
)
def test_cpu_time_is_enforced_for_the_whole_tree(host: Host, action: str, payload: dict) -> None:
    _liar(host)
    outcome = host.run(f"usage_liar.{action}", payload)
    assert not outcome.ok, f"{action} used 3s of CPU under cpu_time=1s and ended ok"
    assert isinstance(outcome.error, CpuExceeded), outcome.error
    assert outcome.usage.source == "cgroup"
    # Killed near the limit, not after the whole spin (bounds generous for a loaded machine).
    assert 0.9 <= outcome.usage.cpu_s < 1 + 1.0, outcome.usage
    assert host.call("usage_liar.token") != ""  # a fresh worker serves the provider


def test_usage_is_the_hosts_measurement_not_the_workers_claim(host: Host) -> None:
    _liar(host, cpu_time=10)
    outcome = host.run("usage_liar.burn_and_hold", {"seconds": 1.5, "mebibytes": 150})
    assert outcome.ok, outcome.error
    assert outcome.usage.worker_reported == (0.0, 0), "the patched runtime claims nothing"
    assert outcome.usage.source == "cgroup"
    assert outcome.usage.cpu_s >= 1.0, outcome.usage
    assert outcome.usage.max_rss_bytes >= 100 * MiB, outcome.usage
    quiet = host.run("usage_liar.token")
    assert quiet.ok
    assert quiet.usage.cpu_s < outcome.usage.cpu_s  # per call: the earlier burn is not in it


def test_memory_growth_recycles_on_measured_peaks(host: Host) -> None:
    _liar(host, cpu_time=10, workers={"min": 0, "max": 1}, max_memory_growth="32MiB")
    first = host.call("usage_liar.token")
    assert host.call("usage_liar.token") == first
    assert host.call("usage_liar.burn_and_hold", {"seconds": 0, "mebibytes": 150}) > 0
    assert host.call("usage_liar.token") != first, (
        "the worker's peak grew by 150MiB (> 32MiB) though it reported 0: it must be replaced"
    )
    assert host.stats()["usage_liar"]["recycled"] == 1


def test_spinning_left_behind_after_the_result_is_stopped(host: Host) -> None:
    """A thread and three children spin 30 s each once the result is sent: no call is
    running, so the worker's timer is off, and each process has its own RLIMIT_CPU (6 s at
    cpu_time=1s: 24 s of CPU in all). The host's idle check stops the tree after about one
    ``cpu_time``; the bound below is far under what the rlimits alone allow."""
    _liar(host, workers={"min": 0, "max": 1})
    first = host.call("usage_liar.spin_after_result", {"seconds": 30, "children": 3})
    deadline = time.monotonic() + 12
    replaced = False
    while time.monotonic() < deadline and not replaced:
        time.sleep(0.5)
        replaced = host.call("usage_liar.token") != first
    assert replaced, "a worker spinning between calls (30s, cpu_time=1s) was left running"


def _spin_credit_s(host: Host, provider: str = "usage_liar") -> float:
    (worker,) = host._reactor.providers[provider].workers
    assert worker.meter is not None
    return worker.meter.spin_credit_s


def test_a_worker_polling_for_its_next_call_is_not_taken_for_a_spinner(host: Host) -> None:
    """Between calls that follow each other, an honest worker polls for the next one instead
    of blocking (``sandbox.wire``): CPU outside any call. Here that poll adds up to more than
    the 1 s ``cpu_time`` that bounds CPU outside calls; the host credits it (the tree holds
    only the sandbox's own tasks), so the worker serves on."""
    host.add_provider("providers.examples.text", policy=Policy(cpu_time=1, workers={"max": 1}))
    host.call("text.echo", {"value": "warm"})
    (worker,) = host._reactor.providers["text"].workers
    deadline = time.monotonic() + 60
    while _spin_credit_s(host, "text") < 1.5 and time.monotonic() < deadline:
        assert host.call("text.echo", {"value": "x"}) == "x"
    assert _spin_credit_s(host, "text") >= 1.5, f"{_spin_credit_s(host, 'text'):.2f}s in 60s"
    assert worker.meter is not None
    used = worker.meter.outside_calls_s()
    assert used is not None and used > 1.5, used  # (so it would have been killed uncredited)
    assert host._reactor.providers["text"].workers == [worker]
    assert host.stats()["text"]["restarts"] == 0


def test_the_poll_credit_cannot_be_saved_up(host: Host) -> None:
    """A review's bank: calls 2 ms apart (past the worker's 1.5 ms poll, so it blocks) earned
    a credit per gap all the same, 8 s in 20 s, which children left spinning then spent. The
    credit is never more than the tree used in each gap."""
    _liar(host, workers={"min": 0, "max": 1})
    first = host.call("usage_liar.token")
    deadline = time.monotonic() + 3
    while time.monotonic() < deadline:
        host.call("usage_liar.token")
        time.sleep(0.002)
    (worker,) = host._reactor.providers["usage_liar"].workers
    assert worker.meter is not None
    used = worker.meter.outside_calls_s()
    assert used is not None and _spin_credit_s(host) <= used + 1e-3, (_spin_credit_s(host), used)
    host.call("usage_liar.spin_after_result", {"seconds": 30, "children": 2})
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline and host.call("usage_liar.token") == first:
        pass
    assert host.call("usage_liar.token") != first, "children spinning after the bank ran on"


@pytest.mark.parametrize("children", [0, 3])
def test_spinning_left_behind_is_stopped_while_calls_come_back_to_back(
    host: Host, children: int
) -> None:
    """The same spinners as above, but with calls following each other all along: the gaps
    are within the worker's own poll for its next call, which the host credits only while the
    tree holds no task but the sandbox's own; a thread or child left behind is not."""
    _liar(host, workers={"min": 0, "max": 1})
    first = host.call("usage_liar.spin_after_result", {"seconds": 30, "children": children})
    deadline = time.monotonic() + 15
    replaced = False
    while time.monotonic() < deadline and not replaced:
        replaced = host.call("usage_liar.token") != first
    assert replaced, "a worker spinning between back-to-back calls (cpu_time=1s) ran on"


@pytest.mark.serial  # bounds a latency: alone, with --shards
def test_host_side_cpu_overshoot_is_small(host: Host) -> None:
    """With the worker's own timer disarmed only the host stops the spin; its overshoot over
    ``cpu_time`` is bounded generously here (the figure is in the report, not asserted tight)."""
    _liar(host)
    overshoot = []
    for _ in range(5):
        outcome = host.run("usage_liar.disarmed_spin", {"seconds": 5})
        assert isinstance(outcome.error, CpuExceeded), outcome.error
        overshoot.append(outcome.usage.cpu_s - 1)
    assert statistics.median(overshoot) < 0.5, overshoot


def test_without_a_cgroup_usage_is_marked_as_the_workers_claim(host: Host) -> None:
    """Skipping cgroups loses the host's measurement: the outcome and the layer report say so."""
    host.add_provider(LIAR, policy=Policy(skip=["cgroups"], allow_missing=True, cpu_time=10))
    outcome = host.run("usage_liar.burn_and_hold", {"seconds": 0.2, "mebibytes": 16})
    assert outcome.ok, outcome.error
    assert outcome.usage.source == "worker"  # (the liar's own 0 s / 0 bytes, labelled as such)
    assert outcome.usage.cpu_s == 0.0
    (info,) = host.providers()
    (row,) = [r for r in info.layers if r["name"] == "cgroups"]
    assert not row["applied"]
    assert any("cpu_time enforced only inside the worker" in lost for lost in row["lost"])


def test_doctor_says_what_is_lost_without_cgroups() -> None:
    from host.cgroups import CgroupSupport
    from host.usage import lost_guarantees

    assert lost_guarantees(probe()) == ()  # here (this test module needs cgroups)
    lost = lost_guarantees(CgroupSupport(0, "none"))
    assert any("reported by the worker" in text for text in lost)
    assert any("memory bounded per process" in text for text in lost)  # not the tree's
