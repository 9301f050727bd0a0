"""The CLI never prints a worker's control characters to the user's terminal.

A failure message is the worker's to choose; with ``ESC[1A ESC[2K`` it erased the CLI's own
``ActionFailed:`` line and wrote ``result: ok`` in its place, then ``ESC[8m`` hid the traceback.
Text from a worker that the CLI prints (messages, tracebacks, logs) must not carry control
characters other than newline and tab.
"""

from __future__ import annotations

import subprocess
import sys

from tests.conftest import provider_file


def test_a_failure_message_cannot_rewrite_the_terminal() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "host.cli", "call", "esc.boom",
         "--provider", provider_file("terminal_escape.py")],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 1
    assert "ActionFailed" in proc.stderr
    assert "\x1b" not in proc.stderr and "\r" not in proc.stderr, repr(proc.stderr[:300])
