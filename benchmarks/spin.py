"""Why the host and the worker poll for a reply before they block: the cost of waking a thread.

    python -m benchmarks.spin [--calls N] [--rounds R] [--work US]

Two Python processes ping-pong 100 bytes over a Unix socketpair; each side either blocks in
``recv`` or polls with ``MSG_DONTWAIT`` (and ``sched_yield``) until the message is there. The
server may do ``--work`` microseconds of busy work per message, like a small action. Printed
per variant: the median round trip over the rounds, and the client's CPU per round trip.

On the 2-vCPU virtual machine this project is measured on, a side that blocks lets its vCPU go
idle, and the wake-up (an inter-processor interrupt through the hypervisor) costs tens of
microseconds, paid partly by the waker inside its ``send``: blocking on both sides took 50-116
us per round trip against 12-13 us with both polling (run this for today.s figures
). ``sandbox.wire`` (the worker) and ``host.reactor`` (``REPLY_SPIN_S``: the loop, or a
caller reading its own reply) poll for a bounded time for that reason; past it they block.
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import time

VARIANTS = (
    ("both block", False, False),
    ("client polls", True, False),
    ("server polls", False, True),
    ("both poll", True, True),
)


def _receive(sock: socket.socket, poll: bool) -> bytes:
    if not poll:
        return sock.recv(65536)
    while True:
        try:
            return sock.recv(65536, socket.MSG_DONTWAIT)
        except BlockingIOError:
            os.sched_yield()


def _busy(seconds: float) -> None:
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        pass


def round_trips(
    calls: int, client_polls: bool, server_polls: bool, work_s: float
) -> tuple[float, float]:
    """Median round trip and the client's CPU per round trip, in microseconds."""
    client, server = socket.socketpair()
    pid = os.fork()
    if pid == 0:  # the server: echo until end of file
        client.close()
        try:
            while data := _receive(server, server_polls):
                _busy(work_s)
                server.sendall(data)
        finally:
            os._exit(0)
    server.close()
    samples = []
    cpu = time.thread_time()
    try:
        for _ in range(calls):
            started = time.perf_counter()
            client.sendall(b"x" * 100)
            _receive(client, client_polls)
            samples.append(time.perf_counter() - started)
    finally:
        cpu = time.thread_time() - cpu
        client.close()
        os.waitpid(pid, 0)
    return statistics.median(samples) * 1e6, cpu / calls * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=5000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--work", type=float, default=0.0, help="server work per message, us")
    args = parser.parse_args()
    figures: dict[str, list[tuple[float, float]]] = {name: [] for name, _, _ in VARIANTS}
    for _ in range(args.rounds):
        for name, client_polls, server_polls in VARIANTS:
            figures[name].append(
                round_trips(args.calls, client_polls, server_polls, args.work / 1e6)
            )
    print(f"{'variant':<14} {'median us':>10} {'client CPU us':>14}  (server work {args.work:g})")
    for name, runs in figures.items():
        rtt = statistics.median(r for r, _ in runs)
        cpu = statistics.median(c for _, c in runs)
        print(f"{name:<14} {rtt:>10.1f} {cpu:>14.1f}")


if __name__ == "__main__":
    main()
