"""A provider owns its namespace and nothing else (issue 9, class 3).

Real hostile providers (``tests/providers/squatter.py``, ``forged_hello.py``, ``turncoat.py``)
try to serve actions of the engine's ``ctl`` provider (``tests/providers/ctl.py``), loaded before
and after it. Each must fail to load with a message naming both itself and the namespace it
tried, ``ctl`` must keep serving its own actions (its answers carry a marker), and the squatter
must never receive the engine's input: its actions write what they get to a directory the test
watches.
"""

from __future__ import annotations

import os
import secrets
import shutil
import tempfile
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from host import Host, ProtocolViolation, ProviderUnavailable, WorkerCrashed
from policies import Policy
from tests.conftest import provider_file
from tests.providers.ctl import MARKER

CTL = provider_file("ctl.py")
SQUATTER = provider_file("squatter.py")


@pytest.fixture
def spy_dir(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """Where a squatter's actions write what they receive (outside /tmp, which is private to
    each worker; writable by every worker uid)."""
    path = tempfile.mkdtemp(prefix="sandbox-namespaces-", dir="/var/tmp")
    os.chmod(path, 0o777)
    monkeypatch.setenv("SQUATTER_DIR", path)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def _policy(spy_dir: str) -> Policy:
    return Policy(write=[spy_dir], env=["SQUATTER_DIR"], wall_time=10)


def _received(spy_dir: str) -> list[str]:
    """What squatters recorded: the text of every file they wrote."""
    return [
        Path(spy_dir, name).read_text() for name in sorted(os.listdir(spy_dir))
        if name.startswith("got-")
    ]  # fmt: skip


def _assert_ctl_serves(host: Host, spy_dir: str) -> None:
    secret = "engine-secret-" + secrets.token_hex(4)
    assert host.call("ctl.echo", {"value": secret}) == {"served_by": MARKER, "value": secret}
    assert host.call("ctl.status", {}) == MARKER
    d = host.catalog.find("echo", namespace="ctl")
    assert d is not None and d.provider == "ctl" and d.namespace == "ctl"
    assert {x.provider for x in host.catalog.find_all(namespace="ctl")} == {"ctl"}
    assert not any(secret in text for text in _received(spy_dir))


SQUATTERS = [
    # (reference, what the load error must say)
    (f"{SQUATTER}:foreign", "provider 'squatter' .* declares action 'ctl\\.(echo|reset_all)' "
                            "outside its namespace 'squatter'"),
    (f"{SQUATTER}:adds_to_ctl", "provider 'squatter' .* declares action 'ctl\\.reset_all' "
                                "outside its namespace 'squatter'"),
    (f"{SQUATTER}:sdk_namespace", "provider 'squatter' .* declares action 'ctl\\.(echo|reset_all)' "
                                  "outside its namespace 'squatter'"),
    (provider_file("forged_hello.py"), "provider 'forger' .* declares action 'ctl\\.echo' "
                                       "outside its namespace 'forger'"),
]  # fmt: skip
SQUATTER_IDS = ["foreign", "adds_to_ctl", "sdk_namespace", "forged"]


@pytest.mark.parametrize(("ref", "message"), SQUATTERS, ids=SQUATTER_IDS)
def test_a_squatter_loaded_after_ctl_fails_and_ctl_keeps_its_actions(
    host: Host, spy_dir: str, ref: str, message: str
) -> None:
    assert host.add_provider(CTL) == "ctl"
    with pytest.raises(ProviderUnavailable, match=message):
        host.add_provider(ref, policy=_policy(spy_dir))
    _assert_ctl_serves(host, spy_dir)
    # ``ctl`` has no reset_all; a squatter loaded after it must not have added one.
    with pytest.raises(ProviderUnavailable, match=r"has no action 'ctl\.reset_all'"):
        host.call("ctl.reset_all", {"confirm": "engine-secret"})
    assert [p.name for p in host.providers()] == ["ctl"]
    assert _received(spy_dir) == []


@pytest.mark.parametrize(("ref", "message"), SQUATTERS, ids=SQUATTER_IDS)
def test_a_squatter_loaded_before_ctl_fails_and_ctl_still_loads(
    host: Host, spy_dir: str, ref: str, message: str
) -> None:
    with pytest.raises(ProviderUnavailable, match=message):
        host.add_provider(ref, policy=_policy(spy_dir))
    assert host.add_provider(CTL) == "ctl"
    _assert_ctl_serves(host, spy_dir)
    assert [p.name for p in host.providers()] == ["ctl"]
    assert _received(spy_dir) == []


def test_a_squatter_given_ctl_s_name_by_a_config_is_refused_either_order(
    tmp_path: Path, spy_dir: str
) -> None:
    """A config names each provider; the one whose source claims ``ctl`` under another key fails
    (whichever comes first), naming the key it was given and the namespace it tried."""
    for first, second in (("ctl", "squatter"), ("squatter", "ctl")):
        sources = {"ctl": CTL, "squatter": f"{SQUATTER}:declares_ctl"}
        policy = f'policy = {{ write = ["{spy_dir}"], env = ["SQUATTER_DIR"] }}'
        config = tmp_path / f"{first}-first.toml"
        config.write_text("".join(
            f'[providers.{key}]\nsource = "{sources[key]}"\n{policy}\n' for key in (first, second)
        ))  # fmt: skip
        with Host() as host:
            with pytest.raises(
                ProviderUnavailable,
                match=r"provider 'squatter' .* declares action 'ctl\.echo' outside its "
                r"namespace 'squatter'",
            ):
                host.load_config(config)
            if first == "squatter":  # load_config stopped at the squatter: load the rest
                host.add_provider(CTL, name="ctl")
            _assert_ctl_serves(host, spy_dir)
    assert _received(spy_dir) == []


def test_a_second_provider_declaring_a_taken_name_fails_naming_both(
    host: Host, spy_dir: str
) -> None:
    host.add_provider(CTL)
    ref = f"{SQUATTER}:declares_ctl"
    with pytest.raises(ProviderUnavailable) as caught:
        host.add_provider(ref, policy=_policy(spy_dir))
    text = str(caught.value)
    assert "squatter.py:declares_ctl" in text and "'ctl'" in text and "ctl.py" in text, text
    _assert_ctl_serves(host, spy_dir)
    assert [(p.name, p.version) for p in host.providers()] == [("ctl", "1.0")]


def test_a_name_differing_only_in_case_is_taken_too(host: Host, spy_dir: str) -> None:
    host.add_provider(CTL)
    with pytest.raises(ProviderUnavailable, match=r"'CTL'.*provider 'ctl'"):
        host.add_provider(f"{SQUATTER}:declares_upper", policy=_policy(spy_dir))
    with pytest.raises(ValueError, match="already loaded"):
        host.add_provider(f"{SQUATTER}:declares_upper", policy=_policy(spy_dir), name="Ctl")
    _assert_ctl_serves(host, spy_dir)
    assert [p.name for p in host.providers()] == ["ctl"]


def test_a_dotted_namespace_is_not_a_namespace(host: Host, spy_dir: str) -> None:
    host.add_provider(CTL)
    with pytest.raises(ProviderUnavailable, match=r"'ctl\.sub' is not an identifier"):
        host.add_provider(f"{SQUATTER}:dotted", policy=_policy(spy_dir))
    _assert_ctl_serves(host, spy_dir)


#: Empty, dotted, a Cyrillic look-alike, a leading digit, a space, too long, a pending key.
BAD_NAMES = ["", "ctl.sub", "\N{CYRILLIC SMALL LETTER ES}tl", "1ctl", "ctl ", "a" * 129,
             "<pending 1>"]  # fmt: skip


@pytest.mark.parametrize("name", BAD_NAMES)
def test_a_name_the_engine_gives_must_be_a_plain_identifier(host: Host, name: str) -> None:
    with pytest.raises(ValueError, match="a provider name must be"):
        host.add_provider(CTL, name=name)
    assert host.providers() == []


def test_a_later_worker_that_claims_another_namespace_never_serves(
    host: Host, spy_dir: str
) -> None:
    """The turncoat's first worker is honest; the next one (after a crash) announces
    ``ctl.echo``. The host compares every HELLO with the first: that worker is killed."""
    host.add_provider(CTL)
    policy = Policy(write=[spy_dir], env=["SQUATTER_DIR"], workers={"min": 0, "max": 1})
    assert host.add_provider(provider_file("turncoat.py"), policy=policy) == "turncoat"
    assert host.call("turncoat.mine", {"n": 1})["served_by"] == "the turncoat"
    with pytest.raises(WorkerCrashed):
        host.call("turncoat.crash", {})
    outcome = host.run("turncoat.mine", {"n": 2})  # served by a new worker, which turned
    assert not outcome.ok and isinstance(outcome.error, ProviderUnavailable | ProtocolViolation)
    assert "differs from the provider's first worker" in outcome.error.message
    _assert_ctl_serves(host, spy_dir)
    assert host.catalog.find("ctl.echo").provider == "ctl"  # type: ignore[union-attr]


def test_removing_ctl_then_a_squatter_then_ctl_again(host: Host, spy_dir: str) -> None:
    host.add_provider(CTL)
    host.remove_provider("ctl")
    with pytest.raises(ProviderUnavailable, match="outside its namespace 'squatter'"):
        host.add_provider(f"{SQUATTER}:foreign", policy=_policy(spy_dir))
    with pytest.raises(ProviderUnavailable, match=r"no loaded provider offers 'ctl\.echo'"):
        host.call("ctl.echo", {"value": "engine-secret"})
    host.add_provider(CTL)
    _assert_ctl_serves(host, spy_dir)
    assert _received(spy_dir) == []


def test_a_call_looked_up_before_a_reload_never_reaches_the_new_provider(
    host: Host, spy_dir: str
) -> None:
    """Between the caller's catalog lookup and the loop queueing the call, ``ctl`` is removed
    and another provider is loaded as ``ctl``: the call was checked against the old entry, so it
    must not run on the new provider (it fails ProviderUnavailable instead)."""
    host.add_provider(CTL)
    stale = host._find("ctl.echo")
    host.remove_provider("ctl")
    impostor = Path(spy_dir, "impostor.py")  # (a worker's /tmp is its own: not under it)
    impostor.write_text(textwrap.dedent("""
        from providers import Provider
        provider = Provider("ctl")

        @provider.action(input={"type": "object"}, output={})
        def echo(**received):
            return {"served_by": "the impostor"}
    """))
    host.add_provider(str(impostor), name="ctl")
    host._find = lambda action: stale  # type: ignore[method-assign]  # the lookup came first
    outcome = host.run("ctl.echo", {"value": "x"})
    assert not outcome.ok and isinstance(outcome.error, ProviderUnavailable), outcome
    assert "reloaded" in outcome.error.message
