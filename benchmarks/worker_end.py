"""The worker end of the wire: pyzmq DEALER or our own ZMTP codec? Measured side by side.

    python -m benchmarks.worker_end [--calls N] [--rounds R] [--kill-trials K] [--json]

Between two real Python processes on this machine, the round trip of a small call's message
(a real CALL from ``sandbox.protocol.encode_call``, echoed back frame for frame and checked):

a. ``pyzmq DEALER``: the host side is :mod:`host.zmtp` over an ``AF_UNIX`` stream socket (as
   ``host.transport`` does), the worker side a pyzmq DEALER connecting over ``ipc://`` with the
   options ``sandbox.worker`` set before the switch (the old design);
b. ``codec socketpair``: the same host side; the worker side is the same codec, playing DEALER,
   over an inherited socketpair with blocking ``sendall``/``recv`` (the chosen design:
   ``sandbox.wire`` does this over a connected Unix socket, the same kernel path);
c. ``raw socketpair``: the kernel floor, length-prefixed bytes over a socketpair;
d. ``raw pyzmq REQ/REP``: over ipc, one frame of the same size (issue 10's reference).

Per variant: median and p99 round trip, its ratio to (c) and (d), and the CPU time of the worker
process per round trip (``time.process_time``: every thread, libzmq's I/O thread included) and
of its main thread alone (``time.thread_time``), and the host process's. The rounds alternate
the order of the variants.

Whether a worker's write reaches the kernel synchronously is measured too: a worker forked per
trial receives one CALL, sends its reply and SIGKILLs itself the instant the send returns; the host
counts the replies that arrive. A write that is in the kernel when ``send`` returns always
arrives; a write still queued for libzmq's I/O thread dies with the process.

The host side reads with blocking ``recv`` in (a) and (b) alike (the production host reads from
its loop; that cost is the same for both worker ends and is not what is compared here).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import time
import traceback
from collections import deque
from collections.abc import Callable
from multiprocessing import reduction
from multiprocessing.connection import Connection as Pipe
from typing import Any

import zmq

from host import zmtp
from sandbox import protocol

VARIANTS = ("pyzmq DEALER", "codec socketpair", "raw socketpair", "raw pyzmq REQ/REP")
FLOOR, REFERENCE = "raw socketpair", "raw pyzmq REQ/REP"
WARM = 200
#: The host's budget for one worker message (the default policy's output plus the envelope).
BUDGET = 1024 * 1024 + 64 * 1024
IDENTITY = b"w-bench"
_LEN = struct.Struct(">I")


def calls_frames(count: int) -> list[list[bytes]]:
    """``count`` small CALLs, each with its own call id (so an echo is checked call by call)."""
    value = protocol.dumps({"value": "hello"})
    return [protocol.encode_call(f"c{i:09d}", "echo", value) for i in range(count)]


# ------------------------------------------------------------------ the worker's side


def _cpu() -> tuple[float, float]:
    """(process CPU seconds, every thread; this thread's CPU seconds), in nanoseconds' precision
    (``os.times`` counts clock ticks of 10 ms)."""
    return time.process_time(), time.thread_time()


def _report(pipe: Pipe, start: tuple[float, float], served: int) -> None:
    end = _cpu()
    pipe.send(
        {"process_cpu_s": end[0] - start[0], "main_thread_cpu_s": end[1] - start[1],
         "served": served}
    )  # fmt: skip


def _dealer_options(sock: zmq.Socket[bytes]) -> None:
    """What ``sandbox.worker._connect`` sets."""
    sock.setsockopt(zmq.IDENTITY, IDENTITY)
    sock.setsockopt(zmq.LINGER, 2000)
    sock.setsockopt(zmq.SNDHWM, 16)
    sock.setsockopt(zmq.RCVHWM, 16)
    sock.setsockopt(zmq.IMMEDIATE, 1)


def _worker_dealer(endpoint: str, total: int, warm: int, pipe: Pipe) -> None:
    context = zmq.Context(io_threads=1)
    sock = context.socket(zmq.DEALER)
    _dealer_options(sock)
    sock.connect(endpoint)
    start = _cpu()
    for i in range(total):
        if i == warm:
            start = _cpu()
        frames = sock.recv_multipart()
        sock.send_multipart(frames)  # as Worker.send: copy=True below 64 KiB
    _report(pipe, start, total - warm)
    sock.close()
    context.term()


def _worker_codec(sock: socket.socket, total: int, warm: int, pipe: Pipe) -> None:
    pending: deque[list[bytes]] = deque()
    codec = _worker_codec_handshake(sock, pending)
    start = _cpu()
    for i in range(total):
        if i == warm:
            start = _cpu()
        frames = _next_message(sock, codec, pending)
        sock.sendall(codec.send_message(frames))
    _report(pipe, start, total - warm)
    sock.close()


def _worker_codec_handshake(
    sock: socket.socket, pending: deque[list[bytes]]
) -> zmtp.Connection:
    codec = zmtp.Connection(
        budget=protocol.largest_call(1024 * 1024), socket_type=b"DEALER",
        peer_types=frozenset({b"ROUTER"}), identity=IDENTITY, max_frames=3,
    )  # fmt: skip
    sock.sendall(codec.data_to_send())
    _await(sock, codec, pending)
    return codec


def _recv_exactly(sock: socket.socket, size: int) -> bytes:
    parts, left = [], size
    while left:
        chunk = sock.recv(left)
        if not chunk:
            raise EOFError
        parts.append(chunk)
        left -= len(chunk)
    return b"".join(parts)


def _worker_raw(sock: socket.socket, total: int, warm: int, pipe: Pipe) -> None:
    start = _cpu()
    for i in range(total):
        if i == warm:
            start = _cpu()
        (size,) = _LEN.unpack(_recv_exactly(sock, 4))
        sock.sendall(_LEN.pack(size) + _recv_exactly(sock, size))
    _report(pipe, start, total - warm)
    sock.close()


def _worker_rep(endpoint: str, total: int, warm: int, pipe: Pipe) -> None:
    context = zmq.Context(io_threads=1)
    sock = context.socket(zmq.REP)
    sock.bind(endpoint)
    pipe.send("bound")
    start = _cpu()
    for i in range(total):
        if i == warm:
            start = _cpu()
        sock.send(sock.recv())
    _report(pipe, start, total - warm)
    sock.close(linger=0)
    context.term()


# ------------------------------------------------------------------ the host's side


def _await(sock: socket.socket, codec: zmtp.Connection, pending: deque[list[bytes]]) -> None:
    """Read until the peer's READY; messages that came in the same read go to ``pending``."""
    done = False
    while not done:
        data = sock.recv(65536)
        for event in codec.receive_data(data):
            if isinstance(event, zmtp.HandshakeComplete):
                done = True
            elif isinstance(event, zmtp.Message) and done:
                pending.append(event.frames)
            else:
                raise RuntimeError(f"unexpected {event!r}")


def _next_message(
    sock: socket.socket, codec: zmtp.Connection, pending: deque[list[bytes]]
) -> list[bytes]:
    while not pending:
        data = sock.recv(65536)
        for event in codec.receive_data(data):
            if isinstance(event, zmtp.Message):
                pending.append(event.frames)
            elif isinstance(event, zmtp.ConnectionClosed):
                raise EOFError("the peer closed the connection")
            else:
                raise RuntimeError(f"unexpected {event!r}")
    return pending.popleft()


def _host_codec() -> zmtp.Connection:
    return zmtp.Connection(budget=BUDGET, peer_identity=IDENTITY, max_frames=2)


def _timed(messages: list[Any], once: Callable[[Any], None]) -> tuple[list[float], float]:
    """Warm-up, then one sample per message; and the host process's CPU over the samples."""
    for message in messages[:WARM]:
        once(message)
    samples = []
    cpu0 = time.process_time()
    for message in messages[WARM:]:
        t = time.perf_counter()
        once(message)
        samples.append(time.perf_counter() - t)
    return samples, time.process_time() - cpu0


def _codec_round_trips(
    sock: socket.socket, messages: list[list[bytes]]
) -> tuple[list[float], float]:
    codec = _host_codec()
    sock.sendall(codec.data_to_send())
    pending: deque[list[bytes]] = deque()
    _await(sock, codec, pending)

    def once(frames: list[bytes]) -> None:
        sock.sendall(codec.send_message(frames))
        if _next_message(sock, codec, pending) != frames:
            raise AssertionError("the echo differs from the CALL")

    return _timed(messages, once)


#: Where a socket stood in a worker's arguments (its descriptor travels on its own).
_FD = "<inherited socket>"


class Launcher:
    """A clean process (it imports what the workers need and creates no ZeroMQ context) that
    forks one worker per variant, as the host's zygote forks its workers: a fresh interpreter
    per variant would cost seconds of imports on this machine, a fork costs milliseconds."""

    def __init__(self) -> None:
        # A plain subprocess, not multiprocessing's: no resource tracker outlives the run.
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        self.process = subprocess.Popen(
            [sys.executable, "-m", "benchmarks.worker_end", "--launcher-fd", str(theirs.fileno())],
            pass_fds=(theirs.fileno(),),
            cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
        )
        theirs.close()
        self._sock = ours
        self.pipe = Pipe(ours.fileno())

    def start(self, target: Callable[..., None], *args: Any) -> Pipe:
        """Fork a worker running ``target(*args, pipe)``; sockets in ``args`` (or in a list
        there) are passed by descriptor and stand for the worker's inherited end."""
        fds: list[int] = []

        def strip(value: Any) -> Any:
            if isinstance(value, socket.socket):
                fds.append(value.fileno())
                return _FD
            if isinstance(value, list):
                return [strip(v) for v in value]
            return value

        plain = [strip(a) for a in args]
        self.pipe.send((target.__name__, plain, len(fds)))
        for fd in fds:
            reduction.send_handle(self.pipe, fd, self.process.pid)
        return self.pipe

    def close(self) -> None:
        self.pipe.send(None)
        self.process.wait(10)
        self.pipe.close()
        self._sock.detach()


def _launcher(pipe: Pipe) -> None:
    while (order := pipe.recv()) is not None:
        name, args, count = order
        socks = [
            socket.socket(socket.AF_UNIX, socket.SOCK_STREAM, fileno=reduction.recv_handle(pipe))
            for _ in range(count)
        ]
        args = _fill(args, deque(socks))
        child = os.fork()
        if child == 0:
            code = 1
            try:
                globals()[name](*args, pipe)
                code = 0
            except BaseException:
                traceback.print_exc()
            finally:
                os._exit(code)
        for sock in socks:
            sock.close()
        os.waitpid(child, 0)


def _fill(value: Any, socks: deque[socket.socket]) -> Any:
    """``value`` with each ``_FD`` replaced by the next of ``socks``."""
    if value == _FD:
        return socks.popleft()
    if isinstance(value, list):
        return [_fill(v, socks) for v in value]
    return value


_LAUNCHER: Launcher | None = None


def _spawn(target: Callable[..., None], *args: Any) -> tuple[None, Pipe]:
    assert _LAUNCHER is not None, "run() starts the launcher"
    return None, _LAUNCHER.start(target, *args)


def _finish(process: None, pipe: Pipe) -> dict[str, Any]:
    report: dict[str, Any] = pipe.recv()
    return report


def variant_dealer(messages: list[list[bytes]]) -> tuple[list[float], float, dict[str, Any]]:
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "w")
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        listener.bind(path)
        listener.listen(1)
        process, pipe = _spawn(_worker_dealer, f"ipc://{path}", len(messages), WARM)
        sock, _ = listener.accept()
        listener.close()
        samples, host_cpu = _codec_round_trips(sock, messages)
        report = _finish(process, pipe)
        sock.close()
    return samples, host_cpu, report


def variant_codec(messages: list[list[bytes]]) -> tuple[list[float], float, dict[str, Any]]:
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    process, pipe = _spawn(_worker_codec, theirs, len(messages), WARM)
    theirs.close()
    samples, host_cpu = _codec_round_trips(ours, messages)
    report = _finish(process, pipe)
    ours.close()
    return samples, host_cpu, report


def variant_raw(messages: list[list[bytes]]) -> tuple[list[float], float, dict[str, Any]]:
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    process, pipe = _spawn(_worker_raw, theirs, len(messages), WARM)
    theirs.close()

    def once(wire: bytes) -> None:
        ours.sendall(_LEN.pack(len(wire)) + wire)
        (size,) = _LEN.unpack(_recv_exactly(ours, 4))
        if _recv_exactly(ours, size) != wire:
            raise AssertionError("the echo differs from the CALL")

    samples, host_cpu = _timed([zmtp.encode_message(m) for m in messages], once)
    report = _finish(process, pipe)
    ours.close()
    return samples, host_cpu, report


def variant_reqrep(messages: list[list[bytes]]) -> tuple[list[float], float, dict[str, Any]]:
    with tempfile.TemporaryDirectory() as tmp:
        endpoint = f"ipc://{tmp}/echo"
        process, pipe = _spawn(_worker_rep, endpoint, len(messages), WARM)
        if pipe.recv() != "bound":
            raise RuntimeError("the REP worker did not bind")
        context = zmq.Context(io_threads=1)
        sock = context.socket(zmq.REQ)
        sock.connect(endpoint)

        def once(wire: bytes) -> None:
            sock.send(wire)
            if sock.recv() != wire:
                raise AssertionError("the echo differs from the CALL")

        samples, host_cpu = _timed([zmtp.encode_message(m) for m in messages], once)
        report = _finish(process, pipe)
        sock.close(linger=0)
        context.term()
    return samples, host_cpu, report


RUNNERS = {
    "pyzmq DEALER": variant_dealer,
    "codec socketpair": variant_codec,
    "raw socketpair": variant_raw,
    "raw pyzmq REQ/REP": variant_reqrep,
}


# ------------------------------------------------------------------ kill right after send


def _kill_worker(kind: str, ends: list[Any], pipe: Pipe) -> None:
    """Per trial a fresh child (no ZeroMQ context exists before the fork): one CALL in, the
    reply out, SIGKILL the moment the send returns."""
    for end in ends:
        child = os.fork()
        if child == 0:
            try:
                if kind == "pyzmq DEALER":
                    context = zmq.Context(io_threads=1)
                    sock = context.socket(zmq.DEALER)
                    _dealer_options(sock)
                    sock.connect(end)
                    sock.send_multipart(sock.recv_multipart())
                else:
                    pending: deque[list[bytes]] = deque()
                    codec = _worker_codec_handshake(end, pending)
                    frames = _next_message(end, codec, pending)
                    end.sendall(codec.send_message(frames))
                os.kill(os.getpid(), signal.SIGKILL)
            finally:
                os._exit(1)
        os.waitpid(child, 0)
        if not isinstance(end, str):
            end.close()
    pipe.send("done")


def kill_after_send(kind: str, trials: int) -> dict[str, int]:
    """Replies that reached the host out of ``trials`` workers killed right after sending."""
    message = calls_frames(1)[0]
    with tempfile.TemporaryDirectory() as tmp:
        hosts: list[Any] = []
        ends: list[Any] = []
        for i in range(trials):
            if kind == "pyzmq DEALER":
                listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                listener.bind(os.path.join(tmp, f"w{i}"))
                listener.listen(1)
                hosts.append(listener)
                ends.append(f"ipc://{tmp}/w{i}")
            else:
                ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
                hosts.append(ours)
                ends.append(theirs)
        _, pipe = _spawn(_kill_worker, kind, ends)
        for end in ends:
            if not isinstance(end, str):
                end.close()
        arrived = 0
        for host in hosts:
            sock = host
            if kind == "pyzmq DEALER":
                sock, _ = host.accept()
                host.close()
            codec = _host_codec()
            sock.sendall(codec.data_to_send())
            pending: deque[list[bytes]] = deque()
            _await(sock, codec, pending)
            sock.sendall(codec.send_message(message))
            try:
                arrived += _next_message(sock, codec, pending) == message
            except EOFError:
                pass
            sock.close()
        if pipe.recv() != "done":
            raise RuntimeError("the kill worker did not finish")
    return {"trials": trials, "replies_arrived": arrived}


# ------------------------------------------------------------------ the run


_KEYS = (
    "median_us", "p99_us", "x_floor", "x_reqrep", "worker_cpu_us_per_rt",
    "worker_main_thread_cpu_us_per_rt", "host_cpu_us_per_rt",
)  # fmt: skip


def _us(seconds: float) -> float:
    return round(seconds * 1e6, 1)


def _summary(samples: list[float], host_cpu: float, report: dict[str, Any]) -> dict[str, Any]:
    n = len(samples)
    ordered = sorted(samples)
    return {
        "median_us": _us(statistics.median(samples)),
        "p99_us": _us(ordered[min(n - 1, int(0.99 * n))]),
        "samples": n,
        "verified": n,  # every echo was compared with its CALL (a mismatch raises)
        "worker_cpu_us_per_rt": _us(report["process_cpu_s"] / report["served"]),
        "worker_main_thread_cpu_us_per_rt": _us(report["main_thread_cpu_s"] / report["served"]),
        "host_cpu_us_per_rt": _us(host_cpu / n),
        "worker_served": report["served"],
    }


def run(calls: int, rounds: int = 3, kill_trials: int = 20) -> dict[str, Any]:
    global _LAUNCHER
    _LAUNCHER = Launcher()
    try:
        return _run(calls, rounds, kill_trials)
    finally:
        _LAUNCHER.close()
        _LAUNCHER = None


def _run(calls: int, rounds: int, kill_trials: int) -> dict[str, Any]:
    messages = calls_frames(WARM + calls)
    result: dict[str, Any] = {
        "machine": f"{os.cpu_count()} cpus, {os.uname().sysname} {os.uname().release}",
        "zmq": f"libzmq {zmq.zmq_version()}, pyzmq {zmq.__version__}",
        "message_bytes": len(zmtp.encode_message(messages[0])),
        "rounds": [],
    }
    for index in range(rounds):
        order = VARIANTS if index % 2 == 0 else VARIANTS[::-1]
        figures = {name: _summary(*RUNNERS[name](messages)) for name in order}
        for row in figures.values():
            row["x_floor"] = round(row["median_us"] / figures[FLOOR]["median_us"], 2)
            row["x_reqrep"] = round(row["median_us"] / figures[REFERENCE]["median_us"], 2)
        result["rounds"].append({"order": list(order), "figures": figures})
    result["median_of_rounds"] = {
        name: {
            key: round(statistics.median(r["figures"][name][key] for r in result["rounds"]), 2)
            for key in _KEYS
        }
        for name in VARIANTS
    }
    result["kill_after_send"] = {
        name: kill_after_send(name, kill_trials) for name in ("pyzmq DEALER", "codec socketpair")
    }
    return result


def _print(result: dict[str, Any]) -> None:
    print(f"machine: {result['machine']}; {result['zmq']}; message {result['message_bytes']} B")
    header = (
        f"{'variant':<20}{'median us':>10}{'p99 us':>9}{'x floor':>9}{'x REQ/REP':>10}"
        f"{'wrk CPU/rt':>11}{'wrk main':>9}{'host CPU':>9}"
    )
    rows = [(f"round {i + 1} ({', '.join(r['order'])})", r["figures"])
            for i, r in enumerate(result["rounds"])]  # fmt: skip
    rows.append(("median of rounds (us)", result["median_of_rounds"]))
    for title, figures in rows:
        print(f"\n{title}\n{header}")
        for name in VARIANTS:
            f = figures[name]
            print(
                f"{name:<20}{f['median_us']:>10}{f['p99_us']:>9}{f['x_floor']:>9}"
                f"{f['x_reqrep']:>10}{f['worker_cpu_us_per_rt']:>11}"
                f"{f['worker_main_thread_cpu_us_per_rt']:>9}{f['host_cpu_us_per_rt']:>9}"
            )
    print("\nworker SIGKILLed right after its send returned: replies that reached the host")
    for name, k in result["kill_after_send"].items():
        print(f"  {name:<20}{k['replies_arrived']}/{k['trials']}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=5000, help="round trips per series")
    parser.add_argument("--rounds", type=int, default=3, help="rounds, alternating the order")
    parser.add_argument("--kill-trials", type=int, default=20, help="workers killed after send")
    parser.add_argument("--json", action="store_true", help="print JSON only")
    parser.add_argument("--launcher-fd", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.launcher_fd is not None:
        _launcher(Pipe(args.launcher_fd))
        return
    result = run(args.calls, args.rounds, args.kill_trials)
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        _print(result)


if __name__ == "__main__":
    main()
