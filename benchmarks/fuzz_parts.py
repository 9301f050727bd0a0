"""Where a confined fuzz example's time goes (``benchmarks.fuzz`` gives the ratio; this splits it).

    python -m benchmarks.fuzz_parts [N] [REPS]

One host and one worker for all of it, warmed first; each variant runs N examples (or
calls), the variants interleaved REPS times (odd; default 5). Printed per variant: the median
and every figure, in ms per example, then the CPU per example of the median rep, by thread
(``/proc``, in clock ticks: +-10% or so): the caller's thread (Hypothesis and the caller's
side of ``host.run``), the host's other threads (its loop) and the worker. Where their sum is
the wall time nothing waits: the example is CPU work done one part after the other, and only
less of it makes it faster. Needs a root host (it finds the worker by its uid).

- ``in-process``: Hypothesis on ``inputs(text.upper)`` calling the function (no host at all).
- ``host.run``: ``host.run`` N times in a tight loop (the round trip alone).
- ``host.run, 0.75 ms gaps``: the same calls, each after 0.75 ms of busy Python work in the
  caller (about what Hypothesis spends per example): the round trip once the host's loop thread
  and the worker have gone idle between calls, as they do under Hypothesis.
- ``hypothesis + host.run``: a bare ``@given`` body that only calls ``host.run``.
- ``... + target``: the same body also reporting the runner's three ``target`` observations.
- ``fuzz_action``: the runner itself (every check, the worst-usage report), database off.
- ``fuzz_action, database``: the same with an example database (``sandbox fuzz``'s default).
"""

from __future__ import annotations

import os
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from typing import Any

from hypothesis import HealthCheck, given, settings, target

from benchmarks.profile import _thread_cpu, _worker_pid
from host import Host
from host.fuzz.runner import FuzzOptions, fuzz_action
from providers.examples import text
from providers.testing import inputs

ACTION = text.provider.actions["upper"]
GAP_S = 0.00075


def _hypothesis(n: int, call: Callable[[Any], None]) -> int:
    ran = 0

    @settings(max_examples=n, database=None, deadline=None,
              suppress_health_check=list(HealthCheck))
    @given(inputs(ACTION))
    def body(value: dict[str, str]) -> None:
        nonlocal ran
        ran += 1
        call(value)

    body()
    return ran


def _busy(seconds: float) -> None:
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        pass


def main(n: int, reps: int) -> None:
    figures: dict[str, list[float]] = {}
    cpu: dict[str, list[tuple[float, float, float]]] = {}
    with Host() as host, tempfile.TemporaryDirectory() as database:
        host.add_provider("providers.examples.text")
        descriptor = host.catalog.find("text.upper")
        assert descriptor is not None
        for _ in range(200):
            host.run("text.upper", {"text": "warm"})
        _hypothesis(50, lambda v: ACTION.function(**v))

        def run(value: Any) -> Any:
            return host.run("text.upper", value, timeout=5.0)

        def targeted(value: Any) -> None:
            usage = run(value).usage
            target(usage.wall_s, label="wall_s")
            target(usage.cpu_s, label="cpu_s")
            target(usage.max_rss_bytes / 2**20, label="max_rss_mib")

        calls_s = 0.0  # the gapped loop's time in host.run only

        def loop(gap: float) -> int:
            nonlocal calls_s
            calls_s = 0.0
            for _ in range(n):
                if gap:
                    _busy(gap)
                started = time.perf_counter()
                run({"text": "warm"})
                calls_s += time.perf_counter() - started
            return n

        def fuzz(db: str | None) -> int:
            options = FuzzOptions(max_examples=n, database=db)
            return fuzz_action(host, descriptor, options, []).examples

        variants: dict[str, Callable[[], int]] = {
            "in-process": lambda: _hypothesis(n, lambda v: ACTION.function(**v)),
            "host.run": lambda: loop(0.0),
            "host.run, 0.75 ms gaps": lambda: loop(GAP_S),
            "hypothesis + host.run": lambda: _hypothesis(n, run),
            "hypothesis + host.run + target": lambda: _hypothesis(n, targeted),
            "fuzz_action": lambda: fuzz(None),
            "fuzz_action, database": lambda: fuzz(database),
        }
        me = os.getpid()
        caller = f"{threading.current_thread().native_id}"
        for _ in range(reps):
            for label, variant in variants.items():
                worker = _worker_pid()
                host_before, worker_before = _thread_cpu(me), _thread_cpu(worker)
                started = time.perf_counter()
                count = variant()
                elapsed = time.perf_counter() - started
                host_after = _thread_cpu(me)
                try:
                    worker_after = _thread_cpu(worker)
                except FileNotFoundError:  # replaced meanwhile (memory growth recycles it)
                    worker_after = None
                spent = {k: v - host_before.get(k, 0.0) for k, v in host_after.items()}
                mine = sum(v for k, v in spent.items() if k.rpartition(":")[2] == caller)
                others = sum(spent.values()) - mine
                theirs = float("nan") if worker_after is None else sum(
                    v - worker_before.get(k, 0.0) for k, v in worker_after.items()
                )
                cpu.setdefault(label, []).append(
                    (mine / count * 1e3, others / count * 1e3, theirs / count * 1e3)
                )
                if label == "host.run, 0.75 ms gaps":
                    elapsed = calls_s
                figures.setdefault(label, []).append(elapsed / count * 1e3)
    width = max(map(len, figures))
    for label, values in figures.items():
        listed = " ".join(f"{v:.3f}" for v in values)
        median = statistics.median(values)
        mine, others, theirs = cpu[label][values.index(median)] if len(values) % 2 else (0, 0, 0)
        print(f"{label:<{width}}  {median:.3f} ms  ({listed})")
        if len(values) % 2:
            print(f"{'':<{width}}  CPU: caller {mine:.3f}, host loop {others:.3f}, worker "
                  f"{theirs:.3f}, sum {mine + others + theirs:.3f} ms")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 300,
         int(sys.argv[2]) if len(sys.argv) > 2 else 5)
