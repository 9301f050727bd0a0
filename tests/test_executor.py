"""``SandboxExecutor``, modelled on the standard library's ``concurrent.futures`` executor tests
(test_submit, test_submit_keyword, test_map, test_map_exception, test_map_timeout, shutdown with
and without wait, cancel_futures, submit after shutdown), plus what is particular to a sandbox:
exceptions surface as ``ActionFailed``, a crash fails one future, results are JSON unless
``results="pickle"``, and the callable runs confined."""

from __future__ import annotations

import concurrent.futures
import os
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest

from host import (
    ActionFailed,
    Cancelled,
    OutputInvalid,
    SandboxExecutor,
    Timeout,
    WorkerCrashed,
)
from policies import Policy

REPO = Path(__file__).resolve().parent.parent
#: The interpreter running the tests: its installation is the one workers import from.
PYTHON = sys.executable


class CustomError(Exception):
    pass


def mul(x: int, y: int) -> int:
    return x * y


def capture(*args: Any, **kwargs: Any) -> list[Any]:
    return [list(args), kwargs]


def raise_value_error(text: str) -> None:
    raise ValueError(text)


def raise_custom() -> None:
    raise CustomError("custom failure")


def make_set() -> set[int]:
    return {1, 2, 3}


def make_bytes() -> bytes:
    return b"\x00\xffpayload"


def read_file(path: str) -> str:
    with open(path) as handle:
        return handle.read()


def identity(value: Any) -> Any:
    return value


def _wait_for(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out after {timeout}s waiting for {what}"
        time.sleep(0.02)


@pytest.fixture
def executor() -> Iterator[SandboxExecutor]:
    ex = SandboxExecutor(max_workers=2)
    try:
        yield ex
    finally:
        ex.shutdown(wait=True, cancel_futures=True)


# ---------------------------------------------------------------------- like the stdlib's tests


def test_submit(executor: SandboxExecutor) -> None:
    future = executor.submit(pow, 2, 8)
    assert isinstance(future, concurrent.futures.Future)
    assert future.result(timeout=30) == 256


def test_submit_keyword(executor: SandboxExecutor) -> None:
    assert executor.submit(mul, 2, y=8).result(timeout=30) == 16
    # keyword names that clash with submit's own parameters pass through
    result = executor.submit(capture, 1, self=2, fn=4).result(timeout=30)
    assert result == [[1], {"self": 2, "fn": 4}]
    with pytest.raises(TypeError):
        executor.submit(fn=capture, arg=1)  # type: ignore[call-arg]


def test_submit_lambda_and_closure(executor: SandboxExecutor) -> None:
    offset = 40
    assert executor.submit(lambda x: x + offset, 2).result(timeout=30) == 42


def test_map(executor: SandboxExecutor) -> None:
    assert list(executor.map(pow, range(10), range(10))) == list(map(pow, range(10), range(10)))
    assert list(executor.map(pow, range(10), range(10), chunksize=3)) == list(
        map(pow, range(10), range(10))
    )


def test_map_exception(executor: SandboxExecutor) -> None:
    results = executor.map(divmod, [1, 1, 1, 1], [2, 3, 0, 5])
    assert next(results) == [0, 1]  # JSON results: a tuple comes back as a list
    assert next(results) == [0, 1]
    with pytest.raises(ActionFailed) as info:
        next(results)
    assert info.value.exception_type == "ZeroDivisionError"


def test_map_timeout(executor: SandboxExecutor) -> None:
    results = []
    started = time.monotonic()
    with pytest.raises(TimeoutError):
        for value in executor.map(time.sleep, [0, 0, 6], timeout=2):
            results.append(value)
    assert results == [None, None]
    assert time.monotonic() - started < 5.5, "map's timeout must not wait for the slow call"


def test_as_completed_and_wait(executor: SandboxExecutor) -> None:
    futures = [executor.submit(mul, i, i) for i in range(6)]
    done = {f.result() for f in concurrent.futures.as_completed(futures, timeout=60)}
    assert done == {i * i for i in range(6)}
    waited = concurrent.futures.wait(futures, timeout=1)
    assert len(waited.done) == 6 and not waited.not_done


def test_shutdown_wait_waits_for_running_tasks() -> None:
    executor = SandboxExecutor(max_workers=2)
    futures = [executor.submit(time.sleep, 1.0) for _ in range(2)]
    _wait_for(lambda: all(f.running() for f in futures), 15, "both calls to run")
    executor.shutdown(wait=True)
    assert all(f.done() for f in futures)
    assert [f.result() for f in futures] == [None, None]


def test_shutdown_runs_pending_futures_issue12364() -> None:
    # the standard library's test_hang_issue12364, scaled down
    executor = SandboxExecutor(max_workers=1)
    futures = [executor.submit(time.sleep, 0.1) for _ in range(5)]
    executor.shutdown(wait=True)
    for future in futures:
        assert future.result(timeout=1) is None


def test_context_manager_runs_pending_futures() -> None:
    with SandboxExecutor(max_workers=1) as executor:
        futures = [executor.submit(time.sleep, 0.2) for _ in range(3)]
    assert [f.result(timeout=1) for f in futures] == [None, None, None]


@pytest.mark.serial  # bounds a latency: alone, with --shards
def test_shutdown_no_wait_returns_at_once() -> None:
    executor = SandboxExecutor(max_workers=2)
    futures = [executor.submit(time.sleep, 1.0) for _ in range(2)]
    _wait_for(lambda: all(f.running() for f in futures), 15, "both calls to run")
    started = time.monotonic()
    executor.shutdown(wait=False)
    assert time.monotonic() - started < 0.5
    assert not all(f.done() for f in futures)
    # the running tasks still finish
    assert [f.result(timeout=30) for f in futures] == [None, None]


def test_shutdown_cancel_futures() -> None:
    executor = SandboxExecutor(max_workers=1)
    running = executor.submit(time.sleep, 1.0)
    pending = [executor.submit(identity, i) for i in range(5)]
    _wait_for(running.running, 15, "the first call to run")
    executor.shutdown(wait=True, cancel_futures=True)
    assert running.result(timeout=1) is None
    done, not_done = concurrent.futures.wait(pending, timeout=5)  # (waiters are told too)
    assert done == set(pending) and not not_done
    for future in pending:
        assert future.cancelled(), future
        with pytest.raises(concurrent.futures.CancelledError):
            future.result(timeout=1)


def test_submit_after_shutdown_raises() -> None:
    executor = SandboxExecutor(max_workers=1)
    executor.shutdown(wait=True)
    with pytest.raises(RuntimeError):
        executor.submit(pow, 2, 5)
    executor.shutdown(wait=True)  # a second shutdown is harmless


def test_context_manager() -> None:
    with SandboxExecutor(max_workers=1) as executor:
        future = executor.submit(time.sleep, 0.5)
        assert executor.submit(mul, 6, 7).result(timeout=30) == 42
    assert future.done()
    assert future.result() is None
    with pytest.raises(RuntimeError):
        executor.submit(pow, 2, 5)


def test_max_workers_and_results_are_checked() -> None:
    with pytest.raises(ValueError):
        SandboxExecutor(max_workers=0)
    with pytest.raises(ValueError):
        SandboxExecutor(max_workers=-1)
    with pytest.raises(ValueError):
        SandboxExecutor(results="marshal")


# ---------------------------------------------------------------------- exceptions and outcomes


def test_exception_surfaces_as_action_failed(executor: SandboxExecutor) -> None:
    future = executor.submit(raise_value_error, "the original message")
    error = future.exception(timeout=30)
    assert isinstance(error, ActionFailed)
    assert error.exception_type == "ValueError"
    assert "the original message" in error.message
    assert "raise_value_error" in error.traceback
    assert "ValueError" in error.traceback
    with pytest.raises(ActionFailed):
        future.result()


def test_custom_exception_type_name(executor: SandboxExecutor) -> None:
    error = executor.submit(raise_custom).exception(timeout=30)
    assert isinstance(error, ActionFailed)
    assert error.exception_type.endswith("CustomError")
    assert "custom failure" in error.message


def test_bytes_results(executor: SandboxExecutor) -> None:
    assert executor.submit(make_bytes).result(timeout=30) == b"\x00\xffpayload"
    assert executor.submit(bytearray, b"abc").result(timeout=30) == b"abc"


def test_worker_crash_fails_only_that_future(executor: SandboxExecutor) -> None:
    slow = executor.submit(time.sleep, 1.0)
    crash = executor.submit(os._exit, 7)
    after = [executor.submit(pow, 3, i) for i in range(4)]
    error = crash.exception(timeout=30)
    assert isinstance(error, WorkerCrashed), error
    assert error.details.get("exit_code") == 7
    assert slow.result(timeout=30) is None
    assert [f.result(timeout=30) for f in after] == [1, 3, 9, 27]
    assert executor.submit(mul, 2, 21).result(timeout=30) == 42


def test_default_results_refuse_non_json(executor: SandboxExecutor) -> None:
    error = executor.submit(make_set).exception(timeout=30)
    assert isinstance(error, OutputInvalid), error
    assert executor.submit(mul, 1, 1).result(timeout=30) == 1


def test_pickle_results_round_trip() -> None:
    with SandboxExecutor(max_workers=1, results="pickle") as executor:
        assert executor.submit(make_set).result(timeout=30) == {1, 2, 3}
        assert executor.submit(divmod, 7, 2).result(timeout=30) == (3, 1)
        assert executor.submit(make_bytes).result(timeout=30) == b"\x00\xffpayload"


def test_policy_wall_time_applies() -> None:
    with SandboxExecutor(max_workers=1, policy=Policy(wall_time=0.5)) as executor:
        error = executor.submit(time.sleep, 10).exception(timeout=30)
        assert isinstance(error, Timeout)
        assert executor.submit(mul, 2, 2).result(timeout=30) == 4


def test_the_callable_runs_confined(executor: SandboxExecutor) -> None:
    if os.geteuid() == 0:
        assert executor.submit(os.getuid).result(timeout=30) != 0
    error = executor.submit(read_file, "/etc/hostname").exception(timeout=30)
    assert isinstance(error, ActionFailed), error
    assert error.exception_type in ("PermissionError", "FileNotFoundError")


def test_cancel_running_executor_future(executor: SandboxExecutor) -> None:
    future = executor.submit(time.sleep, 30)
    _wait_for(future.running, 15, "the call to run")
    assert future.cancel() is True
    with pytest.raises(Cancelled):
        future.result(timeout=10)
    assert executor.submit(mul, 3, 3).result(timeout=30) == 9


# ---------------------------------------------------------------------- interpreter exit


def _sandbox_processes() -> set[int]:
    found = set()
    for process in psutil.process_iter(["pid", "cmdline", "status"]):
        try:
            if process.info["status"] == psutil.STATUS_ZOMBIE:
                continue
            cmdline = process.info["cmdline"] or []
        except psutil.Error:
            continue
        if "-m" in cmdline and "sandbox" in cmdline:
            found.add(process.info["pid"])
    return found


def test_interpreter_exit_with_an_open_executor_does_not_hang() -> None:
    script = textwrap.dedent(
        """
        import time
        from host import SandboxExecutor
        executor = SandboxExecutor(max_workers=1)
        future = executor.submit(time.sleep, 100)
        queued = executor.submit(time.sleep, 100)
        deadline = time.monotonic() + 20
        while not future.running():
            assert time.monotonic() < deadline
            time.sleep(0.02)
        print("running", flush=True)
        """
    )
    started = time.monotonic()
    done = subprocess.run([PYTHON, "-c", script], cwd=REPO, capture_output=True, text=True,
                          timeout=30)
    elapsed = time.monotonic() - started
    assert done.returncode == 0, done.stderr
    assert "running" in done.stdout
    assert elapsed < 20, f"interpreter exit took {elapsed:.1f}s"
    _wait_for(lambda: not _sandbox_processes(), 5, "the executor's workers to be gone")
