"""Fuzz rate: ``sandbox fuzz``'s runner on text.upper (every example confined) against the same
Hypothesis strategy calling the function in-process. Target: rate >= 0.5x in-process, i.e. a
confined example takes at most twice as long.

Run: ``python -m benchmarks.fuzz [N] [ROUNDS]`` (also a row of ``python -m benchmarks.run``).

The two sides take turns, round by round (N examples each per round), and the ratio is the
median of the rounds' ratios: this machine's speed moves by up to 2x between minutes, so only
figures taken side by side compare. The confined side is the runner as ``sandbox fuzz`` runs it
(failures kept in a store, here a fresh directory; seeded alike on both sides). Before the first
round Hypothesis runs a few in-process examples once: the first Hypothesis run in a process
pays one-off costs that would otherwise fall on whichever side runs first. The lines after the
ratio only explain it: the per-example cost of each side and of the host round trip alone
(``host.run`` N times in a loop, the part of a confined example that is not Hypothesis).
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from hypothesis import HealthCheck, given, seed, settings

from host import Host
from host.fuzz.runner import FuzzOptions, fuzz_action
from providers.examples import text
from providers.testing import inputs

ACTION = text.provider.actions["upper"]
SEED = 20261204


def in_process(n: int) -> float:
    """Milliseconds per example of the strategy calling the function in this process."""
    action = ACTION
    ran = 0

    @seed(SEED)
    @settings(max_examples=n, database=None, deadline=None,
              suppress_health_check=list(HealthCheck))
    @given(inputs(action))
    def body(value: dict[str, str]) -> None:
        nonlocal ran
        ran += 1
        action.function(**value)

    started = time.monotonic()
    body()
    return (time.monotonic() - started) * 1e3 / ran


def confined(host: Host, n: int) -> float:
    """Milliseconds per example of the fuzz runner, every example confined."""
    descriptor = host.catalog.find("text.upper")
    assert descriptor is not None
    with tempfile.TemporaryDirectory() as store:
        options = FuzzOptions(max_examples=n, database=store, seed=SEED)
        report = fuzz_action(host, descriptor, options, [])
    return report.seconds * 1e3 / report.examples


def round_trip(host: Host, n: int) -> float:
    """Milliseconds per ``host.run`` alone, n of them in a loop."""
    started = time.monotonic()
    for _ in range(n):
        host.run("text.upper", {"text": "warm"}, timeout=5.0)
    return (time.monotonic() - started) * 1e3 / n


def measure(n: int, rounds: int) -> dict[str, Any]:
    """Per round: ms per example confined, in-process, and per bare round trip. Every side runs
    on a thread other than the main one, as ``sandbox fuzz`` runs its actions (the host's
    fast path is not taken on the main thread: docs/architecture.md)."""
    result: dict[str, list[float]] = {"confined": [], "in_process": [], "round_trip": []}
    with Host() as host, ThreadPoolExecutor(1) as thread:
        host.add_provider("providers.examples.text")
        host.run("text.upper", {"text": "warm"})
        thread.submit(in_process, 20).result()  # warm-up, timed for neither side
        for _ in range(rounds):
            result["confined"].append(thread.submit(confined, host, n).result())
            result["in_process"].append(thread.submit(in_process, n).result())
            result["round_trip"].append(thread.submit(round_trip, host, n).result())
    return {
        **result,
        "ratios": [b / a for a, b in zip(result["confined"], result["in_process"], strict=True)],
    }


def main(n: int, rounds: int) -> None:
    figures = measure(n, rounds)
    for i, ratio in enumerate(figures["ratios"]):
        print(f"round {i + 1}: confined {figures['confined'][i]:.3f} ms, in-process "
              f"{figures['in_process'][i]:.3f} ms, host.run alone {figures['round_trip'][i]:.3f}"
              f" ms per example: rate ratio {ratio:.2f}")
    print(f"median rate ratio (confined / in-process) {statistics.median(figures['ratios']):.2f}"
          " (target >= 0.5)")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 500,
         int(sys.argv[2]) if len(sys.argv) > 2 else 5)
