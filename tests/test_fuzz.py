"""``sandbox fuzz`` on real workers: every planted bug is found, shrunk to its threshold and
reproduced by its own printed ``sandbox call`` line; the clean actions have no finding."""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys

from host.cli import main

HERE = os.path.dirname(__file__)
PLANTED = os.path.join(HERE, "providers", "planted.py")
#: action -> (check, outcome, shrunk input)
EXPECTED = {
    "planted.crash": ("not_a_crash", "WorkerCrashed", {"n": 50}),
    "planted.fails": ("no_action_failure", "ActionFailed", {"n": 30}),
    "planted.bad_output": ("output_conformance", "OutputInvalid", {"n": 20}),
    "planted.hang": ("no_timeout", "Timeout", {"n": 40}),
    "planted.blowup": ("no_resource_exhaustion", "OutputTooLarge", {"n": 60}),
}


def _fuzz(capsys: object, *args: str) -> tuple[int, dict[str, object]]:
    code = main(["fuzz", *args, "--json", "--database", "none", "--seed", "1"])
    out = capsys.readouterr().out  # type: ignore[attr-defined]
    return code, json.loads(out)


def test_planted_bugs_are_found_shrunk_and_reproduced(capsys: object) -> None:
    code, data = _fuzz(capsys, "--provider", PLANTED, "--max-examples", "60", "--timeout", "1")
    assert code == 1 and data["ok"] is False
    actions = {a["action"]: a for a in data["actions"]}  # type: ignore[attr-defined]
    for clean in ("planted.clean", "planted.declared"):
        assert actions[clean]["findings"] == [], actions[clean]
    for name, (check, outcome, shrunk) in EXPECTED.items():
        (finding,) = actions[name]["findings"]
        assert (finding["check"], finding["outcome"], finding["input"]) == (check, outcome, shrunk)
        argv = shlex.split(finding["reproduce"])
        assert argv[:3] == ["sandbox", "call", name]
        done = subprocess.run(
            [sys.executable, "-m", "host.cli", *argv[1:], "--json"],
            capture_output=True, text=True, timeout=60,
        )
        assert done.returncode == 1, done.stderr
        assert json.loads(done.stdout)["error"]["type"] == outcome


def test_example_text_provider_fuzz_run(capsys: object) -> None:
    code, data = _fuzz(
        capsys, "--provider", "providers.examples.text", "text.word_count", "text.upper",
        "text.stats", "text.echo", "--max-examples", "30", "--workers", "2",
    )
    assert code == 0, data
    assert [a["examples"] for a in data["actions"]] == [30, 30, 30, 30]  # type: ignore[index]


def test_negative_mode_finds_nothing_the_host_lets_through(capsys: object) -> None:
    code, data = _fuzz(
        capsys, "--provider", PLANTED, "planted.clean", "--mode", "negative",
        "--max-examples", "30",
    )
    assert code == 0, data


def test_usage_errors_exit_2(capsys: object) -> None:
    assert main(["fuzz", "--provider", PLANTED, "--checks", "nope"]) == 2
    assert main(["fuzz", "--provider", PLANTED, "planted.missing"]) == 2
    assert "unknown action" in capsys.readouterr().err  # type: ignore[attr-defined]

