"""Where a call's time goes: CPU per call by thread, and what the host retains after a burst.

    python -m benchmarks.profile cpu [--calls N]      # sequential host.call("text.echo")
    python -m benchmarks.profile memory [--calls N]   # host RSS and objects after N calls

``cpu`` reads each thread's CPU time (``/proc/<pid>/task/*/stat``) of the host and of its worker
before and after N sequential calls and prints microseconds per call: the caller's thread, the
host's loop thread, both ZeroMQ I/O threads and the worker's main thread. Their sum next to the
wall time per call shows whether a round trip is bound by CPU work or by waiting.

``memory`` submits N calls at once (twice), waits for them, drops the futures and reports the
host's RSS growth, the number of objects the garbage collector tracks and the timer heap's size:
a finished call must leave nothing behind.
"""

from __future__ import annotations

import argparse
import gc
import os
import time

from host import Host
from policies import Policy

TICKS = os.sysconf("SC_CLK_TCK")


def _thread_cpu(pid: int) -> dict[str, float]:
    """CPU seconds (user + system) of each thread of ``pid``, keyed by ``name:tid``."""
    found = {}
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{tid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            with open(f"/proc/{pid}/task/{tid}/comm") as f:
                name = f.read().strip()
        except OSError:
            continue
        found[f"{name}:{tid}"] = (int(fields[11]) + int(fields[12])) / TICKS
    return found


def _worker_pid() -> int:
    """The host's one worker: the process of a dedicated uid that runs the worker code."""
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                if os.stat(f"/proc/{entry}").st_uid >= 1_900_000_000:
                    return int(entry)
            except OSError:
                continue
    raise SystemExit("no worker found (this profile needs a root host: workers get own uids)")


def cpu(calls: int) -> None:
    with Host() as host:
        host.add_provider("providers.examples.text")
        for _ in range(500):
            host.call("text.echo", {"value": "hello"})
        worker = _worker_pid()
        host_before, worker_before = _thread_cpu(os.getpid()), _thread_cpu(worker)
        start = time.perf_counter()
        for _ in range(calls):
            host.call("text.echo", {"value": "hello"})
        wall = time.perf_counter() - start
        host_after, worker_after = _thread_cpu(os.getpid()), _thread_cpu(worker)
    print(f"wall per call: {wall / calls * 1e6:.0f} us ({calls} sequential calls)")
    total = 0.0
    for side, before, after in (
        ("host", host_before, host_after),
        ("worker", worker_before, worker_after),
    ):
        for thread, seconds in after.items():
            spent = (seconds - before.get(thread, 0.0)) / calls * 1e6
            if spent > 0:
                total += spent
                print(f"  {side:6s} {thread:24s} {spent:6.1f} us CPU per call")
    print(f"  total CPU per call: {total:.0f} us (clock ticks of 1/{TICKS} s: +-10%)")


def memory(calls: int) -> None:
    def rss_mib() -> float:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
        return 0.0

    policy = Policy(workers={"min": 2, "max": 2}, queue=calls)
    with Host() as host:
        host.add_provider("providers.examples.text", policy=policy)
        host.call("text.echo", {"value": "x"})
        gc.collect()
        before, objects_before = rss_mib(), len(gc.get_objects())
        for _ in range(2):
            futures = [host.submit("text.echo", {"value": "x" * 100}) for _ in range(calls)]
            for future in futures:
                future.result()
            del futures
        gc.collect()
        print(
            f"{2 * calls} calls (default wall_time 30 s, so every deadline is still ahead): "
            f"host RSS {before:.0f} -> {rss_mib():.0f} MiB, tracked objects "
            f"{objects_before} -> {len(gc.get_objects())}, timer heap "
            f"{len(host._reactor._timers)} entries"
        )


def main() -> None:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.profile", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument(
        "what",
        choices=["cpu", "memory"],
        help="cpu: CPU per call, thread by thread, of sequential calls; "
        "memory: what the host keeps after two bursts of calls",
    )
    parser.add_argument("--calls", type=int, default=None, help="calls (default 5000 / 20000)")
    args = parser.parse_args()
    if args.what == "cpu":
        cpu(args.calls or 5000)
    else:
        memory(args.calls or 20000)


if __name__ == "__main__":
    main()
