"""Per-provider counters for ``host.stats()``: kept by the host's loop, read as a snapshot."""

from __future__ import annotations

from collections import Counter, deque
from dataclasses import dataclass, field
from typing import Any

from host.errors import Outcome

#: Latency percentiles are computed over this many most recent calls.
LATENCY_WINDOW = 2048


def _percentile(ordered: list[float], q: float) -> float:
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else 0.0


@dataclass
class ProviderStats:
    outcomes: Counter[str] = field(default_factory=Counter)
    latencies: deque[float] = field(default_factory=lambda: deque(maxlen=LATENCY_WINDOW))
    dispatched: int = 0
    restarts: int = 0
    failed_starts: int = 0
    retries: int = 0
    recycled: int = 0
    hung: int = 0

    def record(self, outcome: Outcome) -> None:
        self.outcomes["ok" if outcome.ok else outcome.error.type if outcome.error else "?"] += 1
        self.latencies.append(outcome.usage.wall_s)

    def snapshot(self, **extra: Any) -> dict[str, Any]:
        ordered = sorted(self.latencies)
        return {
            "calls": dict(self.outcomes),
            "latency_p50_s": _percentile(ordered, 0.50),
            "latency_p99_s": _percentile(ordered, 0.99),
            "restarts": self.restarts,
            "failed_starts": self.failed_starts,
            "retries": self.retries,
            "recycled": self.recycled,
            "hung": self.hung,
            **extra,
        }
