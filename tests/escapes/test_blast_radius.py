"""kill(-1) fires only where every process it could reach belongs to the test run.

The kill_all attack's guard (``attacks.kill_all_blast_radius``) must see a process outside its
own tree that it may signal and then refuse, whoever runs the suite: a non-root worker without a
pid namespace has the runner's uid, and ``kill(-1)`` would reach the runner's shell and editor
if the run were not confined. Here the "outside" process is a sibling the test starts.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator

import pytest

from host import Host
from tests import confinement
from tests.escapes import attacks
from tests.escapes.catalog import ATTACKS, degraded_policies
from tests.forking import in_child

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux sandbox")


@pytest.fixture
def bystander() -> Iterator[subprocess.Popen[bytes]]:
    """A process of the runner's uid that no worker created (stands for the runner's shell)."""
    process = subprocess.Popen(["sleep", "600"], stdin=subprocess.DEVNULL)
    yield process
    process.kill()
    process.wait()


def test_a_signalable_process_outside_its_tree_stops_the_attack(
    bystander: subprocess.Popen[bytes],
) -> None:
    why = in_child(lambda: attacks.kill_all_blast_radius(0))
    assert why is not None and "may signal pid" in why, why


def test_the_runs_own_namespace_is_its_blast_radius(bystander: subprocess.Popen[bytes]) -> None:
    assert confinement.confined()
    namespace = confinement.pid_namespace()
    assert in_child(lambda: attacks.kill_all_blast_radius(namespace)) is None


def test_kill_all_without_the_runs_namespace_does_not_fire(
    host: Host, bystander: subprocess.Popen[bytes]
) -> None:
    """End to end, under 'rlimits only' (the worker shares this pid namespace and, as non-root,
    this uid): told nothing about the run, the attack must report the escape and not fire."""
    host.add_provider(ATTACKS, policy=degraded_policies()["rlimits only"], name="attacks")
    value = host.call("attacks.kill_all", {"signum": int(signal.SIGUSR2), "run_pid_namespace": 0})
    assert value["escaped"] is True and value.get("guarded") is True, value
    assert bystander.poll() is None, "kill(-1) fired: the bystander died"
    host.remove_provider("attacks")
    assert os.getpid() == 1  # confined: nothing outside the run was ever at risk
