"""The catalog under degraded policies: what each layer buys, and what the backstops still stop.

Each degraded policy switches layers off with the explicit opt-in (``skip`` plus
``allow_missing``). For every attack the EXPECTED verdict follows from its ``layers`` in
``catalog.py``: contained iff a remaining layer (or pair, ``a+b``) is one that stops it on its
own; a guarded attack is contained only while ``uid_drop`` holds (a root worker is not allowed
to try it, and reports that honestly as "escaped"). Some examples of the reasoning:

* no seccomp: ``/etc/shadow`` is still stopped by Landlock and the uid drop; TCP connect and bind
  by Landlock's TCP rules and the network namespace; but creating an AF_INET socket, a user
  namespace, userfaultfd, io_uring, keyctl and perf_event_open all work - only seccomp stops them.
* no Landlock: the uid drop stops /etc/shadow and the pid and mount namespaces hide the host (and
  make every host mount read-only, so a world-writable directory outside the workdir, /dev/shm
  included, is not writable), but a world-readable file anywhere (the canary, /home, a symlink
  target) is readable.
* no namespaces: Landlock, seccomp and the uid drop stop every file, process and network attack.
* rlimits only: the worker is root in the host's namespaces; almost everything escapes. That is
  the point of the other layers.

The runs share one arena and run in parallel, one host per policy, all before the first test
(a module fixture; every host is closed before it returns, so no process outlives it). The slow
attacks (spin, sleep, double fork) are left out: what stops them is the host, not a layer.
"""

from __future__ import annotations

import contextlib
import functools
import os
import secrets
import sys
import time
from collections.abc import Callable, Iterator
from typing import Any

import psutil
import pytest

from host import Host, ProviderUnavailable
from policies import Policy
from tests.escapes.catalog import (
    ATTACKS,
    CATALOG,
    ECHO,
    NAMESPACES,
    Arena,
    Attack,
    Verdict,
    applied_layers,
    degraded_policies,
    expected_contained,
    in_parallel,
    run_catalog,
    runtime_hidden_from_other_users,
)

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux sandbox")

POLICIES = degraded_policies()
FAST = tuple(attack for attack in CATALOG if not attack.slow)


@pytest.fixture(scope="module")
def results() -> Iterator[dict[str, dict[str, Verdict]]]:
    with Arena() as arena:
        jobs: dict[str, Callable[[], dict[str, Verdict]]] = {
            label: functools.partial(run_catalog, policy, label, FAST, arena)
            for label, policy in POLICIES.items()
        }
        yield in_parallel(jobs)


@pytest.mark.parametrize("label", POLICIES)
def test_workers_report_exactly_the_layers_left(
    label: str, results: dict[str, dict[str, Verdict]]
) -> None:
    wanted = applied_layers(POLICIES[label])
    for verdict in results[label].values():
        applied = {name for name, ok in verdict.layers if ok}
        assert applied == wanted, f"{verdict.attack}: applied {sorted(applied)}"


@pytest.mark.parametrize(
    ("label", "attack"),
    [(label, attack) for label in POLICIES for attack in FAST],
    ids=[f"{label.replace(' ', '_')}-{attack.name}" for label in POLICIES for attack in FAST],
)
def test_degraded_verdict_matches_the_expected_table(
    label: str, attack: Attack, results: dict[str, dict[str, Verdict]]
) -> None:
    verdict = results[label][attack.name]
    contained = expected_contained(attack, applied_layers(POLICIES[label]))
    expected = "contained" if contained else "ESCAPED"
    assert verdict.state == expected, (
        f"{attack.threat} under {label!r} (skips {', '.join(POLICIES[label].skip)}); stopped by "
        f"{' or '.join(attack.layers)}: expected {expected}, got {verdict.state}: {verdict.detail}"
    )


# --- without any namespace on a machine whose Python the dedicated uid cannot reach -----------


def _all_namespaces_off() -> Policy:
    return Policy(skip=NAMESPACES, allow_missing=True)


def test_without_namespaces_a_hidden_runtime_fails_closed(host: Host) -> None:
    """With Python below a 0700 directory (pyenv under /root), the mount namespace is what lets
    the dedicated uid reach it; without it the uid drop cannot hold and the worker refuses."""
    hidden = runtime_hidden_from_other_users()
    if hidden is None:
        pytest.skip("Python is reachable by other users here")
    with pytest.raises(ProviderUnavailable) as info:
        host.add_provider(ECHO, policy=_all_namespaces_off())
    assert "uid_drop" in info.value.message
    assert hidden in info.value.message


def test_a_refusal_is_heard_when_the_host_accepts_the_connection_late(host: Host) -> None:
    """A worker that will not serve writes why and exits at once. The host checks who connected
    when it accepts (the peer's pid must be in the worker's tree), so a worker whose tree was
    gone by then had its connection refused with its reason in it: the provider failed with
    only "exited during start-up" (seen once in CI on a loaded machine). Here the host's loop
    is held for a second right after the spawn, as a loaded machine would; the worker must
    wait to be accepted before it exits."""
    if runtime_hidden_from_other_users() is None:
        pytest.skip("Python is reachable by other users here")
    reactor = host._reactor
    spawn = reactor._spawn

    def spawn_then_stall(provider: Any) -> Any:
        worker = spawn(provider)
        reactor.submit(lambda: time.sleep(1.0))  # the loop's next turn: after the spawn
        return worker

    reactor._spawn = spawn_then_stall  # type: ignore[method-assign]
    with pytest.raises(ProviderUnavailable) as info:
        host.add_provider(ECHO, policy=_all_namespaces_off())
    assert "uid_drop" in info.value.message


def test_without_namespaces_the_refusal_reason_is_clean(host: Host) -> None:
    if runtime_hidden_from_other_users() is None:
        pytest.skip("Python is reachable by other users here")
    with pytest.raises(ProviderUnavailable) as info:
        host.add_provider(ECHO, policy=_all_namespaces_off())
    assert "Traceback" not in info.value.message
    assert "No module named 'zmq'" not in info.value.message


# --- the supervisor's sweep when nothing else bounds the tree ----------------------------------


def _rlimits_only() -> Policy:
    return degraded_policies()["rlimits only"]


def test_supervisor_reaps_a_large_tree_before_the_host_gives_up(host: Host) -> None:
    marker = "escbig" + secrets.token_hex(4)
    policy = _rlimits_only()
    if os.geteuid() != 0:
        # RLIMIT_NPROC binds a non-root worker (root ignores it): let it grow the large tree.
        policy = policy.merged({"processes": 2100})
    host.add_provider(ATTACKS, policy=policy, name="attacks")
    (worker,) = host._reactor.providers["attacks"].workers
    inner = [p.pid for p in psutil.Process(worker.process.pid).children(recursive=True)]
    try:
        value = host.call("attacks.fork_bomb", {"limit": 2000, "child_seconds": 20,
                                                "marker": marker})  # fmt: skip
        assert value["forked"] == 2000
        host.remove_provider("attacks")
        deadline = time.monotonic() + 15
        while not worker.process.exited and time.monotonic() < deadline:
            time.sleep(0.02)
        reported = bytes(worker.process._status)
        assert worker.process.returncode == 0 and reported, (
            f"the supervisor did not report (returncode {worker.process.returncode})"
        )
    finally:
        _reap_orphans(marker, inner)


def _reap_orphans(marker: str, pids: list[int]) -> None:
    """The bomb's children and the supervisor's init, orphaned when the host SIGKILLed the
    supervisor: where this process is pid 1 (a private pid namespace) they are ours to reap."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        left = [p for p in psutil.process_iter(["name", "ppid", "status"])
                if p.info["name"] == marker[:15] or p.pid in pids]  # fmt: skip
        for p in left:
            if p.info["ppid"] == os.getpid() and p.info["status"] == psutil.STATUS_ZOMBIE:
                with contextlib.suppress(ChildProcessError):
                    os.waitpid(p.pid, os.WNOHANG)
        if not left:
            return
        time.sleep(0.05)
