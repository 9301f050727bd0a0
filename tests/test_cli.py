"""End-to-end tests of the ``sandbox`` command line, run as real subprocesses.

Every invocation starts a real host and real sandboxed workers, so the tests are grouped to keep
the number of invocations (and the file's runtime) small. Exit codes under test: 0 the call
succeeded, 1 the call's outcome was an error, 2 a usage or configuration error (one line on
stderr starting with ``sandbox: error:``, never a traceback).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parent.parent
CLI = [sys.executable, "-m", "host.cli"]
TIMEOUT_S = 60.0

#: A provider file written into tmp_path; ``nap`` lets the config tests observe the policy.
PROVIDER_SOURCE = textwrap.dedent(
    '''
    import time

    from providers import Provider

    provider = Provider("mine", version="0.1", description="a provider written by a test")


    @provider.action(safe_rerun=True)
    def double(n: int) -> int:
        """Double a number."""
        return n * 2


    @provider.action
    def nap(seconds: float) -> float:
        """Sleep for a while."""
        time.sleep(seconds)
        return seconds
    '''
)


def run_cli(
    *args: str,
    stdin: str | bytes | None = None,
    cwd: Path | None = None,
    env: dict[str, str] | None = None,
    timeout: float = TIMEOUT_S,
    preexec_fn: Callable[[], None] | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run ``sandbox ARGS...`` and return the finished process (text stdout/stderr)."""
    full_env = dict(os.environ)
    full_env["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(REPO), full_env.get("PYTHONPATH", "")) if p
    )
    full_env.update(env or {})
    data = stdin.encode() if isinstance(stdin, str) else stdin
    proc = subprocess.run(
        [*CLI, *args],
        input=data if data is not None else b"",
        capture_output=True,
        cwd=cwd or REPO,
        env=full_env,
        timeout=timeout,
        check=False,
        preexec_fn=preexec_fn,
    )
    return subprocess.CompletedProcess(
        proc.args,
        proc.returncode,
        proc.stdout.decode("utf-8", "replace"),
        proc.stderr.decode("utf-8", "replace"),
    )


def describe(proc: subprocess.CompletedProcess[str]) -> str:
    return f"exit {proc.returncode}\n--- stdout\n{proc.stdout}\n--- stderr\n{proc.stderr}"


def assert_usage_error(proc: subprocess.CompletedProcess[str], *fragments: str) -> str:
    """Exit 2, nothing on stdout, exactly one ``sandbox: error:`` line on stderr; returns it."""
    assert proc.returncode == 2, describe(proc)
    assert "Traceback" not in proc.stderr, describe(proc)
    assert proc.stdout == "", describe(proc)
    lines = proc.stderr.splitlines()
    assert len(lines) == 1, describe(proc)
    line = lines[0]
    assert line.startswith("sandbox: error:"), describe(proc)
    for fragment in fragments:
        assert fragment in line, f"{fragment!r} not in {line!r}"
    return line


def assert_json_usage_error(proc: subprocess.CompletedProcess[str], *fragments: str) -> str:
    """Under ``--json``: exit 2, exactly one line on stdout holding one JSON object
    ``{"ok": false, "error": {"type": "UsageError", "message": ...}}``, nothing on stderr and
    never a traceback; returns the message."""
    assert proc.returncode == 2, describe(proc)
    assert "Traceback" not in proc.stdout + proc.stderr, describe(proc)
    assert proc.stderr == "", describe(proc)
    lines = proc.stdout.splitlines()
    assert len(lines) == 1, describe(proc)
    data = json.loads(lines[0])
    assert set(data) == {"ok", "error"}, describe(proc)
    assert data["ok"] is False, describe(proc)
    assert set(data["error"]) == {"type", "message"}, describe(proc)
    assert data["error"]["type"] == "UsageError", describe(proc)
    message = data["error"]["message"]
    assert isinstance(message, str) and message and "\n" not in message, describe(proc)
    for fragment in fragments:
        assert fragment in message, f"{fragment!r} not in {message!r}"
    return message


def parse_json(proc: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    """The whole stdout must be exactly one JSON object."""
    data = json.loads(proc.stdout)
    assert isinstance(data, dict), describe(proc)
    return data


def assert_usage_shape(usage: object) -> None:
    assert isinstance(usage, dict)
    assert set(usage) >= {"wall_s", "cpu_s", "max_rss_bytes"}
    for key in ("wall_s", "cpu_s", "max_rss_bytes"):
        value = usage[key]
        assert isinstance(value, int | float) and not isinstance(value, bool), (key, value)
        assert value >= 0, (key, value)


def assert_layers_shape(layers: object) -> None:
    assert isinstance(layers, list)
    for layer in layers:
        assert isinstance(layer, dict)
        assert isinstance(layer.get("name"), str) and layer["name"]
        assert isinstance(layer.get("applied"), bool)


def write_provider(directory: Path, name: str = "myprov.py", source: str = PROVIDER_SOURCE) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    # A root host runs workers under their own uids: like any unprivileged reader, they need
    # the provider's directory searchable (pytest makes its temporary directories 0700).
    directory.chmod(0o755)
    path = directory / name
    path.write_text(source, encoding="utf-8")
    return path


# --- call: results and outcomes -----------------------------------------------------------------


def test_call_builtin_prints_result() -> None:
    proc = run_cli("call", "text.word_count", '{"text": "a b"}')
    assert proc.returncode == 0, describe(proc)
    assert proc.stdout.strip() == "2"
    assert "Traceback" not in proc.stderr


def test_call_json_ok_shape() -> None:
    proc = run_cli("call", "--json", "text.stats", '{"text": "one two\\nthree"}')
    assert proc.returncode == 0, describe(proc)
    data = parse_json(proc)
    assert data["ok"] is True
    assert data["result"] == {"lines": 2, "words": 3, "chars": 13}
    assert "error" not in data
    assert_usage_shape(data["usage"])
    assert data["usage"]["max_rss_bytes"] > 0  # a real worker ran it
    assert_layers_shape(data["layers"])


def test_call_json_action_failed() -> None:
    proc = run_cli("call", "--json", "hostile.raise_error", '{"message": "kaboom"}')
    assert proc.returncode == 1, describe(proc)
    data = parse_json(proc)
    assert data["ok"] is False
    assert "result" not in data
    error = data["error"]
    assert error["type"] == "ActionFailed"
    assert isinstance(error["message"], str) and "kaboom" in error["message"]
    assert_usage_shape(data["usage"])
    assert_layers_shape(data["layers"])


def test_call_action_failed_without_json_reports_on_stderr() -> None:
    proc = run_cli("call", "hostile.raise_error")
    assert proc.returncode == 1, describe(proc)
    assert proc.stdout == ""
    assert "ActionFailed: ValueError: boom" in proc.stderr


def test_call_json_timeout() -> None:
    started = time.monotonic()
    proc = run_cli("call", "--json", "--timeout", "0.5", "hostile.sleep", '{"seconds": 30}')
    elapsed = time.monotonic() - started
    assert proc.returncode == 1, describe(proc)
    data = parse_json(proc)
    assert data["ok"] is False
    assert data["error"]["type"] == "Timeout"
    assert data["usage"]["wall_s"] < 5
    assert elapsed < 15, f"a 0.5 s timeout took {elapsed:.1f}s"


def test_call_json_stdout_stays_one_object_when_the_action_prints() -> None:
    # The action writes 1 MiB to its own fd 1; that must not reach the CLI's stdout.
    proc = run_cli("call", "--json", "hostile.flood_stdout", '{"megabytes": 1}')
    assert proc.returncode == 0, describe(proc)
    data = parse_json(proc)
    assert data["ok"] is True
    assert data["result"] == 1024 * 1024


# --- call: INPUT forms --------------------------------------------------------------------------


@pytest.mark.parametrize("suffix", ["", ":provider"])
def test_a_provider_file_whose_directory_has_a_colon(tmp_path: Path, suffix: str) -> None:
    """``run 12:30/p.py`` is a file (the loader reads a colon as the attribute's only when the
    reference does not end in ``.py``, and then the last one); the CLI's existence check, the
    host's absolute path and the worker's read rule took the first colon, and the file was
    "no such file" or unreadable."""
    tmp_path.chmod(0o755)
    path = write_provider(tmp_path / "run 12:30")
    proc = run_cli("call", "mine.double", '{"n": 21}', "--provider", f"{path}{suffix}")
    assert proc.returncode == 0, describe(proc)
    assert proc.stdout.strip() == "42"
    relative = run_cli("call", "mine.double", '{"n": 2}', "--provider",
                       f"run 12:30/myprov.py{suffix}", cwd=tmp_path)  # fmt: skip
    assert relative.returncode == 0, describe(relative)


def test_timeouts_take_a_duration_as_the_policy_flags_do() -> None:
    proc = run_cli("call", "text.word_count", '{"text": "a b"}', "--timeout", "5s")
    assert proc.returncode == 0, describe(proc)
    assert proc.stdout.strip() == "2"
    assert_usage_error(run_cli("call", "text.word_count", "{}", "--timeout", "soon"),
                       "--timeout", "a duration such as 5s")  # fmt: skip


def test_input_from_file(tmp_path: Path) -> None:
    (tmp_path / "in.json").write_text('{"text": "x y z w"}', encoding="utf-8")
    proc = run_cli("call", "text.word_count", "@in.json", cwd=tmp_path)
    assert proc.returncode == 0, describe(proc)
    assert proc.stdout.strip() == "4"


def test_input_from_stdin() -> None:
    proc = run_cli("call", "--json", "text.upper", "-", stdin='{"text": "shout"}')
    assert proc.returncode == 0, describe(proc)
    assert parse_json(proc)["result"] == "SHOUT"


@pytest.mark.parametrize(
    ("argument", "stdin", "fragments"),
    [
        ("{not json", None, ("INPUT is not valid JSON",)),
        ("[1, 2]", None, ("must be a JSON object", "list")),
        ('"text"', None, ("must be a JSON object", "str")),
        ("@missing.json", None, ("missing.json",)),
        ("@bad.json", None, ("bad.json", "not valid JSON")),
        ("@array.json", None, ("array.json", "must be a JSON object")),
        ("@.", None, ("cannot read input file",)),
        ("-", "not json at all", ("standard input", "not valid JSON")),
        ("-", "[]", ("standard input", "must be a JSON object")),
    ],
)
def test_bad_input_is_a_usage_error(
    tmp_path: Path, argument: str, stdin: str | None, fragments: tuple[str, ...]
) -> None:
    (tmp_path / "bad.json").write_text('{"text": ', encoding="utf-8")
    (tmp_path / "array.json").write_text("[1]", encoding="utf-8")
    proc = run_cli("call", "text.word_count", argument, stdin=stdin, cwd=tmp_path)
    assert_usage_error(proc, *fragments)
    proc = run_cli("call", "--json", "text.word_count", argument, stdin=stdin, cwd=tmp_path)
    assert_json_usage_error(proc, *fragments)


def test_an_endless_input_is_read_only_up_to_its_bound() -> None:
    """``@/dev/zero`` was read whole (a MemoryError traceback, or the machine's memory); the
    read stops one byte past ``MAX_INPUT_READ`` (256 MiB) and says so, under ``--json`` too.
    The CLI runs under a 1 GiB address-space limit, so reading it all cannot pass."""
    import resource

    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (1 << 30, 1 << 30))

    for argument in ("@/dev/zero", "--json"):
        args = ["call", "text.echo", "@/dev/zero"] + (["--json"] if argument == "--json" else [])
        proc = run_cli(*args, preexec_fn=limit)
        if argument == "--json":
            assert_json_usage_error(proc, "/dev/zero", "larger than 256MiB")
        else:
            assert_usage_error(proc, "/dev/zero", "larger than 256MiB")


def test_input_file_not_utf8_is_a_usage_error(tmp_path: Path) -> None:
    (tmp_path / "latin1.json").write_bytes(b'{"text": "\xff"}')
    proc = run_cli("call", "text.word_count", "@latin1.json", cwd=tmp_path)
    assert_usage_error(proc, "latin1.json")


def test_stdin_not_utf8_is_a_usage_error() -> None:
    proc = run_cli(
        "call",
        "text.word_count",
        "-",
        stdin=b'{"text": "\xff"}',
        env={"PYTHONIOENCODING": "utf-8:strict"},
    )
    assert_usage_error(proc, "standard input")


def test_nan_in_input_is_rejected_promptly() -> None:
    # Shorter than TIMEOUT_S on purpose: a correct CLI answers in well under a second, and the
    # buggy one would otherwise cost 30 s of the file's budget.
    proc = run_cli("call", "--json", "text.echo", '{"value": NaN}', timeout=10)
    assert proc.returncode in (1, 2), describe(proc)
    assert "Traceback" not in proc.stderr, describe(proc)


@pytest.mark.parametrize(
    ("text", "said"),
    [
        ('{"value": "a", "value": "b"}', 'the key "value" is given twice'),
        ('{"value": {"k": 1, "k": 2}}', 'the key "k" is given twice'),
        ('{"value": 1e400}', "1e400 is too large for a float"),
    ],
)
def test_input_json_is_strict_like_a_config_file(text: str, said: str) -> None:
    """A key given twice was taken silently (the last one won) and ``1e400`` became an
    infinity the schema then refused (exit 1), while ``NaN`` was a usage error: the INPUT is
    read as strictly as a JSON config file."""
    proc = run_cli("call", "text.echo", text, timeout=10)
    assert_usage_error(proc, "INPUT", said)


def test_input_failing_the_schema() -> None:
    proc = run_cli("call", "--json", "text.word_count", '{"text": 5}')
    assert proc.returncode == 1, describe(proc)
    data = parse_json(proc)
    assert data["ok"] is False
    assert data["error"]["type"] == "InputInvalid"
    assert "$.text" in data["error"]["message"]
    assert data["usage"]["max_rss_bytes"] == 0  # rejected before any worker ran it


def test_default_input_is_an_empty_object() -> None:
    # INPUT defaults to {}: fine for an action without required arguments...
    proc = run_cli("call", "--json", "hostile.getpid")
    assert proc.returncode == 0, describe(proc)
    pid = parse_json(proc)["result"]
    assert isinstance(pid, int) and pid > 1


def test_unknown_action_lists_known_actions() -> None:
    proc = run_cli("call", "text.nope", '{"text": "a"}')
    line = assert_usage_error(proc, "text.nope", "known actions")
    for name in ("text.word_count", "text.echo", "hostile.sleep", "hostile.raise_error"):
        assert name in line
    proc = run_cli("call", "--json", "text.nope", '{"text": "a"}')
    line = assert_json_usage_error(proc, "text.nope", "known actions")
    for name in ("text.word_count", "text.echo", "hostile.sleep", "hostile.raise_error"):
        assert name in line


# --- usage errors from the argument parser ------------------------------------------------------


@pytest.mark.parametrize("value", ["-1", "0", "nan"])
def test_non_positive_timeout_is_a_usage_error(value: str) -> None:
    proc = run_cli("call", "--timeout", value, "text.word_count", '{"text": "a"}')
    assert_usage_error(proc, "--timeout")


@pytest.mark.parametrize(
    "args",
    [
        (),
        ("frobnicate",),
        ("call",),
        ("call", "--timeout", "soon", "text.word_count"),
    ],
    ids=["no-command", "unknown-command", "call-without-action", "timeout-not-a-number"],
)
def test_argument_errors_exit_2(args: tuple[str, ...]) -> None:
    proc = run_cli(*args)
    assert proc.returncode == 2, describe(proc)
    assert "Traceback" not in proc.stderr
    assert proc.stdout == ""
    assert len(proc.stderr.splitlines()) == 1, describe(proc)
    assert re.match(r"sandbox: error: ", proc.stderr), describe(proc)


def test_options_may_come_between_action_and_input() -> None:
    proc = run_cli("call", "text.word_count", "--json", '{"text": "a b"}')
    assert proc.returncode == 0, describe(proc)
    assert parse_json(proc)["result"] == 2


def test_help() -> None:
    top = run_cli("--help")
    assert top.returncode == 0, describe(top)
    for word in ("call", "list", "demo", "--provider nor --config"):
        assert word in top.stdout
    call = run_cli("call", "--help")
    assert call.returncode == 0, describe(call)
    for word in ("ACTION", "INPUT", "--provider", "--config", "--timeout", "--json", "@file.json"):
        assert word in call.stdout
    listing = run_cli("list", "--help")
    assert listing.returncode == 0, describe(listing)
    for word in ("--provider", "--config", "--json"):
        assert word in listing.stdout


# --- providers ----------------------------------------------------------------------------------


def test_provider_file(tmp_path: Path) -> None:
    path = write_provider(tmp_path)
    proc = run_cli("call", "--json", "--provider", str(path), "mine.double", '{"n": 21}')
    assert proc.returncode == 0, describe(proc)
    assert parse_json(proc)["result"] == 42

    # Only the named provider is loaded: the built-in examples are not.
    unknown = run_cli("call", "--provider", str(path), "text.word_count", '{"text": "a"}')
    line = assert_usage_error(unknown, "text.word_count", "mine.double")
    assert "hostile." not in line


def test_relative_provider_file(tmp_path: Path) -> None:
    # Relative to the caller's cwd, although the worker runs in its own working directory.
    write_provider(tmp_path / "sub")
    proc = run_cli("call", "--provider", "sub/myprov.py", "mine.double", '{"n": 4}', cwd=tmp_path)
    assert proc.returncode == 0, describe(proc)
    assert proc.stdout.strip() == "8"


def test_provider_module_reference() -> None:
    proc = run_cli("list", "--json", "--provider", "providers.examples.text")
    assert proc.returncode == 0, describe(proc)
    actions = json.loads(proc.stdout)
    assert actions and {a["namespace"] for a in actions} == {"text"}


def test_provider_that_raises_at_import(tmp_path: Path) -> None:
    path = write_provider(tmp_path, "broken.py", "from providers import Provider\n\n1 / 0\n")
    proc = run_cli("call", "--provider", str(path), "broken.anything")
    assert_usage_error(proc, str(path), "ZeroDivisionError")


@pytest.mark.parametrize(
    ("ref", "fragments"),
    [
        ("{tmp}/nowhere.py", ("{tmp}/nowhere.py", "no such file")),
        ("no_such_package.module", ("no_such_package.module",)),
        ("", ("non-empty",)),
    ],
    ids=["missing-file", "missing-module", "empty"],
)
def test_bad_provider_reference(tmp_path: Path, ref: str, fragments: tuple[str, ...]) -> None:
    ref = ref.format(tmp=tmp_path)
    proc = run_cli("list", "--provider", ref)
    assert_usage_error(proc, *(f.format(tmp=tmp_path) for f in fragments))


# --- list -------------------------------------------------------------------------------------


def test_list_builtins_json() -> None:
    proc = run_cli("list", "--json")
    assert proc.returncode == 0, describe(proc)
    actions = json.loads(proc.stdout)
    assert isinstance(actions, list) and actions
    keys = {
        "name", "namespace", "full_name", "description", "input_schema", "output_schema",
        "provider", "safe_rerun",
    }
    for action in actions:
        assert isinstance(action, dict)
        assert keys <= set(action), action
        assert action["full_name"] == f"{action['namespace']}.{action['name']}"
        assert isinstance(action["safe_rerun"], bool)
        assert isinstance(action["input_schema"], dict)
    by_name = {a["full_name"]: a for a in actions}
    assert {"text.word_count", "text.echo", "hostile.sleep", "hostile.exit"} <= set(by_name)
    word_count = by_name["text.word_count"]
    assert word_count["safe_rerun"] is True
    assert word_count["input_schema"]["properties"]["text"] == {"type": "string"}
    assert word_count["output_schema"] == {"type": "integer"}
    assert by_name["text.regex_search"]["safe_rerun"] is False


# --- config -------------------------------------------------------------------------------------


def write_config(tmp_path: Path) -> Path:
    """conf/sandbox.toml naming conf/myprov.py by a path relative to the config's directory."""
    conf = tmp_path / "conf"
    write_provider(conf)
    config = conf / "sandbox.toml"
    config.write_text(
        textwrap.dedent(
            """
            [defaults]
            wall_time = "10s"
            memory = "256MiB"

            [providers.mine]
            source = "myprov.py"
            policy = { wall_time = "1s" }
            """
        ),
        encoding="utf-8",
    )
    return config


def test_config_list(tmp_path: Path) -> None:
    write_config(tmp_path)
    # Run from tmp_path, not conf/: the provider path must resolve against the config's dir.
    proc = run_cli("list", "--config", "conf/sandbox.toml", cwd=tmp_path)
    assert proc.returncode == 0, describe(proc)
    assert proc.stdout.splitlines() == [
        "mine.double  [safe to re-run]",
        "  Double a number.",
        "    n: integer, required",
        "",
        "mine.nap",
        "  Sleep for a while.",
        "    seconds: number, required",
    ], describe(proc)

    as_json = run_cli("list", "--json", "--config", "conf/sandbox.toml", cwd=tmp_path)
    assert as_json.returncode == 0, describe(as_json)
    actions = json.loads(as_json.stdout)
    assert [a["full_name"] for a in actions] == ["mine.double", "mine.nap"]
    assert all(a["provider"] == "mine" for a in actions)


def test_config_call_applies_the_policy(tmp_path: Path) -> None:
    write_config(tmp_path)
    ok = run_cli("call", "--config", "conf/sandbox.toml", "mine.double", '{"n": 5}', cwd=tmp_path)
    assert ok.returncode == 0, describe(ok)
    assert ok.stdout.strip() == "10"

    # The provider's policy sets wall_time = 1s (the defaults say 10s): a 20 s nap times out.
    started = time.monotonic()
    slow = run_cli(
        "call", "--json", "--config", "conf/sandbox.toml", "mine.nap", '{"seconds": 20}',
        cwd=tmp_path,
    )
    elapsed = time.monotonic() - started
    assert slow.returncode == 1, describe(slow)
    data = parse_json(slow)
    assert data["error"]["type"] == "Timeout"
    assert data["usage"]["wall_s"] < 5
    assert elapsed < 15


@pytest.mark.parametrize(
    ("text", "fragments"),
    [
        ('[defaults]\nmemroy = "1GiB"\n', ("defaults.memroy", "expected", "memroy")),
        ('[defaults]\nmemory = "lots"\n', ("defaults.memory", "expected a size", '"lots"')),
        ('[defaults]\nnetwork = "yes"\n', ("defaults.network", "expected a boolean", '"yes"')),
        (
            "[providers.mine]\npolicy = {}\n",
            ("providers.mine.source", "expected a provider reference", "missing"),
        ),
        (
            '[providers.mine]\nsource = "myprov.py"\npolicy = { processes = 0 }\n',
            ("providers.mine.policy.processes", "expected an integer >= 1", "0"),
        ),
        ("[defaults\nmemory = 1\n", ("expected valid TOML", "syntax error", "line 1")),
    ],
    ids=["unknown-key", "bad-unit", "wrong-type", "missing-source", "below-minimum", "syntax"],
)
def test_config_errors(tmp_path: Path, text: str, fragments: tuple[str, ...]) -> None:
    write_provider(tmp_path)
    config = tmp_path / "sandbox.toml"
    config.write_text(text, encoding="utf-8")
    proc = run_cli("list", "--config", str(config))
    line = assert_usage_error(proc, *fragments)
    assert line.startswith(f"sandbox: error: {config}: "), line


def test_config_missing_file(tmp_path: Path) -> None:
    missing = tmp_path / "nope.toml"
    proc = run_cli("call", "--config", str(missing), "mine.double", '{"n": 1}')
    assert_usage_error(proc, str(missing), "no such file")


def test_config_with_unloadable_provider(tmp_path: Path) -> None:
    config = tmp_path / "sandbox.toml"
    config.write_text('[providers.gone]\nsource = "gone.py"\n', encoding="utf-8")
    proc = run_cli("list", "--config", str(config))
    assert_usage_error(proc, "gone")


# --- demo ---------------------------------------------------------------------------------------

# An ok row may show a small integer result: "ok (4)".
_ROW = re.compile(r"^(?P<action>(?:text|hostile)\.\w+)\s+(?P<attempted>.+?)\s+"
                  r"(?P<outcome>\w+)(?: \(\d+\))?\s+"
                  r"(?P<contained>yes|NO)\s+\d+\.\d{3}s\s+\d+\.\d{3}s\s+\S+$")


def test_demo() -> None:
    proc = run_cli("demo")
    assert proc.returncode in (0, 1), describe(proc)
    assert "Traceback" not in proc.stderr, describe(proc)
    assert "\x1b" not in proc.stdout + proc.stderr  # piped: no colour, no status line
    lines = proc.stdout.splitlines()
    assert lines[0].startswith("Policy: ")
    assert any(line.startswith("Layers applied: ") for line in lines)

    header = next(i for i, line in enumerate(lines) if line.startswith("action "))
    for column in ("action", "attempted", "outcome", "contained", "wall", "cpu", "peak mem"):
        assert column in lines[header]
    assert set(lines[header + 1]) == {"-"}
    end = lines.index("", header)
    rows = [_ROW.match(line) for line in lines[header + 2 : end]]
    assert all(rows), lines[header + 2 : end]
    matches = [m for m in rows if m is not None]
    actions = {m["action"] for m in matches}
    for name in (
        "text.word_count", "hostile.spin", "hostile.sleep", "hostile.allocate",
        "hostile.fork_bomb", "hostile.double_fork", "hostile.segfault", "hostile.exit",
        "hostile.raise_error", "hostile.read_file", "hostile.open_socket",
    ):
        assert name in actions, name
    # Outcomes that do not depend on which confinement layers this machine has.
    outcome = {m["action"]: m["outcome"] for m in matches}
    assert outcome["text.word_count"] == "ok"
    assert outcome["hostile.sleep"] == "Timeout"
    assert outcome["hostile.raise_error"] == "ActionFailed"
    assert outcome["hostile.exit"] == "WorkerCrashed"
    assert outcome["hostile.segfault"] == "WorkerCrashed"

    # The verdict, the rows and the exit code must agree.
    not_contained = [m["attempted"] for m in matches if m["contained"] == "NO"]
    last = lines[-1]
    if last.startswith("All "):
        assert last == f"All {len(matches)} actions were contained.", last
        assert not not_contained
        assert proc.returncode == 0, describe(proc)
    else:
        assert last.startswith("NOT contained: "), last
        assert last.removeprefix("NOT contained: ").split("; ") == not_contained
        assert proc.returncode == 1, describe(proc)


def test_version_comes_from_package_metadata() -> None:
    """``sandbox --version`` and ``host.__version__`` report the installed distribution's
    version (issue 14)."""
    from importlib.metadata import version

    import host

    assert host.__version__ == version("actionsandbox")
    done = subprocess.run(
        [sys.executable, "-m", "host.cli", "--version"], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0
    assert done.stdout.strip() == f"sandbox {version('actionsandbox')}"


def test_the_doctors_opt_out_hint_names_a_readme_section_that_exists() -> None:
    """The doctor once sent users to a README section that did not exist."""
    from host.cli import OPT_OUT_HINT, OPT_OUT_README_SECTION

    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    heading, paragraph = OPT_OUT_README_SECTION
    assert heading in readme.splitlines()
    section = readme.split(heading + "\n", 1)[1].split("\n## ", 1)[0]
    assert paragraph in section
    assert "Layers" in OPT_OUT_HINT and "Failing closed" in OPT_OUT_HINT


LISTED_SOURCE = textwrap.dedent(
    """
    from providers import Provider

    provider = Provider("bare", version="0.1")


    @provider.action(safe_rerun=True)
    def nodoc(text: str, count: int = 2, sep: str = ", ") -> str:
        return sep.join([text] * count)


    @provider.action
    def nothing() -> str:
        return "caf\u00e9"
    """
)


def test_list_shows_parameters_and_no_blank_descriptions(tmp_path: Path) -> None:
    """``list`` once printed no parameters, and a blank or leading-space line for an action
    without a docstring."""
    path = write_provider(tmp_path / "p", "bare.py", LISTED_SOURCE)
    proc = run_cli("list", "--provider", str(path))
    assert proc.returncode == 0, describe(proc)
    assert proc.stdout.splitlines() == [
        "bare.nodoc  [safe to re-run]",
        "    text: string, required",
        "    count: integer = 2",
        '    sep: string = ", "',
        "",
        "bare.nothing",
        "    (no parameters)",
    ], describe(proc)


def test_results_print_as_json_with_non_ascii_kept(tmp_path: Path) -> None:
    """A string result was printed unquoted and other values as JSON; ``"\u00e9"`` came out
    escaped. Every result is JSON now, with non-ASCII as it is, plain and ``--json`` alike."""
    path = write_provider(tmp_path / "p", "bare.py", LISTED_SOURCE)
    plain = run_cli("call", "bare.nothing", "--provider", str(path))
    assert plain.returncode == 0, describe(plain)
    assert plain.stdout == '"caf\u00e9"\n'
    assert json.loads(plain.stdout) == "caf\u00e9"
    as_json = run_cli("call", "bare.nothing", "--json", "--provider", str(path))
    assert as_json.returncode == 0, describe(as_json)
    assert "caf\u00e9" in as_json.stdout and "\\u00e9" not in as_json.stdout
    assert len(as_json.stdout.strip().splitlines()) == 1
    listed = run_cli("list", "--json", "--provider", str(path))
    assert len(listed.stdout.strip().splitlines()) == 1, "one --json rule: one line"


def test_unrecognized_arguments_point_at_the_subcommands_help() -> None:
    proc = run_cli("list", "--no-such-flag")
    assert proc.returncode == 2, describe(proc)
    assert "unrecognized arguments: --no-such-flag" in proc.stderr
    assert "'sandbox list --help'" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_the_actions_stdout_and_stderr_stay_apart() -> None:
    """The result alone on stdout; the action's two streams on stderr, each whole and in its
    order under its heading (a buffered print no longer lands after a later stderr write)."""
    echo = str(Path(__file__).parent / "providers" / "echo.py")
    proc = run_cli("call", "echo.shout", '{"text": "hé"}', "--provider", echo)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == '"HÉ"\n'
    assert proc.stderr.endswith(
        "--- the action's stdout ---\nout:hé\nout:hé!\n"
        "--- the action's stderr ---\nerr:hé\nerr:hé!\n"
    ), proc.stderr
    data = json.loads(run_cli("call", "--json", "echo.shout", '{"text": "a"}', "--provider",
                              echo).stdout)  # fmt: skip
    assert (data["stdout"], data["stderr"]) == ("out:a\nout:a!\n", "err:a\nerr:a!\n")


# --- usage errors under --json -----------------------------------------------------------------

BROKEN_IMPORT = str(REPO / "tests" / "providers" / "broken_import.py")


@pytest.mark.parametrize(
    ("args", "fragments"),
    [
        (("call", "text.upper", "{bad", "--json"), ("INPUT is not valid JSON",)),
        (("call", "--json", "--timeout", "soon", "text.upper"), ("--timeout", "soon")),
        (("call", "--json", "--timeout", "-1", "text.upper"), ("--timeout",)),
        (("call", "--json", "--frobnicate", "text.upper"), ("--frobnicate", "sandbox call")),
        (("call", "--json"), ("ACTION",)),
        (("call", "--js", "--timeout", "x", "text.upper"), ("--timeout",)),  # abbreviated
        (("call", "--json", "--provider", "no_such_pkg.mod", "x.y"), ("no_such_pkg.mod",)),
        (("call", "--json", "--provider", BROKEN_IMPORT, "broken.x"), ("cannot be imported",)),
        (("call", "--json", "--config", "{tmp}/nope.toml", "x.y"), ("nope.toml", "no such file")),
        (("call", "--json", "--config", "{tmp}/bad.toml", "x.y"), ("defaults.memory",)),
        (("list", "--json", "--bogus"), ("--bogus", "sandbox list")),
        (("list", "--json", "--provider", "no_such_pkg.mod"), ("no_such_pkg.mod",)),
        (("list", "--json", "--config", "{tmp}/bad.toml"), ("bad.toml", "expected a size")),
        (("list", "--json", "--provider", BROKEN_IMPORT), ("cannot be imported",)),
        (("doctor", "--json", "--bogus"), ("--bogus", "sandbox doctor")),
        (("fuzz", "--json", "--bogus"), ("--bogus",)),
        (("fuzz", "--json", "--provider", "no_such_pkg.mod", "x.y"), ("no_such_pkg.mod",)),
    ],
    ids=[
        "call-bad-input", "call-timeout-not-a-number", "call-timeout-negative",
        "call-unknown-flag", "call-missing-action", "call-abbreviated-json",
        "call-missing-module", "call-provider-crashes-at-import", "call-missing-config",
        "call-bad-config", "list-unknown-flag", "list-missing-module", "list-bad-config",
        "list-provider-crashes-at-import", "doctor-unknown-flag", "fuzz-unknown-flag",
        "fuzz-missing-module",
    ],
)
def test_usage_errors_under_json_are_one_json_object(
    tmp_path: Path, args: tuple[str, ...], fragments: tuple[str, ...]
) -> None:
    (tmp_path / "bad.toml").write_text('[defaults]\nmemory = "lots"\n', encoding="utf-8")
    tmp = str(tmp_path)
    proc = run_cli(*(a.replace("{tmp}", tmp) for a in args), cwd=tmp_path)
    assert_json_usage_error(proc, *(f.replace("{tmp}", tmp) for f in fragments))


def test_without_json_usage_errors_stay_one_line_on_stderr() -> None:
    proc = run_cli("call", "--timeout", "soon", "text.upper")
    assert_usage_error(proc, "--timeout")
    proc = run_cli("list", "--", "--json")  # after "--" it is not the option
    assert proc.returncode == 2, describe(proc)
    assert proc.stdout == "", describe(proc)


# --- policy flags -------------------------------------------------------------------------------


def test_memory_flag_takes_effect() -> None:
    allocate = ("call", "--json", "hostile.allocate", '{"limit_mib": 128}')
    proc = run_cli(*allocate)  # the default policy allows 256 MiB
    assert proc.returncode == 0, describe(proc)
    proc = run_cli(*allocate, "--memory", "64MiB")
    assert proc.returncode == 1, describe(proc)
    assert parse_json(proc)["error"]["type"] == "MemoryExceeded", describe(proc)


def test_wall_time_and_cpu_time_flags_take_effect() -> None:
    proc = run_cli("call", "--json", "hostile.sleep", '{"seconds": 30}', "--wall-time", "1s")
    assert proc.returncode == 1, describe(proc)
    error = parse_json(proc)["error"]
    assert error["type"] == "Timeout" and "1s" in error["message"], describe(proc)
    proc = run_cli("call", "--json", "hostile.spin", '{"seconds": 30}', "--cpu-time", "1s")
    assert proc.returncode == 1, describe(proc)
    assert parse_json(proc)["error"]["type"] == "CpuExceeded", describe(proc)


def test_write_and_read_flags_take_effect(tmp_path: Path) -> None:
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o777)  # workers may run under their own uids
    target = shared / "out.txt"
    write = ("call", "--json", "hostile.write_file", json.dumps({"path": str(target)}))
    proc = run_cli(*write)
    assert proc.returncode == 1, describe(proc)  # not in the worker's view by default
    assert not target.exists()
    proc = run_cli(*write, "--write", str(shared))
    assert proc.returncode == 0, describe(proc)
    assert target.read_text(encoding="utf-8") == "pwned"

    secret = shared / "note.txt"
    secret.write_text("hello from the host", encoding="utf-8")
    secret.chmod(0o644)
    read = ("call", "--json", "hostile.read_file", json.dumps({"path": str(secret)}))
    proc = run_cli(*read)
    assert proc.returncode == 1, describe(proc)
    # Relative to the current directory, as a command-line path would be.
    proc = run_cli(*read, "--read", "shared", cwd=tmp_path)
    assert proc.returncode == 0, describe(proc)
    assert parse_json(proc)["result"] == "hello from the host"


def test_policy_flags_merge_over_the_config_policy(tmp_path: Path) -> None:
    write_provider(tmp_path)
    config = tmp_path / "sandbox.toml"
    config.write_text(
        '[defaults]\nwall_time = "60s"\n[providers.mine]\nsource = "myprov.py"\n'
        'policy = { memory = "128MiB" }\n',
        encoding="utf-8",
    )
    proc = run_cli(
        "call", "--json", "--config", str(config), "mine.nap", '{"seconds": 30}',
        "--wall-time", "1s",
    )
    assert proc.returncode == 1, describe(proc)
    assert parse_json(proc)["error"]["type"] == "Timeout", describe(proc)


@pytest.mark.parametrize(
    ("flag", "value", "fragments"),
    [
        ("--memory", "lots", ("--memory lots", "expected a size", '"lots"')),
        ("--memory", "1MiB", ("--memory 1MiB", "at least 16MiB")),
        ("--wall-time", "0", ("--wall-time 0", "greater than zero")),
        ("--cpu-time", "soon", ("--cpu-time soon", "expected a duration")),
        ("--network", "maybe", ("--network maybe", "expected on or off")),
        ("--write", "/", ("--write /", "not /")),
        ("--read", "/", ("--read /", "not /")),
        ("--read", "no/such/dir", ("--read no/such/dir", "no such file or directory")),
        ("--write", "/no-such-dir", ("--write /no-such-dir", "no such file or directory")),
    ],
)
def test_bad_policy_flags_are_usage_errors(
    flag: str, value: str, fragments: tuple[str, ...]
) -> None:
    for command in (("call", "hostile.getpid"), ("list",)):
        assert_usage_error(run_cli(*command, flag, value), *fragments)
    assert_json_usage_error(run_cli("call", "--json", "hostile.getpid", flag, value), *fragments)


# --- help on an 80-column terminal --------------------------------------------------------------

SUBCOMMANDS = ("call", "list", "doctor", "demo", "fuzz", "keygen", "serve")


def _subcommand_helps() -> dict[str, str]:
    import argparse

    from host.cli import build_parser

    parser = build_parser()
    (action,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return {choice.dest: str(choice.help) for choice in action._choices_actions}


def test_help_reads_well_on_80_columns() -> None:
    env = {"COLUMNS": "80"}
    top = run_cli("--help", env=env)
    assert top.returncode == 0, describe(top)
    lines = top.stdout.splitlines()
    assert max(map(len, lines)) <= 80, describe(top)
    helps = _subcommand_helps()
    assert set(helps) == set(SUBCOMMANDS)
    for name in SUBCOMMANDS:
        # Listed with its whole one-line description on the same line (none wrapped).
        pattern = re.compile(rf"\s+{name}\s+{re.escape(helps[name])}")
        assert any(pattern.fullmatch(line) for line in lines), (name, top.stdout)
    epilog = top.stdout.split("examples:\n", 1)
    assert len(epilog) == 2, describe(top)
    examples = [line.strip() for line in epilog[1].splitlines() if line.startswith("  sandbox ")]
    assert 2 <= len(examples) <= 3, describe(top)
    assert {e.split()[1] for e in examples} <= set(SUBCOMMANDS)
    for name in SUBCOMMANDS:
        sub = run_cli(name, "--help", env=env)
        assert sub.returncode == 0, describe(sub)
        assert max(map(len, sub.stdout.splitlines())) <= 80, describe(sub)


def test_call_help_lists_the_policy_flags() -> None:
    for command in ("call", "list"):
        proc = run_cli(command, "--help", env={"COLUMNS": "80"})
        for flag in ("--memory SIZE", "--wall-time S", "--cpu-time S", "--network on|off",
                     "--read PATH", "--write PATH"):
            assert flag in proc.stdout, (flag, proc.stdout)


def test_network_flag_takes_effect() -> None:
    # Port 9 (discard) on loopback: nothing listens there, so with the network allowed the
    # connection is refused, while without it the socket cannot even be created.
    proc = run_cli("call", "--json", "hostile.open_socket")
    assert proc.returncode == 1, describe(proc)
    assert "ConnectionRefused" not in parse_json(proc)["error"]["message"], describe(proc)
    for value in ("on", "ON", "true"):
        proc = run_cli("call", "--json", "hostile.open_socket", "--network", value)
        assert proc.returncode == 1, describe(proc)
        assert "ConnectionRefusedError" in parse_json(proc)["error"]["message"], describe(proc)
    proc = run_cli("call", "--json", "hostile.open_socket", "--network", "off")
    assert "ConnectionRefused" not in parse_json(proc)["error"]["message"], describe(proc)


# --- hostile arguments, files and streams (found by a red-team sweep) ---------------------------


def run_redirected(redirect: str, *args: str, cwd: Path | None = None) -> tuple[int, str]:
    """Run ``sandbox ARGS...`` with a shell redirection of its standard streams (``<&-``,
    ``>&-``, ``>/dev/full``); returns the exit code and everything on stderr and stdout."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH", "")) if p)
    proc = subprocess.run(
        ["bash", "-c", f'exec "$0" "$@" {redirect}', *CLI, *args],
        capture_output=True, cwd=cwd or REPO, env=env, timeout=TIMEOUT_S, check=False,
    )
    return proc.returncode, (proc.stderr + proc.stdout).decode("utf-8", "replace")


def test_deeply_nested_input_is_a_usage_error(tmp_path: Path) -> None:
    deep = "[" * 100_000 + "]" * 100_000
    (tmp_path / "deep.json").write_text('{"value": ' + deep + "}", encoding="utf-8")
    proc = run_cli("call", "text.echo", f"@{tmp_path / 'deep.json'}")
    assert_usage_error(proc, "deep.json", "nested too deeply")
    proc = run_cli("call", "--json", "text.echo", "-", stdin=deep)
    assert_json_usage_error(proc, "standard input", "nested too deeply")


@pytest.mark.parametrize(
    ("name", "text"),
    [
        ("deep.json", '{"defaults": {"read": ' + "[" * 100_000 + "]" * 100_000 + "}}"),
        ("deep.toml", "[defaults]\nread = " + "[" * 5_000 + "]" * 5_000 + "\n"),
    ],
)
def test_deeply_nested_config_is_a_usage_error(tmp_path: Path, name: str, text: str) -> None:
    config = tmp_path / name
    config.write_text(text, encoding="utf-8")
    line = assert_usage_error(run_cli("list", "--config", str(config)), "nested too deeply")
    assert line.startswith(f"sandbox: error: {config}: "), line


def test_a_json_config_may_not_give_a_key_twice(tmp_path: Path) -> None:
    # json keeps the last of two keys silently: the strict first "defaults" would be ignored.
    config = tmp_path / "sandbox.json"
    config.write_text(
        '{"defaults": {"memory": "64MiB"}, "defaults": {}, "providers": {}}', encoding="utf-8"
    )
    assert_usage_error(run_cli("list", "--config", str(config)), str(config), '"defaults" twice')


def test_out_of_range_sizes_and_durations_are_usage_errors(tmp_path: Path) -> None:
    huge, endless = "9" * 400, "9" * 5_000  # (past what int() converts: 4300 digits)
    assert_usage_error(run_cli("list", "--memory", huge), "--memory", "at most 8EiB")
    assert_usage_error(run_cli("list", "--memory", endless), "--memory", "expected a size")
    assert_usage_error(run_cli("list", "--wall-time", endless), "--wall-time", "a duration")
    config = tmp_path / "sandbox.toml"
    config.write_text("[defaults]\nmemory = 99999999999999999999\n", encoding="utf-8")
    assert_usage_error(run_cli("list", "--config", str(config)), "defaults.memory", "at most")


def test_a_worker_dying_at_start_up_is_still_a_one_line_error(tmp_path: Path) -> None:
    # KeyboardInterrupt is not caught as an import error: the worker dies printing a traceback,
    # which the host's message carries.
    path = write_provider(tmp_path, "interrupts.py", "raise KeyboardInterrupt\n")
    line = assert_usage_error(run_cli("list", "--provider", str(path)), "KeyboardInterrupt")
    assert "exited during start-up" in line, line
    assert_json_usage_error(run_cli("list", "--json", "--provider", str(path)), "start-up")


def test_an_empty_config_name_is_a_usage_error() -> None:
    # Not the same as no --config (``--config "$UNSET"`` must not load the built-ins).
    assert_usage_error(run_cli("list", "--config", ""), "--config", "empty")
    assert_usage_error(
        run_cli("serve", "--insecure", "--bind", "tcp://127.0.0.1:5599", "--config", ""),
        "--config", "empty",
    )


def test_closed_or_failing_standard_streams() -> None:
    code, text = run_redirected("<&-", "call", "text.word_count", "-")
    assert code == 2 and "standard input is closed" in text and "Traceback" not in text, text
    # Closed stdout: the output the caller threw away is discarded, without a traceback.
    for args in (("call", "text.word_count", '{"text": "a"}'), ("list",), ("doctor",)):
        code, text = run_redirected(">&-", *args)
        assert code in (0, 1) and "Traceback" not in text, (args, code, text)
    # Closed stderr: the error line is discarded, not written to stdout (print's file=None).
    code, text = run_redirected("2>&-", "call", "text.nope")
    assert code == 2 and text == "", (code, text)
    for args in (("call", "text.word_count", '{"text": "a"}'), ("call", "--json", "x.y")):
        code, text = run_redirected(">/dev/full", *args)
        assert code == 1 and "Traceback" not in text, (args, code, text)
        assert text.strip() == "sandbox: error: cannot write to standard output: "\
            "No space left on device", text


def test_a_closed_pipe_is_not_a_traceback() -> None:
    read, write = os.pipe()
    os.close(read)  # the reader is gone before anything is written: EPIPE at once
    env = dict(os.environ, PYTHONPATH=str(REPO))
    try:
        for args in (("--version",), ("call", "--json", "x.y"), ("list",)):
            proc = subprocess.run(
                [*CLI, *args], stdout=write, stderr=subprocess.PIPE, cwd=REPO, env=env,
                timeout=TIMEOUT_S, check=False,
            )
            assert proc.returncode in (0, 1), (args, proc)
            assert proc.stderr == b"", (args, proc.stderr.decode())
    finally:
        os.close(write)


def test_fuzz_option_and_report_errors(tmp_path: Path) -> None:
    path = write_provider(tmp_path)
    fuzz = ("fuzz", "--provider", str(path), "mine.double", "--database", "none",
            "--max-examples", "1")
    assert_usage_error(run_cli(*fuzz, "--report", "junit="), "--report", "junit=PATH")
    assert_usage_error(
        run_cli(*fuzz, "--report", f"junit={tmp_path}/none/x.xml"), "no directory"
    )
    assert_usage_error(run_cli(*fuzz, "--report", f"junit={tmp_path}"), "is a directory")
    # Only seen when written, after the run (whose progress is on stderr): one line, exit 2.
    proc = run_cli(*fuzz, "--report", "junit=/dev/full")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, describe(proc)
    assert proc.stderr.splitlines()[-1].startswith(
        "sandbox: error: --report junit=/dev/full: cannot write /dev/full"
    ), describe(proc)
    assert_json_usage_error(
        run_cli(*fuzz, "--json", "--report", "junit=/dev/full"), "cannot write /dev/full"
    )
    assert_usage_error(run_cli(*fuzz[:6], "--max-examples", "9" * 30), "--max-examples")
    assert_usage_error(run_cli(*fuzz, "--database", "/" + "a" * 5_000), "--database")
    assert_usage_error(run_cli(*fuzz, "--database", ""), "--database")
    # A file, or a place nothing can be made in: accepted before, and nothing was saved.
    (tmp_path / "a-file").write_text("x")
    assert_usage_error(run_cli(*fuzz, "--database", str(tmp_path / "a-file")), "not a directory")
    assert_usage_error(run_cli(*fuzz, "--database", "/proc/sandbox-nope"), "cannot save")
    made = tmp_path / "new" / "examples"
    assert run_cli(*fuzz, "--database", str(made)).returncode == 0
    assert made.is_dir()


def test_keygen_with_a_name_too_long_is_a_usage_error(tmp_path: Path) -> None:
    assert_usage_error(run_cli("keygen", str(tmp_path), "a" * 300), "File name too long")
    # Printed back in its paths: no terminal escape makes it into a file name.
    assert_usage_error(run_cli("keygen", str(tmp_path), "a\x1b[2Jb"), "plain file name")
    assert list(tmp_path.iterdir()) == []


def test_serve_ports_out_of_range_are_usage_errors(tmp_path: Path) -> None:
    write_provider(tmp_path)
    config = tmp_path / "sandbox.toml"
    config.write_text('[providers.mine]\nsource = "myprov.py"\n', encoding="utf-8")
    serve = ("serve", "--config", str(config), "--insecure")
    for port in ("99999", "0"):  # zmq would bind 99999 as some other port
        proc = run_cli(*serve, "--bind", f"tcp://127.0.0.1:{port}", timeout=20)
        assert_usage_error(proc, "--bind", "1-65535")
    bind = ("--bind", "tcp://127.0.0.1:5599")
    for metrics in ("127.0.0.1:99999", ""):
        assert_usage_error(run_cli(*serve, *bind, "--metrics", metrics, timeout=20), "--metrics")
    undecodable = os.fsdecode(b"\xff:9100")
    assert_usage_error(run_cli(*serve, *bind, "--metrics", undecodable), "not a valid address")


def _options_without_help(text: str) -> list[str]:
    """The options and positionals of a ``--help`` page listed with no words after them."""
    lines = text.splitlines()
    bare = []
    for index, line in enumerate(lines):
        match = re.fullmatch(r"  (-\S.*?|[A-Z][A-Z_]*)(?:\s{2,}(\S.*))?", line)
        if match is None or match[2]:
            continue
        following = lines[index + 1] if index + 1 < len(lines) else ""
        if not re.match(r" {6,}\S", following):  # help wrapped to the next line
            bare.append(match[1])
    return bare


def test_every_option_of_every_command_is_explained() -> None:
    for name in SUBCOMMANDS:
        proc = run_cli(name, "--help", env={"COLUMNS": "80"})
        assert proc.returncode == 0, describe(proc)
        assert _options_without_help(proc.stdout) == [], (name, proc.stdout)


def test_undecodable_paths_and_references_are_usage_errors() -> None:
    # Bytes that are not UTF-8 cannot be sent to the worker (its rules are JSON): refused first,
    # naming the flag, not as "the host failed to start a worker: UnicodeEncodeError".
    undecodable = os.fsdecode(b"/tmp/\xff")
    assert_usage_error(run_cli("list", "--read", undecodable), "--read", "a path in UTF-8")
    assert_usage_error(run_cli("list", "--provider", os.fsdecode(b"\xff")), "UTF-8 text")


def test_a_standard_output_that_cannot_encode_the_result_is_one_line() -> None:
    for args in (("call", "text.echo", '{"value": "h\\u00e9llo"}'), ("call", "--json", "x\u00e9")):
        proc = run_cli(*args, env={"PYTHONIOENCODING": "ascii"})
        assert proc.returncode == 1 and proc.stdout == "", describe(proc)
        assert proc.stderr.splitlines() == [
            "sandbox: error: cannot write to standard output: its encoding, ascii, "
            "cannot write '\\xe9'"
        ], describe(proc)


def test_a_standard_error_that_cannot_be_written_keeps_the_exit_code() -> None:
    """Standard error to a pipe whose reader is gone, or to a full disk: a usage error, and a
    successful call whose action printed something, exited 1 with a traceback (a print to
    stderr raised). The lines that cannot be written are dropped; the codes stay 2 and 0."""
    env = dict(os.environ, PYTHONPATH=str(REPO))
    read, write = os.pipe()
    os.close(read)
    try:
        with open("/dev/full", "w") as full:
            for target in (write, full.fileno()):
                for args, code in ((("call", "text.nope"), 2), (("--bogus",), 2),
                                   (("call", "hostile.flood_stdout", '{"megabytes": 1}'), 0)):
                    proc = subprocess.run(
                        [*CLI, *args], stdout=subprocess.PIPE, stderr=target, cwd=REPO,
                        env=env, timeout=TIMEOUT_S, check=False,
                    )
                    assert proc.returncode == code, (args, proc.returncode, proc.stdout[-500:])
    finally:
        os.close(write)


@pytest.mark.parametrize("nofile", [6, 7, 8, 9, 12])
def test_a_host_that_cannot_start_is_one_line_and_leaves_nothing(nofile: int) -> None:
    """Too few file descriptors (or a full TMPDIR: the same OSError) while the host was built:
    a traceback, and the state directory made before the failure stayed in TMPDIR (out of
    descriptors, it could not even be walked to be removed). With a few more, the host
    starts and the provider cannot: a usage error as well."""
    env = dict(os.environ, PYTHONPATH=str(REPO))
    with tempfile.TemporaryDirectory(prefix="cli-tmp-") as tmp:
        env["TMPDIR"] = tmp
        proc = subprocess.run(
            ["prlimit", f"--nofile={nofile}", *CLI, "call", "text.upper", '{"text": "a"}'],
            capture_output=True, cwd=REPO, env=env, timeout=TIMEOUT_S, check=False,
        )
        err = proc.stderr.decode()
        assert proc.returncode == 2, err
        assert err.startswith("sandbox: error: ") and err.count("\n") == 1, err
        assert "Too many open files" in err, err
        assert os.listdir(tmp) == [], "the host left its state directory behind"
