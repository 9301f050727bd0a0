"""Core round-trip figures, measured side by side in one run.

    python -m benchmarks.core [--calls N]

Prints (and with --json, emits) the median and p99 warm round trip of ``text.echo`` through
``host.call`` next to a raw pyzmq REQ/REP round trip over ipc between two processes and the kernel
floor (a length-prefixed echo over a Unix socketpair between two Python processes), and the time
from ``add_provider`` to the first result. Ratios, not absolute numbers, are what to compare:
these machines are shared and noisy.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import socket
import statistics
import struct
import tempfile
import time
from typing import Any

import zmq

from host import Host


def _percentile(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def _summary(samples: list[float]) -> dict[str, Any]:
    return {
        "median_us": round(statistics.median(samples) * 1e6, 1),
        "p99_us": round(_percentile(samples, 0.99) * 1e6, 1),
        "samples": len(samples),
    }


def _echo_server(endpoint: str) -> None:
    context = zmq.Context()
    socket = context.socket(zmq.REP)
    socket.bind(endpoint)
    while True:
        message = socket.recv()
        if message == b"STOP":
            socket.send(b"")
            break
        socket.send(message)
    socket.close(linger=0)
    context.term()


def _recv_exactly(sock: socket.socket, size: int) -> bytes:
    parts, left = [], size
    while left:
        chunk = sock.recv(min(left, 1 << 20))
        if not chunk:
            raise EOFError
        parts.append(chunk)
        left -= len(chunk)
    return b"".join(parts)


def _socketpair_server(sock: socket.socket) -> None:
    while True:
        (size,) = struct.unpack(">I", _recv_exactly(sock, 4))
        if size == 0:
            break
        sock.sendall(struct.pack(">I", size) + _recv_exactly(sock, size))
    sock.close()


def raw_socketpair(calls: int, payload: bytes) -> list[float]:
    """The kernel floor: a length-prefixed echo over a Unix socketpair to a separate Python
    process (no ZeroMQ, no JSON): the least any transport between two processes can cost."""
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    server = multiprocessing.get_context("spawn").Process(
        target=_socketpair_server, args=(theirs,)
    )
    server.start()
    theirs.close()
    message = struct.pack(">I", len(payload)) + payload

    def once() -> None:
        ours.sendall(message)
        (size,) = struct.unpack(">I", _recv_exactly(ours, 4))
        _recv_exactly(ours, size)

    for _ in range(200):  # warm up
        once()
    samples = []
    for _ in range(calls):
        start = time.perf_counter()
        once()
        samples.append(time.perf_counter() - start)
    ours.sendall(struct.pack(">I", 0))
    server.join(10)
    ours.close()
    return samples


def req_rep_samples(sock: Any, payload: bytes, calls: int, warm: int) -> list[float]:
    """Round trips (s) of ``payload`` through a connected REQ socket, after ``warm`` unmeasured."""
    for _ in range(warm):
        sock.send(payload)
        sock.recv()
    samples = []
    for _ in range(calls):
        start = time.perf_counter()
        sock.send(payload)
        sock.recv()
        samples.append(time.perf_counter() - start)
    return samples


def raw_pyzmq(calls: int, payload: bytes) -> list[float]:
    """REQ/REP over ipc to a separate process echoing bytes: no validation, no JSON."""
    with tempfile.TemporaryDirectory() as tmp:
        endpoint = f"ipc://{tmp}/echo"
        server = multiprocessing.get_context("spawn").Process(target=_echo_server, args=(endpoint,))
        server.start()
        context = zmq.Context()
        socket = context.socket(zmq.REQ)
        socket.connect(endpoint)
        samples = req_rep_samples(socket, payload, calls, warm=200)
        socket.send(b"STOP")
        socket.recv()
        socket.close(linger=0)
        context.term()
        server.join(10)
    return samples


def host_echo(calls: int) -> tuple[list[float], float]:
    """Warm ``host.call`` round trips of ``text.echo``, and add_provider-to-first-result."""
    with Host() as host:
        start = time.perf_counter()
        host.add_provider("providers.examples.text")
        host.call("text.echo", {"value": "hello"})
        first = time.perf_counter() - start
        for _ in range(200):
            host.call("text.echo", {"value": "hello"})
        samples = []
        for _ in range(calls):
            t = time.perf_counter()
            host.call("text.echo", {"value": "hello"})
            samples.append(time.perf_counter() - t)
    return samples, first


def run(calls: int) -> dict[str, Any]:
    raw = raw_pyzmq(calls, json.dumps({"value": "hello"}).encode())
    floor = raw_socketpair(calls, b"hello")
    ours, first = host_echo(calls)
    starts = []
    for _ in range(5):
        _, t = host_echo(1)
        starts.append(t)
    return {
        "machine": f"{os.cpu_count()} cpus, {os.uname().sysname} {os.uname().release}",
        "unix_socketpair_rtt": _summary(floor),
        "raw_pyzmq_rtt": _summary(raw),
        "host_call_rtt": _summary(ours),
        "ratio_median": round(statistics.median(ours) / statistics.median(raw), 2),
        "add_provider_to_first_result_ms": {
            "median": round(statistics.median([*starts, first]) * 1e3, 1),
            "samples": len(starts) + 1,
        },
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=5000, help="round trips per series")
    parser.add_argument("--json", action="store_true", help="print JSON only")
    args = parser.parse_args()
    result = run(args.calls)
    if args.json:
        print(json.dumps(result, indent=2))
        return
    print(f"machine: {result['machine']}")
    for key in ("unix_socketpair_rtt", "raw_pyzmq_rtt", "host_call_rtt"):
        r = result[key]
        print(
            f"{key:<20} median {r['median_us']:>8} us   p99 {r['p99_us']:>8} us"
            f"   n={r['samples']}"
        )
    print(f"host.call / raw pyzmq (median): {result['ratio_median']}x")
    s = result["add_provider_to_first_result_ms"]
    print(f"add_provider -> first result: median {s['median']} ms (n={s['samples']})")


if __name__ == "__main__":
    main()
