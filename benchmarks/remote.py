"""Remote hosts measured side by side on loopback: ``RemoteHost.call`` over TCP with CURVE
against raw pyzmq REQ/REP over TCP with and without CURVE and a local ``Host.call``; and the
throughput of a burst of calls through a ``RemoteHost`` to a server with 2 workers against a
local ``Host`` with 2 workers. Used by ``benchmarks.run`` (the ``remote`` benchmark).

Every server here binds 127.0.0.1.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from concurrent.futures import wait
from pathlib import Path
from typing import Any

import zmq

from benchmarks.core import req_rep_samples
from host import Host, RemoteHost
from host.remote.keys import keygen
from policies import Policy

ECHO = "text.echo"
SMALL = {"value": "hello"}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _raw_server(endpoint: str, secret: bytes | None, public: bytes | None) -> None:
    context = zmq.Context()
    sock = context.socket(zmq.REP)
    if secret is not None:
        sock.curve_server = True
        sock.curve_secretkey, sock.curve_publickey = secret, public
    sock.bind(endpoint)
    while True:
        message = sock.recv()
        sock.send(b"" if message == b"STOP" else message)
        if message == b"STOP":
            break
    sock.close(linger=0)
    context.term()


def raw_tcp(calls: int, payload: bytes, *, curve: bool, warm: int = 100) -> list[float]:
    """REQ/REP round trips over TCP on loopback to another process echoing bytes."""
    endpoint = f"tcp://127.0.0.1:{_free_port()}"
    server_public, server_secret = zmq.curve_keypair() if curve else (None, None)
    server = multiprocessing.get_context("spawn").Process(
        target=_raw_server, args=(endpoint, server_secret, server_public)
    )
    server.start()
    context = zmq.Context()
    sock = context.socket(zmq.REQ)
    if curve:
        sock.curve_serverkey = server_public
        sock.curve_publickey, sock.curve_secretkey = zmq.curve_keypair()
    sock.connect(endpoint)
    try:
        samples = req_rep_samples(sock, payload, calls, warm)
        sock.send(b"STOP")
        sock.recv()
    finally:
        sock.close(linger=0)
        context.term()
        server.join(10)
        if server.is_alive():
            server.kill()
            server.join()
    return samples


@contextlib.contextmanager
def served(workers: int, queue: int) -> Iterator[RemoteHost]:
    """A ``sandbox serve`` of the text provider on 127.0.0.1 and a RemoteHost connected to it."""
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp)
        keygen(base / "keys", "server")
        keygen(base / "keys", "client")
        (base / "auth").mkdir()
        (base / "auth" / "client.key").write_bytes((base / "keys" / "client.key").read_bytes())
        (base / "sandbox.toml").write_text(
            '[providers.text]\nsource = "providers.examples.text"\n'
            f"[providers.text.policy]\nqueue = {queue}\n"
            f"workers = {{ min = {workers}, max = {workers} }}\n"
        )
        endpoint = f"tcp://127.0.0.1:{_free_port()}"
        proc = subprocess.Popen(
            [sys.executable, "-m", "host.cli", "serve", "--bind", endpoint,
             "--config", str(base / "sandbox.toml"),
             "--server-key", str(base / "keys" / "server.key_secret"),
             "--authorized", str(base / "auth"), "--drain-timeout", "5"],
            stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        try:
            assert proc.stderr is not None
            line = proc.stderr.readline()
            if "serving" not in line:
                raise RuntimeError(f"sandbox serve did not start: {line}")
            with RemoteHost(
                endpoint, server_key=base / "keys" / "server.key",
                client_key=base / "keys" / "client.key_secret",
            ) as remote:  # fmt: skip
                yield remote
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def _timed_calls(call: Any, calls: int, warm: int) -> list[float]:
    for _ in range(warm):
        call(ECHO, SMALL)
    samples = []
    for _ in range(calls):
        start = time.perf_counter()
        call(ECHO, SMALL)
        samples.append(time.perf_counter() - start)
    return samples


def rtts(calls: int, warm: int = 100) -> dict[str, list[float]]:
    """Round-trip samples (s): ours over the network and the three references."""
    import json

    payload = json.dumps(SMALL).encode()
    with served(1, 1000) as remote:
        ours = _timed_calls(remote.call, calls, warm)
    with Host() as host:
        host.add_provider("providers.examples.text")
        local = _timed_calls(host.call, calls, warm)
    return {
        "ours": ours,
        "raw pyzmq TCP+CURVE": raw_tcp(calls, payload, curve=True, warm=warm),
        "raw pyzmq TCP": raw_tcp(calls, payload, curve=False, warm=warm),
        "local Host.call": local,
    }


def _burst(submit: Any, n: int) -> float:
    start = time.perf_counter()
    futures = [submit(ECHO, SMALL) for _ in range(n)]
    wait(futures)
    elapsed = time.perf_counter() - start
    for future in futures:
        future.result()
    return n / elapsed


def throughputs(n: int, runs: int) -> dict[str, list[float]]:
    """Calls/s of bursts of ``n`` calls at once, 2 workers, remote and local."""
    results: dict[str, list[float]] = {"ours": [], "local Host": []}
    for _ in range(runs):
        with served(2, n) as remote:
            for _ in range(50):
                remote.call(ECHO, SMALL)
            results["ours"].append(_burst(remote.submit, n))
        with Host() as host:
            host.add_provider(
                "providers.examples.text", policy=Policy(workers={"min": 2, "max": 2}, queue=n)
            )
            for _ in range(50):
                host.call(ECHO, SMALL)
            results["local Host"].append(_burst(host.submit, n))
    return results


if __name__ == "__main__":
    import statistics

    calls = int(sys.argv[1]) if len(sys.argv) > 1 else 1000
    for name, samples in rtts(calls).items():
        print(f"rtt {name}: median {statistics.median(samples) * 1e3:.3f} ms")
    for name, rates in throughputs(10_000, 1).items():
        print(f"throughput {name}: {statistics.median(rates):,.0f} calls/s")
