"""The asyncio API (``await host.acall``), cancellation through tasks, and the big mixed load:
2,000 calls from 16 threads and from asyncio across three providers with injected faults, each
getting exactly one outcome of the injected kind."""

from __future__ import annotations

import asyncio
import os
import shutil
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator

import pytest

from host import ActionFailed, Host, Outcome, SandboxError, Timeout
from policies import Policy
from tests.conftest import provider_file

FAULTY = provider_file("faulty.py")
PROVIDERS = ("faulty", "faulty_b", "faulty_c")
EXPECTED_TYPE = {"crash": "WorkerCrashed", "timeout": "Timeout", "error": "ActionFailed",
                 "ok": "ok"}


def fault_for(index: int) -> str:
    """The rule of ``tests/providers/faulty.py``: 10% crash, 5% timeout, 5% error."""
    return {0: "crash", 1: "crash", 2: "timeout", 3: "error"}.get(index % 20, "ok")


def _wait_for(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out after {timeout}s waiting for {what}"
        time.sleep(0.02)


async def _await_condition(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out after {timeout}s waiting for {what}"
        await asyncio.sleep(0.02)


def _workers(host: Host, provider: str = "faulty") -> dict[str, int]:
    workers: dict[str, int] = host.stats()[provider]["workers"]
    return workers


@pytest.fixture
def shared_dir() -> Iterator[str]:
    """A directory every worker uid may write (outside /tmp: each worker has a private /tmp)."""
    path = tempfile.mkdtemp(prefix="sandbox-async-", dir="/var/tmp")
    os.chmod(path, 0o777)
    yield path
    shutil.rmtree(path, ignore_errors=True)


# ---------------------------------------------------------------------- acall


def test_acall_returns_values_and_raises_outcomes(host: Host) -> None:
    host.add_provider(FAULTY, policy=Policy(workers={"min": 0, "max": 2}, wall_time=5))

    async def main() -> None:
        assert await host.acall("faulty.sleep", {"seconds": 0}) == 0
        with pytest.raises(ActionFailed) as info:
            await host.acall("faulty.boom", {"message": "async boom"})
        assert info.value.exception_type == "ValueError"
        assert "async boom" in info.value.message
        with pytest.raises(Timeout):
            await host.acall("faulty.sleep", {"seconds": 30}, timeout=0.5)
        values = await asyncio.gather(*(host.acall("faulty.run", {"index": i})
                                        for i in range(4, 14)))
        assert values == [i * 3 for i in range(4, 14)]

    asyncio.run(main())


def test_acall_does_not_block_the_event_loop(host: Host) -> None:
    host.add_provider(FAULTY, policy=Policy(workers={"min": 0, "max": 1}, wall_time=5))

    async def main() -> int:
        ticks = 0
        call = asyncio.create_task(host.acall("faulty.sleep", {"seconds": 1.0}))
        while not call.done():
            ticks += 1
            await asyncio.sleep(0.01)
        assert await call == 1.0
        return ticks

    assert asyncio.run(main()) > 10, "the loop must keep running while a call is in flight"


def test_cancelling_the_task_cancels_a_running_call(host: Host) -> None:
    host.add_provider(FAULTY, policy=Policy(workers={"min": 0, "max": 1}, wall_time=60))
    before = host.call("faulty.token")

    async def main() -> None:
        task = asyncio.create_task(host.acall("faulty.sleep", {"seconds": 30}))
        await _await_condition(lambda: _workers(host)["busy"] == 1, 10, "the call to run")
        started = time.monotonic()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert time.monotonic() - started < 5
        await _await_condition(
            lambda: host.stats()["faulty"]["calls"].get("Cancelled") == 1, 10,
            "the call to end Cancelled",
        )

    asyncio.run(main())
    assert host.call("faulty.token") != before, "the cancelled call's worker must be killed"
    stats = host.stats()["faulty"]
    assert stats["calls"] == {"ok": 2, "Cancelled": 1}


def test_cancelling_the_task_removes_a_queued_call(host: Host, shared_dir: str) -> None:
    policy = Policy(workers={"min": 0, "max": 1}, wall_time=10, write=[shared_dir])
    host.add_provider(FAULTY, policy=policy)

    async def main() -> None:
        first = asyncio.create_task(host.acall(
            "faulty.touch", {"directory": shared_dir, "prefix": "first", "seconds": 1.0}))
        await _await_condition(lambda: _workers(host)["busy"] == 1, 10, "the first call to run")
        queued = asyncio.create_task(host.acall(
            "faulty.touch", {"directory": shared_dir, "prefix": "queued"}))
        await _await_condition(lambda: host.stats()["faulty"]["queue"] == 1, 5, "a queued call")
        queued.cancel()
        with pytest.raises(asyncio.CancelledError):
            await queued
        await _await_condition(lambda: host.stats()["faulty"]["queue"] == 0, 5,
                               "the queue to empty")
        token = await first
        assert await host.acall("faulty.token") == token, "no worker was killed"

    asyncio.run(main())
    assert sorted(name.split("-")[0] for name in os.listdir(shared_dir)) == ["first"]
    assert host.stats()["faulty"]["restarts"] == 0


def test_wait_for_timeout_cancels_the_call(host: Host) -> None:
    host.add_provider(FAULTY, policy=Policy(workers={"min": 0, "max": 1}, wall_time=60))

    async def main() -> None:
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(host.acall("faulty.sleep", {"seconds": 30}), timeout=0.5)
        await _await_condition(
            lambda: host.stats()["faulty"]["calls"].get("Cancelled") == 1, 10,
            "the abandoned call to be cancelled",
        )
        assert await host.acall("faulty.sleep", {"seconds": 0}) == 0

    asyncio.run(main())


# ---------------------------------------------------------------------- 2,000 calls with faults


def _kind(outcome: Outcome) -> str:
    return "ok" if outcome.ok else outcome.error.type if outcome.error else "?"


def test_two_thousand_calls_from_threads_and_asyncio_with_faults() -> None:
    total = 2000
    threaded = range(0, total, 2)   # even indices: 16 threads, host.run
    awaited = range(1, total, 2)    # odd indices: asyncio, host.acall
    policy = Policy(workers={"min": 0, "max": 2}, wall_time=0.5, cpu_time=5)
    results: dict[int, tuple[str, object]] = {}
    duplicates: list[int] = []
    lock = threading.Lock()

    def record(index: int, kind: str, value: object) -> None:
        with lock:
            if index in results:
                duplicates.append(index)
            results[index] = (kind, value)

    def action(index: int) -> str:
        return f"{PROVIDERS[index % 3]}.run"

    started = time.monotonic()
    with Host() as host:
        host.add_provider(FAULTY, policy=policy)
        host.add_provider(f"{FAULTY}:provider_b", policy=policy)
        host.add_provider(f"{FAULTY}:provider_c", policy=policy)

        def thread_body(slot: int) -> None:
            for index in threaded[slot::16]:
                outcome = host.run(action(index), {"index": index})
                record(index, _kind(outcome), outcome.value)

        async def one(index: int) -> None:
            try:
                value = await host.acall(action(index), {"index": index})
            except SandboxError as error:
                record(index, error.type, None)
            else:
                record(index, "ok", value)

        async def main() -> None:
            await asyncio.wait_for(asyncio.gather(*(one(i) for i in awaited)), timeout=240)

        threads = [threading.Thread(target=thread_body, args=(slot,)) for slot in range(16)]
        for thread in threads:
            thread.start()
        asyncio.run(main())
        for thread in threads:
            thread.join(timeout=240)
            assert not thread.is_alive(), "a thread never got its outcome"
        stats = host.stats()
        for name in PROVIDERS:
            assert stats[name]["workers"]["live"] <= 2
            assert stats[name]["queue"] == 0
    elapsed = time.monotonic() - started

    assert not duplicates, f"calls with more than one outcome: {duplicates[:10]}"
    assert sorted(results) == list(range(total)), "every call gets exactly one outcome"
    wrong = {}
    for index, (kind, value) in results.items():
        expected = EXPECTED_TYPE[fault_for(index)]
        if kind != expected or (kind == "ok" and value != index * 3):
            wrong[index] = (fault_for(index), kind, value)
    assert not wrong, f"{len(wrong)} outcomes do not match the injected fault: " + str(
        dict(list(wrong.items())[:10]))
    # the host's own count agrees: one recorded outcome per call, of the right kinds
    recorded: Counter[str] = Counter()
    for name in PROVIDERS:
        recorded.update(stats[name]["calls"])
    assert recorded == Counter(EXPECTED_TYPE[fault_for(i)] for i in range(total))
    assert recorded["WorkerCrashed"] == 200 and recorded["Timeout"] == 100
    assert elapsed < 150, f"took {elapsed:.0f}s"
