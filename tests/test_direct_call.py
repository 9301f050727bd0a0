"""``Host.run`` reads its own reply: when a worker is idle, the caller's thread dispatches the call
and reads the worker's reply itself, under the loop's lock, instead of handing the call to the
loop thread and being woken by it (``Reactor.accept``, ``Reactor.wait_here``). What deadlines,
deaths, cancellation and closing do stays the loop's; these tests hold it to the same outcomes
as the loop's own path, with real workers, and check the mechanism is the one in use.
"""

from __future__ import annotations

import itertools
import os
import random
import signal
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

import pytest

from host import Host, Timeout
from host.calling import wait_for_outcome
from policies import Policy
from tests.conftest import provider_file

ECHO = provider_file("echo.py")
T = TypeVar("T")


@pytest.fixture
def two_workers() -> Iterator[Host]:
    with Host() as host:
        host.add_provider(ECHO, policy=Policy(workers={"min": 0, "max": 2}, wall_time=10))
        yield host


def _lent_workers(host: Host) -> int:
    return sum(1 for worker in list(host._reactor._workers.values()) if worker.lent)


def test_run_reads_its_reply_in_the_callers_thread_and_gives_the_connection_back(
    two_workers: Host,
) -> None:
    host = two_workers
    assert host.call("echo.echo", {"value": "warm"}) == "warm"  # a worker is idle now
    seen: list[int] = []
    caller = threading.Thread(target=lambda: seen.append(host.call("echo.slow", {"seconds": 1})))
    caller.start()
    lent = 0
    while caller.is_alive() and not lent:
        lent = _lent_workers(host)
        time.sleep(0.01)
    caller.join(timeout=30)
    assert seen == [1]
    assert lent == 1, "the caller's thread never read its own reply"
    assert _lent_workers(host) == 0
    # The loop watches the connection again: a call through submit, read by the loop, works.
    assert host.submit("echo.echo", {"value": "loop"}).result(timeout=30) == "loop"
    assert host._reactor._direct


def test_many_callers_on_both_paths_each_get_their_own_outcome(two_workers: Host) -> None:
    """Eight threads, two workers: calls read by their callers and by the loop, queued ones,
    and ones their timeout ends mid-run, mixed. Every call gets exactly its own outcome."""
    host = two_workers
    results: Counter[str] = Counter()
    errors: list[str] = []

    def caller(index: int) -> None:
        rng = random.Random(index)
        for i in range(60):
            value = f"{index}-{i}"
            kind = rng.choice(["run", "run", "submit", "slow"])
            if kind == "slow":
                outcome = host.run("echo.slow", {"seconds": 5}, timeout=0.05)
                if outcome.ok or not isinstance(outcome.error, Timeout):
                    errors.append(f"{value}: {outcome}")
                results["timeout"] += 1
                continue
            if kind == "run":
                outcome = host.run("echo.echo", {"value": value}, timeout=30)
            else:
                outcome = wait_for_outcome(host.submit("echo.echo", {"value": value}, timeout=30))
            if not outcome.ok or outcome.value != value:
                errors.append(f"{value}: {outcome}")
            results[kind] += 1

    threads = [threading.Thread(target=caller, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=240)
    assert not any(thread.is_alive() for thread in threads)
    assert errors == []
    assert sum(results.values()) == 8 * 60
    assert results["run"] and results["submit"] and results["timeout"]
    assert _lent_workers(host) == 0


def _in_thread(work: Callable[[], T]) -> T:
    """``work``'s result, run on a thread of its own (the main thread never takes the fast
    path: see ``test_the_main_thread_never_holds_the_loops_lock``)."""
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(work).result(timeout=120)


def test_a_deadline_ends_a_call_its_caller_is_reading(two_workers: Host) -> None:
    host = two_workers
    assert host.call("echo.echo", {"value": "warm"}) == "warm"
    lent: list[int] = []
    watcher = threading.Thread(target=lambda: lent.append(_max_lent(host, 0.25)))
    watcher.start()
    outcome = _in_thread(lambda: host.run("echo.slow", {"seconds": 30}, timeout=0.5))
    watcher.join()
    assert lent == [1]
    assert not outcome.ok and isinstance(outcome.error, Timeout), outcome
    assert outcome.usage.wall_s < 10, outcome.usage
    assert host.call("echo.echo", {"value": "after"}, timeout=30) == "after"


def _max_lent(host: Host, seconds: float) -> int:
    most = 0
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        most = max(most, _lent_workers(host))
        time.sleep(0.005)
    return most


def test_one_threads_calls_are_queued_in_the_order_it_submits_them() -> None:
    """While the loop is busy (another provider's calls), one thread's call can go to the
    command queue and its next find the lock free: that one was queued first, ahead of the
    earlier (3-13 inversions in 300 calls). A caller now dispatches directly only when no
    command waits."""
    with Host() as host:
        host.add_provider(ECHO, policy=Policy(workers={"min": 0, "max": 1}, wall_time=20))
        host.add_provider("providers.examples.text", policy=Policy(workers={"min": 2, "max": 2}))
        host.call("echo.echo", {"value": "warm"})
        stop = threading.Event()

        def noise() -> None:
            while not stop.is_set():
                for future in [host.submit("text.echo", {"value": "x"}) for _ in range(4)]:
                    future.result(timeout=30)

        def submitter() -> list[int]:
            finished: list[int] = []
            blocker = host.submit("echo.slow", {"seconds": 0.3})
            time.sleep(0.05)
            futures = []
            for i in range(300):
                future = host.submit("echo.echo", {"value": str(i)})
                future.add_done_callback(lambda _, i=i: finished.append(i))
                futures.append(future)
                time.sleep(0.0002 if i % 3 else 0)
            for future in futures:
                future.result(timeout=60)
            blocker.result(timeout=60)
            return finished

        noisy = [threading.Thread(target=noise) for _ in range(2)]
        for thread in noisy:
            thread.start()
        try:
            for _ in range(3):
                finished = _in_thread(submitter)
                assert finished == sorted(finished), [
                    (a, b) for a, b in itertools.pairwise(finished) if b < a
                ]
        finally:
            stop.set()
            for thread in noisy:
                thread.join(timeout=60)


def test_the_main_thread_never_holds_the_loops_lock(two_workers: Host) -> None:
    """Python runs signal handlers on the main thread, at any bytecode: one that called the
    host while the main thread held the loop's lock (dispatching, or reading its reply)
    waited for that lock for ever (``stats()`` gave up after 30 s, six times out of six), and
    a KeyboardInterrupt landing there left calls without an outcome. The main thread's calls
    go through the loop; a handler calling the host returns at once."""
    host = two_workers
    host.call("echo.echo", {"value": "warm"})
    answered: list[float] = []

    def on_signal(signum: int, frame: object) -> None:
        started = time.monotonic()
        host.stats()
        answered.append(time.monotonic() - started)

    previous = signal.signal(signal.SIGUSR1, on_signal)
    try:
        sender = threading.Timer(0.2, os.kill, (os.getpid(), signal.SIGUSR1))
        sender.start()
        deadline = time.monotonic() + 60
        while not answered and time.monotonic() < deadline:
            assert host.call("echo.echo", {"value": "x"}, timeout=60) == "x"
            assert _lent_workers(host) == 0
        sender.join()
    finally:
        signal.signal(signal.SIGUSR1, previous)
    assert len(answered) == 1 and answered[0] < 10, answered


def test_closing_the_host_ends_the_calls_their_callers_are_reading() -> None:
    host = Host()
    host.add_provider(ECHO, policy=Policy(workers={"min": 0, "max": 2}, wall_time=60))
    host.call("echo.echo", {"value": "warm"})
    outcomes: list[object] = []
    callers = [
        threading.Thread(target=lambda: outcomes.append(host.run("echo.slow", {"seconds": 30})))
        for _ in range(2)
    ]
    for caller in callers:
        caller.start()
    deadline = time.monotonic() + 30
    while _lent_workers(host) < 1 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert _lent_workers(host) >= 1
    host.close(timeout=0)
    for caller in callers:
        caller.join(timeout=60)
    assert not any(caller.is_alive() for caller in callers)
    assert len(outcomes) == 2
    assert all(not outcome.ok for outcome in outcomes), outcomes  # type: ignore[attr-defined]
