"""Installed providers: a real wheel, installed with pip into this environment, is found by its
entry point (``actionsandbox.providers``) by ``Host``, the CLI and a config file, and the host
never imports it (its import runs only in the confined worker)."""

from __future__ import annotations

import base64
import hashlib
import importlib
import json
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from host import Host, ProviderUnavailable
from host.installed import installed_providers

DIST = "actionsandbox_test_greeter"
MODULE = "actionsandbox_test_greeter"
#: The provider writes this when imported: the host's process must never see it set.
PROVIDER = '''
import os
from providers import Provider

os.environ["GREETER_IMPORTED_IN"] = str(os.getpid())
provider = Provider("greeter", version="1.2")


@provider.action
def hello(name: str) -> str:
    """Greet someone."""
    return f"hello {name}"
'''


def _wheel(directory: Path) -> Path:
    """A pure-Python wheel with an entry point, written as any build backend would."""
    info = f"{DIST}-1.2.dist-info"
    files = {
        f"{MODULE}/__init__.py": "",
        f"{MODULE}/actions.py": PROVIDER,
        f"{info}/METADATA": f"Metadata-Version: 2.1\nName: {DIST}\nVersion: 1.2\n",
        f"{info}/WHEEL": "Wheel-Version: 1.0\nGenerator: tests\nRoot-Is-Purelib: true\n"
        "Tag: py3-none-any\n",
        f"{info}/entry_points.txt": "[actionsandbox.providers]\n"
        f"greeter = {MODULE}.actions:provider\n",
    }
    path = directory / f"{DIST}-1.2-py3-none-any.whl"
    record = []
    with zipfile.ZipFile(path, "w") as wheel:
        for name, text in files.items():
            data = text.encode()
            wheel.writestr(name, data)
            digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=")
            record.append(f"{name},sha256={digest.decode()},{len(data)}")
        record.append(f"{info}/RECORD,,")
        wheel.writestr(f"{info}/RECORD", "\n".join(record) + "\n")
    return path


def _pip(*args: str) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "pip", "--disable-pip-version-check", *args],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.fixture(scope="module")
def greeter(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The wheel installed into this environment for the module's tests, then uninstalled."""
    _pip("install", "--quiet", "--no-deps", "--no-index",
         str(_wheel(tmp_path_factory.mktemp("wheel"))))  # fmt: skip
    importlib.invalidate_caches()
    try:
        yield "greeter"
    finally:
        _pip("uninstall", "--quiet", "--yes", DIST)
        importlib.invalidate_caches()


def _cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "host.cli", *args], capture_output=True, text=True, timeout=60,
        cwd=cwd,
    )  # fmt: skip


def test_the_entry_point_is_read_without_importing_the_provider(greeter: str) -> None:
    assert installed_providers()[greeter] == f"{MODULE}.actions:provider"
    assert f"{MODULE}.actions" not in sys.modules
    with Host() as host:
        assert host.add_provider(f"entrypoint:{greeter}") == "greeter"
        assert host.call("greeter.hello", {"name": "ada"}) == "hello ada"
        (info,) = host.providers()
        assert (info.ref, info.version) == (f"{MODULE}.actions:provider", "1.2")
    assert f"{MODULE}.actions" not in sys.modules
    import os

    assert "GREETER_IMPORTED_IN" not in os.environ


def test_add_installed_adds_every_installed_provider(greeter: str) -> None:
    with Host() as host:
        names = host.add_installed()
        assert greeter in names
        assert host.catalog.find("greeter.hello") is not None
        with pytest.raises(ProviderUnavailable, match=r"installed: .*greeter"):
            host.add_installed(["no_such_provider"])


def test_the_cli_and_a_config_file_take_an_entry_point(greeter: str, tmp_path: Path) -> None:
    done = _cli("call", "greeter.hello", '{"name": "bo"}', "--provider", "entrypoint:greeter")
    assert (done.returncode, done.stdout) == (0, '"hello bo"\n'), done.stderr
    listed = _cli("list", "--provider", "entrypoint:greeter", "--json")
    assert listed.returncode == 0, listed.stderr
    assert "greeter.hello" in listed.stdout
    (tmp_path / "sandbox.toml").write_text(
        '[providers.greeter]\nsource = "entrypoint:greeter"\npolicy = { wall_time = "5s" }\n'
    )
    done = _cli("call", "--config", "sandbox.toml", "--json", "greeter.hello", '{"name": "cy"}',
                cwd=tmp_path)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["result"] == "hello cy"


def test_an_unknown_entry_point_is_one_clear_usage_error(greeter: str) -> None:
    done = _cli("call", "x.y", "{}", "--provider", "entrypoint:nope")
    assert done.returncode == 2
    assert "Traceback" not in done.stderr
    assert "no installed provider is named 'nope'" in done.stderr
    assert "greeter" in done.stderr  # what is installed
