"""What a SIGKILLed host left (its state directory with the ipc directory and workdirs, and
its cgroups) is reclaimed by the next ``Host`` on the machine; what a live host owns - one in
another pid namespace, where its pid means nothing - is never touched (liveness is its flock)."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

from host import Host
from tests.conftest import provider_file

REPO = Path(__file__).resolve().parent.parent
ECHO = provider_file("echo.py")

SCRIPT = textwrap.dedent(
    """
    import os, sys, time
    from host import Host
    from policies import Policy
    host = Host()
    host.add_provider(sys.argv[1], policy=Policy(workers={"min": 2, "max": 2}))
    while host.stats()["echo"]["workers"]["idle"] < 2:
        time.sleep(0.05)
    reactor = host._reactor
    groups = [d for p in reactor.providers.values() for w in p.workers
              if w.process.cgroup for d in w.process.cgroup.directories.values()]
    print(reactor._state.directory, *groups, flush=True)
    time.sleep(120)
    """
)


def _start(*prefix: str) -> tuple[subprocess.Popen[str], list[str]]:
    process = subprocess.Popen([*prefix, sys.executable, "-c", SCRIPT, ECHO], cwd=REPO,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert process.stdout is not None
    line = process.stdout.readline()
    assert line.strip(), process.stderr.read() if process.stderr else ""
    return process, line.split()


def _wait_gone(paths: list[str], timeout: float) -> list[str]:
    deadline = time.monotonic() + timeout
    while True:
        left = [p for p in paths if os.path.lexists(p)]
        if not left or time.monotonic() > deadline:
            return left
        time.sleep(0.05)


@pytest.mark.skipif(os.geteuid() != 0 or shutil.which("unshare") is None,
                    reason="needs root and unshare for a second pid namespace")
def test_a_new_host_reclaims_what_a_killed_host_left_and_spares_a_live_one() -> None:
    live, live_paths = _start("unshare", "--pid", "--fork", "--mount-proc", "--kill-child")
    dead, dead_paths = _start()
    try:
        assert all(os.path.exists(p) for p in dead_paths + live_paths)
        assert len(dead_paths) > 1  # a state directory and cgroups
        dead.send_signal(signal.SIGKILL)
        dead.wait(timeout=10)
        with Host():  # reclaims on start (its janitor; joined when it closes)
            pass
        assert _wait_gone(dead_paths, 30) == []
        assert all(os.path.exists(p) for p in live_paths), "a live host's state was touched"
    finally:
        for process in (dead, live):
            if process.poll() is None:
                process.kill()
            process.wait(timeout=30)
    # The live one is being killed now (unshare's --kill-child is asynchronous: its lock is free
    # only once it has died): the next hosts reclaim it too.
    deadline = time.monotonic() + 30
    while _wait_gone(live_paths, 0.5) and time.monotonic() < deadline:
        with Host():
            pass
    assert _wait_gone(live_paths, 30) == []
    _reap_the_killed_hosts_orphans()


def _reap_the_killed_hosts_orphans() -> None:
    """The killed hosts' zygotes and launchers were reparented to this process when it is pid 1
    (as the suite runs): their reaping is the job of whoever is pid 1, here the test."""
    import psutil

    def zombies() -> list[int]:
        found = []
        for child in psutil.Process().children():
            with contextlib.suppress(psutil.Error):
                if child.status() == psutil.STATUS_ZOMBIE:
                    found.append(child.pid)
        return found

    deadline = time.monotonic() + 10
    quiet = 0
    while time.monotonic() < deadline and quiet < 3:
        found = zombies()
        for pid in found:
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, os.WNOHANG)
        quiet = 0 if found else quiet + 1
        time.sleep(0.1)


def test_hosts_starting_together_never_reclaim_one_another(tmp_path: Path) -> None:
    """Hosts that start at the same moment each sweep the state directories: one being set up
    right then must never look dead to the others (its lock file exists before it is locked),
    or the new host's own ``flock`` fails and ``Host()`` raises (seen in CI: four hosts started
    in threads, one got ``BlockingIOError``)."""
    from host.janitor import Janitor
    from host.ownership import HostState, reclaim

    errors: list[BaseException] = []
    live: list[HostState] = []
    janitor = Janitor()

    def churn() -> None:
        # Each thread keeps its last few hosts and closes older ones (hosts also close while
        # others sweep), so a sweep stays short and the run is many starts, not a long scan.
        mine: list[HostState] = []
        try:
            for _ in range(150):
                try:
                    state = HostState(shared_with_other_uids=False, parent=str(tmp_path))
                except BaseException as exc:
                    errors.append(exc)
                    return
                mine.append(state)
                reclaim(janitor, [], parent=str(tmp_path))
                if not os.path.isdir(state.directory):  # (an assert would only end the thread)
                    went = f"a live host's directory went: {state.directory}"
                    errors.append(AssertionError(went))
                    return
                if len(mine) > 3:
                    mine.pop(0).remove()
        finally:
            live.extend(mine)

    threads = [threading.Thread(target=churn) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    try:
        assert not errors, f"{len(errors)} host(s) failed to start or lost it: {errors[0]!r}"
        assert all(os.path.isdir(s.directory) for s in live)
    finally:
        for state in live:
            state.remove()
        janitor.close(timeout=30)
