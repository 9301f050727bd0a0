"""Layers as the host sees them: reported in HELLO, failing closed, explicit opt-outs, cleanup."""

from __future__ import annotations

import glob
import os

import pytest

from host import Host, ProviderUnavailable
from host.cgroups import NAME_PREFIX
from host.cgroups import probe as probe_cgroups
from policies import LAYERS, Policy, PolicyError
from sandbox.layers import probe_all
from tests.conftest import provider_file

ECHO = provider_file("echo.py")
ROOT = os.geteuid() == 0


def _layers(host: Host, name: str) -> dict[str, dict[str, object]]:
    info = next(p for p in host.providers() if p.name == name)
    return {layer["name"]: layer for layer in info.layers}


def test_every_available_layer_is_applied_and_reported_under_the_default_policy(
    host: Host,
) -> None:
    host.add_provider(ECHO)
    layers = _layers(host, "echo")
    assert list(layers) == [name for name in probe_all()]  # every layer, in application order
    expected = set(Policy().required_layers(
        host_is_root=ROOT, cgroups_available=probe_cgroups().version > 0
    ))
    for name in expected:
        assert layers[name]["applied"] is True, layers[name]
    if ROOT:
        assert layers["user_namespace"]["applied"] is False
        assert "host is root" in str(layers["user_namespace"]["detail"])
        assert "switched to uid" in str(layers["uid_drop"]["detail"])
    assert "CapPrm=CapEff=CapAmb=0" in str(layers["uid_drop"]["detail"])


def test_a_required_layer_that_cannot_be_applied_stops_the_worker(host: Host) -> None:
    # With network allowed, the network namespace layer is deliberately not applied; requiring
    # it anyway must stop the worker before any provider code runs, naming the layer.
    policy = Policy(network=True, require=[*Policy().required_layers(
        host_is_root=ROOT, cgroups_available=False), "network_namespace"])
    with pytest.raises(ProviderUnavailable) as info:
        host.add_provider(ECHO, policy=policy)
    assert "required layer 'network_namespace'" in info.value.message
    assert "the policy allows the network" in info.value.message
    assert host.catalog.find_all() == []


def test_skipping_a_layer_needs_the_explicit_opt_in() -> None:
    with pytest.raises(PolicyError, match="allow_missing"):
        Policy(skip=["seccomp"])
    with pytest.raises(PolicyError, match="allow_missing"):
        Policy(require=["rlimits"])
    assert Policy(skip=["seccomp"], allow_missing=True).skip == ("seccomp",)


def test_skipped_layers_are_reported_as_skipped(host: Host) -> None:
    policy = Policy(skip=["seccomp", "landlock"], allow_missing=True)
    host.add_provider(ECHO, policy=policy)
    layers = _layers(host, "echo")
    for name in ("seccomp", "landlock"):
        assert layers[name] == {"name": name, "applied": False, "detail": "skipped by the policy"}
    assert layers["no_new_privileges"]["applied"] is True
    assert host.call("echo.add", {"a": 1}) == 2


def test_rlimits_only_still_serves(host: Host) -> None:
    policy = Policy(
        skip=[layer for layer in LAYERS if layer not in ("pdeathsig", "rlimits")],
        allow_missing=True,
    )
    host.add_provider(ECHO, policy=policy)
    assert host.call("echo.add", {"a": 41}) == 42
    applied = [n for n, layer in _layers(host, "echo").items() if layer["applied"]]
    assert applied == ["pdeathsig", "rlimits"]


@pytest.mark.skipif(probe_cgroups().version == 0, reason=probe_cgroups().reason)
def test_worker_cgroups_are_created_and_removed(host: Host) -> None:
    support = probe_cgroups()
    host.add_provider(ECHO)
    # Only this host's worker's cgroups: other hosts on the machine may be spawning too (and the
    # zygote's spare launcher has cgroups of its own until a spawn takes it).
    (worker,) = host._reactor._workers.values()
    assert worker.process.cgroup is not None
    names = {os.path.basename(d) for d in worker.process.cgroup.directories.values()}
    assert len(names) == 1 and names.pop().startswith(NAME_PREFIX)
    pattern = list(worker.process.cgroup.directories.values())
    created = [path for p in pattern for path in glob.glob(p)]
    assert len(created) == len(support.parents)
    for path in created:
        with open(f"{path}/cgroup.procs") as f:
            procs = f.read().split()
        assert len(procs) >= 2  # launcher, init, worker
    host.close()
    assert [path for p in pattern for path in glob.glob(p)] == []


@pytest.mark.skipif(probe_cgroups().version == 0, reason=probe_cgroups().reason)
def test_memory_spread_over_children_is_stopped_by_the_cgroup(host: Host) -> None:
    # Each child stays under the per-process RLIMIT_DATA (64 MiB of 100); together they exceed
    # the tree's 100 MiB cgroup limit, so the kernel OOM-kills inside the cgroup.
    host.add_provider("providers.examples.hostile", policy=Policy(memory="100MiB", wall_time=20))
    outcome = host.run(
        "hostile.allocate_in_children", {"children": 6, "mib_each": 60, "hold_seconds": 2}
    )
    assert (outcome.error is not None and outcome.error.type == "MemoryExceeded") or (
        outcome.ok and outcome.value < 6
    ), outcome
    assert host.call("hostile.getpid", {}) > 0


def test_the_worker_sees_its_own_pid_namespace_and_private_tmp(host: Host) -> None:
    marker = "/tmp/sandbox-test-host-file"
    with open(marker, "w") as f:
        f.write("host only")
    try:
        host.add_provider("providers.examples.hostile")
        assert host.call("hostile.getpid", {}) > 1  # pid 1 is the namespace's init
        assert host.call("hostile.getppid", {}) == 1
        outcome = host.run("hostile.read_file", {"path": marker})
        assert outcome.error is not None and "FileNotFoundError" in outcome.error.message
    finally:
        os.unlink(marker)


@pytest.mark.skipif(probe_cgroups().version == 0, reason=probe_cgroups().reason)
def test_empty_cgroups_left_by_a_killed_host_are_removed_when_a_host_starts() -> None:
    import time

    from host.cgroups import NAME_PREFIX, STALE_AFTER_S, remove_stale

    support = probe_cgroups()
    parent = next(iter(support.parents.values()))
    old, fresh = f"{parent}/{NAME_PREFIX}stale0test", f"{parent}/{NAME_PREFIX}fresh0test"
    os.mkdir(old)
    os.mkdir(fresh)
    try:
        past = time.time() - STALE_AFTER_S - 10
        os.utime(old, (past, past))
        assert remove_stale(support) >= 1
        assert not os.path.exists(old)
        assert os.path.exists(fresh)  # just made: it may be another host's, being set up
    finally:
        for path in (old, fresh):
            if os.path.exists(path):
                os.rmdir(path)


@pytest.mark.skipif(probe_cgroups().version == 0, reason=probe_cgroups().reason)
def test_a_cgroups_memory_limit_can_be_raised_and_lowered() -> None:
    """A spare launcher's cgroup is made with the default limits and gets the worker's when
    taken: on v1 with swap accounting, raising needs memory+swap set before memory."""
    from host.cgroups import WorkerCgroup

    support = probe_cgroups()
    group = WorkerCgroup.create(support, f"{NAME_PREFIX}limits{os.getpid()}", Policy())
    try:
        for memory in ("2GiB", "100MiB", "1GiB"):
            group.limit(Policy(memory=memory))
            directory = group.directories.get("memory") or group.directories[""]
            name = "memory.limit_in_bytes" if support.version == 1 else "memory.max"
            with open(f"{directory}/{name}") as f:
                assert int(f.read()) == Policy(memory=memory).memory
    finally:
        group.remove()
