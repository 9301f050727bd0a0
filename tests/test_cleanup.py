"""Nothing one worker leaves behind, and nothing the host fails at while handling one worker,
may stop the host: a hostile provider's workdir (chains 1,500 and 20,000 directories deep,
locked directories, links to the host's files) is removed without following a link, off the
event loop, and the host goes on serving every other provider; an exception in the handling
of one worker's event ends that worker (its call gets an outcome), never the loop."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from host import Host, WorkerCrashed
from host import reactor as reactor_module
from policies import Policy
from tests.conftest import provider_file

LITTER = provider_file("litter.py")
ECHO = provider_file("echo.py")


def _wait_for(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out after {timeout}s waiting for {what}"
        time.sleep(0.05)


@pytest.fixture
def target(tmp_path: Path) -> Iterator[Path]:
    """A host directory the worker links to: its removal must never reach it."""
    directory = tmp_path / "target"
    directory.mkdir()
    (directory / "keep.txt").write_text("keep")
    os.chmod(tmp_path, 0o755)
    yield directory


def _intact(target: Path) -> bool:
    return (target / "keep.txt").read_text() == "keep"


@pytest.mark.parametrize("depth", [1500, 5000])
def test_a_workdir_too_deep_for_a_recursive_remover_is_removed_and_the_host_goes_on(
    depth: int,
) -> None:
    with Host() as host:
        host.add_provider(LITTER, policy=Policy(wall_time=120, cpu_time=120, max_calls=1))
        host.add_provider(ECHO)
        workdir = host.call("litter.deep_chain", {"depth": depth})
        assert workdir.startswith(host._reactor._workdir_root)
        # max_calls=1: the worker is retired after this call and its workdir removed.
        _wait_for(lambda: not os.path.exists(workdir), 120, "the deep workdir to be removed")
        assert host.call("echo.add", {"a": 1}) == 2
        assert host.call("litter.workdir") != workdir  # a fresh worker serves the provider


def test_a_worker_that_dies_leaving_a_deep_chain_does_not_stop_the_host() -> None:
    with Host() as host:
        host.add_provider(LITTER, policy=Policy(wall_time=60))
        host.add_provider(ECHO)
        workdir = host.call("litter.deep_chain", {"depth": 3000})
        with pytest.raises(WorkerCrashed):
            host.call("litter.leave", {"code": 3})
        assert host.call("echo.add", {"a": 2}) == 3
        _wait_for(lambda: not os.path.exists(workdir), 120, "the deep workdir to be removed")
        assert host.call("litter.workdir") != workdir


def test_closing_removes_a_deep_workdir_of_a_running_worker(target: Path) -> None:
    host = Host()
    host.add_provider(LITTER, policy=Policy(wall_time=60))
    host.add_provider(ECHO)
    workdir = host.call("litter.obstacles", {"link_target": str(target), "depth": 2500})
    root = host._reactor._workdir_root
    assert os.path.isdir(workdir)
    host.close()
    assert not os.path.exists(workdir)
    assert not os.path.exists(root)
    assert _intact(target)


@pytest.mark.parametrize("depth", [0, 1200])
def test_removal_never_follows_a_link_and_gets_through_locked_directories(
    target: Path, depth: int
) -> None:
    with Host() as host:
        host.add_provider(LITTER, policy=Policy(wall_time=60, max_calls=1))
        workdir = host.call("litter.obstacles", {"link_target": str(target), "depth": depth})
        _wait_for(lambda: not os.path.lexists(workdir), 60, "the workdir to be removed")
        assert _intact(target)
        assert os.listdir(target) == ["keep.txt"]


def test_a_wide_workdir_is_removed_off_the_loop() -> None:
    """60,000 files in the host-side workdir (what a worker without a mount namespace leaves:
    with one, its writes land on its own tmpfs and this directory stays empty) are removed by
    the janitor while the loop serves other calls."""
    with Host() as host:
        host.add_provider(LITTER, policy=Policy(wall_time=60))
        host.add_provider(ECHO)
        (worker,) = host._reactor.providers["litter"].workers
        workdir = worker.process.workdir
        wide = os.path.join(workdir, "wide")
        os.mkdir(wide)
        for index in range(60000):
            os.close(os.open(os.path.join(wide, str(index)), os.O_CREAT | os.O_WRONLY, 0o600))
        with pytest.raises(WorkerCrashed):
            host.call("litter.leave", {"code": 3})
        assert host.call("echo.add", {"a": 4}) == 5
        _wait_for(lambda: not os.path.exists(workdir), 120, "the wide workdir to be removed")


def test_an_exception_handling_one_workers_exit_ends_only_that_worker(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A bug (here injected) in the host's handling of one worker's exit fails that worker's
    call with WorkerCrashed, and the host serves every provider afterwards, that one too."""
    original = reactor_module.Reactor._on_exit
    failures: list[str] = []

    def failing_on_exit(self: reactor_module.Reactor, worker: object, status: object) -> None:
        handle = worker
        assert isinstance(handle, reactor_module.WorkerHandle)
        if handle.provider.name == "litter" and not failures:
            failures.append(handle.worker_id)
            raise RuntimeError("injected failure while handling an exit")
        original(self, handle, status)  # type: ignore[arg-type]

    with Host() as host:
        host.add_provider(LITTER, policy=Policy(wall_time=60))
        host.add_provider(ECHO)
        workdir = host.call("litter.workdir")
        monkeypatch.setattr(reactor_module.Reactor, "_on_exit", failing_on_exit)
        with pytest.raises(WorkerCrashed, match="the host failed handling"):
            host.call("litter.leave", {"code": 5})
        assert failures
        assert host.call("echo.add", {"a": 6}) == 7
        assert host.call("litter.workdir") != workdir
        _wait_for(lambda: not os.path.exists(workdir), 30, "the abandoned worker's workdir")


def test_an_exception_in_a_workers_deadline_ends_only_that_worker(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A timer concerning one worker (its wall-time deadline) that raises ends that worker."""

    def failing_deadline(self: reactor_module.Reactor, call: object, worker: object) -> None:
        raise RuntimeError("injected failure in a deadline")

    with Host() as host:
        host.add_provider(ECHO, policy=Policy(wall_time=0.5))
        monkeypatch.setattr(reactor_module.Reactor, "_wall_deadline", failing_deadline)
        with pytest.raises(WorkerCrashed, match="the host failed handling a deadline"):
            host.call("echo.slow", {"seconds": 30})
        monkeypatch.undo()
        assert host.call("echo.add", {"a": 1}) == 2


def test_empty_cgroups_of_a_host_that_died_out_of_sight_are_removed_when_still_empty(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A host killed with -9 whose TMPDIR then went away (a tmp cleaner, PrivateTmp, another
    TMPDIR for the next run) left its named cgroups for ever: a later host removes a dead
    owner's cgroups only when it finds the owner's state directory. An empty named cgroup a
    host sees at start, old and still empty a while later, is now removed; one with a
    process in it is not (nor could it be)."""
    import subprocess
    import uuid

    from host import cgroups

    support = cgroups.probe()
    if not support.version or os.geteuid() != 0:
        pytest.skip("needs cgroups the host can manage (root, or a delegated hierarchy)")
    monkeypatch.setattr(cgroups, "ORPHANED_RECHECK_S", 0.5)
    owner = uuid.uuid4().hex[:12]
    parents = list(support.parents.values())
    empty = [f"{p}/sandbox-wdead{uuid.uuid4().hex[:8]}.{owner}" for p in parents]
    busy = f"{parents[0]}/sandbox-wbusy{uuid.uuid4().hex[:8]}.{owner}"
    hour_ago = time.time() - 3600
    sleeper = subprocess.Popen(["sleep", "60"])
    try:
        for path in [*empty, busy]:
            os.mkdir(path)
        with open(f"{busy}/cgroup.procs", "w") as f:
            f.write(str(sleeper.pid))
        for path in [*empty, busy]:
            os.utime(path, (hour_ago, hour_ago))
        with Host():
            deadline = time.monotonic() + 30
            while any(os.path.exists(p) for p in empty) and time.monotonic() < deadline:
                time.sleep(0.1)
            assert not [p for p in empty if os.path.exists(p)], "orphaned cgroups stayed"
            assert os.path.isdir(busy)
    finally:
        sleeper.kill()
        sleeper.wait()
        for path in [*empty, busy]:
            for _ in range(50):
                try:
                    os.rmdir(path)
                    break
                except FileNotFoundError:
                    break
                except OSError:
                    time.sleep(0.05)
