"""Prometheus metrics of ``sandbox serve --metrics ADDR:PORT`` (with ``prometheus_client``).

Counters and the latency histogram are updated as outcomes are sent; what the host's loop
knows (workers by state, queue length, restarts) is read from ``Host.stats()`` at each scrape
by a collector, so a gauge can never drift from the host's own accounting.

The exposition is prometheus_client's (``make_wsgi_app``), but not its HTTP server: that one
starts a thread per connection and never times one out, so anyone who can reach the port could
hold as many threads of the server's process as they opened connections (300 idle connections
were 300 threads, for as long as the peer liked; a pids limit reached that way also stops the
host starting workers). :class:`BoundedMetricsServer` serves at most
:data:`MAX_METRICS_CONNECTIONS` connections at once (:data:`MAX_METRICS_PER_ADDRESS` per
client address), closes any beyond them at once, and cuts each off
:data:`METRICS_CONNECTION_S` after it was accepted, whatever it is doing.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Callable, Iterator
from socketserver import ThreadingMixIn
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer

from prometheus_client import CollectorRegistry, Counter, Histogram, make_wsgi_app
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from host.errors import Outcome
from host.remote.connections import address_key

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)

#: Connections to the metrics port served at once (a thread each), and per client address: a
#: scraper needs one; a connection beyond either bound is closed as soon as it is accepted.
MAX_METRICS_CONNECTIONS = 16
MAX_METRICS_PER_ADDRESS = 4
#: Longest a connection lives, from its accept to the end of its response (Prometheus's
#: default scrape timeout is 10 s): an idle or trickling one is shut down then.
METRICS_CONNECTION_S = 10.0
#: Longest one read or write on a connection may wait.
METRICS_IO_TIMEOUT_S = 5.0


class _QuietHandler(WSGIRequestHandler):
    timeout = METRICS_IO_TIMEOUT_S  # (StreamRequestHandler applies it to the socket)

    def log_message(self, format: str, *args: Any) -> None:
        pass  # one line per scrape would drown the server's own log


class BoundedMetricsServer(ThreadingMixIn, WSGIServer):
    """A WSGI server with a thread per connection, for at most a bounded number of
    connections, each for at most :data:`METRICS_CONNECTION_S` (see the module's notes)."""

    daemon_threads = True
    block_on_close = False

    def __init__(self, address: tuple[str, int], family: socket.AddressFamily) -> None:
        self.address_family = family
        #: Open connections (at most MAX_METRICS_CONNECTIONS): when each was accepted, and
        #: the address it counts under (``address_key``: an IPv6 peer's /64).
        self._open: dict[socket.socket, tuple[float, str]] = {}
        self._open_lock = threading.Lock()
        super().__init__(address, _QuietHandler)

    def verify_request(self, request: Any, client_address: Any) -> bool:
        peer = address_key(client_address)
        with self._open_lock:
            of_peer = sum(1 for _, key in self._open.values() if key == peer)
            if len(self._open) >= MAX_METRICS_CONNECTIONS or of_peer >= MAX_METRICS_PER_ADDRESS:
                return False  # (socketserver then closes it)
            self._open[request] = (time.monotonic(), peer)
        return True

    def shutdown_request(self, request: Any) -> None:
        with self._open_lock:
            self._open.pop(request, None)
        super().shutdown_request(request)

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A connection that failed (a peer that hung up, one shut down as overdue): not
        logged. socketserver printed a traceback for each to stderr: four idle connections
        wrote 408 lines in 30 s, without bound; the figures a scrape reads say nothing of
        its own connection's troubles."""

    def service_actions(self) -> None:
        """Called by ``serve_forever`` every poll interval: shut down overdue connections
        (their thread's blocked read or write then returns, and the thread ends)."""
        now = time.monotonic()
        with self._open_lock:
            overdue = [s for s, (t, _) in self._open.items() if now - t > METRICS_CONNECTION_S]
        for request in overdue:
            with contextlib.suppress(OSError):
                request.shutdown(socket.SHUT_RDWR)


def serve_metrics(
    registry: CollectorRegistry, address: str, port: int
) -> tuple[BoundedMetricsServer, threading.Thread]:
    """Serve ``registry`` at ``http://address:port/metrics`` from a daemon thread; ``OSError``
    if the address cannot be bound."""
    family = socket.getaddrinfo(address, port, type=socket.SOCK_STREAM)[0][0]
    server = BoundedMetricsServer((address, port), family)
    server.set_app(make_wsgi_app(registry))
    thread = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.5}, name="sandbox-metrics",
        daemon=True,
    )  # fmt: skip
    thread.start()
    return server, thread


class _HostCollector(Collector):
    def __init__(self, stats: Callable[[], dict[str, Any]]) -> None:
        self._stats = stats

    def collect(self) -> Iterator[Metric]:
        workers = GaugeMetricFamily(
            "sandbox_workers", "Workers by provider and state", labels=["provider", "state"]
        )
        queue = GaugeMetricFamily(
            "sandbox_queue_length", "Calls waiting for a worker", labels=["provider"]
        )
        restarts = CounterMetricFamily(
            "sandbox_worker_restarts", "Workers restarted after dying", labels=["provider"]
        )
        try:
            stats = self._stats()
        except Exception:  # a closing host: no samples rather than a failed scrape
            stats = {}
        for provider, entry in stats.items():
            for state, count in entry.get("workers", {}).items():
                workers.add_metric([provider, state], float(count))
            queue.add_metric([provider], float(entry.get("queue", 0)))
            restarts.add_metric([provider], float(entry.get("restarts", 0)))
        yield workers
        yield queue
        yield restarts


class Metrics:
    """The server's metrics, in a registry of their own (not the process-global one)."""

    def __init__(self, stats: Callable[[], dict[str, Any]]) -> None:
        self.registry = CollectorRegistry()
        self.calls = Counter(
            "sandbox_calls", "Calls answered, by outcome",
            ["provider", "action", "outcome"], registry=self.registry,
        )  # fmt: skip
        self.latency = Histogram(
            "sandbox_call_duration_seconds", "Wall time of answered calls (host clock)",
            ["provider", "action"], buckets=LATENCY_BUCKETS, registry=self.registry,
        )  # fmt: skip
        self.refused = Counter(
            "sandbox_refused_connections", "Connections whose client key was refused",
            registry=self.registry,
        )  # fmt: skip
        self.closed_at_bounds = Counter(
            "sandbox_connections_closed_at_bounds",
            "Connections the server closed at its bounds (host.remote.connections)",
            registry=self.registry,
        )
        self.registry.register(_HostCollector(stats))
        self._server: BoundedMetricsServer | None = None

    def record(self, provider: str, action: str, outcome: Outcome) -> None:
        name = "ok" if outcome.ok else outcome.error.type if outcome.error else "?"
        self.calls.labels(provider, action, name).inc()
        self.latency.labels(provider, action).observe(outcome.usage.wall_s)

    def serve(self, address: str, port: int) -> None:
        """Serve ``/metrics`` over HTTP; ``OSError`` if the port is taken."""
        self._server, _ = serve_metrics(self.registry, address, port)

    def close(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
