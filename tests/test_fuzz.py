"""``sandbox fuzz`` on real workers: every planted bug is found, shrunk to its threshold and
reproduced by its own printed ``sandbox call`` line; the clean actions have no finding."""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from host.cli import main
from host.fuzz.runner import CHECKS

HERE = os.path.dirname(__file__)
PLANTED = os.path.join(HERE, "providers", "planted.py")
MULTIBUG = os.path.join(HERE, "providers", "multibug.py")
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


def _reproduces(finding: dict[str, object], outcome: str) -> None:
    """The finding's printed ``sandbox call`` line, run, ends in ``outcome``."""
    argv = shlex.split(str(finding["reproduce"]))
    done = subprocess.run(
        [sys.executable, "-m", "host.cli", *argv[1:], "--json"],
        capture_output=True, text=True, timeout=90,
    )
    assert done.returncode == 1, done.stderr
    assert json.loads(done.stdout)["error"]["type"] == outcome


def test_planted_bugs_are_found_shrunk_and_reproduced(capsys: object) -> None:
    code, data = _fuzz(capsys, "--provider", PLANTED, "--max-examples", "60", "--timeout", "1")
    assert code == 1 and data["ok"] is False
    actions = {a["action"]: a for a in data["actions"]}  # type: ignore[attr-defined]
    for clean in ("planted.clean", "planted.declared"):
        assert actions[clean]["findings"] == [], actions[clean]
    for name, (check, outcome, shrunk) in EXPECTED.items():
        (finding,) = actions[name]["findings"]
        assert (finding["check"], finding["outcome"], finding["input"]) == (check, outcome, shrunk)
        assert shlex.split(finding["reproduce"])[:3] == ["sandbox", "call", name]
        _reproduces(finding, outcome)


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



ENTROPY = os.path.join(HERE, "providers", "entropy.py")


def test_determinism_is_opt_in_and_finds_a_result_that_changes(capsys: object) -> None:
    """``entropy.state`` returns fresh randomness: only the opt-in check calls that a finding."""
    code, data = _fuzz(capsys, "--provider", ENTROPY, "entropy.state", "--max-examples", "3")
    assert code == 0, data
    code, data = _fuzz(
        capsys, "--provider", ENTROPY, "entropy.state", "--max-examples", "3",
        "--checks", "determinism",
    )  # fmt: skip
    assert code == 1, data
    (action,) = data["actions"]  # type: ignore[misc]
    (finding,) = action["findings"]
    assert (finding["check"], finding["outcome"]) == ("determinism", "ok")


def test_a_junit_report_has_a_case_per_action_and_a_failure_per_finding(
    capsys: object, tmp_path: object
) -> None:
    report = os.path.join(str(tmp_path), "fuzz.xml")
    code, _ = _fuzz(
        capsys, "--provider", PLANTED, "planted.fails", "planted.clean",
        "--max-examples", "40", "--report", f"junit={report}",
    )
    assert code == 1
    import xml.etree.ElementTree as ET

    suite = ET.parse(report).getroot()
    assert (suite.tag, suite.get("tests"), suite.get("failures")) == ("testsuite", "2", "1")
    cases = {case.get("name"): case for case in suite.iter("testcase")}
    assert set(cases) == {"planted.fails", "planted.clean"}
    assert cases["planted.clean"].find("failure") is None
    failure = cases["planted.fails"].find("failure")
    assert failure is not None and failure.get("type") == "ActionFailed"
    assert "no_action_failure" in (failure.get("message") or "")
    assert 'Input: {"n": 30}' in (failure.text or "")
    assert "Reproduce with: sandbox call planted.fails" in (failure.text or "")


def test_max_time_ends_an_action_before_its_examples_run_out(capsys: object) -> None:
    code, data = _fuzz(
        capsys, "--provider", PLANTED, "planted.clean", "--max-examples", "100000",
        "--max-time", "1",
    )
    assert code == 0, data
    (action,) = data["actions"]  # type: ignore[misc]
    assert 0 < action["examples"] < 100000
    # Hypothesis itself stops near the limit, not after generating the remaining examples
    # (they took 80 s when max-time only skipped running them); the bound is generous
    assert action["seconds"] < 30


def test_no_shrink_reports_the_first_failure_without_shrinking(capsys: object) -> None:
    """Same seed, so the same generation: shrinking only adds examples (and a smaller input)."""
    args = ("--provider", PLANTED, "planted.fails", "--max-examples", "40")
    _, shrunk = _fuzz(capsys, *args)
    _, raw = _fuzz(capsys, *args, "--no-shrink")
    (shrunk_action,) = shrunk["actions"]  # type: ignore[misc]
    (raw_action,) = raw["actions"]  # type: ignore[misc]
    assert shrunk_action["findings"][0]["input"] == {"n": 30}
    (finding,) = raw_action["findings"]
    assert finding["check"] == "no_action_failure" and finding["input"]["n"] >= 30
    assert raw_action["examples"] < shrunk_action["examples"]


def test_the_example_database_replays_a_failure_first(capsys: object, tmp_path: object) -> None:
    """A failure found once is tried first next time: one example finds it again."""
    database = os.path.join(str(tmp_path), "db")
    base = ["fuzz", "--provider", PLANTED, "planted.fails", "--json", "--database"]
    assert main([*base, "none", "--seed", "3", "--max-examples", "1"]) == 0  # 1 example misses
    capsys.readouterr()  # type: ignore[attr-defined]
    assert main([*base, database, "--seed", "1", "--max-examples", "40"]) == 1
    capsys.readouterr()  # type: ignore[attr-defined]
    assert os.listdir(database), "the failure was not saved"
    assert main([*base, database, "--seed", "3", "--max-examples", "1"]) == 1
    data = json.loads(capsys.readouterr().out)  # type: ignore[attr-defined]
    (action,) = data["actions"]
    assert action["findings"][0]["input"] == {"n": 30}


def _saved(database: str) -> list[dict[str, object]]:
    """Every entry the store holds, read as JSON."""
    entries = []
    for directory, _, names in os.walk(database):
        for name in sorted(names):
            with open(os.path.join(directory, name)) as source:
                entries.append(json.load(source))
    return entries


def _run_json(capsys: object, *args: str) -> tuple[int, dict[str, object]]:
    code = main(["fuzz", *args, "--json"])
    return code, json.loads(capsys.readouterr().out)  # type: ignore[attr-defined]


def test_the_store_keeps_the_shrunk_input_and_a_replayed_failure_ends_the_run(
    capsys: object, tmp_path: object
) -> None:
    """The kept entry is the reported finding's input; a run whose kept failure still fails
    reports it after that one example, without a new search (as Hypothesis does)."""
    database = os.path.join(str(tmp_path), "db")
    base = ["--provider", PLANTED, "planted.fails", "--database", database]
    code, _ = _run_json(capsys, *base, "--seed", "1", "--max-examples", "40")
    assert code == 1
    assert _saved(database) == [
        {"positive": True, "check": "no_action_failure", "outcome": "ActionFailed",
         "input": {"n": 30}}
    ]
    code, data = _run_json(capsys, *base, "--seed", "5", "--max-examples", "40")
    (action,) = data["actions"]  # type: ignore[misc]
    assert code == 1 and action["examples"] == 1, action
    assert action["findings"][0]["input"] == {"n": 30}


def test_a_kept_failure_that_no_longer_fails_is_forgotten_and_the_search_runs(
    capsys: object, tmp_path: object
) -> None:
    """An entry whose input now passes every check is removed, and so is one the schema no
    longer accepts; the run then searches as if there were none. An unreadable file in the
    store is ignored and left where it is."""
    database = os.path.join(str(tmp_path), "db")
    base = ["--provider", PLANTED, "planted.clean", "--database", database]
    assert _run_json(capsys, *base, "--max-examples", "1")[0] == 0  # makes nothing to keep
    assert _saved(database) == []
    from host.fuzz.runner import _store_key
    from host.fuzz.store import FailureStore

    store = FailureStore(database, _store_key(["--provider", PLANTED], "planted.clean",
                                              "positive"))
    store.save(True, "no_action_failure", "ActionFailed", {"text": "now fine"})
    store.save(True, "no_action_failure", "ActionFailed", {"n": 3})  # not this schema's
    garbage = os.path.join(store.directory, "garbage.json")
    with open(garbage, "w") as out:
        out.write("{not json")
    code, data = _run_json(capsys, *base, "--max-examples", "20")
    (action,) = data["actions"]  # type: ignore[misc]
    assert code == 0 and action["findings"] == [] and action["examples"] > 2, action
    assert os.listdir(store.directory) == ["garbage.json"]


def test_a_kept_failure_of_a_check_left_out_is_kept_but_not_reported(
    capsys: object, tmp_path: object
) -> None:
    """Excluding a check hides its kept failures for that run; it does not forget them."""
    database = os.path.join(str(tmp_path), "db")
    base = ["--provider", PLANTED, "planted.fails", "--database", database]
    assert _run_json(capsys, *base, "--seed", "1", "--max-examples", "40")[0] == 1
    kept = _saved(database)
    code, data = _run_json(capsys, *base, "--max-examples", "5",
                           "--exclude-checks", "no_action_failure")
    (action,) = data["actions"]  # type: ignore[misc]
    assert code == 0 and action["findings"] == [], action
    assert _saved(database) == kept


def test_max_time_keeps_the_failures_found_before_it(capsys: object) -> None:
    """The run ends at the limit, not after its examples; what it found is still reported."""
    code, data = _fuzz(
        capsys, "--provider", PLANTED, "planted.fails", "--max-examples", "100000",
        "--max-time", "2",
    )
    assert code == 1, data
    (action,) = data["actions"]  # type: ignore[misc]
    assert action["examples"] < 100000
    (finding,) = action["findings"]
    assert finding["check"] == "no_action_failure" and finding["input"]["n"] >= 30


def test_an_action_no_input_satisfies_is_reported_not_a_traceback(capsys: object) -> None:
    """An input schema no value satisfies (an empty integer range) raised ValueError out of
    the generator, through ``sandbox fuzz``, as a traceback. It is now that action's error
    (the run fails: the action can never be called), and the other actions are fuzzed."""
    source = os.path.join(HERE, "providers", "unfuzzable.py")
    code, data = _fuzz(capsys, "--provider", source, "--max-examples", "20")
    assert code == 1 and data["ok"] is False
    actions = {a["action"]: a for a in data["actions"]}  # type: ignore[union-attr]
    assert "unsatisfiable" in actions["unfuzzable.never"]["error"]
    assert actions["unfuzzable.never"]["examples"] == 0
    fine = actions["unfuzzable.fine"]
    assert fine["examples"] == 20 and not fine["findings"] and "error" not in fine
    # Found only at draw time: Hypothesis's InvalidArgument (the first, from the generator)
    # ended the whole command in a traceback; its Unsatisfiable said "assumptions of body".
    # Each is the action's error now.
    assert "no value it accepts was found" in actions["unfuzzable.one_name_two_keys"]["error"]
    # (more required names than maxProperties allows: now seen when the strategy is built)
    assert "unsatisfiable" in actions["unfuzzable.two_required_one_allowed"]["error"]
    human = main(["fuzz", "--provider", source, "--database", "none", "--max-examples", "20"])
    out = capsys.readouterr()  # type: ignore[attr-defined]
    assert human == 1 and "Traceback" not in out.err + out.out
    for name in ("never", "one_name_two_keys", "two_required_one_allowed"):
        assert f"unfuzzable.{name}: cannot generate inputs from its input schema" in out.out


def test_only_usage_above_a_round_trips_noise_reaches_target() -> None:
    """A measure goes to ``hypothesis.target`` only above its floor (below it the differences
    between examples are noise the optimiser would climb); memory counts from the least peak
    the action's examples had, not from zero."""
    from host.errors import Usage
    from host.fuzz.runner import (
        TARGET_FLOOR_CPU_S,
        TARGET_FLOOR_RSS_MIB,
        TARGET_FLOOR_WALL_S,
        observations,
    )

    mib = 2**20
    least = 20 * mib
    quiet = Usage(wall_s=0.0006, cpu_s=0.0002, max_rss_bytes=least + 2 * mib)
    assert observations(quiet, least) == {}
    busy = Usage(
        wall_s=TARGET_FLOOR_WALL_S * 3, cpu_s=TARGET_FLOOR_CPU_S * 3,
        max_rss_bytes=least + int((TARGET_FLOOR_RSS_MIB + 1) * mib),
    )
    assert observations(busy, least) == {
        "wall_s": busy.wall_s, "cpu_s": busy.cpu_s, "max_rss_mib": busy.max_rss_bytes / mib,
    }
    assert set(observations(busy, least + 8 * mib)) == {"wall_s", "cpu_s"}


def test_an_action_with_two_distinct_failures_reports_both(capsys: object) -> None:
    """Hypothesis raises an ExceptionGroup for two distinct failures: the runner re-raised every
    group (``subgroup`` tests the group itself first), so ``sandbox fuzz`` ended in a traceback,
    with nothing printed, even under ``--json``; plain ``sandbox fuzz`` did, on the built-in
    example provider."""
    code, data = _fuzz(capsys, "--provider", MULTIBUG, "multibug.two", "--max-examples", "200")
    assert code == 1 and data["ok"] is False
    (action,) = data["actions"]  # type: ignore[misc]
    found = {(f["check"], f["outcome"]): f for f in action["findings"]}
    assert set(found) == {
        ("no_action_failure", "ActionFailed"), ("output_conformance", "OutputInvalid")
    }, action
    assert found[("no_action_failure", "ActionFailed")]["input"] == {"n": -1}
    assert found[("output_conformance", "OutputInvalid")]["input"] == {"n": 101}
    for (_, outcome), finding in found.items():
        _reproduces(finding, outcome)


def test_a_failure_that_comes_and_goes_is_a_finding_not_a_traceback(capsys: object) -> None:
    """A failure that did not happen again on its final replay made Hypothesis raise a
    FlakyFailure (an ExceptionGroup too): a traceback. It is a finding (flaky when Hypothesis
    saw it so)."""
    for seed in ("1", "2", "3"):
        code = main([
            "fuzz", "--provider", MULTIBUG, "multibug.coin", "--json", "--database", "none",
            "--seed", seed, "--max-examples", "50",
        ])  # fmt: skip
        data = json.loads(capsys.readouterr().out)  # type: ignore[attr-defined]
        assert code == 1 and data["ok"] is False
        (finding,) = data["actions"][0]["findings"]
        assert finding["check"] == "no_action_failure"
        assert "sometimes" in finding["message"]
    # ``once`` fails only the first time its worker sees an input: its replay always passes.
    code, data = _fuzz(capsys, "--provider", MULTIBUG, "multibug.once", "--max-examples", "20")
    assert code == 1 and data["ok"] is False
    (finding,) = data["actions"][0]["findings"]  # type: ignore[index]
    assert finding["check"] == "no_action_failure", finding
    assert "the first time" in finding["message"] and "flaky" in finding["message"], finding
    assert finding["flaky"] is True, finding  # (a field too: not only words in the message)


def test_a_hang_is_not_shrunk_to_an_input_that_only_outran_the_shorter_deadline(
    capsys: object,
) -> None:
    """While shrinking a Timeout the examples run at a shorter deadline: ``slowish`` shrank to a
    text that only takes 0.6 s (one of two characters), its final replay at the full timeout
    passed, and Hypothesis's flakiness error ended the run in a traceback. The reported input
    is one that timed out at the full timeout, and its line reproduces the Timeout."""
    code, data = _fuzz(
        capsys, "--provider", MULTIBUG, "multibug.slowish", "--timeout", "1",
        "--max-examples", "25",
    )
    assert code == 1 and data["ok"] is False
    (finding,) = data["actions"][0]["findings"]  # type: ignore[index]
    assert (finding["check"], finding["outcome"]) == ("no_timeout", "Timeout"), finding
    assert len(finding["input"]["text"]) >= 3, finding
    _reproduces(finding, "Timeout")


def test_actions_fuzzed_in_parallel_do_not_break_hypothesis(capsys: object) -> None:
    """``--workers 4`` ended in ``SystemError: AST constructor recursion depth mismatch`` (5
    runs in 5): Hypothesis parses lambdas' source, and CPython 3.11's parser is not safe to run
    in several threads at once. Any exception of the fuzzer on one action is that action's
    error now, too, never a traceback."""
    source = os.path.join(HERE, "providers", "parallel_fuzz.py")
    for _ in range(3):
        code, data = _fuzz(
            capsys, "--provider", source, "--workers", "4", "--max-examples", "50"
        )
        assert code == 0, data
        actions = data["actions"]  # type: ignore[union-attr]
        assert [a["examples"] for a in actions] == [50] * 4, actions  # type: ignore[index]


def test_a_printed_reproduce_line_with_a_control_character_reproduces(capsys: object) -> None:
    """The human output escapes what a terminal acts on (DEL, C1) as ``\\x7f``: inside the
    reproduce line's JSON that was no JSON escape, and the pasted line failed ("INPUT is not
    valid JSON"). They are written as JSON's own ``\\u007f`` now."""
    code = main([
        "fuzz", "--provider", MULTIBUG, "multibug.control", "--database", "none", "--seed", "1",
        "--max-examples", "200",
    ])  # fmt: skip
    out = capsys.readouterr().out  # type: ignore[attr-defined]
    assert code == 1, out
    (line,) = [ln for ln in out.splitlines() if "Reproduce with:" in ln]
    argv = shlex.split(line.split("Reproduce with:", 1)[1])
    assert "\\u00" in argv[3], argv
    _reproduces({"reproduce": shlex.join(argv)}, "ActionFailed")


def test_negative_mode_never_sends_null_for_no_input(capsys: object) -> None:
    """``None`` is "no input" to the host (``{}``): as a negative example of an action that
    takes no input it ran ok, and was reported as a schema violation let through."""
    for seed in ("1", "2", "3", "4"):
        code = main([
            "fuzz", "--provider", MULTIBUG, "multibug.optional", "--mode", "negative",
            "--json", "--database", "none", "--seed", seed, "--max-examples", "100",
        ])  # fmt: skip
        data = json.loads(capsys.readouterr().out)  # type: ignore[attr-defined]
        assert code == 0 and data["actions"][0]["findings"] == [], data


def test_a_junit_report_holds_any_message_and_a_bad_path_is_refused_first(
    capsys: object, tmp_path: object
) -> None:
    """A worker's message with a NUL or an ESC made the JUnit report ill-formed XML; a path
    that cannot be written (under /proc) passed the check before the run, and after it the
    results were thrown away with exit 2. Now the characters are escaped, and the path is
    tried before the run."""
    import xml.etree.ElementTree as ET

    report = os.path.join(str(tmp_path), "fuzz.xml")
    code, data = _fuzz(
        capsys, "--provider", MULTIBUG, "multibug.noisy", "--max-examples", "5",
        "--report", f"junit={report}",
    )
    assert code == 1, data
    failure = ET.parse(report).getroot().find("testcase/failure")
    assert failure is not None and "\\x00" in (failure.get("message") or ""), failure
    code = main(["fuzz", "--provider", MULTIBUG, "multibug.noisy", "--report",
                 "junit=/proc/no-such-report.xml"])  # fmt: skip
    err = capsys.readouterr().err  # type: ignore[attr-defined]
    assert code == 2 and "cannot write it" in err and "Traceback" not in err, err


def test_a_run_with_every_check_switched_off_is_refused(capsys: object) -> None:
    """``--checks X --exclude-checks X`` (or ``--checks ,,,``) ran no check and passed an
    action that always fails; ``--checks=`` (empty) ran every check, as if not given, and
    ``--exclude-checks=`` excluded none."""
    for flags, said in ((["--checks", "no_timeout", "--exclude-checks", "no_timeout"],
                         "no check is left on"),
                        (["--checks", ",,,"], "--checks: expected check names"),
                        (["--checks="], "--checks: expected check names"),
                        (["--exclude-checks="], "--exclude-checks: expected check names")):
        code = main(["fuzz", "--provider", MULTIBUG, "multibug.noisy", *flags])
        err = capsys.readouterr().err  # type: ignore[attr-defined]
        assert code == 2 and said in err and "Traceback" not in err, (flags, err)


def test_a_run_whose_checks_cannot_fire_in_its_mode_is_refused(capsys: object) -> None:
    """Every positive-input check excluded (or ``--checks negative_data_rejection``) in the
    default positive mode ran no check that could fire, and passed an action that always
    fails; so did ``--mode negative`` without ``negative_data_rejection``."""
    positive_checks = ",".join(c for c in CHECKS if c != "negative_data_rejection")
    for flags, said in (
        (["--exclude-checks", positive_checks], "--mode negative"),
        (["--checks", "negative_data_rejection"], "--mode negative"),
        (["--mode", "negative", "--checks", "no_action_failure"], "not on"),
    ):
        code = main(["fuzz", "--provider", MULTIBUG, "multibug.noisy", *flags])
        err = capsys.readouterr().err  # type: ignore[attr-defined]
        assert code == 2 and said in err, (flags, err)


def test_max_time_stops_an_example_that_would_outrun_it(capsys: object) -> None:
    """An example that hangs was run to its own timeout past ``--max-time``: 6.6 s for
    ``--max-time 1`` with a 5 s timeout. It is stopped when the time is up, and is no finding
    (the time was up, not its timeout)."""
    code, data = _fuzz(
        capsys, "--provider", MULTIBUG, "multibug.slowish", "--max-time", "1.5",
        "--timeout", "20",
    )
    (action,) = data["actions"]  # type: ignore[misc]
    assert action["seconds"] < 1.5 + 5, action  # (not 20 s: the example was stopped)
    assert code == 0 and action["findings"] == [], action


def test_a_declared_exception_covers_its_subclasses(capsys: object) -> None:
    """``raises=[LookupError]`` still reported the KeyError it raised, and
    ``raises=[ValueError]`` a JSONDecodeError: only the exact class name was compared (the
    host has the names; the worker, which has the classes, tells it now)."""
    code, data = _fuzz(
        capsys, "--provider", MULTIBUG, "multibug.lookup", "multibug.parse",
        "--max-examples", "50",
    )
    assert code == 0, data
    assert [a["findings"] for a in data["actions"]] == [[], []]  # type: ignore[index]


def test_max_time_never_reports_a_hang_found_only_at_the_shorter_deadline(
    capsys: object,
) -> None:
    """When --max-time ended a run during a hang's shrinking, the report took the last input
    raised, found at the shorter deadline: a "Timeout" for a text that finishes in 0.6 s, and
    its reproduce line did not reproduce. Only an input that timed out at the full timeout
    is reported."""
    for max_time in ("2", "3", "4"):
        _, data = _fuzz(
            capsys, "--provider", MULTIBUG, "multibug.slowish", "--timeout", "1",
            "--max-time", max_time,
        )
        for finding in data["actions"][0]["findings"]:  # type: ignore[index]
            assert len(finding["input"]["text"]) >= 3, (max_time, finding)


def test_a_run_keeps_hypothesis_caches_with_the_store_or_nothing(
    capsys: object, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Hypothesis made ``.hypothesis/`` (unicode tables, constants) in the working directory,
    which the README did not say; its caches go beside the failure store now, and a run with
    ``--database none`` leaves nothing at all."""
    monkeypatch.delenv("HYPOTHESIS_STORAGE_DIRECTORY", raising=False)
    monkeypatch.chdir(tmp_path)
    base = ["fuzz", "--provider", "providers.examples.text", "text.upper", "--json",
            "--max-examples", "5", "--seed", "1"]  # fmt: skip
    assert main([*base, "--database", "none"]) == 0
    capsys.readouterr()  # type: ignore[attr-defined]
    assert os.listdir(tmp_path) == []
    assert main(base) == 0
    capsys.readouterr()  # type: ignore[attr-defined]
    assert os.listdir(tmp_path) == [".sandbox"]  # (no .hypothesis beside it)
