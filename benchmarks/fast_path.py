"""The caller fast path against the loop's path, alternating in one process.

    python -m benchmarks.fast_path [ROUNDS] [N]

``Reactor._direct`` is switched between rounds (each round is N calls, or N fuzz examples, on
a thread other than the main one, which never takes the fast path): ``host.run`` on
``text.upper`` (the caller dispatches and reads its own reply, against the loop doing both),
and ``sandbox fuzz``'s runner (the caller dispatches, the loop reads the reply, against the
loop doing both). Printed: each side's median ms per call or example, the median of the
rounds' ratios (fast / loop), and in how many rounds the fast path was quicker. The order of
the two sides flips every round, so a drift of the machine's speed hits both alike.
"""

from __future__ import annotations

import statistics
import sys
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from benchmarks import fuzz
from host import Host


def compare(host: Host, measure: Callable[[], float], rounds: int) -> dict[bool, list[float]]:
    reactor = host._reactor
    figures: dict[bool, list[float]] = {True: [], False: []}
    with ThreadPoolExecutor(1) as thread:
        for i in range(rounds):
            for direct in (True, False) if i % 2 else (False, True):
                reactor._direct = direct
                figures[direct].append(thread.submit(measure).result())
    reactor._direct = True
    return figures


def report(what: str, figures: dict[bool, list[float]]) -> None:
    ratios = [a / b for a, b in zip(figures[True], figures[False], strict=True)]
    fast, loop = statistics.median(figures[True]), statistics.median(figures[False])
    print(f"{what}: fast path {fast:.3f} ms, through the loop {loop:.3f} ms; median ratio "
          f"{statistics.median(ratios):.3f}; fast path quicker in "
          f"{sum(r < 1 for r in ratios)} of {len(ratios)} rounds")


def main(rounds: int, n: int) -> None:
    with Host() as host:
        host.add_provider("providers.examples.text")
        host.run("text.upper", {"text": "warm"})
        with ThreadPoolExecutor(1) as thread:
            thread.submit(fuzz.in_process, 20).result()  # Hypothesis's one-off costs
        report("host.run", compare(host, lambda: fuzz.round_trip(host, n), rounds))
        report("fuzz example", compare(host, lambda: fuzz.confined(host, n), rounds))


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 20,
         int(sys.argv[2]) if len(sys.argv) > 2 else 300)
