"""Fuzz rate: ``sandbox fuzz``'s runner on text.upper (every example confined) against the same
Hypothesis strategy calling the function in-process. Target: ratio >= 0.5.

Run: ``python -m benchmarks.fuzz [N]``.

The ratio is one confined run of N examples (database off) against one in-process run of the
same strategy, same N. Before either is timed, Hypothesis runs a few in-process examples once:
the first Hypothesis run in a process pays one-off costs (~0.45 ms per example over 300), which
would otherwise fall on whichever side runs first. The lines after the ratio only explain it
and are not part of it: the per-example cost of each side, the host round trip alone
(``host.run`` N times in a loop: the part of a confined example that is not Hypothesis), and the
confined rate with the example database on, as ``sandbox fuzz`` runs by default.
"""

from __future__ import annotations

import sys
import tempfile
import time

from hypothesis import HealthCheck, given, settings

from host import Host
from host.fuzz.runner import FuzzOptions, fuzz_action
from providers.examples import text
from providers.testing import inputs

ACTION = text.provider.actions["upper"]


def in_process(n: int) -> float:
    action = ACTION
    ran = 0

    @settings(max_examples=n, database=None, deadline=None,
              suppress_health_check=list(HealthCheck))
    @given(inputs(action))
    def body(value: dict[str, str]) -> None:
        nonlocal ran
        ran += 1
        action.function(**value)

    started = time.monotonic()
    body()
    return ran / (time.monotonic() - started)


def confined(n: int, database: str | None = None) -> float:
    with Host() as host:
        host.add_provider("providers.examples.text")
        host.run("text.upper", {"text": "warm"})
        descriptor = host.catalog.find("text.upper")
        assert descriptor is not None
        options = FuzzOptions(max_examples=n, database=database)
        report = fuzz_action(host, descriptor, options, [])
    return report.examples / report.seconds


def round_trip(n: int) -> float:
    """``host.run`` alone, n times in a loop: calls per second."""
    with Host() as host:
        host.add_provider("providers.examples.text")
        host.run("text.upper", {"text": "warm"})
        started = time.monotonic()
        for _ in range(n):
            host.run("text.upper", {"text": "warm"}, timeout=5.0)
        return n / (time.monotonic() - started)


def main(n: int) -> None:
    in_process(20)  # warm-up, timed for neither side
    a, b = confined(n), in_process(n)
    print(f"confined {a:.0f} examples/s, in-process {b:.0f} examples/s, ratio {a / b:.2f}")
    trip = round_trip(n)
    with tempfile.TemporaryDirectory() as database:
        with_db = confined(n, database)
    ms = 1e3
    print(f"  per example: confined {ms / a:.3f} ms, in-process {ms / b:.3f} ms; "
          f"host.run alone {ms / trip:.3f} ms; confined - in-process - host.run "
          f"{ms / a - ms / b - ms / trip:.3f} ms")
    print(f"  confined with the example database (sandbox fuzz's default): {with_db:.0f} "
          f"examples/s, {ms / with_db:.3f} ms per example")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 300)
