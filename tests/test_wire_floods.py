"""Wire floods from a real hostile worker (``tests/providers/flooder.py``).

The flooder writes raw ZMTP on its own connection to the host, below the worker's SDK and its
libzmq, or opens a second connection to its endpoint. Whatever it does, the host's memory grows
by at most twice the largest message the policy allows (the host's codec holds at most its
budget for one worker: ``host.zmtp``), the call ends in ``ProtocolViolation`` (or, for the
second connection, which the host makes impossible, in the action's own result), and another
provider's calls go on being served throughout.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from host import Host, ProtocolViolation
from host.reactor import _largest_message
from policies import Policy
from tests.conftest import provider_file

ECHO = provider_file("echo.py")
FLOODER = provider_file("flooder.py")
POLICY = Policy(wall_time=8, output="4MiB")
#: The growth allowed: twice the largest message the flooder's policy lets it send.
ALLOWED_GROWTH = 2 * _largest_message(POLICY)


def _status_kib(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise LookupError(field)


class PeakGrowth:
    """The host process's peak RSS over a stretch, less its RSS at the start (the kernel's
    high-water mark, reset through ``/proc/self/clear_refs``)."""

    def __enter__(self) -> PeakGrowth:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        self.start = _status_kib("VmRSS") * 1024
        self.growth = 0
        return self

    def __exit__(self, *exc: object) -> None:
        self.growth = _status_kib("VmHWM") * 1024 - self.start


@pytest.fixture
def flooded(host: Host) -> Iterator[tuple[Host, list[object], list[BaseException]]]:
    """The host with the flooder and echo loaded, and echo calls running meanwhile."""
    host.add_provider(FLOODER, policy=POLICY)
    host.add_provider(ECHO, policy=Policy(workers={"min": 1, "max": 2}))
    assert host.call("echo.add", {"a": 1}) == 2
    stop = threading.Event()
    good: list[object] = []
    errors: list[BaseException] = []

    def good_calls() -> None:
        while not stop.is_set():
            try:
                good.append(host.call("echo.add", {"a": 1}))
            except BaseException as exc:
                errors.append(exc)
            time.sleep(0.005)

    thread = threading.Thread(target=good_calls)
    thread.start()
    try:
        yield host, good, errors
    finally:
        stop.set()
        thread.join(30)
    assert errors == []
    assert good and all(v == 2 for v in good)
    assert host.call("flooder.fine", {"x": 1}) == 2  # a fresh worker serves the provider


def _flood(host: Host, action: str, **args: Any) -> tuple[Any, int]:
    with PeakGrowth() as peak:
        outcome = host.run(f"flooder.{action}", args)
    assert peak.growth <= ALLOWED_GROWTH, (
        f"the host grew by {peak.growth / 2**20:.1f} MiB "
        f"(allowed {ALLOWED_GROWTH / 2**20:.1f} MiB)"
    )
    return outcome, peak.growth


def test_a_message_of_endless_more_frames_is_a_violation_within_the_budget(
    flooded: tuple[Host, list[object], list[BaseException]],
) -> None:
    host, _, _ = flooded
    outcome, _ = _flood(host, "more_frames", megabytes=256)
    assert isinstance(outcome.error, ProtocolViolation), outcome
    assert "more than 2 frames" in outcome.error.message or "budget" in outcome.error.message
    assert outcome.usage.wall_s < 5  # ended by the host at once, not by the wall time


def test_a_frame_over_the_budget_is_a_violation_at_its_header(
    flooded: tuple[Host, list[object], list[BaseException]],
) -> None:
    host, _, _ = flooded
    outcome, _ = _flood(host, "huge_frame", megabytes=256)
    assert isinstance(outcome.error, ProtocolViolation), outcome
    assert outcome.usage.wall_s < 5


def test_messages_sent_while_a_big_one_waits_to_be_decoded_stay_in_the_kernel(
    flooded: tuple[Host, list[object], list[BaseException]],
) -> None:
    """A message over 64 KiB is decoded on the provider's lane, behind what the lane is doing
    (here: seconds of validating the worker's own result). The loop read on meanwhile and kept
    every later message of the worker, whole, outside the codec's budget: 601 MiB held for a
    1 MiB policy in the red team's run. The connection is not read while a message of it
    waits to be decoded: the flood stays in the kernel's socket buffer."""
    host, _, _ = flooded
    outcome, _ = _flood(host, "flood_behind_a_busy_lane", megabytes=256)
    assert outcome.ok, outcome.error  # (its result came first; then it broke the protocol)
    assert len(outcome.value) == 1500


def test_unasked_for_padded_pongs_are_a_violation_at_the_first(
    flooded: tuple[Host, list[object], list[BaseException]],
) -> None:
    host, _, _ = flooded
    outcome, _ = _flood(host, "padded_pongs", count=1500, size=1_000_000)
    assert isinstance(outcome.error, ProtocolViolation), outcome
    assert "PONG" in outcome.error.message


def test_garbage_on_its_own_connection_is_one_violation(
    flooded: tuple[Host, list[object], list[BaseException]],
    caplog: pytest.LogCaptureFixture,
) -> None:
    host, _, _ = flooded
    with caplog.at_level(logging.WARNING, logger="actionsandbox"):
        outcome, _ = _flood(host, "garbage", megabytes=64)
    assert isinstance(outcome.error, ProtocolViolation), outcome
    assert len(caplog.records) < 20  # one violation, not a record per junk message


def test_a_second_connection_to_a_workers_endpoint_is_impossible(
    flooded: tuple[Host, list[object], list[BaseException]],
    caplog: pytest.LogCaptureFixture,
) -> None:
    host, _, _ = flooded
    with caplog.at_level(logging.WARNING, logger="actionsandbox"):
        outcome, _ = _flood(host, "second_connection", megabytes=128, messages=20_000)
    assert outcome.ok, outcome
    assert outcome.value["connected"] is False
    assert outcome.value["error"] in ("EPERM", "ENOENT", "ECONNREFUSED")
    assert len(caplog.records) < 20


def test_a_connection_from_outside_the_workers_tree_is_refused(
    host: Host, caplog: pytest.LogCaptureFixture
) -> None:
    """An outsider racing the worker to its endpoint (here: the test process, spinning on the
    directory from before the worker is spawned) is refused by ``SO_PEERCRED``: its pid is not
    in the worker's tree (and under a root host its uid is not the worker's). The worker's own
    connection is still taken."""
    directory = host._reactor.transport.directory
    stop = threading.Event()
    outcomes: list[str] = []

    def intrude() -> None:
        tried: set[str] = set()
        while not stop.is_set():
            for name in os.listdir(directory):
                if name in tried:
                    continue
                tried.add(name)
                sock = socket.socket(socket.AF_UNIX)
                try:
                    sock.connect(os.path.join(directory, name))
                    sock.settimeout(5)
                    outcomes.append("closed" if sock.recv(1) == b"" else "served")
                except OSError as exc:
                    outcomes.append(type(exc).__name__)
                finally:
                    sock.close()

    thread = threading.Thread(target=intrude)
    thread.start()
    try:
        with caplog.at_level(logging.WARNING, logger="actionsandbox"):
            host.add_provider(ECHO, policy=Policy(workers={"min": 1, "max": 1}))
            assert host.call("echo.add", {"a": 41}) == 42
    finally:
        stop.set()
        thread.join(30)
    assert "served" not in outcomes
    if outcomes == ["closed"]:  # it got there first (as it nearly always does): refused
        assert any("refused a connection" in r.getMessage() for r in caplog.records)


def test_output_an_idle_worker_writes_past_its_log_limit_is_left_in_its_pipe(host: Host) -> None:
    """A thread of the worker wrote to stderr while no call ran: the host read every byte (to
    drop it past the log limit), as much of its CPU as the worker cared to spend writing. Now
    the host stops reading an idle worker's output once its log limit is full; the writer
    waits on the full pipe, and reading resumes with the next call."""
    host.add_provider(FLOODER, policy=Policy(workers={"min": 0, "max": 1}, log="64KiB"))
    assert host.call("flooder.stderr_while_idle", {"seconds": 30}) == "spewing"
    time.sleep(0.5)  # (the writer under way)
    before = time.process_time()  # every thread of this process: the host's loop among them
    time.sleep(3.0)
    host_cpu = time.process_time() - before
    print(f"host CPU in 3 s of an idle worker's flood: {host_cpu:.3f}s")
    assert host_cpu < 0.3, f"the host spent {host_cpu:.2f}s of CPU on an idle worker's output"
    outcome = host.run("flooder.fine", {"x": 1})
    assert outcome.value == 2, outcome
    # Its output is watched again during a call: a call that writes far more than a pipe
    # holds (it would wait on the full pipe until its wall time if it were not) ends ok.
    outcome = host.run("flooder.stderr_during_call", {"seconds": 0.3}, timeout=10)
    assert outcome.ok and outcome.value > 1024 * 1024, outcome


def test_a_provider_that_prints_past_its_log_limit_while_imported_still_starts(
    host: Host,
) -> None:
    """The idle pause above is for a worker that serves: one still starting is read on, or an
    import that prints more than the pipe holds would wait on it, and the worker never start."""
    host.add_provider(provider_file("chatty_import.py"), policy=Policy(log="64KiB"))
    assert host.call("chatty_import.ready") == "ready"


def test_a_worker_that_floods_its_output_while_starting_costs_the_host_little_cpu(
    host: Host,
) -> None:
    """The same flood from a provider's import: every spawn cost the host its whole start-up
    time (20 s) of reading and dropping. Past a generous slack the pipe is left full, and the
    worker fails to start as any worker that never says HELLO does."""
    failures: list[BaseException] = []

    def add() -> None:
        try:
            host.add_provider(provider_file("flood_at_import.py"), policy=Policy(log="64KiB"))
        except BaseException as exc:
            failures.append(exc)

    adding = threading.Thread(target=add)
    adding.start()
    try:
        time.sleep(1.0)  # (the worker started and flooding)
        before = time.process_time()
        time.sleep(3.0)
        host_cpu = time.process_time() - before
        print(f"host CPU in 3 s of a starting worker's flood: {host_cpu:.3f}s")
        assert adding.is_alive() and not failures, failures
    finally:
        host.close()
        adding.join(timeout=30)
    assert not adding.is_alive()
    assert host_cpu < 0.3, f"the host spent {host_cpu:.2f}s of CPU on a starting worker's output"


def test_a_call_flooding_its_output_past_a_slack_is_throttled(host: Host) -> None:
    """A call writing stderr as fast as it could kept the host reading as fast, to drop it
    past the log limit: 1.2-2.9 s of the host's CPU per 3 s of the call, more than the worker
    spent writing. Past CALL_LOG_SLACK the pipe is emptied once per LOG_THROTTLE_S; the call
    still ends with its result and the log limit's notice."""
    from host.reactor import CALL_LOG_SLACK

    host.add_provider(FLOODER, policy=Policy(log="64KiB", wall_time=20, cpu_time=20))
    for chunk_kib in (4, 64):
        before = time.process_time()
        outcome = host.run("flooder.stderr_during_call", {"seconds": 3.0, "chunk_kib": chunk_kib})
        host_cpu = time.process_time() - before
        print(f"{chunk_kib} KiB writes: {outcome.value} bytes, host CPU {host_cpu:.3f}s")
        assert outcome.ok and outcome.value > CALL_LOG_SLACK, outcome
        assert "bytes of output were dropped (log limit)" in outcome.stderr
        assert host_cpu < 0.5, f"the host spent {host_cpu:.2f}s of CPU on a call's output flood"


def test_output_written_a_byte_at_a_time_costs_the_host_little_cpu_and_memory(
    host: Host,
) -> None:
    """One byte per write, alternating streams: the host read each byte as it came (most of a
    core) and kept each read as a piece of its own, ~200 bytes of memory per byte captured
    (154 MiB for a 1 MiB limit), joined on the loop at the call's end. Now the pipes are read
    at most every LOG_COALESCE_S and what is kept sits in three buffers."""
    limit = 1024 * 1024
    host.add_provider(FLOODER, policy=Policy(log=limit, wall_time=20, cpu_time=20))
    with PeakGrowth() as grown:
        before = time.process_time()
        outcome = host.run("flooder.dribble", {"seconds": 2.0})
        host_cpu = time.process_time() - before
    print(f"{outcome.value} one-byte writes: host CPU {host_cpu:.3f}s, "
          f"peak growth {grown.growth / 2**20:.1f} MiB")
    assert outcome.ok and outcome.value > limit, outcome.error
    assert len(outcome.logs) >= limit - 8  # (what the limit keeps, both streams as they came)
    assert set(outcome.stdout) == {"d"} and set(outcome.stderr.splitlines()[0]) == {"d"}
    assert host_cpu < 0.8, f"the host spent {host_cpu:.2f}s of CPU on 2 s of one-byte writes"
    assert grown.growth < 8 * limit + 16 * 2**20, f"the host grew {grown.growth} bytes"
