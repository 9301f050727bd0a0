"""A worker's death is reported as the crash it is, and a call no worker received runs again.

Both are races between what the host sees and what happened: a dying worker's connection
closes a moment before its init reaps it (so the host used to see the disconnect first, kill the
worker itself and call the death a protocol violation), and a call handed to an idle worker that
had just died was failed although it never ran. Load on the machine widens both windows, so the
tests run many deaths with CPU-burning processes beside them.
"""

from __future__ import annotations

import collections
import concurrent.futures
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager

import psutil

from host import Host
from policies import Policy
from tests.conftest import provider_file

LIAR = provider_file("usage_liar.py")
#: Calls of a dying action; each dies twice (a retry), so twice as many worker deaths.
DYING_CALLS = 120
#: Idle workers killed just before a call is handed to them.
IDLE_KILLS = 40


@contextmanager
def cpu_load(processes: int = 2) -> Iterator[None]:
    """Busy processes beside the host (bounded: each stops by itself after a minute)."""
    code = "import time\nend = time.monotonic() + 60\nwhile time.monotonic() < end: pass\n"
    spinners = [subprocess.Popen([sys.executable, "-c", code]) for _ in range(processes)]
    try:
        yield
    finally:
        for spinner in spinners:
            spinner.kill()
            spinner.wait()


def test_a_death_is_a_crash_never_a_protocol_violation(host: Host) -> None:
    policy = Policy(workers={"min": 0, "max": 2}, retries=1, wall_time=30)
    host.add_provider(LIAR, policy=policy)
    how = ("kill", "exit", "segv", "drop")
    with cpu_load():
        futures = [
            host.submit("usage_liar.die", {"how": how[i % len(how)]}) for i in range(DYING_CALLS)
        ]
        concurrent.futures.wait(futures, timeout=300)
    outcomes = [f.outcome for f in futures]
    assert all(o is not None for o in outcomes), "every call ends"
    kinds = collections.Counter(
        (type(o.error).__name__, o.attempts) for o in outcomes if o is not None
    )
    assert kinds == {("WorkerCrashed", 2): DYING_CALLS}, (
        f"every death is a WorkerCrashed, retried once (safe_rerun, retries=1): {kinds}"
    )


def _idle_worker_pid(host: Host) -> int:
    """The host-side pid of the provider's one idle worker (the init's child)."""
    workers = list(host._reactor.providers["usage_liar"].workers)
    assert len(workers) == 1
    launcher = workers[0].process.pid
    tree = psutil.Process(launcher).children(recursive=True)
    (worker,) = [p for p in tree if p.ppid() != launcher]
    return worker.pid


def test_a_call_sent_to_a_worker_that_had_just_died_runs_on_a_fresh_one(host: Host) -> None:
    host.add_provider(LIAR, policy=Policy(workers={"min": 1, "max": 1}, wall_time=30))
    failures: list[str] = []
    with cpu_load():
        for _ in range(IDLE_KILLS):
            first = host.call("usage_liar.token")  # a worker is idle now
            os.kill(_idle_worker_pid(host), signal.SIGKILL)
            outcome = host.run("usage_liar.token")
            if not outcome.ok or outcome.attempts != 1 or outcome.value == first:
                failures.append(f"{outcome.error!r} attempts={outcome.attempts}")
    assert not failures, (
        f"{len(failures)} of {IDLE_KILLS} calls that no worker received did not run once on a "
        f"fresh worker: {failures[:5]}"
    )

