"""The CLI never prints a worker's control characters to the user's terminal.

A failure message is the worker's to choose; with ``ESC[1A ESC[2K`` it erased the CLI's own
``ActionFailed:`` line and wrote ``result: ok`` in its place, then ``ESC[8m`` hid the traceback.
Text from a worker that the CLI prints (messages, tracebacks, logs) must not carry control
characters other than newline and tab.
"""

from __future__ import annotations

import json
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


def test_catalog_text_cannot_forge_another_providers_action_in_list() -> None:
    """Descriptions and parameter names are the provider's to choose: their line breaks stay
    indented under the action (or are escaped), so no line at the left edge is anything but an
    action that exists; bidirectional overrides are escaped."""
    command = [sys.executable, "-m", "host.cli", "list", "--provider",
               provider_file("forger.py"), "--provider", "providers.examples.text"]  # fmt: skip
    proc = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    listed = subprocess.run([*command, "--json"], capture_output=True, text=True, timeout=120)
    actions = {d["full_name"] for d in json.loads(listed.stdout)}
    assert "text.echo" in actions and "text.delete_everything" not in actions
    headers = [line.split()[0] for line in proc.stdout.splitlines() if line and line[0] != " "]
    assert sorted(headers) == sorted(actions), proc.stdout
    assert "\u202e" not in proc.stdout and "\\u202e" in proc.stdout


def test_list_names_what_literal_and_optional_parameters_take() -> None:
    """``Literal[1, 2]`` and ``int | None`` were listed as ``any``, as if anything were taken."""
    from host.cli import parameter_lines

    schema = {
        "type": "object",
        "properties": {
            "choice": {"enum": [1, 2]},
            "only": {"const": "x"},
            "maybe": {"anyOf": [{"type": "integer"}, {"type": "null"}]},
            "free": {},
        },
        "required": ["choice"],
    }
    assert parameter_lines(schema) == [
        "choice: one of 1, 2, required",
        'only: "x", optional',
        "maybe: integer | null, optional",
        "free: any, optional",
    ]
