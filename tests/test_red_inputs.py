"""Red team, class 6: an input is refused by its size before the host expands it.

``x = [x, x]`` repeated is a tiny Python object (one list per level) that stands for 2**depth
items once copied or encoded. The host counted only strings while copying, so it expanded the
whole thing before the size check: 24 levels took 45 s and 2.8 GiB of the host's memory to be
refused, 30 levels would take the host down. Every item counts as one byte at least, so it is
refused after about ``input`` items.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from typing import Any

import pytest

from host import Host, InputInvalid
from policies import Policy
from tests.conftest import provider_file


def _shared(depth: int) -> list[Any]:
    x: list[Any] = []
    for _ in range(depth):
        x = [x, x]
    return x


def test_a_shared_structure_is_refused_before_it_is_expanded() -> None:
    with Host() as host:
        host.add_provider(provider_file("echo.py"), policy=Policy(input=64 * 1024))
        outcome = host.run("echo.echo", {"value": _shared(22)})
        assert not outcome.ok and isinstance(outcome.error, InputInvalid)
        # Decided while copying ("at least"), not after encoding 20 MB.
        assert "at least" in outcome.error.message, outcome.error.message
        assert host.call("echo.echo", {"value": "fine"}) == "fine"


@pytest.mark.parametrize("depth", [30, 60])
def test_a_deep_shared_structure_cannot_exhaust_the_host(depth: int) -> None:
    """In a child with 1 GiB of address space: the old code ran out of it (or of time)."""
    code = textwrap.dedent(f"""
        import resource
        resource.setrlimit(resource.RLIMIT_AS, (1 << 30, 1 << 30))
        from host.errors import InputInvalid
        from host.inputs import encode_input
        x = []
        for _ in range({depth}):
            x = [x, x]
        try:
            encode_input({{"value": x}}, limit=1 << 20)
        except InputInvalid as exc:
            print("refused:", exc)
    """)
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert "refused:" in done.stdout and "input limit" in done.stdout
