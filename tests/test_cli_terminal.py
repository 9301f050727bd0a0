"""The CLI on a terminal (a real pseudo-terminal): long work shows progress as it goes and
outcomes are coloured; ``NO_COLOR`` turns colour off. Piped output stays plain (test_cli)."""

from __future__ import annotations

import os
import pty
import select
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator

import pytest

from host.terminal import colour_wanted


def _run_on_a_terminal(*args: str, env: dict[str, str]) -> tuple[bytes, bytes, int]:
    """Run ``sandbox ARGS`` with stdout and stderr on a pty; returns (everything it wrote, what
    it had written by the time the first table row arrived, exit code). The second is taken
    while the process is still running, which shows the rows come as they finish."""
    master, slave = pty.openpty()
    proc = subprocess.Popen(
        [sys.executable, "-m", "host.cli", *args], stdin=subprocess.DEVNULL,
        stdout=slave, stderr=slave, env=env, close_fds=True,
    )  # fmt: skip
    os.close(slave)
    output = b""
    at_first_row = b""
    deadline = time.monotonic() + 120
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 1.0)
            if not ready:
                continue
            try:
                chunk = os.read(master, 65536)
            except OSError:  # EIO: the terminal's other side is closed
                break
            if not chunk:
                break
            output += chunk
            if not at_first_row and b"text.word_count" in output.split(b"-----")[-1]:
                at_first_row = output
                assert proc.poll() is None, "the table came only at the end"
        code = proc.wait(timeout=60)
    finally:
        os.close(master)
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return output, at_first_row, code


def test_demo_on_a_terminal_shows_progress_and_colour() -> None:
    env = {k: v for k, v in os.environ.items() if k != "NO_COLOR"}
    env["TERM"] = "xterm"
    output, at_first_row, code = _run_on_a_terminal("demo", env=env)
    assert code in (0, 1), output[-2000:]
    assert at_first_row, output[-2000:]  # a row arrived while the demo was still running
    assert b"starting the workers" in output  # the wait for the workers is said
    assert b"running hostile.spin: busy loop for 60 s..." in output  # what runs now
    assert b"\x1b[K" in output  # each status line is erased before the row
    assert b"\x1b[32m" in output  # outcomes coloured
    assert b"Traceback" not in output


@pytest.mark.parametrize(
    ("tty", "no_color", "wanted"),
    [(True, None, True), (True, "1", False), (False, None, False)],
)
def test_colour_only_on_a_terminal_and_never_with_no_color(
    tty: bool, no_color: str | None, wanted: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    class Stream:
        def isatty(self) -> bool:
            return tty

    if no_color is None:
        monkeypatch.delenv("NO_COLOR", raising=False)
    else:
        monkeypatch.setenv("NO_COLOR", no_color)
    assert colour_wanted(Stream()) is wanted


SLOW_IMPORT = '''
import time
from providers import Provider

time.sleep(2.0)  # a provider slow to import
provider = Provider("slowpoke", version="1.0")


@provider.action
def ping() -> str:
    """Answer."""
    return "pong"


@provider.action
def fail() -> str:
    """Raise."""
    raise RuntimeError("on purpose")
'''


@pytest.fixture
def slowpoke() -> Iterator[str]:
    """The provider in a directory every worker uid may read (the suite's tmp_path is not)."""
    directory = tempfile.mkdtemp(prefix="sandbox-slowpoke-", dir="/var/tmp")
    os.chmod(directory, 0o755)
    path = os.path.join(directory, "slowpoke.py")
    with open(path, "w") as f:
        f.write(SLOW_IMPORT)
    os.chmod(path, 0o644)
    yield path
    shutil.rmtree(directory, ignore_errors=True)


def test_call_on_a_terminal_says_what_it_waits_for_and_colours_the_error(slowpoke: str) -> None:
    provider = slowpoke
    env = {k: v for k, v in os.environ.items() if k != "NO_COLOR"}
    output, _, code = _run_on_a_terminal(
        "call", "slowpoke.fail", "{}", "--provider", provider, env=env
    )
    assert code == 1, output
    assert b"starting the worker of " in output and b"importing the provider" in output
    assert b"\x1b[31mActionFailed\x1b[0m: " in output
    output, _, code = _run_on_a_terminal(
        "call", "slowpoke.fail", "{}", "--provider", provider, "--color", "never", env=env
    )
    assert code == 1 and b"ActionFailed: " in output
    assert b"\x1b[31m" not in output
    env["NO_COLOR"] = "1"
    output, _, code = _run_on_a_terminal(
        "call", "slowpoke.ping", "{}", "--provider", provider, env=env
    )
    assert code == 0 and b'"pong"' in output
    assert b"\x1b[3" not in output  # no colour code at all


def test_doctor_colours_on_a_terminal_only() -> None:
    env = {k: v for k, v in os.environ.items() if k != "NO_COLOR"}
    output, _, code = _run_on_a_terminal("doctor", env=env)
    assert code in (0, 1), output
    assert b"\x1b[32mavailable" in output
    piped = subprocess.run(
        [sys.executable, "-m", "host.cli", "doctor"], capture_output=True, env=env, timeout=60
    )
    assert b"available" in piped.stdout and b"\x1b" not in piped.stdout + piped.stderr
