"""The test run is confined to its own pid namespace, whoever runs it (``tests/confinement.py``)."""

from __future__ import annotations

import os

import psutil
import pytest

from tests import confinement


def test_the_run_is_pid_1_of_its_own_pid_namespace() -> None:
    assert confinement.unconfined_reason() is None
    assert os.getpid() == 1
    assert os.stat("/proc/self/ns/pid").st_ino != confinement.INITIAL_PID_NAMESPACE


def test_every_visible_process_is_the_runs() -> None:
    """/proc is the namespace's: nothing but this process and its descendants is visible (so
    nothing else can be signalled or counted as a leak)."""
    mine = {os.getpid()} | {p.pid for p in psutil.Process().children(recursive=True)}
    visible = set(psutil.pids())
    assert visible <= mine, f"processes outside the run are visible: {sorted(visible - mine)}"


@pytest.mark.skipif(os.geteuid() == 0, reason="the non-root path: the runner is not root")
def test_a_non_root_runner_stays_non_root_inside() -> None:
    """The user namespace maps the runner's uid to itself (not to 0), and the re-executed run
    holds no capability: the code under test takes the non-root path for real."""
    uid = os.getuid()
    with open("/proc/self/uid_map") as f:
        assert f.read().split() == [str(uid), str(uid), "1"]
    with open("/proc/self/status") as f:
        caps = {k: int(v, 16) for k, _, v in (line.partition(":") for line in f)
                if k in ("CapEff", "CapPrm")}  # fmt: skip
    assert caps == {"CapEff": 0, "CapPrm": 0}
