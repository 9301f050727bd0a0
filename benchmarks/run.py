"""The benchmark suite: our host (every confinement layer on) next to its peers, in one run.

    python -m benchmarks.run [--quick] [--out DIR]

Writes ``DIR/benchmarks.json`` and ``DIR/BENCHMARKS.md``. Every benchmark runs our host with the
default Policy (all layers) and, in the same process and run, the peers on the same function: raw
pyzmq REQ/REP over ipc (the transport's floor), ``concurrent.futures.ProcessPoolExecutor``,
``pebble.ProcessPool`` and ``loky``. Figures are medians and p99 with sample counts; targets are
the ones of issue 5 (ratios of our figure over the peer's, or absolute where the issue says so).
``--quick`` uses tiny sizes (for the test that keeps the suite from rotting; its figures mean
nothing). Nothing here optimises anything: it measures.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import signal
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor, wait
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import psutil

from benchmarks import peers
from benchmarks.core import raw_pyzmq, raw_socketpair
from host import Host
from policies import Policy

WORKER_UID_BASE = 1_900_000_000
ECHO = "text.echo"
SMALL = {"value": "hello"}
BENCHMARKS = (
    "rtt_small",
    "rtt_large",
    "throughput",
    "cold_start",
    "timeout_enforcement",
    "respawn",
    "idle_memory",
    "validation_overhead",
    "remote",
    "many_providers",
    "fuzz_rate",
)


@dataclass(frozen=True)
class Sizes:
    rtt_calls: int
    large_calls: int
    throughput_calls: int
    throughput_runs: int
    cold_runs: int
    timeout_runs: int
    respawn_runs: int
    memory_workers: int
    validation_calls: int
    provider_counts: tuple[int, ...]
    many_calls: int
    remote_calls: int
    remote_burst: int
    fuzz_examples: int
    fuzz_rounds: int


FULL = Sizes(
    rtt_calls=2000,
    large_calls=100,
    throughput_calls=20_000,
    throughput_runs=3,
    cold_runs=10,
    timeout_runs=10,
    respawn_runs=10,
    memory_workers=2,
    validation_calls=2000,
    provider_counts=(1, 16, 64),
    many_calls=1000,
    remote_calls=2000,
    remote_burst=10_000,
    fuzz_examples=500,
    fuzz_rounds=5,
)
TINY = Sizes(
    rtt_calls=20,
    large_calls=3,
    throughput_calls=100,
    throughput_runs=1,
    cold_runs=1,
    timeout_runs=1,
    respawn_runs=1,
    memory_workers=1,
    validation_calls=20,
    provider_counts=(1, 3),
    many_calls=10,
    remote_calls=20,
    remote_burst=100,
    fuzz_examples=20,
    fuzz_rounds=1,
)


# ------------------------------------------------------------------ statistics and cases


def percentile(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def summary(samples: list[float], scale: float = 1.0) -> dict[str, Any]:
    """Median and p99 (nearest rank) of ``samples`` times ``scale``, with the sample count."""
    return {
        "median": round(statistics.median(samples) * scale, 3),
        "p99": round(percentile(samples, 0.99) * scale, 3),
        "samples": len(samples),
    }


def ms(samples: list[float]) -> dict[str, Any]:
    return summary(samples, 1e3)


def case(
    name: str,
    unit: str,
    ours: dict[str, Any],
    peers_: dict[str, dict[str, Any]],
    target: str = "",
    check: Callable[[dict[str, Any], dict[str, float]], bool] | None = None,
    note: str = "",
) -> dict[str, Any]:
    ratios = {
        peer: round(ours["median"] / value["median"], 3) if value["median"] else None
        for peer, value in peers_.items()
    }
    met = check(ours, ratios) if check is not None else None
    return {
        "case": name,
        "unit": unit,
        "ours": ours,
        "peers": peers_,
        "ratios": ratios,
        "target": target,
        "met": met,
        "note": note,
    }


def timed(fn: Callable[[], Any], count: int, warm: int = 0) -> list[float]:
    for _ in range(warm):
        fn()
    samples = []
    for _ in range(count):
        start = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - start)
    return samples


# ------------------------------------------------------------------ peers


@contextlib.contextmanager
def ppe(workers: int) -> Iterator[ProcessPoolExecutor]:
    pool = ProcessPoolExecutor(workers)
    try:
        yield pool
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


@contextlib.contextmanager
def pebble_pool(workers: int) -> Iterator[Any]:
    from pebble import ProcessPool

    pool = ProcessPool(max_workers=workers)
    try:
        yield pool
    finally:
        pool.stop()
        pool.join(timeout=10)


@contextlib.contextmanager
def loky_pool(workers: int) -> Iterator[Any]:
    from loky import get_reusable_executor

    pool = get_reusable_executor(max_workers=workers)
    try:
        yield pool
    finally:
        pool.shutdown(wait=True, kill_workers=True)


def peer_rtts(value: Any, calls: int, warm: int) -> dict[str, list[float]]:
    """Sequential echo round trips through each pool peer with one worker."""
    out: dict[str, list[float]] = {}
    with ppe(1) as pool:
        out["ProcessPoolExecutor"] = timed(
            lambda: pool.submit(peers.echo, value).result(), calls, warm
        )
    with pebble_pool(1) as pool:
        out["pebble"] = timed(
            lambda: pool.schedule(peers.echo, args=(value,)).result(), calls, warm
        )
    with loky_pool(1) as pool:
        out["loky"] = timed(lambda: pool.submit(peers.echo, value).result(), calls, warm)
    return out


# ------------------------------------------------------------------ process trees


def worker_tree(exclude: frozenset[int] = frozenset()) -> set[tuple[int, float]]:
    """Processes of our workers' trees: descendants of this process (launcher, init, worker
    and anything they forked, since orphans are reparented to the init of the worker's pid
    namespace) and any process of a dedicated worker uid."""
    found = set()
    for proc in psutil.Process().children(recursive=True):
        with contextlib.suppress(psutil.Error):
            if proc.pid not in exclude:
                found.add((proc.pid, proc.create_time()))
    for proc in psutil.process_iter(["uids", "create_time"]):
        uids = proc.info.get("uids")
        if uids is not None and uids.real >= WORKER_UID_BASE:
            found.add((proc.pid, proc.info["create_time"]))
    return found


def alive(pid: int, created: float) -> bool:
    try:
        proc = psutil.Process(pid)
        return proc.create_time() == created and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def wait_gone(tree: set[tuple[int, float]], cap: float) -> tuple[float, set[tuple[int, float]]]:
    """Poll (every ~1 ms) until no process of ``tree`` is running or ``cap`` seconds passed;
    returns the moment (perf_counter) and the survivors."""
    end = time.perf_counter() + cap
    while True:
        left = {entry for entry in tree if alive(*entry)}
        now = time.perf_counter()
        if not left or now >= end:
            return now, left
        time.sleep(0.001)


def _is_worker(proc: psutil.Process) -> bool:
    """A worker, not its launcher or init: under a root host it runs as a dedicated uid; under
    a non-root host (one shared uid) it is the one process that installed a seccomp filter."""
    if os.geteuid() == 0:
        return bool(proc.uids().real >= WORKER_UID_BASE)
    try:
        with open(f"/proc/{proc.pid}/status") as f:
            return any(line.split() == ["Seccomp:", "2"] for line in f)
    except OSError:
        return False


def idle_worker_pids() -> list[int]:
    pids = []
    for proc in psutil.Process().children(recursive=True):
        with contextlib.suppress(psutil.Error):
            if _is_worker(proc):
                pids.append(proc.pid)
    return pids


def zygote_pids(host: Host) -> frozenset[int]:
    """The host's zygote processes and its spare launcher: helpers, not part of any worker's
    tree (the spare becomes the launcher of the next worker, which outlives a timeout)."""
    keeper = host._reactor.zygotes
    pids = {z.pid for z in [*keeper.retired, keeper.current, keeper.successor] if z}
    spare = host._reactor._spare
    if spare is not None:
        pids.add(spare.forked.child.pid)
    return frozenset(pids)


def wait_zygote_ready(host: Host) -> None:
    """Block until the host's zygote has imported the runtime (it starts with the host)."""
    done: Future[None] = Future()

    def check() -> None:
        keeper = host._reactor.zygotes
        zygote = keeper.current
        if zygote is not None:
            zygote.wait_ready(30)
        done.set_result(None)

    host._reactor.submit(check)
    done.result(timeout=60)


def launcher_trees(host: Host, provider: str) -> list[psutil.Process]:
    """The launcher of each worker of ``provider`` (its init and worker are its descendants)."""
    return [psutil.Process(w.process.pid) for w in host._reactor.providers[provider].workers]


def tree_memory(root: psutil.Process) -> tuple[int, int]:
    """Summed USS and PSS of ``root`` and its descendants."""
    uss = pss = 0
    for proc in [root, *root.children(recursive=True)]:
        with contextlib.suppress(psutil.Error):
            info = proc.memory_full_info()
            uss += info.uss
            pss += getattr(info, "pss", 0)
    return uss, pss


# ------------------------------------------------------------------ benchmarks


def rtt_rows(name: str, value: Any, calls: int, warm: int, policy: Policy) -> dict[str, Any]:
    payload = {"value": value}
    with Host() as host:
        host.add_provider("providers.examples.text", policy=policy)
        ours = timed(lambda: host.call(ECHO, payload), calls, warm)
    encoded = json.dumps(payload).encode()
    # The kernel floor (a Unix socketpair between two Python processes) and raw pyzmq.
    samples = {
        "unix socketpair": raw_socketpair(calls, encoded),
        "raw pyzmq": raw_pyzmq(calls, encoded),
    }
    samples.update(peer_rtts(payload, calls, warm))
    return {"name": name, "ours": ms(ours), "peers": {k: ms(v) for k, v in samples.items()}}


def bench_rtt_small(sizes: Sizes) -> list[dict[str, Any]]:
    r = rtt_rows("echo {'value': 'hello'}", "hello", sizes.rtt_calls, 100, Policy())
    return [
        case(
            r["name"], "ms", r["ours"], r["peers"],
            "median <= 1.0x raw pyzmq and <= 0.5x ProcessPoolExecutor",
            lambda o, rt: rt["raw pyzmq"] <= 1.0 and rt["ProcessPoolExecutor"] <= 0.5,
        )
    ]


def bench_rtt_large(sizes: Sizes) -> list[dict[str, Any]]:
    policy = Policy(output=4 * 1024 * 1024, input=4 * 1024 * 1024)  # a 1 MiB string each way
    rows = []
    for label, size in (("64 KiB", 64 * 1024), ("1 MiB", 1024 * 1024)):
        r = rtt_rows(f"echo {label} string", "x" * size, sizes.large_calls, 10, policy)
        rows.append(case(r["name"], "ms", r["ours"], r["peers"], "none (informative)"))
    return rows


def bench_throughput(sizes: Sizes) -> list[dict[str, Any]]:
    n = sizes.throughput_calls
    results: dict[str, list[float]] = {
        "ours": [], "ProcessPoolExecutor": [], "pebble": [], "loky": []
    }

    def burst(submit: Callable[[], Any]) -> float:
        start = time.perf_counter()
        futures = [submit() for _ in range(n)]
        wait(futures)
        elapsed = time.perf_counter() - start
        for future in futures:
            future.result()
        return n / elapsed

    for _ in range(sizes.throughput_runs):
        with Host() as host:
            host.add_provider(
                "providers.examples.text", policy=Policy(workers={"min": 2, "max": 2}, queue=n)
            )
            for _ in range(50):
                host.call(ECHO, SMALL)
            results["ours"].append(burst(lambda: host.submit(ECHO, SMALL)))
        with ppe(2) as pool:
            list(pool.map(peers.echo, [SMALL] * 50, chunksize=1))
            results["ProcessPoolExecutor"].append(burst(lambda: pool.submit(peers.echo, SMALL)))
        with pebble_pool(2) as pool:
            wait([pool.schedule(peers.echo, args=(SMALL,)) for _ in range(50)])
            results["pebble"].append(burst(lambda: pool.schedule(peers.echo, args=(SMALL,))))
        with loky_pool(2) as pool:
            list(pool.map(peers.echo, [SMALL] * 50))
            results["loky"].append(burst(lambda: pool.submit(peers.echo, SMALL)))
    ours = summary(results.pop("ours"))
    return [
        case(
            f"{n} echo calls at once, 2 workers", "calls/s (median; p99 column = p1 of runs)",
            ours, {k: summary(v) for k, v in results.items()},
            ">= 1.5x ProcessPoolExecutor (chunksize 1) and >= 1.0x pebble",
            lambda o, rt: rt["ProcessPoolExecutor"] >= 1.5 and rt["pebble"] >= 1.0,
            note="each sample is one burst; higher is better",
        )
    ]


def _respawn_ready(host: Host) -> float:
    """Remove the provider, then time ``add_provider`` again: one worker's spawn-to-ready on a
    host that is already running (its zygote, if any, started)."""
    host.remove_provider("text")
    while "text" in host._reactor.providers or host.catalog.find(ECHO) is not None:
        time.sleep(0.002)
    start = time.perf_counter()
    host.add_provider("providers.examples.text")
    return time.perf_counter() - start


def bench_cold_start(sizes: Sizes) -> list[dict[str, Any]]:
    first: dict[str, list[float]] = {"fresh": [], "zygote": []}
    ready: dict[str, list[float]] = {"fresh": [], "zygote": []}
    peer: dict[str, list[float]] = {"ProcessPoolExecutor": [], "pebble": [], "loky": []}
    from loky import ProcessPoolExecutor as LokyExecutor
    from pebble import ProcessPool

    for _ in range(sizes.cold_runs):
        for mode in ("fresh", "zygote"):
            start = time.perf_counter()
            with Host(spawn=mode) as host:
                host.add_provider("providers.examples.text")
                host.call(ECHO, SMALL)
                first[mode].append(time.perf_counter() - start)
                if mode == "zygote":
                    wait_zygote_ready(host)
                time.sleep(0.05)
                ready[mode].append(_respawn_ready(host))
        start = time.perf_counter()
        with ProcessPoolExecutor(1) as pool:
            pool.submit(peers.echo, SMALL).result()
            peer["ProcessPoolExecutor"].append(time.perf_counter() - start)
        start = time.perf_counter()
        pebble = ProcessPool(max_workers=1)
        pebble.schedule(peers.echo, args=(SMALL,)).result()
        peer["pebble"].append(time.perf_counter() - start)
        pebble.stop()
        pebble.join(timeout=10)
        start = time.perf_counter()
        loky = LokyExecutor(1)
        loky.submit(peers.echo, SMALL).result()
        peer["loky"].append(time.perf_counter() - start)
        loky.shutdown(wait=True, kill_workers=True)
    peer_summary = {k: ms(v) for k, v in peer.items()}
    ppe_only = {"ProcessPoolExecutor": peer_summary["ProcessPoolExecutor"]}
    return [
        case(
            "create host/pool -> first result (fresh)", "ms", ms(first["fresh"]), peer_summary,
            "none (informative)",
        ),
        case(
            "create host/pool -> first result (zygote)", "ms", ms(first["zygote"]), peer_summary,
            "none (informative)",
            note="the zygote starts with the host; the first worker waits for it to be ready",
        ),
        case(
            "spawn-to-ready of one worker, fresh interpreter (add_provider)", "ms",
            ms(ready["fresh"]), ppe_only, "median <= 30 ms (fresh interpreter)",
            lambda o, rt: o["median"] <= 30.0,
            note="peer column: PPE create -> first result",
        ),
        case(
            "spawn-to-ready of one worker, via the zygote (add_provider)", "ms",
            ms(ready["zygote"]), ppe_only, "median <= 8 ms via a zygote",
            lambda o, rt: o["median"] <= 8.0,
            note="zygote already started, launcher taken from the spare (already in its "
            "cgroup); includes namespaces and mounts, every layer, the provider's import and "
            "the host's HELLO handling",
        ),
    ]


def _our_timeouts(action: str, runs: int) -> tuple[list[float], list[float], int]:
    outcome_delays, gone_delays, leaked = [], [], 0
    baseline = frozenset(p.pid for p in psutil.Process().children(recursive=True))
    with Host() as host:
        host.add_provider("providers.examples.hostile")
        for _ in range(runs):
            host.call("hostile.sleep", {"seconds": 0})  # a warm, idle worker
            done: list[float] = []
            start = time.perf_counter()
            future = host.submit(f"hostile.{action}", {"seconds": 10}, timeout=0.2)
            future.add_done_callback(lambda _f, d=done: d.append(time.perf_counter()))
            time.sleep(0.15)
            tree = worker_tree(baseline | zygote_pids(host))
            with contextlib.suppress(Exception):
                future.result()
            outcome = future.outcome
            assert outcome is not None and not outcome.ok, outcome
            deadline = start + 0.2
            finished = done[0] if done else time.perf_counter()
            gone, left = wait_gone(tree, 5.0)
            leaked += bool(left)
            outcome_delays.append(finished - deadline)
            gone_delays.append(gone - deadline)
    return outcome_delays, gone_delays, leaked


def _pebble_timeouts(action: str, runs: int) -> tuple[list[float], list[float], int]:
    outcome_delays, gone_delays, leaked = [], [], 0
    with pebble_pool(1) as pool, tempfile.TemporaryDirectory() as tmp:
        for i in range(runs):
            worker = pool.schedule(peers.getpid).result()
            pid_file = os.path.join(tmp, f"pid{i}")
            args: tuple[Any, ...] = (10,) if action != "double_fork" else (2, pid_file)
            done: list[float] = []
            start = time.perf_counter()
            future = pool.schedule(getattr(peers, action), args=args, timeout=0.2)
            future.add_done_callback(lambda _f, d=done: d.append(time.perf_counter()))
            time.sleep(0.15)
            tree = set()
            with contextlib.suppress(psutil.Error):
                root = psutil.Process(worker)
                for proc in [root, *root.children(recursive=True)]:
                    tree.add((proc.pid, proc.create_time()))
            with contextlib.suppress(OSError, ValueError), open(pid_file) as handle:
                grandchild = psutil.Process(int(handle.read()))
                tree.add((grandchild.pid, grandchild.create_time()))
            with contextlib.suppress(Exception):
                future.result()
            deadline = start + 0.2
            finished = done[0] if done else time.perf_counter()
            gone, left = wait_gone(tree, 1.0)
            for pid, _created in left:  # the setsid grandchild pebble cannot see: clean it up
                with contextlib.suppress(OSError):
                    os.kill(pid, signal.SIGKILL)
                with contextlib.suppress(OSError):  # our child if we are a pid namespace's init
                    os.waitpid(pid, 0)
            leaked += bool(left)
            outcome_delays.append(finished - deadline)
            gone_delays.append(gone - deadline)
    return outcome_delays, gone_delays, leaked


def bench_timeout_enforcement(sizes: Sizes) -> list[dict[str, Any]]:
    rows = []
    for action in ("sleep", "spin", "double_fork"):
        o_out, o_gone, o_leak = _our_timeouts(action, sizes.timeout_runs)
        p_out, p_gone, p_leak = _pebble_timeouts(action, sizes.timeout_runs)
        rows.append(
            case(
                f"{action}: deadline -> outcome", "ms", ms(o_out), {"pebble": ms(p_out)},
                "p99 <= 20 ms", lambda o, rt: o["p99"] <= 20.0,
                note="ProcessPoolExecutor/loky cannot stop a running task",
            )
        )
        rows.append(
            case(
                f"{action}: deadline -> no process of the tree left", "ms", ms(o_gone),
                {"pebble": ms(p_gone)}, "<= 50 ms (p99)",
                lambda o, rt, leak=o_leak: o["p99"] <= 50.0 and not leak,
                note=f"runs with a survivor after the cap: ours {o_leak} (5 s cap), "
                f"pebble {p_leak} (1 s cap, then killed by the benchmark)",
            )
        )
    return rows


def _our_respawns(mode: str, runs: int) -> list[float]:
    samples: list[float] = []
    with Host(spawn=mode) as host:
        host.add_provider("providers.examples.text", policy=Policy(workers={"min": 1, "max": 1}))
        for _ in range(runs):
            host.call(ECHO, SMALL)
            time.sleep(0.05)
            pid = idle_worker_pids()[0]
            start = time.perf_counter()
            os.kill(pid, signal.SIGKILL)
            while not host.run(ECHO, SMALL).ok:
                pass
            samples.append(time.perf_counter() - start)
    return samples


def bench_respawn(sizes: Sizes) -> list[dict[str, Any]]:
    ours = {mode: _our_respawns(mode, sizes.respawn_runs) for mode in ("fresh", "zygote")}
    pebble: list[float] = []
    pebble_error = ""
    with pebble_pool(1) as pool:
        for _ in range(sizes.respawn_runs):
            pid = pool.schedule(peers.getpid).result()
            time.sleep(0.05)
            start = time.perf_counter()
            os.kill(pid, signal.SIGKILL)
            give_up = start + 2.0
            while time.perf_counter() < give_up:
                try:
                    pool.schedule(peers.echo, args=(SMALL,)).result(timeout=2)
                    pebble.append(time.perf_counter() - start)
                    break
                except Exception as exc:
                    pebble_error = f"{type(exc).__name__}: {exc}"
            else:
                break  # the pool did not recover: no sample
    note = "ProcessPoolExecutor breaks for good (BrokenProcessPool)"
    if len(pebble) < sizes.respawn_runs:
        note += (
            f"; pebble did not recover within 2 s after its idle worker was killed "
            f"({len(pebble)} of {sizes.respawn_runs} runs served; last error: {pebble_error})"
        )
    peer_row = {"pebble": ms(pebble)} if pebble else {}
    return [
        case(
            "kill -9 idle worker -> next successful call (fresh)", "ms", ms(ours["fresh"]),
            peer_row, "none (the target is for the zygote)", note=note,
        ),
        case(
            "kill -9 idle worker -> next successful call (zygote)", "ms", ms(ours["zygote"]),
            peer_row, "median <= 10 ms with a zygote", lambda o, rt: o["median"] <= 10.0,
        ),
    ]


def bench_idle_memory(sizes: Sizes) -> list[dict[str, Any]]:
    k = sizes.memory_workers
    uss: dict[str, list[float]] = {"fresh": [], "zygote": []}
    pss: dict[str, list[float]] = {"fresh": [], "zygote": []}
    zygote_uss: list[float] = []
    spare_uss: list[float] = []
    for mode in ("fresh", "zygote"):
        with Host(spawn=mode) as host:
            policy = Policy(workers={"min": k, "max": k})
            host.add_provider("providers.examples.text", policy=policy)
            host.call(ECHO, SMALL)
            time.sleep(0.5)
            for launcher in launcher_trees(host, "text"):
                u, p = tree_memory(launcher)
                uss[mode].append(u)
                pss[mode].append(p)
            zygote = host._reactor.zygotes.current
            if zygote is not None:
                with contextlib.suppress(psutil.Error):
                    zygote_uss.append(psutil.Process(zygote.pid).memory_full_info().uss)
            spare = host._reactor._spare
            if spare is not None:
                with contextlib.suppress(psutil.Error):
                    spare_uss.append(psutil.Process(spare.forked.child.pid).memory_full_info().uss)
    peer_uss: dict[str, list[float]] = {}
    peer_pss: dict[str, list[float]] = {}

    def measure(name: str, pids: set[int]) -> None:
        for pid in pids:
            u, p = tree_memory(psutil.Process(pid))
            peer_uss.setdefault(name, []).append(u)
            peer_pss.setdefault(name, []).append(p)

    with ppe(k) as pool:
        measure("ProcessPoolExecutor", {pool.submit(peers.getpid).result() for _ in range(20 * k)})
    with pebble_pool(k) as pool:
        pids = {pool.schedule(peers.getpid).result() for _ in range(20 * k)}
        time.sleep(0.2)
        measure("pebble", pids)
    with loky_pool(k) as pool:
        measure("loky", set(pool.map(peers.getpid_arg, range(20 * k))))
    mib = 1 / (1024 * 1024)
    zygote_note = (
        f"plus, per host, one zygote (USS {statistics.median(zygote_uss) * mib:.1f} MiB)"
        if zygote_uss else ""
    )
    if spare_uss:
        zygote_note += (
            f" and one spare launcher (USS {statistics.median(spare_uss) * mib:.1f} MiB)"
        )
    peer_uss_rows = {k_: summary(v, mib) for k_, v in peer_uss.items()}
    peer_pss_rows = {k_: summary(v, mib) for k_, v in peer_pss.items()}
    return [
        case(
            "USS per idle worker (launcher+init+worker), fresh", "MiB",
            summary(uss["fresh"], mib), peer_uss_rows, "none (the target is for the zygote)",
            note="PPE/pebble workers are forked from this process (fork start method)",
        ),
        case(
            "USS per idle worker (launcher+init+worker), zygote", "MiB",
            summary(uss["zygote"], mib), peer_uss_rows, "<= 10 MB with a zygote",
            lambda o, rt: o["median"] <= 10 * 1e6 / 2**20, note=zygote_note,
        ),
        case(
            "PSS per idle worker (launcher+init+worker), fresh", "MiB",
            summary(pss["fresh"], mib), peer_pss_rows, "none (informative)",
        ),
        case(
            "PSS per idle worker (launcher+init+worker), zygote", "MiB",
            summary(pss["zygote"], mib), peer_pss_rows, "none (informative)",
        ),
    ]


def bench_validation_overhead(sizes: Sizes) -> list[dict[str, Any]]:
    with Host() as host:
        host.add_provider("providers.examples.text")
        descriptor = host.catalog.find(ECHO)
        rtt = timed(lambda: host.call(ECHO, SMALL), sizes.validation_calls, 100)

        def validate() -> None:
            assert descriptor.input_validator.problem(SMALL) is None
            assert descriptor.output_validator.problem("hello") is None

        checks = timed(validate, sizes.validation_calls, 100)
    with_v = statistics.median(rtt)
    cost = statistics.median(checks)
    without = [max(sample - cost, 0.0) for sample in rtt]
    share = cost / max(with_v - cost, 1e-12)
    return [
        case(
            "host.call text.echo with validation vs without (estimated)", "ms", ms(rtt),
            {"rtt minus validation": ms(without), "validation alone": ms(checks)},
            "validation adds <= 15% to rtt_small",
            lambda o, rt: share <= 0.15,
            note=f"validation adds {share * 100:.1f}% (no switch turns it off: the validators "
            "were timed alone and subtracted)",
        )
    ]


PROVIDER_FILE = """from providers import Provider

provider = Provider("p{i}", version="1.0")


@provider.action(
    input={{"type": "object", "properties": {{"value": {{}}}}, "required": ["value"],
           "additionalProperties": False}},
    output={{}},
    safe_rerun=True,
)
def echo(value):
    return value
"""


def bench_remote(sizes: Sizes) -> list[dict[str, Any]]:
    """``RemoteHost`` on loopback (TCP, CURVE) against raw pyzmq and a local ``Host``."""
    from benchmarks import remote

    rtt = {k: ms(v) for k, v in remote.rtts(sizes.remote_calls, warm=50).items()}
    rates = remote.throughputs(sizes.remote_burst, sizes.throughput_runs)
    return [
        case(
            "RemoteHost.call text.echo over TCP+CURVE (loopback)", "ms", rtt.pop("ours"), rtt,
            "median <= 1.5x raw pyzmq TCP+CURVE",
            lambda o, rt: rt["raw pyzmq TCP+CURVE"] <= 1.5,
        ),
        case(
            f"{sizes.remote_burst} calls at once through RemoteHost, 2 server workers",
            "calls/s (median; p99 column = p1 of runs)",
            summary(rates.pop("ours")), {k: summary(v) for k, v in rates.items()},
            ">= 1.0x the local Host with 2 workers",
            lambda o, rt: rt["local Host"] >= 1.0,
            note="each sample is one burst; higher is better",
        ),
    ]


def bench_many_providers(sizes: Sizes) -> list[dict[str, Any]]:
    """``p0.echo`` on a host with one provider next to a host with N, in alternating blocks.

    Both hosts run in this process at the same time and take turns, block by block, so machine
    noise (which moves absolute figures by 2x between minutes here) hits both sides alike.
    """
    counts = sizes.provider_counts
    policy = Policy(workers={"min": 0, "max": 1})
    block = 50
    rounds = max(1, sizes.many_calls // block)
    measured: dict[int, tuple[list[float], list[float]]] = {}
    with tempfile.TemporaryDirectory() as tmp, Host() as single, Host() as many:
        os.chmod(tmp, 0o755)
        for i in range(max(counts)):
            path = Path(tmp, f"p{i}.py")
            path.write_text(PROVIDER_FILE.format(i=i))
            path.chmod(0o644)
        single.add_provider(str(Path(tmp, "p0.py")), policy=policy)
        loaded = 0
        for count in counts:
            while loaded < count:
                many.add_provider(str(Path(tmp, f"p{loaded}.py")), policy=policy)
                loaded += 1
            alone: list[float] = []
            among: list[float] = []
            timed(lambda: single.call("p0.echo", SMALL), 0, 100)
            timed(lambda: many.call("p0.echo", SMALL), 0, 100)
            for _ in range(rounds):
                alone += timed(lambda: single.call("p0.echo", SMALL), block)
                among += timed(lambda: many.call("p0.echo", SMALL), block)
            measured[count] = (alone, among)
    rows = []
    for count in counts:
        last = count == counts[-1]
        alone, among = measured[count]
        rows.append(
            case(
                f"{count} providers loaded, p0.echo", "ms", ms(among),
                {"1 provider (other host, alternating)": ms(alone)},
                "median with 64 within 1.2x of 1" if last else "",
                (lambda o, rt: next(iter(rt.values())) <= 1.2) if last else None,
                note="one worker per provider (workers max 1); a second host with one "
                "provider is timed in alternating blocks of 50 calls",
            )
        )
    return rows


def bench_fuzz_rate(sizes: Sizes) -> list[dict[str, Any]]:
    """``sandbox fuzz``'s runner on text.upper against the same strategy in-process, in
    alternating rounds (``benchmarks.fuzz``)."""
    from benchmarks import fuzz

    figures = fuzz.measure(sizes.fuzz_examples, sizes.fuzz_rounds)
    rate = statistics.median(figures["ratios"])
    return [
        case(
            f"fuzz example on text.upper, {sizes.fuzz_examples} per round", "ms per example",
            summary(figures["confined"]),
            {"same strategy in-process (alternating rounds)": summary(figures["in_process"]),
             "host.run alone": summary(figures["round_trip"])},
            "fuzzing rate >= 0.5x in-process (median of the rounds' ratios)",
            lambda o, rt: rate >= 0.5,
            note="rate ratio per round (in-process ms / confined ms): "
            + ", ".join(f"{r:.2f}" for r in figures["ratios"])
            + f"; median {rate:.2f}. Every example confined, failures kept in a fresh store, "
            "both sides seeded alike",
        )
    ]


SUITE: dict[str, Callable[[Sizes], list[dict[str, Any]]]] = {
    "rtt_small": bench_rtt_small,
    "rtt_large": bench_rtt_large,
    "throughput": bench_throughput,
    "cold_start": bench_cold_start,
    "timeout_enforcement": bench_timeout_enforcement,
    "respawn": bench_respawn,
    "idle_memory": bench_idle_memory,
    "validation_overhead": bench_validation_overhead,
    "remote": bench_remote,
    "fuzz_rate": bench_fuzz_rate,
    "many_providers": bench_many_providers,  # last: it starts many workers
}


# ------------------------------------------------------------------ report


def stop_trackers() -> None:
    """Stop the resource-tracker processes multiprocessing and loky started for the peers."""
    from multiprocessing import resource_tracker

    from loky.backend import resource_tracker as loky_tracker

    for tracker in (resource_tracker._resource_tracker, loky_tracker._resource_tracker):
        with contextlib.suppress(Exception):
            tracker._stop()


def machine() -> dict[str, Any]:
    uname = os.uname()
    return {
        "cpus": os.cpu_count(),
        "kernel": f"{uname.sysname} {uname.release}",
        "python": platform.python_version(),
        "processor": platform.processor() or uname.machine,
        "memory_gib": round(psutil.virtual_memory().total / 2**30, 1),
        "root": os.geteuid() == 0,
    }


def _fmt(value: float) -> str:
    return f"{value:,.3f}" if abs(value) < 100 else f"{value:,.1f}"


def markdown(report: dict[str, Any]) -> str:
    m = report["machine"]
    lines = [
        "# Benchmarks",
        "",
        f"- machine: {m['cpus']} CPUs ({m['processor']}), {m['memory_gib']} GiB, "
        f"kernel {m['kernel']}, Python {m['python']}, root: {m['root']}",
        f"- command: `{report['command']}`",
        f"- preset: {report['preset']}; total {report['elapsed_s']} s; "
        f"started {report['started']}",
        "- ours = `Host` with the default Policy (every confinement layer on); peers run the same "
        "function in the same run. Ratio = our median / the peer's median.",
        "",
        "| benchmark | case | unit | ours median | peer medians | ours p99 | samples (ours) "
        "| ratio ours/peer | target | met |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    notes = []
    for name, rows in report["benchmarks"].items():
        for row in rows:
            peers_ = "; ".join(f"{k} {_fmt(v['median'])}" for k, v in row["peers"].items())
            ratios = "; ".join(
                f"{v:.2f}x {k}" for k, v in row["ratios"].items() if v is not None
            )
            met = {True: "met", False: "**not met**", None: "-"}[row["met"]]
            lines.append(
                f"| {name} | {row['case']} | {row['unit']} | {_fmt(row['ours']['median'])} "
                f"| {peers_} | {_fmt(row['ours']['p99'])} | {row['ours']['samples']} "
                f"| {ratios} | {row['target'] or '-'} | {met} |"
            )
            if row["note"]:
                notes.append(f"- {name} / {row['case']}: {row['note']}")
    lines += ["", "Notes:", "", *notes, ""]
    if report["leftover_processes"]:
        lines.append(f"Processes left after the run: {report['leftover_processes']}")
    return "\n".join(lines) + "\n"


def run(
    sizes: Sizes, out: Path, preset: str, command: str, only: list[str] | None = None
) -> dict[str, Any]:
    started = time.time()
    report: dict[str, Any] = {
        "machine": machine(),
        "command": command,
        "preset": preset,
        "sizes": asdict(sizes),
        "started": time.strftime("%Y-%m-%d %H:%M:%S %Z", time.localtime(started)),
        "benchmarks": {},
    }
    for name, bench in SUITE.items():
        if only and name not in only:
            continue
        t0 = time.perf_counter()
        report["benchmarks"][name] = bench(sizes)
        print(f"{name}: {time.perf_counter() - t0:.1f} s", file=sys.stderr, flush=True)
    report["elapsed_s"] = round(time.time() - started, 1)
    stop_trackers()
    for child in psutil.Process().children():  # orphans reparented to us (pid namespace init)
        with contextlib.suppress(psutil.Error, OSError):
            if child.status() == psutil.STATUS_ZOMBIE:
                os.waitpid(child.pid, os.WNOHANG)
    time.sleep(0.2)
    report["leftover_processes"] = [
        f"{p.pid} {p.name()}" for p in psutil.Process().children(recursive=True)
        if p.status() != psutil.STATUS_ZOMBIE
    ]
    out.mkdir(parents=True, exist_ok=True)
    (out / "benchmarks.json").write_text(json.dumps(report, indent=2) + "\n")
    (out / "BENCHMARKS.md").write_text(markdown(report))
    return report


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes (figures mean nothing)")
    parser.add_argument("--out", default=".", help="directory for benchmarks.json, BENCHMARKS.md")
    parser.add_argument("--only", nargs="*", choices=BENCHMARKS, help="run only these")
    args = parser.parse_args(argv)
    raw = sys.argv[1:] if argv is None else argv
    command = " ".join(["python -m benchmarks.run", *raw])
    report = run(
        TINY if args.quick else FULL, Path(args.out), "tiny" if args.quick else "full",
        command, args.only,
    )
    print(markdown(report))
    return report


if __name__ == "__main__":
    main()
