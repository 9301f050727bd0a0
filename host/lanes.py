"""Per-provider background threads for work whose cost a provider controls.

The loop thread supervises every provider; work proportional to what one provider sent (applying
its output schema to a large result, checking its catalog) runs on that provider's *lane*
instead: a thread that runs the provider's jobs one after another, started on demand and ended
after a short idle time. One provider's slow jobs queue behind each other and delay nobody else.
A job reports back to the loop through ``Reactor.submit``.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from collections.abc import Callable

from host.logs import LOGGER

log = logging.getLogger(f"{LOGGER}.{__name__}")

#: How long an idle lane's thread waits for another job before it ends.
LANE_IDLE_S = 2.0


class Lane:
    """Runs jobs one after another on a thread of its own, while there are any."""

    def __init__(self, name: str) -> None:
        self._name = name
        self._jobs: deque[Callable[[], object]] = deque()
        self._ready = threading.Condition(threading.Lock())
        self._running = False

    def submit(self, job: Callable[[], object]) -> None:
        with self._ready:
            self._jobs.append(job)
            if self._running:
                self._ready.notify()
                return
            self._running = True
        threading.Thread(target=self._run, name=self._name, daemon=True).start()

    def _run(self) -> None:
        while True:
            with self._ready:
                if not self._jobs:
                    self._ready.wait(LANE_IDLE_S)
                if not self._jobs:
                    self._running = False
                    return
                job = self._jobs.popleft()
            try:
                job()
            except BaseException:  # the job reports its own outcome; this is a bug in it
                # (BaseException too: a pyo3 PanicException from a Rust extension is one, and
                # a lane that died of it would leave its queued jobs' calls without outcomes)
                log.exception("host background job failed (%s)", self._name)
