"""A Host in a process that ``eventlet.monkey_patch()`` patched (older OpenStack services).

Patched, ``select`` has no ``poll``/``epoll`` (``Host()`` failed at once), ``os.read`` waits
for data instead of raising ``BlockingIOError`` (the loop hung reading a worker's status pipe)
and ``threading`` makes the loop a green thread that must wait in eventlet's hub (in a real
poll it stopped its callers). Each check runs in a subprocess of its own: the patching must not
reach the rest of the suite.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests.conftest import provider_file

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("eventlet") is None,
    reason="eventlet is not installed (pip install eventlet)",
)

REPO = Path(__file__).resolve().parent.parent

SCRIPT = textwrap.dedent(
    """
    import eventlet
    eventlet.monkey_patch()
    import faulthandler, json, sys, time
    faulthandler.dump_traceback_later(90, exit=True)
    from host import Host
    from policies import Policy

    ticks = []

    def ticker():
        while True:
            ticks.append(time.monotonic())
            eventlet.sleep(0.05)

    eventlet.spawn(ticker)
    report = {}
    with Host(spawn=sys.argv[2]) as host:
        host.add_provider(sys.argv[1], policy=Policy(wall_time=1.0))
        report["first"] = host.call("echo.echo", {"value": "first"}, timeout=20)
        before = len(ticks)
        killed = host.run("echo.slow", {"seconds": 30}, timeout=20)
        report["killed"] = killed.error.type if killed.error else None
        report["ticks_while_waiting"] = len(ticks) - before
        after = host.run("echo.echo", {"value": "after"}, timeout=20)
        report["after"] = after.value if after.ok else repr(after.error)
        pool = eventlet.GreenPool()
        calls = pool.imap(lambda i: host.call("echo.add", {"a": i}, timeout=20), range(6))
        report["concurrent"] = list(calls)
    print("REPORT " + json.dumps(report), flush=True)
    """
)


@pytest.mark.parametrize("spawn", ["zygote", "fresh"])
def test_host_serves_after_a_killed_worker_under_monkey_patch(spawn: str) -> None:
    proc = subprocess.run(
        [sys.executable, "-c", SCRIPT, provider_file("echo.py"), spawn],
        cwd=REPO, capture_output=True, text=True, timeout=120,
    )
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("REPORT ")]
    assert lines, proc.stdout[-2000:] + proc.stderr[-4000:]
    report = json.loads(lines[-1][len("REPORT "):])
    assert report["first"] == "first"
    assert report["killed"] == "Timeout"
    # The caller's wait let the process's other green threads run (20 ticks a second).
    assert report["ticks_while_waiting"] >= 5, report
    assert report["after"] == "after"
    assert report["concurrent"] == [i + 1 for i in range(6)]
    assert proc.returncode == 0, proc.stderr[-4000:]
