"""Landlock rules derived from the host's layout fail closed (issue 9, class 2).

The escape: with the README's editable install and a plain folder named ``providers/`` beside
the engine's script, ``import providers`` in the host found that folder (a namespace package,
``__file__`` None), ``abspath("")`` became the working directory and its grandparent - ``/`` for
an engine in ``/tmp/engine-x`` - went into the worker's read rules. The worker read
``/etc/passwd`` and listed ``/`` while its HELLO said "landlock applied". These tests run such an
engine for real, in a subprocess, and check the worker sees nothing outside its rules; and they
check the one validator every rule goes through.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from host import Host, ProviderUnavailable
from policies import Policy, PolicyError, load_config
from policies.paths import UnsafeRulePath, check_rule_path, home_directories, unsafe_reason
from sandbox import worker
from sandbox.own_root import project_root
from tests.conftest import TEST_PROVIDERS

SNOOP = str(TEST_PROVIDERS / "snoop.py")
ECHO = str(TEST_PROVIDERS / "echo.py")
REPO = Path(__file__).resolve().parent.parent

ENGINE = """
import json, sys
from host import Host, ProviderUnavailable

report = {}
try:
    with Host() as host:
        host.add_provider(sys.argv[1])
        for key, action, path in [
            ("passwd", "snoop.read", "/etc/passwd"),
            ("root", "snoop.listdir", "/"),
            ("engine", "snoop.listdir", sys.argv[2]),
            ("secret", "snoop.read", sys.argv[2] + "/secret.txt"),
        ]:
            outcome = host.run(action, {"path": path}).to_dict()
            report[key] = outcome.get("result", outcome)
        report["layers"] = host.providers()[0].layers
except ProviderUnavailable as exc:
    report["unavailable"] = str(exc)
print(json.dumps(report))
"""


@pytest.fixture
def engine_dir() -> Iterator[Path]:
    """An engine's own directory (its script and a secret) straight under /tmp, so that its
    grandparent is ``/``, as ``/srv/engine`` is."""
    with tempfile.TemporaryDirectory(prefix="engine-", dir="/tmp") as name:
        directory = Path(name)
        directory.chmod(0o755)
        (directory / "engine.py").write_text(ENGINE)
        (directory / "secret.txt").write_text("engine secret\n")
        yield directory


def _run_engine(directory: Path) -> dict[str, object]:
    """Run the engine's script as its author would (``python engine.py`` in its directory)."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    done = subprocess.run(
        [sys.executable, "engine.py", SNOOP, str(directory)],
        cwd=directory,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    report: dict[str, object] = json.loads(done.stdout.strip().splitlines()[-1])
    return report


def _assert_contained(report: dict[str, object]) -> None:
    """The worker either refused to start, or could see nothing outside its rules."""
    if "unavailable" in report:
        return
    for key in ("passwd", "root", "engine", "secret"):
        value = report[key]
        assert isinstance(value, dict) and "error" in value, f"{key}: the worker got {value}"
    # (The engine's directory may also be hidden by the private /tmp: "No such file".)
    for key in ("passwd", "root"):
        assert "Permission denied" in str(report[key]["error"]), report[key]  # type: ignore[index]
    landlock = [layer for layer in report["layers"] if layer["name"] == "landlock"]  # type: ignore[union-attr, index]
    assert landlock and landlock[0]["applied"]


@pytest.mark.parametrize(
    "shadow",
    ["providers", "providers/__init__.py", "sandbox/__init__.py", "policies", "host"],
)
def test_a_folder_shadowing_a_project_package_grants_nothing(
    engine_dir: Path, shadow: str
) -> None:
    """A folder (plain, or a package) beside the engine named like one of this project's
    packages: on the old code ``providers`` put ``/`` (plain folder) or the engine's own
    directory (package) into the read rules."""
    target = engine_dir / shadow
    if target.suffix == ".py":
        target.parent.mkdir()
        target.write_text("")
    else:
        target.mkdir()
        (target / "notes.txt").write_text("not a package\n")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    probe = subprocess.run(
        [sys.executable, "-c", "from host import Host"],
        cwd=engine_dir,
        env=env,
        capture_output=True,
    )
    if probe.returncode != 0:  # the shadow breaks the host's own imports: nothing can run
        return
    _assert_contained(_run_engine(engine_dir))


def test_an_engine_without_a_shadow_is_contained_too(engine_dir: Path) -> None:
    _assert_contained(_run_engine(engine_dir))


def test_the_project_root_comes_from_the_running_module() -> None:
    assert project_root() == str(REPO)
    assert (Path(project_root()) / "sandbox" / "own_root.py").is_file()


# --------------------------------------------------------------------- the validator


@pytest.mark.parametrize("path", ["/", "//", "/home/..", "/home", "/root", "/usr/.."])
def test_root_and_homes_are_refused(path: str) -> None:
    with pytest.raises(UnsafeRulePath, match=r"refusing the policy\.read rule"):
        check_rule_path(path, "policy.read")


@pytest.mark.parametrize("path", ["", ".", "relative/dir", "./x"])
def test_relative_and_empty_paths_are_refused(path: str) -> None:
    with pytest.raises(UnsafeRulePath, match="absolute"):
        check_rule_path(path, "runtime")


def test_every_person_home_and_home_env_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    home = tmp_path / "alice"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    assert str(home) in home_directories()
    assert "is a home directory" in (unsafe_reason(str(home)) or "")
    assert f"holds the home {home}" in (unsafe_reason(str(tmp_path)) or "")
    assert unsafe_reason(str(home / "project")) is None  # beneath a home is the user's call
    import pwd

    for entry in pwd.getpwall():
        if entry.pw_uid == 0 or 1000 <= entry.pw_uid < 65534:
            assert unsafe_reason(entry.pw_dir) is not None, entry


def test_a_symlink_to_the_root_is_refused(tmp_path: Path) -> None:
    link = tmp_path / "data"
    link.symlink_to("/")
    reason = unsafe_reason(str(link))
    assert reason is not None and "resolves to /" in reason
    with pytest.raises(PolicyError, match="root directory"):
        Policy(read=[str(link)])


def test_a_directory_holding_the_hosts_state_is_refused(tmp_path: Path) -> None:
    state = tmp_path / "host" / "ipc"
    state.mkdir(parents=True)
    for path in (tmp_path, tmp_path / "host", state):
        with pytest.raises(UnsafeRulePath, match="host's own state"):
            check_rule_path(str(path), "policy.write", [str(state)])
    assert check_rule_path(str(state / "w1"), "workdir", [str(state)]) == str(state / "w1")
    assert check_rule_path(str(tmp_path / "other"), "policy.write", [str(state)])


@pytest.mark.parametrize("path", ["/usr/share/dict", "/usr/share", "/srv/data", "/tmp/x"])
def test_legitimate_paths_pass(path: str) -> None:
    assert unsafe_reason(path) is None
    assert Policy(read=[path], write=[path]).read == (path,)


@pytest.mark.parametrize(
    ("key", "value"), [("read", "/"), ("write", "/home"), ("read", "/root"), ("write", "/")]
)
def test_a_policy_naming_root_or_a_home_is_a_clear_error(
    key: str, value: str, tmp_path: Path
) -> None:
    with pytest.raises(PolicyError) as caught:
        Policy(**{key: [value]})
    assert f"{key}[0]" in str(caught.value) and repr(value).strip("'") in str(caught.value)
    text = '[providers.text]\nsource = "providers.examples.text"\n'
    text += f'policy = {{ {key} = ["{value}"] }}\n'
    config = tmp_path / "sandbox.toml"
    config.write_text(text)
    with pytest.raises(PolicyError, match=rf"sandbox.toml: providers.text.policy.{key}\[0\]"):
        load_config(config)


def test_a_provider_file_in_an_unsafe_directory_is_granted_alone(tmp_path: Path) -> None:
    state = tmp_path / "sandbox-work"
    ref = str(tmp_path / "prov.py")
    assert worker._provider_dirs(ref, [], [str(state)]) == [ref]
    assert worker._provider_dirs(ref, [], []) == [str(tmp_path)]


# --------------------------------------------------------------------- through a real host


def test_a_rule_holding_the_hosts_state_fails_add_provider() -> None:
    """``write = ["/tmp"]`` without a private /tmp would hand the worker every other worker's
    workdir and ipc socket (the host keeps them in /tmp); the host refuses before spawning."""
    with Host() as host:
        state = host._reactor._own_state()
        parent = os.path.dirname(state[0])
        with pytest.raises(ProviderUnavailable, match="host's own state") as caught:
            host.add_provider(SNOOP, policy=Policy(write=[parent]))
        assert repr(parent) in str(caught.value) and "policy.write" in str(caught.value)
        with pytest.raises(ProviderUnavailable, match=r"policy\.read"):
            host.add_provider(SNOOP, policy=Policy(read=[state[1]]))
        assert host.providers() == []


def test_the_worker_checks_the_rules_it_computes_itself(tmp_path: Path) -> None:
    """The worker's own derivation (runtime, provider dirs) goes through the same check: a
    spec whose workdir root is the provider's directory is refused, naming the path."""
    from sandbox.protocol import SpawnSpec

    provider_dir = tmp_path / "prov"
    provider_dir.mkdir()
    (provider_dir / "__init__.py").write_text("")
    spec = SpawnSpec(
        worker_id="w1",
        token="t",
        endpoint=f"ipc://{tmp_path}/ipc/w1",
        provider_ref="prov",
        policy=Policy().to_dict(),
        host_pid=os.getpid(),
        workdir=str(provider_dir / "w1"),
        search_path=[str(tmp_path)],
        required=[],
    )
    with pytest.raises(UnsafeRulePath, match="provider rule") as caught:
        worker.layer_context(spec, Policy(), private_tmp=False)
    assert str(provider_dir) in str(caught.value)


def test_a_pth_line_naming_the_root_stops_the_launcher(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every launcher ``sys.path`` entry is a read rule: a ``.pth`` file adding ``/`` (or a
    home) to site-packages must not become one."""
    import host.interpreter

    site_dir = tmp_path / "site-packages"
    site_dir.mkdir()
    (site_dir / "evil.pth").write_text("/\n")
    monkeypatch.setattr(host.interpreter.site, "getsitepackages", lambda: [str(site_dir)])
    host.interpreter.launcher_path.cache_clear()
    try:
        with pytest.raises(UnsafeRulePath, match="runtime rule '/'"):
            host.interpreter.launcher_command()
    finally:
        host.interpreter.launcher_path.cache_clear()


def test_a_read_path_under_a_missing_directory_is_skipped_not_unreachable(
    host: Host, tmp_path: Path
) -> None:
    """A policy's ``read`` path whose parent does not exist either is absent, like any missing
    path (the Landlock layer reports it skipped). The uid-drop layer took it for a path the
    worker could not reach (its parent not searchable), and the provider failed to start."""
    missing = tmp_path / "not-here" / "deeper"
    host.add_provider(ECHO, policy=Policy(read=[str(missing)]))
    assert host.call("echo.add", {"a": 1}) == 2
    (info,) = host.providers()
    (landlock,) = [r for r in info.layers if r["name"] == "landlock"]
    assert landlock["applied"] and "absent, skipped" in landlock["detail"], landlock
