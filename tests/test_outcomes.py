"""Every outcome, triggered for real in a real worker, and the next call still succeeding."""

from __future__ import annotations

import os
import time
from decimal import Decimal

import psutil
import pytest

from host import (
    ActionFailed,
    CpuExceeded,
    Host,
    InputInvalid,
    MemoryExceeded,
    OutputInvalid,
    OutputTooLarge,
    ProviderUnavailable,
    SandboxError,
    Timeout,
    WorkerCrashed,
)
from policies import Policy
from tests.conftest import provider_file

HOSTILE = "providers.examples.hostile"
TEXT = "providers.examples.text"


def _still_serves(host: Host) -> None:
    """The provider answers a good call after the failure (a fresh worker if it had to be)."""
    assert host.call("hostile.getpid", {}) > 0


@pytest.fixture
def hostile(host: Host, strict_policy: Policy) -> Host:
    host.add_provider(HOSTILE, policy=strict_policy)
    return host


def _raises(host: Host, action: str, payload: dict, error: type[SandboxError]) -> SandboxError:
    with pytest.raises(error) as info:
        host.call(action, payload)
    err = info.value
    assert err.type == error.__name__
    assert err.usage.wall_s >= 0
    return err


@pytest.mark.parametrize(
    ("action", "payload"),
    [
        ("hostile.sleep", {"seconds": 30}),
        ("hostile.spin", {"seconds": 30}),
    ],
)
def test_timeout_kills_and_the_next_call_succeeds(
    hostile: Host, action: str, payload: dict
) -> None:
    err = _raises(hostile, action, payload, Timeout)
    assert "wall-time limit of 1.5s" in err.message
    assert 1.4 <= err.usage.wall_s < 5
    _still_serves(hostile)


def test_catastrophic_regex_ends_in_timeout_not_a_hung_host(host: Host) -> None:
    host.add_provider(TEXT, policy=Policy(wall_time=1.0, cpu_time=10.0))
    with pytest.raises(Timeout):
        host.call("text.regex_search", {"pattern": "(a+)+$", "text": "a" * 40 + "b"})
    assert host.call("text.regex_search", {"pattern": "a+", "text": "baab"}) == ["aa"]


def test_caller_timeout_is_shorter_than_the_policy(hostile: Host) -> None:
    with pytest.raises(Timeout) as info:
        hostile.call("hostile.sleep", {"seconds": 30}, timeout=0.3)
    assert "timeout passed" in info.value.message
    _still_serves(hostile)


def test_cpu_limit_surfaces_as_cpu_exceeded(host: Host) -> None:
    host.add_provider(HOSTILE, policy=Policy(wall_time=20, cpu_time=0.5))
    for action in ("hostile.spin", "hostile.spin_native"):
        err = _raises(host, action, {"seconds": 30}, CpuExceeded)
        assert err.usage.cpu_s >= 0.4
    _still_serves(host)


@pytest.mark.parametrize(
    ("action", "payload"),
    [("hostile.allocate", {"limit_mib": 2048}), ("hostile.allocate_once", {"mib": 2048})],
)
def test_memory_limit_surfaces_as_memory_exceeded(
    hostile: Host, action: str, payload: dict
) -> None:
    err = _raises(hostile, action, payload, MemoryExceeded)
    assert err.usage.max_rss_bytes < 2048 * 1024 * 1024
    _still_serves(hostile)


def test_oversized_result_is_output_too_large(hostile: Host) -> None:
    err = _raises(hostile, "hostile.huge_result", {"megabytes": 2}, OutputTooLarge)
    assert "limit is 262144" in err.message
    _still_serves(hostile)


@pytest.mark.parametrize(
    ("action", "payload", "detail"),
    [
        ("hostile.exit", {"code": 3}, {"exit_code": 3}),
        ("hostile.segfault", {}, {"signal": 11}),
    ],
)
def test_worker_death_is_worker_crashed(
    hostile: Host, action: str, payload: dict, detail: dict
) -> None:
    err = _raises(hostile, action, payload, WorkerCrashed)
    for key, value in detail.items():
        assert err.details[key] == value
    _still_serves(hostile)


def test_exception_is_action_failed_with_type_message_and_traceback(hostile: Host) -> None:
    err = _raises(hostile, "hostile.raise_error", {"message": "kaboom"}, ActionFailed)
    assert isinstance(err, ActionFailed)
    assert err.exception_type == "ValueError"
    assert "kaboom" in err.message
    assert "Traceback (most recent call last)" in err.traceback
    assert "raise ValueError" in err.traceback
    _still_serves(hostile)


def test_invalid_input_names_the_json_path_and_sends_nothing(hostile: Host) -> None:
    pid = hostile.call("hostile.getpid", {})
    with pytest.raises(InputInvalid) as info:
        hostile.call("hostile.sleep", {"seconds": "long"})
    assert info.value.details["path"] == "$.seconds"
    assert "$.seconds" in info.value.message
    with pytest.raises(InputInvalid) as info:
        hostile.call("hostile.sleep", {"seconds": 1, "extra": True})
    assert "extra" in info.value.message
    with pytest.raises(InputInvalid):
        hostile.call("hostile.sleep", ["not", "an", "object"])  # type: ignore[arg-type]
    assert hostile.call("hostile.getpid", {}) == pid  # same worker: nothing reached it


def test_the_message_about_a_huge_invalid_input_stays_short(hostile: Host) -> None:
    """jsonschema quotes the failing value in its message: for a 600 KB list where a string
    belongs, the error the caller (or a remote client) got was as big as the input."""
    with pytest.raises(InputInvalid) as info:
        hostile.call("hostile.read_file", {"path": ["x"] * 120_000})
    message = info.value.message
    assert len(message) < 2200, len(message)
    assert message.startswith("invalid input at $.path: ['x', 'x'")
    assert "characters left out" in message and message.endswith("is not of type 'string'")


def test_output_not_matching_its_schema_is_output_invalid(hostile: Host) -> None:
    err = _raises(hostile, "hostile.wrong_output", {}, OutputInvalid)
    assert err.details["path"] == "$"
    assert "integer" in err.message
    _still_serves(hostile)


def test_provider_whose_import_raises_is_unavailable_with_the_reason(host: Host) -> None:
    ref = provider_file("broken_import.py")
    with pytest.raises(ProviderUnavailable) as info:
        host.add_provider(ref)
    message = info.value.message
    assert "broken_import.py" in message
    assert "RuntimeError" in message and "cannot be imported" in message
    assert host.catalog.find_all() == []


def test_setsid_double_fork_grandchild_is_killed_with_its_worker(hostile: Host) -> None:
    before = {p.pid for p in psutil.process_iter()}
    with pytest.raises(Timeout):
        hostile.call("hostile.double_fork", {"seconds": 30})
    # The action forked a grandchild in a new session; it must be gone once the call is over.
    deadline = time.monotonic() + 2
    survivors: list[psutil.Process] = []
    while time.monotonic() < deadline:
        survivors = []
        for p in psutil.process_iter(["pid", "cmdline", "status"]):
            if p.pid in before or p.pid == os.getpid():
                continue
            if p.info["status"] == psutil.STATUS_ZOMBIE or "sandbox" in " ".join(
                p.info["cmdline"] or []
            ):
                survivors.append(p)
        if not survivors:
            break
        time.sleep(0.02)
    assert survivors == []  # the new worker is not started until the next call
    _still_serves(hostile)


def test_flood_is_captured_up_to_the_log_limit(hostile: Host) -> None:
    outcome = hostile.run("hostile.flood_stdout", {"megabytes": 20})
    assert outcome.ok and outcome.value == 20 * 1024 * 1024
    assert len(outcome.logs.encode()) <= 16 * 1024 + 200
    assert "bytes of output were dropped" in outcome.logs
    assert len(outcome.stdout.encode()) <= 16 * 1024  # the limit is for both streams together
    assert "bytes of output were dropped" in outcome.stderr
    _still_serves(hostile)


@pytest.mark.skipif(os.geteuid() != 0, reason="the memory cgroup needs a root host here")
def test_an_oom_kill_in_one_call_does_not_make_later_crashes_memory_exceeded(host: Host) -> None:
    """The host read its cgroup's lifetime count of OOM kills: once a call's child had been
    OOM-killed (the call itself ending ok), every later death of that worker was
    MemoryExceeded, and a ``safe_rerun`` action was not retried (the red team's finding)."""
    if not host._reactor.cgroup_support.version:
        pytest.skip("no cgroups on this machine")
    source = os.path.join(os.path.dirname(__file__), "providers", "oom_child.py")
    host.add_provider(
        source, policy=Policy(memory="256MiB", workers={"min": 0, "max": 1}, retries=2)
    )
    ends = host.call("oom_child.children_over_the_limit", {})
    assert 9 in ends, ends  # (one child was OOM-killed: SIGKILL)
    crashed = host.run("oom_child.crash", {"code": 7})
    assert isinstance(crashed.error, WorkerCrashed), crashed.error
    host.call("oom_child.children_over_the_limit", {})
    again = host.run("oom_child.crash_again", {"code": 7})
    assert isinstance(again.error, WorkerCrashed), again.error
    assert again.attempts == 3


@pytest.mark.parametrize(("action", "levels"), [("nest", 100), ("nest", 100_000),
                                               ("nest_tuples", 100)])  # fmt: skip
def test_a_result_nested_past_the_hosts_bound_is_output_invalid(
    host: Host, action: str, levels: int
) -> None:
    """Past the host's bound (99 levels below the RESULT body) the worker refused to send,
    honestly: a red team's 100-level result was a ProtocolViolation that killed the worker, and
    100,000 levels a RecursionError crash with the runtime's traceback as the action's stderr."""
    host.add_provider(provider_file("deep_result.py"))
    first = host.call("deep_result.token")
    assert host.call(f"deep_result.{action}", {"levels": 99}) is not None  # the deepest allowed
    outcome = host.run(f"deep_result.{action}", {"levels": levels})
    assert isinstance(outcome.error, OutputInvalid), outcome
    assert "deep" in str(outcome.error)
    assert host.call("deep_result.token") == first  # the same worker serves on


def test_stats_count_calls_refused_before_they_reached_a_worker(host: Host) -> None:
    """``stats()`` is calls by outcome: one refused in the caller's thread (invalid input)
    counts too, as ``sandbox serve``'s metrics count it; it ran nowhere, so no latency."""
    host.add_provider(provider_file("echo.py"))
    for _ in range(2):
        assert host.run("echo.add", {"a": "x"}).error.type == "InputInvalid"
    assert host.call("echo.add", {"a": 1}) == 2
    stats = host.stats()["echo"]
    assert stats["calls"] == {"ok": 1, "InputInvalid": 2}, stats


@pytest.mark.parametrize("bad", [True, 10**400, 0, -1.0, float("nan"), "2", Decimal(1)])
def test_a_bad_timeout_is_the_same_value_error_as_on_a_remote_host(host: Host, bad: object) -> None:
    """Every kind of host checks a caller's ``timeout`` alike (``host.calling``): a local
    one raised ``OverflowError`` for ``10**400`` and ``TypeError`` for ``"2"``, where a
    ``RemoteHost`` said ``ValueError: timeout must be a positive number of seconds``."""
    host.add_provider(provider_file("echo.py"))
    with pytest.raises(ValueError, match="timeout must be a positive number of seconds"):
        host.call("echo.add", {"a": 1}, timeout=bad)  # type: ignore[arg-type]
    assert host.call("echo.add", {"a": 1}, timeout=float("inf")) == 2  # (no deadline)
