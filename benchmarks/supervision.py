"""Throughput of small calls and recovery after a killed worker, measured in one run.

    python -m benchmarks.supervision [--calls N]

- throughput: N small calls submitted at once through ``host.submit`` to a provider with two
  workers, next to ``ProcessPoolExecutor(2).submit`` of the same function (``str.upper`` on a
  short string), in calls per second;
- respawn: SIGKILL an idle worker, then time until the next call has succeeded.
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import time
from concurrent.futures import ProcessPoolExecutor, wait

import psutil

from host import Host
from policies import Policy

TWO_WORKERS = Policy(workers={"min": 2, "max": 2})


def _upper(text: str) -> str:
    return text.upper()


def ours(calls: int) -> float:
    with Host() as host:
        host.add_provider("providers.examples.text", policy=TWO_WORKERS.merged({"queue": calls}))
        for _ in range(50):
            host.call("text.upper", {"text": "warm"})
        start = time.perf_counter()
        futures = [host.submit("text.upper", {"text": "hello"}) for _ in range(calls)]
        wait(futures)
        elapsed = time.perf_counter() - start
        assert all(f.result() == "HELLO" for f in futures)
    return calls / elapsed


def process_pool(calls: int) -> float:
    with ProcessPoolExecutor(2) as pool:
        list(pool.map(_upper, ["warm"] * 50))
        start = time.perf_counter()
        futures = [pool.submit(_upper, "hello") for _ in range(calls)]
        wait(futures)
        elapsed = time.perf_counter() - start
    return calls / elapsed


def _worker_pids() -> list[int]:
    """Worker processes run as a dedicated uid (root host) or are the deepest descendants."""
    found = []
    for child in psutil.Process().children(recursive=True):
        try:
            if child.uids().real >= 1_900_000_000 or not child.children():
                found.append(child.pid)
        except psutil.Error:
            continue
    return found


def respawn(samples: int) -> list[float]:
    times = []
    with Host() as host:
        host.add_provider("providers.examples.text", policy=Policy(workers={"min": 1, "max": 1}))
        for _ in range(samples):
            host.call("text.upper", {"text": "warm"})
            (pid,) = [p for p in _worker_pids() if psutil.Process(p).uids().real != 0][:1]
            start = time.perf_counter()
            os.kill(pid, signal.SIGKILL)
            while True:
                outcome = host.run("text.upper", {"text": "again"})
                if outcome.ok:
                    break
            times.append(time.perf_counter() - start)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=5000)
    parser.add_argument("--respawns", type=int, default=10)
    args = parser.parse_args()
    a = ours(args.calls)
    b = process_pool(args.calls)
    print(f"throughput host.submit (2 workers): {a:8.0f} calls/s")
    print(f"throughput ProcessPoolExecutor(2):  {b:8.0f} calls/s   ratio {a / b:.2f}x")
    times = respawn(args.respawns)
    print(
        f"kill -9 idle worker -> next successful call: median "
        f"{statistics.median(times) * 1e3:.1f} ms, max {max(times) * 1e3:.1f} ms (n={len(times)})"
    )


if __name__ == "__main__":
    main()
