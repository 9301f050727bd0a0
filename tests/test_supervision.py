"""Liveness and recovery with real processes: a worker killed mid-call, a provider that keeps
failing at start-up (back-off and circuit breaker), retries of safe_rerun actions, hung workers
found by heartbeats, cancelling a running call, logging of failures, and a host process that
exits, is garbage-collected or is killed while its workers run."""

from __future__ import annotations

import contextlib
import gc
import logging
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import psutil
import pytest

from host import (
    ActionFailed,
    Cancelled,
    Host,
    Outcome,
    ProviderUnavailable,
    Timeout,
    WorkerCrashed,
    cgroups,
)
from host import reactor as reactor_module
from host.reactor import BREAKER_THRESHOLD, DEDICATED_UID_BASE, DEDICATED_UID_SPAN
from policies import Policy
from tests.conftest import TEST_PROVIDERS, provider_file

FAULTY = provider_file("faulty.py")
FLAKY = provider_file("flaky_start.py")
FLAKY_MARKER = TEST_PROVIDERS / "flaky_start.marker"
REPO = Path(__file__).resolve().parent.parent
#: The interpreter running the tests: its installation is the one workers import from.
PYTHON = sys.executable


def _wait_for(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out after {timeout}s waiting for {what}"
        time.sleep(0.02)


def _gone_or_zombie(pid: int) -> bool:
    """Whether ``pid`` has exited (it may vanish between any two looks at it)."""
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def _worker_processes() -> dict[int, int]:
    """uid -> pid of every worker process (they run under dedicated uids when the host is root)."""
    found = {}
    for process in psutil.process_iter(["pid", "uids", "status"]):
        try:
            uid = process.info["uids"].real
            if process.info["status"] == psutil.STATUS_ZOMBIE:
                continue
        except (psutil.Error, AttributeError):
            continue
        if DEDICATED_UID_BASE <= uid < DEDICATED_UID_BASE + DEDICATED_UID_SPAN:
            found[uid] = process.info["pid"]
    return found


def _sandbox_processes() -> set[int]:
    found = set()
    for process in psutil.process_iter(["pid", "cmdline", "status"]):
        try:
            cmdline = process.info["cmdline"] or []
            if process.info["status"] == psutil.STATUS_ZOMBIE:
                continue
        except psutil.Error:
            continue
        if "-m" in cmdline and "sandbox" in cmdline:
            found.add(process.info["pid"])
    return found


requires_root = pytest.mark.skipif(
    os.geteuid() != 0, reason="workers run under dedicated uids only when the host is root"
)


def _workers(host: Host, provider: str = "faulty") -> dict[str, int]:
    workers: dict[str, int] = host.stats()[provider]["workers"]
    return workers


@pytest.fixture
def shared_dir() -> Iterator[str]:
    """A directory every worker uid may write (outside /tmp: each worker has a private /tmp)."""
    path = tempfile.mkdtemp(prefix="sandbox-supervision-", dir="/var/tmp")
    os.chmod(path, 0o777)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def _runs(directory: str, key: str) -> int:
    return sum(1 for name in os.listdir(directory) if name.startswith(key + "-run-"))


# ---------------------------------------------------------------------- a worker killed mid-call


@requires_root
def test_kill_9_fails_exactly_the_call_of_that_worker(host: Host) -> None:
    host.add_provider(FAULTY, policy=Policy(workers={"min": 0, "max": 2}, wall_time=30))
    (victim_uid,) = _worker_processes()  # the first worker, idle: it will take the next call
    host.add_provider(f"{FAULTY}:provider_b", policy=Policy(workers={"min": 0, "max": 1}))
    victim = host.submit("faulty.sleep", {"seconds": 20})
    _wait_for(lambda: _workers(host)["busy"] == 1, 10, "the victim call to run")
    same_provider = host.submit("faulty.sleep", {"seconds": 2})
    other_provider = host.submit("faulty_b.sleep", {"seconds": 2})
    _wait_for(
        lambda: _workers(host)["busy"] == 2 and _workers(host, "faulty_b")["busy"] == 1,
        15, "the other calls to run",
    )
    victim_pid = _worker_processes()[victim_uid]
    killed_at = time.monotonic()
    os.kill(victim_pid, signal.SIGKILL)
    error = victim.exception(timeout=10)
    assert time.monotonic() - killed_at < 5, "a worker's death must be noticed promptly"
    assert isinstance(error, WorkerCrashed), error
    assert error.details.get("signal") == signal.SIGKILL
    assert "SIGKILL" in error.message
    assert same_provider.result(timeout=15) == 2
    assert other_provider.result(timeout=15) == 2
    assert host.call("faulty.sleep", {"seconds": 0}) == 0
    stats = host.stats()
    assert stats["faulty"]["calls"] == {"ok": 2, "WorkerCrashed": 1}
    assert stats["faulty"]["restarts"] == 1
    assert stats["faulty_b"]["calls"] == {"ok": 1}
    assert stats["faulty_b"]["restarts"] == 0


def test_crashing_action_fails_only_its_own_call(host: Host) -> None:
    host.add_provider(FAULTY, policy=Policy(workers={"min": 0, "max": 2}, wall_time=30))
    slow = host.submit("faulty.sleep", {"seconds": 1.5})
    _wait_for(lambda: _workers(host)["busy"] == 1, 10, "the slow call to run")
    crash = host.submit("faulty.crash", {"code": 42})
    error = crash.exception(timeout=15)
    assert isinstance(error, WorkerCrashed)
    assert error.details.get("exit_code") == 42
    assert slow.result(timeout=15) == 1.5


# ---------------------------------------------------------------------- back-off and breaker


class _SpawnCounter:
    """Samples this process's descendants in a thread and counts the distinct launchers."""

    def __init__(self) -> None:
        self.seen: set[tuple[int, float]] = set()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        me = psutil.Process()
        while not self._stop.is_set():
            for child in me.children(recursive=False):
                try:
                    cmdline = child.cmdline()
                    if "sandbox" not in cmdline:
                        continue
                    if "zygote" in cmdline:  # launchers are the zygote's children
                        for launcher in child.children(recursive=False):
                            self.seen.add((launcher.pid, launcher.create_time()))
                    else:
                        self.seen.add((child.pid, child.create_time()))
                except psutil.Error:
                    continue
            time.sleep(0.01)

    def __enter__(self) -> _SpawnCounter:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


@pytest.fixture
def flaky_marker() -> Iterator[Path]:
    FLAKY_MARKER.unlink(missing_ok=True)
    yield FLAKY_MARKER
    FLAKY_MARKER.unlink(missing_ok=True)


def _run_bounded(host: Host, action: str, bound: float = 8.0) -> Outcome:
    """``host.run`` that fails the test instead of hanging when a call gets no outcome."""
    future = host.submit(action, {})
    try:
        future.exception(timeout=bound)
    except TimeoutError:
        stats = host.stats()
        pytest.fail(f"{action}: no outcome within {bound}s (the call hangs); stats: {stats}")
    assert future.outcome is not None
    return future.outcome


@requires_root
@pytest.mark.parametrize(
    ("mode", "text"),
    [
        ("raise", "refuses to import"),
        ("exit", "dying at import on purpose"),
    ],
)
def test_crash_at_import_trips_the_breaker_without_a_hot_loop(
    host: Host, flaky_marker: Path, mode: str, text: str
) -> None:
    host.add_provider(FLAKY, policy=Policy(workers={"min": 0, "max": 1}))
    assert host.call("flaky_start.ping") == "pong"
    flaky_marker.write_text(mode + "\n")
    os.chmod(flaky_marker, 0o644)
    (pid,) = _worker_processes().values()
    os.kill(pid, signal.SIGKILL)
    _wait_for(lambda: _workers(host, "flaky_start")["live"] == 0, 10, "the worker to be gone")
    outcomes = []
    with _SpawnCounter() as counter:
        deadline = time.monotonic() + 12
        while time.monotonic() < deadline and not host.stats()["flaky_start"]["breaker_open"]:
            outcomes.append(_run_bounded(host, "flaky_start.ping"))
        assert host.stats()["flaky_start"]["breaker_open"], "the breaker never opened"
        # once open, calls fail fast and nothing is spawned (the spawn count below); the bound
        # here only rules out waiting for a start, generously, as timing on a shared machine is
        # not a test: the figure itself belongs to the benchmarks
        fast = []
        for _ in range(30):
            start = time.monotonic()
            fast.append(_run_bounded(host, "flaky_start.ping"))
            assert time.monotonic() - start < 2.0, "calls must fail fast while the breaker is open"
        time.sleep(0.5)
    for outcome in outcomes + fast:
        assert not outcome.ok
        assert isinstance(outcome.error, ProviderUnavailable), outcome.error
        assert text in outcome.error.message, outcome.error.message
    assert any("circuit open" in o.error.message for o in fast if o.error is not None)
    failed = host.stats()["flaky_start"]["failed_starts"]
    assert failed == BREAKER_THRESHOLD, f"{failed} failed starts; the breaker opens at the 5th"
    assert len(counter.seen) <= failed + 1, f"{len(counter.seen)} launchers for {failed} starts"
    assert len(outcomes) > failed, "calls were made faster than starts: the back-off works"
    assert not _worker_processes()


@pytest.mark.parametrize(
    ("mode", "text"),
    [("raise", "refuses to import"), ("exit", "dying at import on purpose")],
)
def test_provider_unavailable_carries_the_import_error(
    host: Host, flaky_marker: Path, mode: str, text: str
) -> None:
    flaky_marker.write_text(mode + "\n")
    os.chmod(flaky_marker, 0o644)
    with pytest.raises(ProviderUnavailable) as info:
        host.add_provider(FLAKY, policy=Policy(workers={"min": 0, "max": 1}))
    assert text in info.value.message


@requires_root
def test_provider_recovers_after_the_breaker_cooldown(
    host: Host, flaky_marker: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Once the cause is gone and the cool-down has passed, calls are served again.
    (The 30s cool-down is shortened for the test: a module constant the reactor reads.)"""
    monkeypatch.setattr(reactor_module, "BREAKER_COOLDOWN_S", 1.0)
    host.add_provider(FLAKY, policy=Policy(workers={"min": 0, "max": 1}))
    flaky_marker.write_text("raise\n")
    os.chmod(flaky_marker, 0o644)
    (pid,) = _worker_processes().values()
    os.kill(pid, signal.SIGKILL)
    _wait_for(lambda: _workers(host, "flaky_start")["live"] == 0, 10, "the worker to be gone")
    deadline = time.monotonic() + 15
    while not host.stats()["flaky_start"]["breaker_open"]:
        assert time.monotonic() < deadline, "the breaker never opened"
        assert isinstance(_run_bounded(host, "flaky_start.ping").error, ProviderUnavailable)
    flaky_marker.unlink()
    _wait_for(lambda: not host.stats()["flaky_start"]["breaker_open"], 5, "the cool-down")
    # the back-off may still hold the next start for a moment (it can exceed the shortened
    # cool-down); until then calls fail fast, then one is served by a fresh worker
    deadline = time.monotonic() + 10
    while True:
        outcome = _run_bounded(host, "flaky_start.ping")
        if outcome.ok or time.monotonic() > deadline:
            break
        assert isinstance(outcome.error, ProviderUnavailable)
        time.sleep(0.05)
    assert outcome.ok, outcome.error
    assert outcome.value == "pong"
    assert host.stats()["flaky_start"]["breaker_open"] is False


# ---------------------------------------------------------------------- retries


def test_safe_rerun_action_is_retried_on_a_fresh_worker(host: Host, shared_dir: str) -> None:
    policy = Policy(workers={"min": 0, "max": 1}, write=[shared_dir], retries=1)
    host.add_provider(FAULTY, policy=policy)
    outcome = host.run("faulty.crash_first", {"directory": shared_dir, "key": "a"})
    assert outcome.ok, outcome.error
    assert outcome.value == "second"
    assert outcome.attempts == 2
    assert outcome.to_dict().get("attempts") == 2
    assert _runs(shared_dir, "a") == 2
    stats = host.stats()["faulty"]
    assert stats["retries"] == 1
    assert stats["calls"] == {"ok": 1}


def test_retries_are_bounded(host: Host, shared_dir: str) -> None:
    policy = Policy(workers={"min": 0, "max": 1}, write=[shared_dir], retries=2)
    host.add_provider(FAULTY, policy=policy)
    outcome = host.run("faulty.crash_counted", {"directory": shared_dir, "key": "k"})
    assert isinstance(outcome.error, WorkerCrashed)
    assert outcome.attempts == 3
    assert _runs(shared_dir, "k") == 3
    assert host.stats()["faulty"]["retries"] == 2


def test_no_retry_without_retries_or_safe_rerun(host: Host, shared_dir: str) -> None:
    host.add_provider(
        FAULTY, policy=Policy(workers={"min": 0, "max": 1}, write=[shared_dir], retries=0)
    )
    host.add_provider(
        f"{FAULTY}:provider_b",
        policy=Policy(workers={"min": 0, "max": 1}, write=[shared_dir], retries=3),
    )
    # retries=0: a safe_rerun action is not re-run
    outcome = host.run("faulty.crash_first", {"directory": shared_dir, "key": "zero"})
    assert isinstance(outcome.error, WorkerCrashed)
    assert outcome.attempts == 1
    assert _runs(shared_dir, "zero") == 1
    # not safe_rerun: never re-run, whatever the policy says
    outcome = host.run("faulty_b.crash_first_unsafe", {"directory": shared_dir, "key": "unsafe"})
    assert isinstance(outcome.error, WorkerCrashed)
    assert outcome.attempts == 1
    assert _runs(shared_dir, "unsafe") == 1
    assert host.stats()["faulty"]["retries"] == 0
    assert host.stats()["faulty_b"]["retries"] == 0


def test_action_failed_and_timeout_are_never_retried(host: Host, shared_dir: str) -> None:
    policy = Policy(workers={"min": 0, "max": 1}, write=[shared_dir], retries=3, wall_time=1.0)
    host.add_provider(FAULTY, policy=policy)
    outcome = host.run("faulty.fail_counted", {"directory": shared_dir, "key": "failed"})
    assert isinstance(outcome.error, ActionFailed)
    assert outcome.error.exception_type == "RuntimeError"
    assert outcome.attempts == 1
    outcome = host.run(
        "faulty.sleep_counted", {"directory": shared_dir, "key": "slow", "seconds": 30}
    )
    assert isinstance(outcome.error, Timeout)
    assert outcome.attempts == 1
    # the caller's timeout also counts the wait for a worker: have one ready first
    assert host.call("faulty.sleep", {"seconds": 0}) == 0
    outcome = host.run(
        "faulty.sleep_counted", {"directory": shared_dir, "key": "caller", "seconds": 30},
        timeout=0.5,
    )
    assert isinstance(outcome.error, Timeout)
    assert outcome.attempts == 1
    assert host.call("faulty.sleep", {"seconds": 0}) == 0  # served after the timeouts
    assert (_runs(shared_dir, "failed"), _runs(shared_dir, "slow"), _runs(shared_dir, "caller")) \
        == (1, 1, 1)
    assert host.stats()["faulty"]["retries"] == 0


# ---------------------------------------------------------------------- heartbeats


@requires_root
def test_a_hung_idle_worker_is_killed_and_replaced(host: Host) -> None:
    host.add_provider(FAULTY, policy=Policy(workers={"min": 0, "max": 1}))
    frozen = host.call("faulty.freeze_after", {"seconds": 0.1})
    (pid,) = _worker_processes().values()
    _wait_for(lambda: psutil.Process(pid).status() == psutil.STATUS_STOPPED, 5,
              "the worker to stop itself")
    _wait_for(lambda: host.stats()["faulty"]["hung"] >= 1, 20, "the heartbeat to notice")
    _wait_for(lambda: _gone_or_zombie(pid), 10, "the hung worker to die")
    fresh = host.call("faulty.token")
    assert fresh != frozen
    stats = host.stats()["faulty"]
    assert stats["hung"] == 1
    assert stats["calls"] == {"ok": 2}


def test_idle_workers_answer_heartbeats(host: Host) -> None:
    """A healthy idle worker is not taken for hung across several heartbeat timeouts."""
    host.add_provider(FAULTY, policy=Policy(workers={"min": 1, "max": 1}))
    first = host.call("faulty.token")
    time.sleep(5)
    assert host.call("faulty.token") == first
    assert host.stats()["faulty"]["hung"] == 0


# ---------------------------------------------------------------------- cancelling a running call


def test_cancel_a_running_call_kills_its_worker(host: Host) -> None:
    host.add_provider(FAULTY, policy=Policy(workers={"min": 0, "max": 1}, wall_time=60))
    before = host.call("faulty.token")
    future = host.submit("faulty.sleep", {"seconds": 30})
    _wait_for(lambda: future.running() and _workers(host)["busy"] == 1, 10, "the call to run")
    started = time.monotonic()
    assert future.cancel() is True
    with pytest.raises(Cancelled):
        future.result(timeout=10)
    assert time.monotonic() - started < 5
    assert future.done()
    assert future.outcome is not None and future.outcome.error is not None
    assert future.outcome.error.type == "Cancelled"
    after = host.call("faulty.token")
    assert after != before, "the worker of a cancelled call must be replaced"
    assert future.cancel() is False, "a finished call cannot be cancelled again"
    stats = host.stats()["faulty"]
    assert stats["calls"] == {"ok": 2, "Cancelled": 1}


# ---------------------------------------------------------------------- close(timeout)


def test_close_lets_running_calls_finish_and_cancels_queued_ones() -> None:
    host = Host()
    host.add_provider(FAULTY, policy=Policy(workers={"min": 0, "max": 1}, wall_time=30))
    running = host.submit("faulty.sleep", {"seconds": 1.0})
    _wait_for(running.running, 10, "the call to run")
    queued = host.submit("faulty.sleep", {"seconds": 0})
    host.close(timeout=10)
    assert running.result(timeout=1) == 1.0
    assert isinstance(queued.exception(timeout=1), Cancelled)
    with pytest.raises(RuntimeError):
        host.submit("faulty.sleep", {"seconds": 0})
    host.close()  # closing twice is harmless
    assert not _sandbox_processes()


def test_close_timeout_cancels_calls_still_running() -> None:
    host = Host()
    host.add_provider(FAULTY, policy=Policy(workers={"min": 0, "max": 2}, wall_time=60))
    futures = [host.submit("faulty.sleep", {"seconds": 30}) for _ in range(2)]
    _wait_for(lambda: all(f.running() for f in futures), 15, "the calls to run")
    started = time.monotonic()
    host.close(timeout=0.5)
    assert time.monotonic() - started < 8, "close must not wait for the calls"
    for future in futures:
        error = future.exception(timeout=1)
        assert isinstance(error, Cancelled), error
    assert not _sandbox_processes()


# ---------------------------------------------------------------------- logging


def test_one_warning_per_failure_with_extra_fields(
    host: Host, caplog: pytest.LogCaptureFixture
) -> None:
    host.add_provider(FAULTY, policy=Policy(workers={"min": 0, "max": 1}, wall_time=1.0))
    caplog.set_level(logging.DEBUG, logger="actionsandbox")
    caplog.clear()
    assert host.run("faulty.boom", {"message": "bad"}).error is not None
    assert host.run("faulty.crash", {"code": 3}).error is not None
    assert host.run("faulty.sleep", {"seconds": 10}).error is not None
    assert host.call("faulty.sleep", {"seconds": 0}) == 0
    call_records = [r for r in caplog.records if r.name.startswith("actionsandbox")
                    and hasattr(r, "outcome")]
    warnings = [r for r in call_records if r.levelno == logging.WARNING]
    assert [r.outcome for r in warnings] == ["ActionFailed", "WorkerCrashed", "Timeout"]
    assert [r.action for r in warnings] == ["faulty.boom", "faulty.crash", "faulty.sleep"]
    for record in warnings:
        assert record.provider == "faulty"
        assert set(record.usage) >= {"wall_s", "cpu_s", "max_rss_bytes"}
        assert record.usage["wall_s"] >= 0
    ok = [r for r in call_records if r.outcome == "ok"]
    assert len(ok) == 1 and ok[0].levelno == logging.DEBUG
    assert ok[0].action == "faulty.sleep"


# ---------------------------------------------------------------------- host exit and death


def _script(body: str) -> str:
    return textwrap.dedent(
        f"""
        import sys, time
        sys.path.insert(0, {str(REPO)!r})
        from host import Host
        from policies import Policy

        def wait_busy(host, provider="faulty"):
            deadline = time.monotonic() + 20
            while host.stats()[provider]["workers"]["busy"] < 1:
                assert time.monotonic() < deadline
                time.sleep(0.02)
        """
    ) + textwrap.dedent(body)


def _run_script(body: str, timeout: float = 30) -> tuple[subprocess.CompletedProcess[str], float]:
    started = time.monotonic()
    done = subprocess.run(
        [PYTHON, "-c", _script(body)], cwd=REPO, capture_output=True, text=True,
        timeout=timeout,
    )
    return done, time.monotonic() - started


def test_interpreter_exit_without_close_does_not_hang() -> None:
    done, elapsed = _run_script(
        f"""
        host = Host()
        host.add_provider({FAULTY!r}, policy=Policy(wall_time=120))
        future = host.submit("faulty.sleep", {{"seconds": 100}})
        wait_busy(host)
        print("running", flush=True)
        """
    )
    assert done.returncode == 0, done.stderr
    assert "running" in done.stdout
    assert elapsed < 20, f"interpreter exit took {elapsed:.1f}s"
    _wait_for(lambda: not _worker_processes() and not _sandbox_processes(), 5,
              "every worker of the exited host to be gone")


def test_interpreter_exit_with_pending_queue_does_not_hang() -> None:
    done, elapsed = _run_script(
        f"""
        host = Host()
        host.add_provider({FAULTY!r}, policy=Policy(wall_time=120, workers={{"max": 1}}))
        futures = [host.submit("faulty.sleep", {{"seconds": 100}}) for _ in range(5)]
        wait_busy(host)
        print("running", flush=True)
        sys.exit(3)
        """
    )
    assert done.returncode == 3, done.stderr
    assert elapsed < 20, f"interpreter exit took {elapsed:.1f}s"
    _wait_for(lambda: not _worker_processes() and not _sandbox_processes(), 5,
              "every worker of the exited host to be gone")


def test_garbage_collected_host_stops_its_workers() -> None:
    host = Host()
    host.add_provider(FAULTY, policy=Policy(wall_time=60))
    future = host.submit("faulty.sleep", {"seconds": 30})
    _wait_for(lambda: future.running(), 10, "the call to run")
    del host
    gc.collect()
    error = future.exception(timeout=20)
    assert isinstance(error, Cancelled), error
    _wait_for(lambda: not _sandbox_processes(), 10, "the workers to be stopped")


def _cgroup_dirs(worker_ids: list[str]) -> list[Path]:
    """The cgroups the host made for these workers (a killed host cannot remove them)."""
    support = cgroups.probe()
    return [Path(parent) / f"sandbox-{worker_id}" for parent in support.parents.values()
            for worker_id in worker_ids]


def _reap_orphans() -> None:
    """Orphans of a killed process are re-parented to pid 1; under ``unshare --pid`` the test
    process is pid 1 and must reap them like an init does."""
    for child in psutil.Process().children():
        try:
            if child.status() == psutil.STATUS_ZOMBIE:
                os.waitpid(child.pid, os.WNOHANG)
        except (psutil.Error, ChildProcessError):
            continue


@requires_root
def test_killed_host_takes_its_workers_with_it() -> None:
    worker_ids: list[str] = []
    script = _script(
        f"""
        host = Host()
        host.add_provider({FAULTY!r}, policy=Policy(wall_time=120, workers={{"max": 2}}))
        futures = [host.submit("faulty.sleep", {{"seconds": 100}}) for _ in range(2)]
        deadline = time.monotonic() + 20
        while host.stats()["faulty"]["workers"]["busy"] < 2:
            assert time.monotonic() < deadline
            time.sleep(0.02)
        workers = [w.worker_id for p in host._reactor.providers.values() for w in p.workers]
        print("running", " ".join(workers), flush=True)
        print(host._reactor.transport.directory, host._reactor._workdir_root, flush=True)
        time.sleep(120)
        """
    )
    host_dirs: list[str] = []
    process = subprocess.Popen([PYTHON, "-c", script], cwd=REPO, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        assert line.startswith("running"), process.stderr.read() if process.stderr else ""
        worker_ids = line.split()[1:]
        host_dirs = process.stdout.readline().split()
        assert len(worker_ids) == 2
        assert len(_worker_processes()) == 2
        process.kill()
        process.wait(timeout=10)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            _reap_orphans()
            # an exiting process may already show no cmdline: wait for every descendant too
            if not (_worker_processes() or _sandbox_processes()
                    or psutil.Process().children(recursive=True)):
                break
            time.sleep(0.05)
        assert not _worker_processes(), "a worker outlived its killed host"
        assert not _sandbox_processes(), "a launcher or init outlived its killed host"
        assert not psutil.Process().children(recursive=True)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        for directory in _cgroup_dirs(worker_ids):  # a killed host cannot clean up
            with contextlib.suppress(OSError):
                directory.rmdir()  # only succeeds once no process is left in it
        for leftover in host_dirs:  # nor remove its ipc and work directories
            if os.path.basename(leftover).startswith("sandbox-"):
                shutil.rmtree(leftover, ignore_errors=True)
        _reap_orphans()


if sys.platform != "linux":  # pragma: no cover
    pytestmark = pytest.mark.skip(reason="Linux only")


def test_log_records_name_the_real_provider_under_the_distributions_logger(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Records once said "spawned worker ... for provider <pending 1>" (an internal key) and
    used the logger ``host``, which collides with any other library's logger of that name."""
    caplog.set_level(logging.DEBUG)
    with Host() as fresh:
        fresh.add_provider(FAULTY, policy=Policy(workers={"min": 0, "max": 1}))
        assert fresh.call("faulty.sleep", {"seconds": 0}) == 0
    ours = [r for r in caplog.records if r.name.split(".")[0] in {"host", "actionsandbox"}]
    assert ours, "the host logged nothing"
    assert all(r.name.startswith("actionsandbox.") for r in ours), {r.name for r in ours}
    messages = [r.getMessage() for r in ours]
    assert not [m for m in messages if "pending" in m], messages
    spawned = [m for m in messages if m.startswith("spawned worker")]
    assert spawned and all("faulty" in m for m in spawned), messages
