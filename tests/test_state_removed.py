"""A host whose state directory is removed under it still starts workers.

Real Mistral's unit-test base (oslotest: ``fixtures.NestedTempfile``) points ``tempfile.tempdir``
at a directory of its own for each test and removes that directory when the test ends; a Host
created during one test (Mistral's executor keeps one per process) then lost its ipc and work
directories. The live worker kept serving over its connected socket, so nothing showed until
that worker was killed (a Timeout): the next worker's endpoint could not be bound, that error
was lost on the loop (``Channel`` failing in its own clean-up) and the next call never ended.
A tmp cleaner removing an idle host's directory does the same.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from collections.abc import Iterator

import pytest

from host import Host
from policies import Policy
from tests.conftest import provider_file

ECHO = provider_file("echo.py")


@pytest.fixture
def nested_tempdir() -> Iterator[str]:
    """``tempfile.tempdir`` moved into a directory of its own, as oslotest's base does."""
    saved = tempfile.tempdir
    path = tempfile.mkdtemp(prefix="nested-")
    os.chmod(path, 0o755)  # workers under their own uids must reach their sockets
    tempfile.tempdir = path
    try:
        yield path
    finally:
        tempfile.tempdir = saved
        shutil.rmtree(path, ignore_errors=True)


@pytest.mark.parametrize("spawn", ["zygote", "fresh"])
def test_next_worker_starts_after_state_dir_removed(nested_tempdir: str, spawn: str) -> None:
    with Host(spawn=spawn) as host:
        state = host._reactor._state.directory
        assert state.startswith(nested_tempdir + os.sep)
        host.add_provider(ECHO, policy=Policy(wall_time=1.0))
        assert host.call("echo.echo", {"value": "before"}, timeout=20) == "before"
        # The test that made the host ends: its temporary directory goes, the host stays.
        tempfile.tempdir = None
        shutil.rmtree(nested_tempdir)
        assert not os.path.exists(state)
        # The live worker still serves; one killed for its wall time needs a successor.
        assert host.call("echo.echo", {"value": "still"}, timeout=20) == "still"
        outcome = host.run("echo.slow", {"seconds": 30}, timeout=20)
        assert outcome.error is not None and outcome.error.type == "Timeout", outcome
        after = host.run("echo.echo", {"value": "after"}, timeout=20)
        assert after.ok, after
        assert after.value == "after"
        # The host made itself a new state directory (in the tempdir of now) and cleans it up.
        moved = host._reactor._state.directory
        assert moved != state and os.path.isdir(moved)
    assert not os.path.exists(moved)


def test_no_place_for_a_worker_fails_the_call(nested_tempdir: str) -> None:
    """With no directory to move to either, the call that needs a new worker gets an outcome
    at once (the bind's error reaches the loop's start-failure path) instead of never ending."""
    with Host() as host:
        host.add_provider(ECHO, policy=Policy(wall_time=1.0))
        tempfile.tempdir = os.path.join(nested_tempdir, "gone")
        shutil.rmtree(nested_tempdir)
        outcome = host.run("echo.slow", {"seconds": 30}, timeout=20)
        assert outcome.error is not None and outcome.error.type == "Timeout", outcome
        started = time.monotonic()
        after = host.run("echo.echo", {"value": "after"}, timeout=20)
        assert after.error is not None and after.error.type == "ProviderUnavailable", after
        assert "cannot open an ipc endpoint" in after.error.message
        assert time.monotonic() - started < 5

