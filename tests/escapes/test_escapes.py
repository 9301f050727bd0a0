"""Every attack of the catalog, run for real under the strict default policy, must be contained.

One test per attack (the test id is the attack's name; the failure message names the threat and
the layer expected to stop it), under each spawn mode: ``test_attack_is_contained`` with the
host's default (workers forked by the zygote; ``--spawn=fresh`` changes it) and
``test_attack_is_contained_spawned_fresh`` with fresh interpreters. Each test gets its own host,
so the autouse leak check sees every worker, respawned or not, end with its test. What the
attacks aim at (a canary file, a secret in this process's memory and environment, an inherited
descriptor, a SIGUSR2 counter) is one :class:`Arena` per module, set up before any host exists;
its one process (a decoy holding the secret in its environment) is started before the first
test's leak snapshot and stopped after the last.

Run it as root to exercise the uid drop (its dedicated uids are what the checks look for), and
inside a pid namespace of its own while developing:
``unshare --pid --fork --mount-proc python -m pytest tests/escapes -q -p no:cacheprovider``.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator

import pytest

from host import Host
from policies import Policy
from sandbox.layers import probe_all
from tests.escapes.catalog import (
    ATTACKS,
    CATALOG,
    ECHO,
    HOST_IS_ROOT,
    Arena,
    Attack,
    applied_layers,
    expected_contained,
)

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux sandbox")


@pytest.fixture(scope="module")
def arena() -> Iterator[Arena]:
    with Arena() as targets:
        yield targets


@pytest.fixture(scope="module")
def default_layers(arena: Arena) -> dict[str, bool]:
    """The default policy applies every layer this machine has (user_namespace is not needed
    when the host is root: the worker drops to a dedicated uid instead)."""
    with Host() as host:
        host.add_provider(ATTACKS)
        (info,) = host.providers()
        reported = {str(r["name"]): bool(r["applied"]) for r in info.layers}
    wanted = applied_layers(Policy())
    missing = sorted(name for name in wanted if not reported.get(name))
    assert not missing, f"layers not applied under the default policy: {missing}: {info.layers}"
    if HOST_IS_ROOT:
        assert reported.get("user_namespace") is False
        assert wanted | {"user_namespace"} >= set(reported)
    return reported


def _available() -> frozenset[str]:
    return frozenset(name for name, probe in probe_all().items() if probe.available)


@pytest.mark.parametrize("attack", CATALOG, ids=[a.name for a in CATALOG])
def test_attack_is_contained(
    attack: Attack, arena: Arena, host: Host, default_layers: dict[str, bool]
) -> None:
    """The attack fails under the default policy, the host (this process) is unharmed and the
    provider - and, where one was attacked, the other provider - still serves."""
    if not expected_contained(attack, _available() & applied_layers(Policy())):
        pytest.skip(f"this machine lacks the layers that stop it: {', '.join(attack.layers)}")
    verdict = arena.run(host, attack, Policy())
    assert dict(verdict.layers) == default_layers
    assert verdict.state == "contained", (
        f"{attack.name}: {attack.threat} was not stopped by {' or '.join(attack.layers)}: "
        f"{verdict.detail}"
    )
    if attack.name == "symlink_cleanup":  # the whole host's cleanup, not just one worker's
        host.close()
        assert arena.target_file.read_bytes() == arena.target_content
        assert (arena.target_dir / "keep.txt").read_bytes() == arena.target_content


@pytest.fixture
def fresh_host() -> Iterator[Host]:
    with Host(spawn="fresh") as h:
        yield h


@pytest.mark.parametrize("attack", CATALOG, ids=[a.name for a in CATALOG])
def test_attack_is_contained_spawned_fresh(
    attack: Attack, arena: Arena, fresh_host: Host, default_layers: dict[str, bool]
) -> None:
    """The same catalog with every worker started as a fresh interpreter (the reference spawn
    path); ``test_attack_is_contained`` runs it with the host's default, the zygote."""
    test_attack_is_contained(attack, arena, fresh_host, default_layers)


def test_dedicated_uids_differ_between_hosts(arena: Arena) -> None:
    if not HOST_IS_ROOT:
        pytest.skip("workers get dedicated uids only when the host is root")
    uids = []
    with Host() as first, Host() as second:
        for host in (first, second):
            host.add_provider(ECHO)
            (info,) = host.providers()
            detail = next(str(r["detail"]) for r in info.layers if r["name"] == "uid_drop")
            uids.append(detail.split("uid ")[1].split(",")[0])
    assert uids[0] != uids[1], f"both hosts' first workers run as uid {uids[0]}"
