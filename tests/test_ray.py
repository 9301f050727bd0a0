"""Ray as the placement engine: a real two-node local Ray cluster, real actor kills.

Skipped unless the ``ray`` extra is installed (``pip install -e '.[test,ray]'``; ``.ci/ray``
runs only these tests in a venv of their own).
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
import time
from collections.abc import Iterator
from concurrent.futures import wait
from pathlib import Path
from typing import Any

import psutil
import pytest

ray = pytest.importorskip("ray", reason="the Ray tests need the ray extra: pip install '.[ray]'")
from ray.cluster_utils import Cluster  # noqa: E402

from host import Host, HostGroup, HostUnavailable  # noqa: E402
from host.raycluster import HEARTBEAT_S, RayHost, deploy, sandbox_nodes, stop  # noqa: E402

pytestmark = pytest.mark.ray

ECHO = Path(__file__).parent / "providers" / "echo.py"
HOSTILE = Path(__file__).parents[1] / "providers" / "examples" / "hostile.py"
STALL = Path(__file__).parent / "providers" / "stall.py"


def _reap_orphans(before: set[int], bound: float = 20.0) -> None:
    """Wait for (and reap: this process is the run's init) what the cluster left; kill what
    remains after ``bound``. A killed actor's sandbox workers exit on their own once they see
    their host is gone (host.orphans); Ray's daemons stop with ``cluster.shutdown``."""
    deadline = time.monotonic() + bound
    while True:
        left = [p for p in psutil.process_iter() if p.pid != os.getpid() and p.pid not in before]
        for process in left:
            with contextlib.suppress(ChildProcessError, OSError):
                os.waitpid(process.pid, os.WNOHANG)
        if not left or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    for process in left:
        with contextlib.suppress(psutil.Error):
            process.kill()
    psutil.wait_procs(left, timeout=10)
    for process in left:
        with contextlib.suppress(ChildProcessError, OSError):
            os.waitpid(process.pid, os.WNOHANG)


@pytest.fixture
def two_nodes(tmp_path: Path) -> Iterator[tuple[Path, Cluster]]:
    """Two Ray nodes on this machine, each with one ``sandbox`` resource; yields the config
    and the cluster (its second node is not the head: it can be removed)."""
    before = {p.pid for p in psutil.process_iter()}
    config = tmp_path / "sandbox.toml"
    config.write_text(
        f'[providers.echo]\nsource = "{ECHO}"\n[providers.hostile]\nsource = "{HOSTILE}"\n'
        f'[providers.stall]\nsource = "{STALL}"\n'
    )
    nodes = Cluster(
        initialize_head=True,
        head_node_args={"num_cpus": 1, "resources": {"sandbox": 1},
                        "object_store_memory": 100 * 1024 * 1024,
                        "include_dashboard": False},
    )  # fmt: skip
    try:
        nodes.add_node(num_cpus=1, resources={"sandbox": 1},
                       object_store_memory=100 * 1024 * 1024)  # fmt: skip
        ray.init(address=nodes.address, include_dashboard=False, log_to_driver=False)
        nodes.wait_for_nodes()
        yield config, nodes
    finally:
        with contextlib.suppress(Exception):
            ray.shutdown()
        nodes.shutdown()
        _reap_orphans(before)


@pytest.fixture
def cluster(two_nodes: tuple[Path, Cluster]) -> Path:
    """The config of a two-node cluster."""
    return two_nodes[0]


def _outcome_counts(futures: list[Any]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for future in futures:
        key = "ok" if future.outcome.ok else future.outcome.error.type
        counts[key] = counts.get(key, 0) + 1
    return counts


def test_group_of_ray_actors_confines_spreads_and_survives_a_kill(cluster: Path) -> None:
    assert len(sandbox_nodes()) == 2
    actors = deploy(cluster)
    assert len(actors) == 2
    try:
        hosts = [RayHost(actor) for actor in actors]
        group = HostGroup(hosts)
        pings = [h.ping() for h in hosts]
        assert len({p["node_id"] for p in pings}) == 2  # one actor per node

        # Calls and their outcomes cross Ray as plain data, errors included.
        assert group.call("echo.echo", {"value": "hi"}) == "hi"
        assert group.run("echo.add", {"a": "x"}).error.type == "InputInvalid"
        assert group.run("hostile.sleep", {"seconds": 30}, timeout=0.5).error.type == "Timeout"
        assert group.run("hostile.exit", {"code": 3}).error.type == "WorkerCrashed"

        # The confinement is ours, on every node: each actor's workers report the layers a
        # local Host's workers report here, and run in processes of their own.
        with Host() as local:
            local.load_config(cluster)
            expected = {p.name: [(r["name"], r["applied"]) for r in p.layers]
                        for p in local.providers()}  # fmt: skip
        for host, ping in zip(hosts, pings, strict=True):
            layers = {p.name: [(r["name"], r["applied"]) for r in p.layers]
                      for p in host.providers()}  # fmt: skip
            assert layers == expected and expected["hostile"]
            assert host.call("hostile.getpid") != ping["pid"]

        # Cancelling a running call cancels its Ray task, and the host kills its worker.
        running = hosts[1].submit("hostile.sleep", {"seconds": 60})
        time.sleep(1.0)
        assert running.cancel()
        wait([running], timeout=30)
        assert running.outcome is not None and running.outcome.error.type == "Cancelled"
        deadline = time.monotonic() + 30  # the node's host saw the cancel, not just Ray
        while hosts[1].stats()["hostile"]["calls"].get("Cancelled", 0) < 1:
            assert time.monotonic() < deadline, hosts[1].stats()["hostile"]
            time.sleep(0.2)

        # Load on both, then kill one actor's process (Ray restarts it).
        victim, survivor = hosts
        first = [group.submit("echo.slow", {"seconds": 1.5}) for _ in range(6)]
        time.sleep(0.5)
        os.kill(pings[0]["pid"], signal.SIGKILL)
        time.sleep(0.5)
        later = [group.submit("echo.echo", {"value": str(i)}) for i in range(10)]
        _, not_done = wait(first + later, timeout=120)
        assert not not_done
        # Every call ended in exactly one outcome: those in flight on the killed actor say it
        # (HostUnavailable, delivered: they may have run, so they are not re-sent), the rest ok.
        counts = _outcome_counts(first)
        assert counts.get("HostUnavailable", 0) >= 1, counts
        assert counts.get("HostUnavailable", 0) + counts.get("ok", 0) == len(first), counts
        for future in first:
            if not future.outcome.ok:
                assert future.outcome.error.details["delivered"] is True
        # The calls submitted after the kill ran (the safe ones on the survivor meanwhile).
        assert [f.result() for f in later] == [str(i) for i in range(10)]
        assert not victim.available or victim.ping()["pid"] != pings[0]["pid"]

        # Ray restarts the actor; once it answers, the RayHost is available and serves again.
        deadline = time.monotonic() + 90
        while not victim.available and time.monotonic() < deadline:
            time.sleep(0.2)
        assert victim.available
        restarted = victim.ping()
        assert restarted["pid"] != pings[0]["pid"]
        assert restarted["node_id"] == pings[0]["node_id"]  # pinned to its node
        assert victim.call("echo.echo", {"value": "back"}) == "back"
        assert survivor.stats()["echo"]["calls"]["ok"] >= 1
        group.close()
    finally:
        stop(actors)


def _wait_until(condition: Any, bound: float, what: str) -> None:
    deadline = time.monotonic() + bound
    while not condition():
        assert time.monotonic() < deadline, what
        time.sleep(0.2)


def _hosts_and_the_leaving_node(
    actors: list[Any], nodes: Cluster
) -> tuple[list[RayHost], list[dict[str, Any]], Any, int]:
    """A RayHost per actor, their pings, the node that is not the head (the one a test
    removes) and the index of the host whose actor runs there."""
    hosts = [RayHost(actor) for actor in actors]
    pings = [h.ping() for h in hosts]
    leaving = next(n for n in nodes.list_all_nodes() if not n.head)
    lost_at = next(i for i, p in enumerate(pings) if p["node_id"] == leaving.node_id)
    return hosts, pings, leaving, lost_at


def test_a_node_that_leaves_is_routed_around_and_its_host_is_gone_for_good(
    two_nodes: tuple[Path, Cluster],
) -> None:
    config, nodes = two_nodes
    actors = deploy(config)
    try:
        hosts, pings, leaving, lost_at = _hosts_and_the_leaving_node(actors, nodes)
        lost, kept = hosts[lost_at], hosts[1 - lost_at]
        # Another caller's view of the same actor, which sends nothing until the node is gone.
        unaware = RayHost(actors[lost_at])
        group = HostGroup(hosts)

        running = lost.submit("echo.slow", {"seconds": 10})
        time.sleep(1.0)
        nodes.remove_node(leaving, allow_graceful=False)
        wait([running], timeout=60)
        # It was running when the node went: it may have run, so it says delivered.
        assert running.outcome is not None and running.outcome.error.type == "HostUnavailable"
        assert running.outcome.error.details["delivered"] is True
        assert not lost.available

        # While the actor is unreachable a call is not sent: it never ran, and says so at once.
        direct = lost.run("echo.add", {"a": 1})
        assert direct.error.type == "HostUnavailable", direct
        assert direct.error.details["delivered"] is False
        assert "not sent" in direct.error.message

        # The group sends every call (not safe to re-run ones too) to the node that is left.
        futures = [group.submit("echo.add", {"a": i}) for i in range(20)]
        assert [f.result(timeout=60) for f in futures] == [i + 1 for i in range(20)]
        assert kept.stats()["echo"]["calls"]["ok"] >= 20

        # Once Ray declares the node dead, its pinned actor can never be placed again: the host
        # is gone for good, says why, and stops probing.
        _wait_until(lambda: lost.gone is not None, 120, "the lost host was never marked gone")
        assert "schedulable" in str(lost.gone), lost.gone
        assert not lost.available
        _wait_until(
            lambda: not any(t.name == f"probe {lost.endpoint}" for t in threading.enumerate()),
            10, "the probe of a gone host kept running",
        )  # fmt: skip
        gone = lost.run("echo.add", {"a": 1})
        assert gone.error.details["delivered"] is False and "gone for good" in gone.error.message
        with pytest.raises(HostUnavailable):
            lost.stats()

        # A node that joins later gets an actor of its own from a second deploy.
        joined = nodes.add_node(num_cpus=1, resources={"sandbox": 1},
                                object_store_memory=100 * 1024 * 1024)  # fmt: skip
        nodes.wait_for_nodes()
        fresh = deploy(config, exclude_nodes=[pings[1 - lost_at]["node_id"]])
        actors += fresh
        assert len(fresh) == 1
        newcomer = RayHost(fresh[0])
        assert newcomer.ping()["node_id"] == joined.node_id
        assert newcomer.call("echo.add", {"a": 2}) == 3
        newcomer.close()

        # The caller that saw nothing sends a call that is not safe to re-run: Ray cannot place
        # it, so it certainly never ran, and its group sends it to the other host.
        assert unaware.available
        with HostGroup([unaware, kept]) as unaware_group:
            outcome = unaware_group.run("echo.add", {"a": 41})
            assert outcome.ok and outcome.value == 42 and outcome.attempts == 2, outcome
            assert unaware.gone is not None and not unaware.available

            # An actor Ray will not restart (killed for good) is gone for good too.
            ray.kill(actors[1 - lost_at], no_restart=True)
            after = kept.run("echo.add", {"a": 1})
            assert after.error.type == "HostUnavailable", after
            _wait_until(lambda: kept.gone is not None, 30, "a killed actor was never marked gone")
            assert "ray.kill" in str(kept.gone), kept.gone
            last = unaware_group.run("echo.add", {"a": 1})
            assert last.error.type == "ProviderUnavailable", last  # no host left to try
        group.close()
    finally:
        stop(actors)


def test_a_call_running_when_its_node_leaves_is_not_sent_again(
    two_nodes: tuple[Path, Cluster],
) -> None:
    """A node that leaves gracefully is declared dead at once, so Ray fails its pinned actor for
    good (ActorUnschedulableError) while the call it was running is still in flight: that call
    ran, so it must say delivered, and a group must not send it (not safe to re-run) again."""
    config, nodes = two_nodes
    actors = deploy(config)
    try:
        hosts, _, leaving, lost_at = _hosts_and_the_leaving_node(actors, nodes)
        lost, kept = hosts[lost_at], hosts[1 - lost_at]
        with HostGroup([lost, kept]) as group:  # equal load: the first host gets the call
            running = group.submit("echo.slow", {"seconds": 5})
            _wait_until(lambda: lost.stats()["echo"]["workers"]["busy"] == 1, 30,
                        "the call never started on the node that leaves")  # fmt: skip
            nodes.remove_node(leaving, allow_graceful=True)
            wait([running], timeout=60)
            outcome = running.outcome
            assert outcome is not None and outcome.error is not None, outcome
            assert outcome.error.type == "HostUnavailable", outcome
            assert outcome.error.details["delivered"] is True, outcome
            assert outcome.attempts == 1, outcome  # not sent to the other host
            assert kept.stats()["echo"]["calls"] == {}  # it ran once, on the node that left
            assert lost.gone is not None and not lost.available
            # Ray fails a call to an actor it already holds dead without sending it: that one
            # never ran, and the group sends it to the host that is left.
            again = group.run("echo.add", {"a": 1})
            assert again.ok and again.value == 2, again
    finally:
        stop(actors)


def test_an_input_costly_to_check_does_not_stall_the_actors_other_calls(cluster: Path) -> None:
    """The actor decoded and checked every input on its one event loop: ``stall.take_many``
    (a 12 KB array that its schema takes seconds to check) held every other call of the node
    that long. Such an input is now checked from a thread, and still gets its verdict."""
    actors = deploy(cluster)
    try:
        host = RayHost(actors[0])
        assert host.call("echo.echo", {"value": "warm"}) == "warm"
        costly = [host.submit("stall.take_many", {"items": [1] * 4000}) for _ in range(2)]
        time.sleep(0.3)
        slowest, calls = 0.0, 0
        end = time.monotonic() + 4
        while time.monotonic() < end:
            started = time.monotonic()
            assert host.call("echo.echo", {"value": "x"}, timeout=30) == "x"
            slowest, calls = max(slowest, time.monotonic() - started), calls + 1
        assert [f.result(timeout=60) for f in costly] == [4000, 4000]
        assert calls >= 3 and slowest < 1.5, (calls, slowest)
        host.close()
    finally:
        stop(actors)


def test_a_hung_actor_ends_its_calls_and_is_not_gone(cluster: Path) -> None:
    """An actor process that stops answering (SIGSTOP: Ray sees nothing wrong) must not hang
    its calls: one with a timeout ends HostUnavailable (delivered) soon after its timeout, and
    ``close()`` ends the rest and stops the probing; the host is not gone, and serves again."""
    actors = deploy(cluster)
    try:
        host, other, third = (RayHost(actors[0]) for _ in range(3))
        pid = host.ping()["pid"]
        os.kill(pid, signal.SIGSTOP)
        try:
            closing = third.submit("echo.slow", {"seconds": 0.1})
            started = time.monotonic()
            third.close(timeout=0.5)
            assert time.monotonic() - started < 5
            assert closing.done(), "close() left a call to a hung actor without an outcome"
            assert closing.outcome is not None and closing.outcome.error.type == "Cancelled"

            endless = other.submit("echo.slow", {"seconds": 0.1})  # no timeout
            bounded = host.submit("echo.echo", {"value": "x"}, timeout=1.0)
            wait([endless, bounded], timeout=25)
            for hung in (endless, bounded):
                assert hung.done(), "a call to a hung actor never ended"
                assert hung.outcome is not None and hung.outcome.error is not None
                assert hung.outcome.error.type == "HostUnavailable", hung.outcome
                assert hung.outcome.error.details["delivered"] is True
            assert not host.available and host.gone is None
            _wait_until(
                lambda: any(t.name == f"probe {host.endpoint}" for t in threading.enumerate()),
                5, "the hung actor is not probed",
            )  # fmt: skip
            other.close(timeout=0.5)
        finally:
            os.kill(pid, signal.SIGCONT)
        _wait_until(lambda: host.available, 30, "the actor answered again but its host is not back")
        assert host.gone is None and host.ping()["pid"] == pid
        assert host.call("echo.echo", {"value": "back"}) == "back"
        # Closing a host whose probe runs stops the probe before close() returns.
        os.kill(pid, signal.SIGSTOP)
        try:
            late = host.submit("echo.echo", {"value": "y"}, timeout=1.0)
            wait([late], timeout=25)
            assert late.done() and not host.available
            host.close(timeout=0.5)
            assert not any(t.name == f"probe {host.endpoint}" for t in threading.enumerate())
        finally:
            os.kill(pid, signal.SIGCONT)
    finally:
        stop(actors)


def test_ray_shutdown_while_a_host_probes_starts_no_new_ray(
    two_nodes: tuple[Path, Cluster],
) -> None:
    """``ray.shutdown()`` while a RayHost probes its lost actor, and while another has a call in
    flight: the probe and the heartbeat end quietly (Ray raises SystemExit in a thread waiting
    on it) and start no Ray of their own (``.remote()`` and ``ray.wait`` call ``ray.init()``
    when Ray is not running), and the call in flight ends (it may have run)."""
    config, nodes = two_nodes
    actors = deploy(config)
    hosts, _, leaving, lost_at = _hosts_and_the_leaving_node(actors, nodes)
    lost, kept = hosts[lost_at], hosts[1 - lost_at]
    idle = RayHost(actors[1 - lost_at])  # one that sees nothing go wrong before the shutdown
    running = lost.submit("echo.slow", {"seconds": 10})
    _wait_until(lambda: lost.stats()["echo"]["workers"]["busy"] == 1, 30, "the call never started")
    nodes.remove_node(leaving, allow_graceful=False)  # Ray declares it dead only later
    wait([running], timeout=60)
    assert not lost.available and lost.gone is None

    def probing() -> bool:
        names = {f"probe {lost.endpoint}", f"watch {kept.endpoint}"}
        return any(t.name in names for t in threading.enumerate())

    in_flight = kept.submit("echo.slow", {"seconds": 30})
    _wait_until(lambda: kept.stats()["echo"]["workers"]["busy"] == 1, 30, "the call never started")
    time.sleep(HEARTBEAT_S * 2)  # the heartbeat is pinging
    assert probing()
    crashed: list[str] = []
    previous = threading.excepthook
    threading.excepthook = lambda args: crashed.append(f"{args.thread}: {args.exc_type}")
    try:
        ray.shutdown()
        _wait_until(lambda: not probing(), 10, "the probe outlived ray.shutdown()")
        time.sleep(1.0)
    finally:
        threading.excepthook = previous
    assert not crashed, crashed
    assert not ray.is_initialized(), "the probe started a Ray of its own"
    wait([in_flight], timeout=10)
    assert in_flight.outcome is not None and in_flight.outcome.error is not None, in_flight
    assert in_flight.outcome.error.type == "HostUnavailable", in_flight.outcome
    assert in_flight.outcome.error.details["delivered"] is True
    # A call after ray.shutdown() is not sent (and does not start a Ray either).
    assert not idle.available
    after = idle.submit("echo.add", {"a": 1})
    assert after.outcome is not None and after.outcome.error.type == "HostUnavailable"
    assert after.outcome.error.details["delivered"] is False
    assert not ray.is_initialized()
