"""Ray as the placement engine: a real two-node local Ray cluster, real actor kills.

Skipped unless the ``ray`` extra is installed (``pip install -e '.[test,ray]'``; ``.ci/ray``
runs only these tests in a venv of their own).
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from collections.abc import Iterator
from concurrent.futures import wait
from pathlib import Path
from typing import Any

import psutil
import pytest

ray = pytest.importorskip("ray", reason="the Ray tests need the ray extra: pip install '.[ray]'")
from ray.cluster_utils import Cluster  # noqa: E402

from host import Host, HostGroup  # noqa: E402
from host.raycluster import RayHost, deploy, sandbox_nodes, stop  # noqa: E402

pytestmark = pytest.mark.ray

ECHO = Path(__file__).parent / "providers" / "echo.py"
HOSTILE = Path(__file__).parents[1] / "providers" / "examples" / "hostile.py"


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
def cluster(tmp_path: Path) -> Iterator[Path]:
    """Two Ray nodes on this machine, each with one ``sandbox`` resource; yields the config."""
    before = {p.pid for p in psutil.process_iter()}
    config = tmp_path / "sandbox.toml"
    config.write_text(
        f'[providers.echo]\nsource = "{ECHO}"\n[providers.hostile]\nsource = "{HOSTILE}"\n'
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
        yield config
    finally:
        with contextlib.suppress(Exception):
            ray.shutdown()
        nodes.shutdown()
        _reap_orphans(before)


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
