"""A provider that fails at import says where (issue 9, class 7).

It used to show only ``RuntimeError: database not reachable at import``: no file, no line. The
worker's UNAVAILABLE message carried the traceback, but the host dropped it. Now
``ProviderUnavailable.details`` has the (bounded) ``traceback`` and the ``location`` of the
provider's own frame, which the message and the CLI's one line name as ``file:line``.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from host import Host, ProviderUnavailable
from host.provider_frame import MAX_TRACEBACK_CHARS, provider_frame
from tests.conftest import TEST_PROVIDERS

REPO = Path(__file__).resolve().parent.parent
DB = TEST_PROVIDERS / "db_at_import.py"


def _line_of(path: Path, marker: str) -> int:
    return next(i for i, text in enumerate(path.read_text().splitlines(), 1) if marker in text)


@pytest.fixture
def area() -> Iterator[Path]:
    """Provider files where a worker under its own uid can read them."""
    with tempfile.TemporaryDirectory(prefix="imports-", dir="/tmp") as name:
        os.chmod(name, 0o755)
        yield Path(name)


def _unavailable(host: Host, ref: str) -> ProviderUnavailable:
    with pytest.raises(ProviderUnavailable) as caught:
        host.add_provider(ref)
    return caught.value


def test_the_error_carries_the_traceback_and_names_the_providers_frame(host: Host) -> None:
    error = _unavailable(host, str(DB))
    where = f"{DB}:{_line_of(DB, 'RAISE_LINE')}"
    assert error.details["location"] == where
    assert f"(raised at {where})" in error.message
    assert "database not reachable at import" in error.message
    tb = error.details["traceback"]
    assert tb.startswith("Traceback") and "RuntimeError: database not reachable" in tb
    assert "\n" not in error.message


def test_a_failing_helper_module_of_the_provider_is_the_frame_shown(
    host: Host, area: Path
) -> None:
    (area / "helper.py").write_text("x = 1\nraise ValueError('bad helper')\n")
    (area / "prov.py").write_text(
        "import os, sys\nfrom providers import Provider\nprovider = Provider('prov')\n"
        "sys.path.insert(0, os.path.dirname(__file__))\nimport helper\n"
    )
    error = _unavailable(host, str(area / "prov.py"))
    assert error.details["location"] == f"{area / 'helper.py'}:2"


def test_a_library_frame_is_skipped_for_the_providers_own_line(host: Host, area: Path) -> None:
    """The error is raised inside the standard library (json); the provider's line is shown."""
    (area / "prov.py").write_text(
        "import json\nfrom providers import Provider\nprovider = Provider('prov')\n"
        "CONFIG = json.loads('{not json')\n"
    )
    error = _unavailable(host, str(area / "prov.py"))
    assert error.details["location"] == f"{area / 'prov.py'}:4"
    assert "json/decoder.py" in error.details["traceback"]


def test_a_huge_traceback_is_bounded(host: Host, area: Path) -> None:
    (area / "prov.py").write_text(
        "from providers import Provider\nprovider = Provider('prov')\n"
        "def down(n):\n    return down(n + 1)\ndown(0)\n"
    )
    error = _unavailable(host, str(area / "prov.py"))
    assert "RecursionError" in error.message
    assert len(error.details["traceback"]) <= MAX_TRACEBACK_CHARS + 8
    assert error.details["location"] == f"{area / 'prov.py'}:4"


def test_provider_frame_ignores_the_loader_and_fabricated_lines() -> None:
    loader = REPO / "providers" / "loader.py"
    text = (
        "Traceback (most recent call last):\n"
        f'  File "{loader}", line 106, in _load_path\n'
        '  File "<frozen importlib._bootstrap>", line 241, in _call_with_frames_removed\n'
        '  File "/srv/p/prov.py", line 7, in <module>\n'
        "RuntimeError: x\n"
    )
    assert provider_frame(text) == "/srv/p/prov.py:7"
    assert provider_frame(f'  File "{loader}", line 1, in f\n') is None
    assert provider_frame("no frames at all") is None
    assert provider_frame('  File "relative.py", line 3, in f\n') is None


def test_the_cli_names_file_and_line_in_one_line() -> None:
    env = dict(os.environ, PYTHONPATH=str(REPO))
    done = subprocess.run(
        [sys.executable, "-m", "host.cli", "list", "--provider", str(DB)],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in done.stderr, done.stderr
    assert f"db_at_import.py:{_line_of(DB, 'RAISE_LINE')}" in lines[0]
    assert "database not reachable at import" in lines[0]
