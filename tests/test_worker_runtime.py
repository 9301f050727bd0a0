"""The worker's interpreter and import set: small, isolated, and what the host computed."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import host.interpreter
from host import Host, ProviderUnavailable
from host.interpreter import launcher_command, launcher_path
from sandbox.own_root import project_root
from tests.conftest import provider_file

RUNTIME = provider_file("runtime.py")
#: Slow, large imports a worker has no use for (the host validates schemas and watches processes).
NOT_IN_WORKER = ("jsonschema", "referencing", "jsonschema_specifications", "attrs", "psutil")


def test_the_worker_imports_neither_jsonschema_nor_psutil(host: Host) -> None:
    host.add_provider(RUNTIME)
    loaded = host.call("runtime.modules", {})
    assert "sandbox.wire" in loaded and "providers" in loaded  # it is the real worker
    unwanted = [m for m in loaded if m.split(".")[0] in NOT_IN_WORKER]
    assert unwanted == []


def test_the_worker_is_one_thread_and_speaks_the_wire_without_libzmq(host: Host) -> None:
    """libzmq started an I/O thread and a reaper in every worker, and its send returned before
    the bytes reached the kernel; the worker end is our codec over a blocking socket now."""
    host.add_provider(RUNTIME)
    loaded = host.call("runtime.modules", {})
    assert [m for m in loaded if m.split(".")[0] == "zmq"] == []
    tree = _descendants(os.getpid())
    assert len(tree) >= 3  # (launcher, init and worker at least; and the zygote)
    threads = {pid: len(os.listdir(f"/proc/{pid}/task")) for pid in tree}
    assert set(threads.values()) == {1}, threads  # the kernel's count: C threads included


def _descendants(pid: int) -> list[int]:
    found: list[int] = []
    for task in os.listdir(f"/proc/{pid}/task"):
        with open(f"/proc/{pid}/task/{task}/children") as children:
            for child in map(int, children.read().split()):
                found += [child, *_descendants(child)]
    return found


def test_importing_policies_or_providers_does_not_import_jsonschema() -> None:
    code = "import sys, policies, providers; print(json.dumps(sorted(sys.modules)))"
    out = subprocess.run(
        [sys.executable, "-c", "import json; " + code], capture_output=True, text=True, check=True
    ).stdout
    assert [m for m in json.loads(out) if m.split(".")[0] in NOT_IN_WORKER] == []
    import policies

    assert policies.load_config.__module__ == "policies.config"  # still public, on first use


def test_the_worker_interpreter_is_isolated_and_has_the_runtime_on_its_path(host: Host) -> None:
    host.add_provider(RUNTIME)
    seen = host.call("runtime.interpreter", {})
    assert seen["isolated"] == 1 and seen["ignore_environment"] == 1
    assert seen["no_user_site"] == 1 and seen["safe_path"] is True
    assert (seen["prefix"], seen["exec_prefix"]) == (sys.prefix, sys.exec_prefix)
    assert seen["builtins"] == ["exit", "help", "quit"]
    assert seen["argv"][1:] == []
    # What plain `python -I` would put on sys.path is there (no current directory: -I).
    plain = subprocess.run(
        [sys.executable, "-I", "-c", "import sys, json; print(json.dumps(sys.path))"],
        capture_output=True,
        text=True,
        check=True,
        cwd="/",
    ).stdout
    expected = [p for p in json.loads(plain) if os.path.exists(p)]
    assert [p for p in expected if p not in seen["path"]] == []
    assert "" not in seen["path"]
    assert all(p in seen["path"] for p in launcher_path())


def test_the_launcher_runs_without_site_and_is_recognisable() -> None:
    command = launcher_command()
    assert command[:4] == [sys.executable, "-I", "-S", "-c"]
    assert command[-2:] == ["-m", "sandbox"]
    # Other modules and their arguments, as `python -I -m json.tool --sort-keys --compact`.
    command = launcher_command("--sort-keys", "--compact", module="json.tool")
    assert command[-4:] == ["-m", "json.tool", "--sort-keys", "--compact"]
    shown = subprocess.run(command, input='{"b": 1, "a": 2}', capture_output=True, text=True)
    assert shown.stdout.strip() == '{"a":2,"b":1}', shown.stderr


def test_pth_files_contribute_directories_but_never_run_code(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    site_dir = tmp_path / "site-packages"
    extra = tmp_path / "extra"
    site_dir.mkdir()
    extra.mkdir()
    (site_dir / "a.pth").write_text(
        f"# a comment\n\nimport os; os.environ['PTH_RAN'] = '1'\n{extra}\n{tmp_path}/missing\n"
    )
    (site_dir / ".hidden.pth").write_text(f"{tmp_path}\n")
    monkeypatch.setattr(host.interpreter.site, "getsitepackages", lambda: [str(site_dir)])
    launcher_path.cache_clear()
    try:
        paths = launcher_path()
    finally:
        launcher_path.cache_clear()
    assert paths[:2] == (str(site_dir), str(extra))
    assert str(tmp_path) not in paths and "PTH_RAN" not in os.environ
    assert paths[2:] == (project_root(),)


def test_an_invalid_schema_is_refused_by_the_host_naming_the_action(host: Host) -> None:
    with pytest.raises(ProviderUnavailable, match=r"action 'badschema\.f': invalid output schema"):
        host.add_provider(provider_file("bad_schema.py"))


def test_a_worker_reads_the_runtime_packages_of_a_checkout_not_the_rest_of_it(
    host: Host,
) -> None:
    """An editable install's project directory is the whole source checkout (``.git``, the
    tests, CI scripts): a worker is granted its runtime packages in it, nothing else."""
    root = project_root()
    if os.path.basename(root) in ("site-packages", "dist-packages"):
        pytest.skip("an installed package: its directory is site-packages, granted whole")
    host.add_provider(RUNTIME)
    paths = [os.path.join(root, p) for p in ("providers", "sandbox/wire.py", "README.md",
                                             "pyproject.toml", ".git", "host")]  # fmt: skip
    found = host.call("runtime.readable", {"paths": [p for p in paths if os.path.exists(p)]})
    assert found.pop(os.path.join(root, "providers")) is True
    assert found.pop(os.path.join(root, "sandbox/wire.py")) is True
    assert found and not any(found.values()), found
