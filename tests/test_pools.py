"""Worker pools: scale-up under load, scale-down after idle, warm minimum, the bounded queue
(``Overloaded``), cancelling a queued call, and recycling by ``max_calls`` and memory growth.
Everything is observed through ``host.stats()`` and real worker processes."""

from __future__ import annotations

import concurrent.futures
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from host import Cancelled, Host, Overloaded
from policies import Policy
from tests.conftest import provider_file

FAULTY = provider_file("faulty.py")


def _wait_for(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out after {timeout}s waiting for {what}"
        time.sleep(0.02)


def _workers(host: Host, provider: str = "faulty") -> dict[str, int]:
    workers: dict[str, int] = host.stats()[provider]["workers"]
    return workers


@pytest.fixture
def shared_dir() -> Iterator[str]:
    """A directory every worker uid may write (outside /tmp: each worker has a private /tmp)."""
    path = tempfile.mkdtemp(prefix="sandbox-pools-", dir="/var/tmp")
    os.chmod(path, 0o777)
    yield path
    shutil.rmtree(path, ignore_errors=True)


# ---------------------------------------------------------------------- scaling


def test_scale_up_under_load_then_down_to_min_after_idle(host: Host) -> None:
    policy = Policy(workers={"min": 0, "max": 2}, idle_timeout=1.0, wall_time=10)
    host.add_provider(FAULTY, policy=policy)
    futures = [host.submit("faulty.sleep", {"seconds": 1.5}) for _ in range(5)]
    peak_live = 0
    peak_busy = 0
    while not all(f.done() for f in futures):
        workers = _workers(host)
        peak_live = max(peak_live, workers["live"])
        peak_busy = max(peak_busy, workers["busy"])
        assert workers["live"] <= 2, workers
        time.sleep(0.05)
    assert [f.result() for f in futures] == [1.5] * 5
    assert peak_busy == 2, "two workers should have served the calls in parallel"
    assert peak_live == 2
    stats = host.stats()["faulty"]
    assert stats["calls"] == {"ok": 5}
    assert stats["queue"] == 0
    # idle_timeout 1s, heartbeat tick 1s, a graceful stop: back to min (0) well within 15s
    _wait_for(lambda: _workers(host)["live"] == 0, 15, "the pool to shrink to workers.min=0")
    # and a call after scale-down still works: a worker starts on demand
    assert host.call("faulty.sleep", {"seconds": 0}) == 0


def test_min_workers_are_kept_warm(host: Host) -> None:
    policy = Policy(workers={"min": 1, "max": 2}, idle_timeout=1.0, wall_time=10)
    host.add_provider(FAULTY, policy=policy)
    futures = [host.submit("faulty.sleep", {"seconds": 1.0}) for _ in range(4)]
    _wait_for(lambda: _workers(host)["live"] == 2, 10, "a second worker under load")
    assert [f.result(timeout=30) for f in futures] == [1.0] * 4
    _wait_for(lambda: _workers(host)["live"] == 1, 15, "the pool to shrink to workers.min=1")
    # It stays at one warm worker: several idle timeouts later it is still there, idle.
    deadline = time.monotonic() + 3.0
    while time.monotonic() < deadline:
        workers = _workers(host)
        assert workers["live"] == 1, workers
        time.sleep(0.1)
    assert _workers(host)["idle"] == 1
    assert host.stats()["faulty"]["restarts"] == 0


def test_scale_down_keeps_a_warm_worker_of_the_pool(host: Host) -> None:
    policy = Policy(workers={"min": 1, "max": 2}, idle_timeout=1.0, wall_time=10)
    host.add_provider(FAULTY, policy=policy)
    for _ in range(2):  # two rounds: the workers' idle clocks almost always share a tick
        futures = [host.submit("faulty.slow_token", {"seconds": 1.0}) for _ in range(2)]
        tokens = {f.result(timeout=30) for f in futures}
        assert len(tokens) == 2, "the two calls ran on two workers"
        lowest = 2
        deadline = time.monotonic() + 15
        while True:
            workers = _workers(host)
            serving = workers["idle"] + workers["busy"]
            lowest = min(lowest, serving + workers["starting"])
            if workers["live"] == 1 and workers["idle"] == 1:
                break
            assert time.monotonic() < deadline, workers
            time.sleep(0.01)
        assert lowest >= 1, "the pool fell below workers.min=1"
        assert host.call("faulty.token") in tokens, "the warm worker must be one of the pool"


def test_default_workers_max_is_the_cpu_count() -> None:
    assert Policy().workers.max == (os.cpu_count() or 1)
    assert Policy().workers.min == 0
    assert Policy().idle_timeout == 60
    assert Policy().retries == 0


@pytest.mark.serial  # bounds a latency: alone, with --shards
def test_caller_timeout_while_queued(host: Host, shared_dir: str) -> None:
    policy = Policy(workers={"min": 0, "max": 1}, wall_time=10, write=[shared_dir])
    host.add_provider(FAULTY, policy=policy)
    running = host.submit("faulty.touch", {"directory": shared_dir, "prefix": "first",
                                          "seconds": 1.5})
    _wait_for(lambda: _workers(host)["busy"] == 1, 10, "the first call to run")
    started = time.monotonic()
    outcome = host.run("faulty.touch", {"directory": shared_dir, "prefix": "late"}, timeout=0.3)
    assert time.monotonic() - started < 1.2, "the caller's timeout must not wait for a worker"
    assert outcome.error is not None and outcome.error.type == "Timeout"
    assert host.stats()["faulty"]["queue"] == 0
    assert isinstance(running.result(timeout=10), str)
    assert sorted(name.split("-")[0] for name in os.listdir(shared_dir)) == ["first"]


def test_one_call_per_worker_at_a_time(host: Host) -> None:
    """With max 1, calls are serialised: each token is one process, and they never overlap."""
    host.add_provider(FAULTY, policy=Policy(workers={"min": 0, "max": 1}, wall_time=10))
    futures = [host.submit("faulty.sleep", {"seconds": 0.3}) for _ in range(3)]
    peak_busy = 0
    while not all(f.done() for f in futures):
        workers = _workers(host)
        peak_busy = max(peak_busy, workers["busy"])
        assert workers["live"] <= 1, workers
        time.sleep(0.02)
    assert peak_busy == 1
    assert [f.result() for f in futures] == [0.3] * 3


# ---------------------------------------------------------------------- the bounded queue


@pytest.mark.serial  # bounds a latency: alone, with --shards
def test_overloaded_when_the_queue_is_full(host: Host) -> None:
    host.add_provider(FAULTY, policy=Policy(workers={"min": 0, "max": 1}, queue=2, wall_time=10))
    running = host.submit("faulty.sleep", {"seconds": 1.5})
    _wait_for(lambda: _workers(host)["busy"] == 1, 10, "the first call to run")
    queued = [host.submit("faulty.sleep", {"seconds": 0}) for _ in range(2)]
    _wait_for(lambda: host.stats()["faulty"]["queue"] == 2, 5, "two queued calls")
    start = time.monotonic()
    rejected = host.submit("faulty.sleep", {"seconds": 0})
    error = rejected.exception(timeout=1.0)  # done at once, not after the running call
    assert time.monotonic() - start < 1.0
    assert isinstance(error, Overloaded)
    assert error.type == "Overloaded"
    assert rejected.outcome is not None and not rejected.outcome.ok
    assert not running.done(), "the rejection must not have waited for the running call"
    # the accepted calls are unaffected
    assert running.result(timeout=10) == 1.5
    assert [f.result(timeout=10) for f in queued] == [0, 0]
    stats = host.stats()["faulty"]
    assert stats["calls"] == {"ok": 3, "Overloaded": 1}
    # the queue has room again
    assert host.call("faulty.sleep", {"seconds": 0}) == 0


def _rss_bytes() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise LookupError("VmRSS")


def test_a_queued_call_keeps_only_its_encoded_input(host: Host) -> None:
    """A queued call kept the checked copy of its input beside its encoding: 2-28 MiB a call
    for a 1 MiB input of numbers or lists (a server's client queued 1.3 GiB behind busy
    workers, and collections of those objects took seconds). Only the encoding is kept."""
    import gc
    import json

    host.add_provider(FAULTY, policy=Policy(workers={"min": 0, "max": 1}, queue=200, wall_time=30))
    running = host.submit("faulty.sleep", {"seconds": 20})
    _wait_for(lambda: _workers(host)["busy"] == 1, 10, "the first call to run")
    text = json.dumps([i * 0.5 for i in range(60_000)])
    gc.collect()
    before = _rss_bytes()
    queued = [host.submit("faulty.count", {"values": json.loads(text)}) for _ in range(100)]
    gc.collect()
    per_call = (_rss_bytes() - before) / 100
    assert host.stats()["faulty"]["queue"] == 100
    assert per_call <= 2 * len(text), (per_call, len(text))
    for future in [*queued, running]:
        future.cancel()


def test_queue_zero_rejects_while_every_worker_is_busy(host: Host) -> None:
    host.add_provider(FAULTY, policy=Policy(workers={"min": 0, "max": 1}, queue=0, wall_time=10))
    running = host.submit("faulty.sleep", {"seconds": 1.0})
    _wait_for(lambda: _workers(host)["busy"] == 1, 10, "the first call to run")
    with pytest.raises(Overloaded):
        host.call("faulty.sleep", {"seconds": 0})
    assert running.result(timeout=10) == 1.0


# ---------------------------------------------------------------------- cancelling queued calls


def test_cancel_a_queued_call_removes_it(host: Host, shared_dir: str) -> None:
    policy = Policy(workers={"min": 0, "max": 1}, wall_time=10, write=[shared_dir])
    host.add_provider(FAULTY, policy=policy)
    running = host.submit("faulty.touch", {"directory": shared_dir, "prefix": "first",
                                          "seconds": 1.0})
    _wait_for(lambda: _workers(host)["busy"] == 1, 10, "the first call to run")
    queued = host.submit("faulty.touch", {"directory": shared_dir, "prefix": "queued"})
    kept = host.submit("faulty.touch", {"directory": shared_dir, "prefix": "kept"})
    assert queued.cancel() is True
    assert queued.cancelled()
    assert queued.done()
    # ... for the waiters of concurrent.futures too (they were never told: a workflow
    # engine's wait() on a batch with a cancelled call hung for ever)
    done, not_done = concurrent.futures.wait([queued], timeout=5)
    assert done == {queued} and not not_done
    assert list(concurrent.futures.as_completed([queued], timeout=5)) == [queued]
    assert not running.done()
    assert isinstance(running.result(timeout=10), str)
    assert isinstance(kept.result(timeout=10), str)
    # the cancelled call never ran: no mark, and the same worker served both other calls
    marks = sorted(name.split("-")[0] for name in os.listdir(shared_dir))
    assert marks == ["first", "kept"]
    assert running.result() == kept.result(), "cancelling a queued call must not kill a worker"
    stats = host.stats()["faulty"]
    assert stats["calls"].get("ok") == 2
    assert stats["restarts"] == 0
    # a cancelled future reports it like any concurrent.futures.Future
    with pytest.raises(Exception) as info:
        queued.result(timeout=1)
    assert type(info.value).__name__ == "CancelledError" or isinstance(info.value, Cancelled)


# ---------------------------------------------------------------------- recycling


def test_max_calls_recycles_the_worker(host: Host) -> None:
    host.add_provider(FAULTY, policy=Policy(workers={"min": 0, "max": 1}, max_calls=3))
    tokens = [host.call("faulty.token") for _ in range(9)]
    groups = [tokens[0:3], tokens[3:6], tokens[6:9]]
    for group in groups:
        assert len(set(group)) == 1, tokens
    assert len({group[0] for group in groups}) == 3, f"a new process every 3 calls: {tokens}"
    stats = host.stats()["faulty"]
    assert stats["recycled"] == 3
    assert stats["restarts"] == 0, "recycling is not a restart"
    assert stats["calls"] == {"ok": 9}


def test_max_calls_recycles_every_worker_of_a_pool(host: Host) -> None:
    policy = Policy(workers={"min": 0, "max": 2}, max_calls=2, wall_time=10)
    host.add_provider(FAULTY, policy=policy)
    tokens: list[str] = []
    for _ in range(4):
        futures = [host.submit("faulty.token") for _ in range(3)]
        tokens += [f.result(timeout=30) for f in futures]
    counts: dict[str, int] = {}
    for token in tokens:
        counts[token] = counts.get(token, 0) + 1
    assert max(counts.values()) <= 2, f"no worker may serve more than max_calls=2: {counts}"
    assert len(counts) >= 6, counts
    # every worker that reached 2 calls was recycled
    assert host.stats()["faulty"]["recycled"] == sum(1 for n in counts.values() if n == 2)


def test_memory_growth_recycles_a_leaky_worker(host: Host) -> None:
    policy = Policy(workers={"min": 0, "max": 1}, memory="256MiB", max_memory_growth="16MiB")
    host.add_provider(FAULTY, policy=policy)
    first = host.call("faulty.token")
    assert host.call("faulty.token") == first, "no growth, no recycling"
    assert host.call("faulty.leak", {"mebibytes": 40}) == 40 * 1024 * 1024
    after = host.call("faulty.token")
    assert after != first, "a worker whose peak grew by 40MiB > 16MiB must be replaced"
    stats = host.stats()["faulty"]
    assert stats["recycled"] == 1
    assert stats["restarts"] == 0
    # the fresh worker has no leak: the next leak starts from zero
    assert host.call("faulty.leak", {"mebibytes": 1}) == 1024 * 1024


def test_stats_shape(host: Host) -> None:
    host.add_provider(FAULTY, policy=Policy(workers={"min": 0, "max": 2}))
    assert host.call("faulty.sleep", {"seconds": 0}) == 0
    stats: dict[str, Any] = host.stats()["faulty"]
    for key in ("calls", "latency_p50_s", "latency_p99_s", "restarts", "failed_starts",
                "retries", "recycled", "hung", "workers", "queue", "breaker_open"):
        assert key in stats, key
    assert set(stats["workers"]) >= {"live", "idle", "busy", "starting"}
    assert stats["calls"] == {"ok": 1}
    assert 0 <= stats["latency_p50_s"] <= stats["latency_p99_s"] < 10
    assert stats["breaker_open"] is False


def test_workers_that_die_idle_right_after_starting_are_backed_off(host: Host) -> None:
    """A worker that said HELLO and died 50 ms later, idle, was replaced at once to keep
    ``workers.min``: 232 starts in 10 s with min 2 and no call at all (each a few ms of the
    host's CPU). The first such death in a row is free, the next ones back off as failed
    starts do; a call still gets a worker."""
    from tests.conftest import provider_file

    host.add_provider(provider_file("dies_idle.py"), policy=Policy(workers={"min": 2, "max": 2}))
    time.sleep(3.0)
    restarts = host.stats()["dies_idle"]["restarts"]
    print(f"restarts in 3 s: {restarts}")
    assert 2 <= restarts <= 20, restarts
    # (A call may land on a worker as it dies: WorkerCrashed. It is never refused.)
    outcomes = [host.run("dies_idle.fine", {"x": 1}, timeout=20) for _ in range(5)]
    assert any(o.ok and o.value == 2 for o in outcomes), outcomes
    assert all(o.ok or o.error.type == "WorkerCrashed" for o in outcomes), outcomes
