"""Shared fixtures. The autouse leak check fails any test that leaves a process behind."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from host import Host
from policies import Policy

TEST_PROVIDERS = Path(__file__).parent / "providers"
#: How long a test's processes get to disappear after it ends (killing a tree is asynchronous).
LEAK_GRACE_S = 5.0


def _sandbox_processes() -> set[tuple[int, float]]:
    """(pid, create time) of every process running the worker entry point, and every zombie."""
    found = set()
    for process in psutil.process_iter(["pid", "cmdline", "status", "create_time"]):
        try:
            cmdline = process.info["cmdline"] or []
            zombie = process.info["status"] == psutil.STATUS_ZOMBIE
            if zombie or ("-m" in cmdline and "sandbox" in cmdline):
                found.add((process.info["pid"], process.info["create_time"]))
        except psutil.Error:
            continue
    return found


def _descendants() -> set[tuple[int, float]]:
    result = set()
    for child in psutil.Process(os.getpid()).children(recursive=True):
        try:
            result.add((child.pid, child.create_time()))
        except psutil.Error:
            continue
    return result


def _describe(pids: set[tuple[int, float]]) -> str:
    lines = []
    for pid, _ in sorted(pids):
        try:
            p = psutil.Process(pid)
            lines.append(f"{pid} {p.status()} ppid={p.ppid()} {' '.join(p.cmdline())[:100]}")
        except psutil.Error:
            lines.append(f"{pid} (gone)")
    return "\n".join(lines)


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--spawn",
        choices=("zygote", "fresh"),
        default=None,
        help="how hosts created without spawn= start their workers (sets SANDBOX_SPAWN; "
        "default: the host's default, the zygote)",
    )


def pytest_configure(config: pytest.Config) -> None:
    spawn = config.getoption("--spawn")
    if spawn:
        os.environ["SANDBOX_SPAWN"] = spawn


@pytest.fixture(autouse=True)
def no_leaked_processes() -> Iterator[None]:
    """Fail the test if a worker, a grandchild or a zombie it created outlives it."""
    before = _sandbox_processes() | _descendants()
    yield
    deadline = time.monotonic() + LEAK_GRACE_S
    while True:
        leaked = (_sandbox_processes() | _descendants()) - before
        if not leaked or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert not leaked, f"processes leaked by this test:\n{_describe(leaked)}"


@pytest.fixture
def host() -> Iterator[Host]:
    with Host() as h:
        yield h


@pytest.fixture
def strict_policy() -> Policy:
    """Short limits so hostile actions end quickly; wall time below CPU time so spins time out."""
    return Policy(wall_time=1.5, cpu_time=5.0, memory="128MiB", output="256KiB", log="16KiB")


def provider_file(name: str) -> str:
    return str(TEST_PROVIDERS / name)
