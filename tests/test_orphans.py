"""Nothing the host started may end up a zombie: a host that is pid 1 of its pid namespace (an
engine in a container without an init) inherits the inits, launchers and spare that a killed
zygote or launcher orphans, and must reap exactly those (never ``waitpid(-1)``, which would
steal the engine's own children). Each test runs a host script as pid 1 of a new namespace
(``unshare --pid --fork --mount-proc``), SIGKILLs the host's helper processes from inside it,
and reads /proc there for zombies."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests.conftest import provider_file

REPO = Path(__file__).resolve().parent.parent
ECHO = provider_file("echo.py")

SCRIPT = textwrap.dedent(
    """
    import json, os, signal, sys, time
    from host import Host
    from policies import Policy

    mode, victims = sys.argv[1], sys.argv[2].split(",")
    assert os.getpid() == 1, os.getpid()

    def stat(pid):
        try:
            data = open(f"/proc/{pid}/stat", "rb").read()
        except OSError:
            return None
        fields = data[data.rfind(b")") + 2:].split()
        return fields[0].decode(), int(fields[1])

    def zombies():
        found = []
        for entry in os.listdir("/proc"):
            if entry.isdigit():
                s = stat(int(entry))
                if s is not None and s[0] == "Z":
                    found.append((int(entry), s[1]))
        return found

    def children(pid):
        try:
            return [int(p) for p in open(f"/proc/{pid}/task/{pid}/children").read().split()]
        except OSError:
            return []

    def settle(seconds):
        deadline = time.monotonic() + seconds
        while zombies() and time.monotonic() < deadline:
            time.sleep(0.1)
        return zombies()

    host = Host(spawn=mode)
    host.add_provider(sys.argv[3], policy=Policy(workers={"min": 2, "max": 2}))
    reactor = host._reactor
    deadline = time.monotonic() + 30
    while True:
        ready = host.stats()["echo"]["workers"]["idle"] == 2
        spare_ready = mode != "zygote" or (reactor._spare is not None
                                           and not reactor._spare.pending())
        if ready and spare_ready:
            break
        assert time.monotonic() < deadline, "workers did not start"
        time.sleep(0.05)
    time.sleep(0.3)  # the launchers' notes of their inits have been read
    launchers = [w.process.pid for p in reactor.providers.values() for w in p.workers]
    inits = [c for pid in launchers for c in children(pid)]
    targets = []
    if "inits" in victims:
        targets += inits
    if "launchers" in victims:
        targets += launchers
    if mode == "zygote" and "zygote" in victims:
        targets.append(reactor.zygotes.current.pid)
        targets.append(reactor._spare.forked.child.pid)
    def tree(pid):
        return [pid] + [d for c in children(pid) for d in tree(c)]

    doomed = {d for pid in targets for d in tree(pid)}
    for pid in targets:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass  # (a launcher whose init was just killed may have exited and been reaped)
    # The kernel may take seconds to finish a killed process's exit (tearing down its memory
    # and namespaces) on a loaded machine; that is not the host's doing. Once every doomed
    # process is dead (a zombie or gone), the host has a few heartbeats to reap what is its.
    deadline = time.monotonic() + 60
    while any((s := stat(pid)) is not None and s[0] != "Z" for pid in doomed):
        assert time.monotonic() < deadline, "the killed processes did not die"
        time.sleep(0.05)
    after_kill = settle(5)
    # (a call may still meet a dying worker; the host replaces it)
    served = any(host.run("echo.add", {"a": 1}).value == 2 or time.sleep(0.5)
                 for _ in range(10))
    host.close()
    after_close = settle(5)
    print(json.dumps({"killed": len(targets), "inits": len(inits), "served": served,
                      "after_kill": after_kill, "after_close": after_close}), flush=True)
    """
)


@pytest.mark.skipif(os.geteuid() != 0 or shutil.which("unshare") is None,
                    reason="needs root and unshare for a pid namespace")
@pytest.mark.parametrize(
    ("mode", "victims"),
    [
        ("fresh", "launchers"),
        ("fresh", "launchers,inits"),
        ("zygote", "zygote"),
        ("zygote", "zygote,launchers"),
        ("zygote", "zygote,launchers,inits"),
    ],
)
def test_a_pid1_host_leaves_no_zombie_of_what_it_started(mode: str, victims: str) -> None:
    result = subprocess.run(
        ["unshare", "--pid", "--fork", "--mount-proc", sys.executable, "-c", SCRIPT,
         mode, victims, ECHO],
        cwd=REPO, capture_output=True, text=True, timeout=120,
    )
    lines = [line for line in result.stdout.splitlines() if line.startswith("{")]
    assert lines, result.stderr[-3000:]
    report = json.loads(lines[-1])
    assert report["killed"] >= 2 and report["inits"] == 2
    assert report["after_kill"] == [], report
    assert report["served"]
    assert report["after_close"] == [], report
