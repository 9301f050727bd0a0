"""Shared fixtures. The autouse leak check fails any test that leaves a process behind.

Before any test runs, the run confines itself to a pid namespace of its own (see
``tests/confinement.py``): whoever runs the suite, a test process can signal, see and leak only
processes of the test run. If that is impossible here, the escape suite skips with the reason.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from host import Host
from policies import Policy
from sandbox.libc import PR_SET_CHILD_SUBREAPER, prctl
from tests import confinement, shards

TEST_PROVIDERS = Path(__file__).parent / "providers"
#: How long a test's processes get to disappear after it ends (killing a tree is asynchronous).
LEAK_GRACE_S = 5.0


def _run_processes() -> set[tuple[int, float]]:
    """(pid, create time) of every process of this test run but this one, zombies included.

    Confined (this process is pid 1 of the run's own namespace), that is every process in
    ``/proc``: orphans are reparented to this process and nothing else is visible. Unconfined,
    this process is a child subreaper (see :func:`pytest_configure`), so orphans of its tree are
    reparented to it and the tree is the whole run; other users' or other runs' processes on
    the machine are not counted, whatever they run.
    """
    found = set()
    if confinement.confined():
        processes = [p for p in psutil.process_iter() if p.pid != os.getpid()]
    else:
        processes = psutil.Process(os.getpid()).children(recursive=True)
    for process in processes:
        try:
            found.add((process.pid, process.create_time()))
        except psutil.Error:
            continue
    return found


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
    shards.add_options(parser)
    parser.addoption(
        "--spawn",
        choices=("zygote", "fresh"),
        default=None,
        help="how hosts created without spawn= start their workers (sets SANDBOX_SPAWN; "
        "default: the host's default, the zygote)",
    )


#: The run's config, for the hooks that are not given it (a shard's report writer).
_config: pytest.Config | None = None


def pytest_configure(config: pytest.Config) -> None:
    global _config
    _config = config
    _restore_sigint()
    _confine(config)
    spawn = config.getoption("--spawn")
    if spawn:
        os.environ["SANDBOX_SPAWN"] = spawn


def _restore_sigint() -> None:
    """A suite started in the background by a shell without job control (``cmd &`` in a
    script, some CI runners) inherits SIGINT ignored, and then Python raises no
    KeyboardInterrupt and every CLI the tests start ignores Ctrl-C too (an ignored signal stays
    ignored across exec): the interrupt tests would fail for the runner's reason, not the
    code's. The tests need Python's own handler (a caught signal is reset to the default on
    exec, so the CLIs they start get the default)."""
    if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)


def _confine(config: pytest.Config) -> None:
    """Re-execute the run in its own namespaces (this process then only waits for it).

    pytest has suspended its output capture by now (it captures while loading conftests); it is
    suspended again in case a plugin resumed it, so the confined run writes to the real
    terminal, and left so: resuming it here would capture the whole session's report."""
    if not confinement.confined():
        capture = config.pluginmanager.getplugin("capturemanager")
        if capture is not None:
            capture.suspend_global_capture()
        confinement.confine_or_continue()
    if not confinement.confined():
        # Orphans of the run's tree come back to this process, so the leak check sees them.
        prctl(PR_SET_CHILD_SUBREAPER, 1)


#: Test modules that need an optional extra and run in a CI step of their own, with a venv that
#: has it (``.ci/mistral``, ``.ci/ray``), selected there by their marker.
_OWN_STEP = {"test_mistral.py": "mistral", "test_ray.py": "ray"}


def pytest_ignore_collect(collection_path: Path, config: pytest.Config) -> bool | None:
    """Leave out the modules of another CI step unless ``-m`` asks for their marker: the main
    suite does not run them (rather than skipping them), their own step does."""
    marker = _OWN_STEP.get(collection_path.name)
    if marker is not None and marker not in (config.getoption("markexpr") or ""):
        return True
    return None


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """In a shard, only the tests the parent gave it (``tests.shards``). Unconfined, skip the
    escape suite: its attacks could reach the runner's other processes."""
    shards.selected_by_the_parent(config, items)
    why = confinement.unconfined_reason()
    if why is None:
        return
    skip = pytest.mark.skip(reason=f"hostile tests need a confined run: {why}")
    for item in items:
        if "escapes" in item.path.parts:
            item.add_marker(skip)


@pytest.hookimpl(tryfirst=True)
def pytest_runtestloop(session: pytest.Session) -> bool | None:
    """With ``--shards N``, the tests run in N confined processes (``tests.shards``)."""
    if shards.wanted(session.config) and session.items:
        return shards.run(session)
    return None


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if shards.summary:
        terminalreporter.write_line(shards.summary)


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if _config is not None:
        shards.write_report(_config, report)


@pytest.fixture(autouse=True)
def no_leaked_processes() -> Iterator[None]:
    """Fail the test if a worker, a grandchild or a zombie it created outlives it."""
    before = _run_processes()
    yield
    deadline = time.monotonic() + LEAK_GRACE_S
    while True:
        leaked = _run_processes() - before
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
