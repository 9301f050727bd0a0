"""Worker start-up time (spawn to HELLO) with every layer on, next to rlimits only, same run.

    python -m benchmarks.startup [--runs N]

``add_provider`` returns when the first worker's HELLO has arrived, so its duration is the
spawn-to-ready time of one worker (plus a thread hop). Runs alternate between the two policies so
machine noise hits both alike.
"""

from __future__ import annotations

import argparse
import statistics
import time

from host import Host
from policies import LAYERS, Policy

ALL_LAYERS = Policy()
RLIMITS_ONLY = Policy(
    skip=[layer for layer in LAYERS if layer not in ("pdeathsig", "rlimits")],
    allow_missing=True,
)


def spawn_to_hello(policy: Policy) -> float:
    with Host() as host:
        start = time.perf_counter()
        host.add_provider("providers.examples.text", policy=policy)
        return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=20)
    args = parser.parse_args()
    samples: dict[str, list[float]] = {"all layers": [], "rlimits only": []}
    spawn_to_hello(ALL_LAYERS)  # warm the page cache
    for _ in range(args.runs):
        samples["all layers"].append(spawn_to_hello(ALL_LAYERS))
        samples["rlimits only"].append(spawn_to_hello(RLIMITS_ONLY))
    for name, values in samples.items():
        ordered = sorted(values)
        print(
            f"{name:<13} median {statistics.median(values) * 1e3:7.1f} ms   "
            f"p90 {ordered[int(0.9 * (len(ordered) - 1))] * 1e3:7.1f} ms   n={len(values)}"
        )
    ratio = statistics.median(samples["all layers"]) / statistics.median(samples["rlimits only"])
    print(f"all layers / rlimits only (median): {ratio:.2f}x")


if __name__ == "__main__":
    main()
