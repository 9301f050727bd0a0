"""Fuzz rate: ``sandbox fuzz``'s runner on text.upper (every example confined) against the same
Hypothesis strategy calling the function in-process. Target: ratio >= 0.5.

Run: ``python -m benchmarks.fuzz [N]``.
"""

from __future__ import annotations

import sys
import time

from hypothesis import HealthCheck, given, settings

from host import Host
from host.fuzz.runner import FuzzOptions, fuzz_action
from providers.examples import text
from providers.testing import inputs


def in_process(n: int) -> float:
    action = text.provider.actions["upper"]

    @settings(max_examples=n, database=None, deadline=None,
              suppress_health_check=list(HealthCheck))
    @given(inputs(action))
    def body(value: dict[str, str]) -> None:
        action.function(**value)

    started = time.monotonic()
    body()
    return n / (time.monotonic() - started)


def confined(n: int) -> float:
    with Host() as host:
        host.add_provider("providers.examples.text")
        host.run("text.upper", {"text": "warm"})
        descriptor = host.catalog.find("text.upper")
        assert descriptor is not None
        report = fuzz_action(host, descriptor, FuzzOptions(max_examples=n, database=None), [])
    return report.examples / report.seconds


if __name__ == "__main__":
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 300
    a, b = confined(n), in_process(n)
    print(f"confined {a:.0f} examples/s, in-process {b:.0f} examples/s, ratio {a / b:.2f}")
