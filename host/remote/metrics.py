"""Prometheus metrics of ``sandbox serve --metrics ADDR:PORT`` (with ``prometheus_client``).

Counters and the latency histogram are updated as outcomes are sent; what the host's loop
knows (workers by state, queue length, restarts) is read from ``Host.stats()`` at each scrape
by a collector, so a gauge can never drift from the host's own accounting.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from host.errors import Outcome

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)


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
        self._server: Any = None

    def record(self, provider: str, action: str, outcome: Outcome) -> None:
        name = "ok" if outcome.ok else outcome.error.type if outcome.error else "?"
        self.calls.labels(provider, action, name).inc()
        self.latency.labels(provider, action).observe(outcome.usage.wall_s)

    def serve(self, address: str, port: int) -> None:
        """Serve ``/metrics`` over HTTP; ``OSError`` if the port is taken."""
        self._server, _ = start_http_server(port, addr=address, registry=self.registry)

    def close(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
