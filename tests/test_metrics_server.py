"""The metrics port's HTTP server (host.remote.metrics.BoundedMetricsServer), with real
sockets: a scrape is served, connections beyond its bounds are closed at once, and one that
trickles its request is cut off at its deadline rather than holding a thread for ever."""

from __future__ import annotations

import socket
import time
import urllib.request
from collections.abc import Iterator

import pytest
from prometheus_client import CollectorRegistry, Counter
from prometheus_client.parser import text_string_to_metric_families

from host.remote import metrics
from host.remote.metrics import MAX_METRICS_PER_ADDRESS, serve_metrics


@pytest.fixture
def served() -> Iterator[int]:
    registry = CollectorRegistry()
    Counter("probe", "A counter", registry=registry).inc(3)
    server, thread = serve_metrics(registry, "127.0.0.1", 0)
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)
        assert not thread.is_alive()


def _closed_by_server(conn: socket.socket, within: float) -> bool:
    """Whether the server closes ``conn`` within ``within`` seconds (EOF or a reset)."""
    conn.settimeout(within)
    try:
        return conn.recv(1) == b""
    except TimeoutError:
        return False
    except ConnectionError:
        return True


def test_a_scrape_is_served(served: int) -> None:
    text = urllib.request.urlopen(f"http://127.0.0.1:{served}/metrics", timeout=10).read()
    values = {s.name: s.value for f in text_string_to_metric_families(text.decode())
              for s in f.samples}  # fmt: skip
    assert values["probe_total"] == 3


def test_connections_beyond_the_per_address_bound_are_closed_at_once(served: int) -> None:
    conns = [socket.create_connection(("127.0.0.1", served), timeout=5) for _ in range(10)]
    try:
        time.sleep(0.5)
        closed = sum(_closed_by_server(c, 0.5) for c in conns)
        assert closed == len(conns) - MAX_METRICS_PER_ADDRESS
    finally:
        for conn in conns:
            conn.close()


def test_a_trickling_request_is_cut_off_at_its_deadline(
    served: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(metrics, "METRICS_CONNECTION_S", 1.0)
    conn = socket.create_connection(("127.0.0.1", served), timeout=5)
    try:
        conn.sendall(b"GET /metrics HTTP/1.1\r\nX-Slow: ")
        started = time.monotonic()
        cut = False
        while not cut and time.monotonic() - started < 20:  # (each byte within the IO timeout)
            try:
                conn.sendall(b"a")
            except OSError:
                cut = True
                break
            cut = _closed_by_server(conn, 0.3)
        assert cut, "a connection trickling its headers was never cut off"
        # After the cut its slot is free again: a scrape is served.
        urllib.request.urlopen(f"http://127.0.0.1:{served}/metrics", timeout=10).read()
    finally:
        conn.close()
