"""A background thread for the host's slow clean-up work, off the event loop.

Removing a worker's workdir takes as long as the worker made it take: 60,000 files stalled the
loop (and so every other call's deadline) for 0.7 s, a 20,000-deep directory chain for seconds.
The loop hands such jobs here and goes on; ``close`` runs what is queued and joins the thread,
so a closed host has removed what it owns. A job that raises is logged and the next one runs.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable

from host import fsutil
from host.logs import LOGGER

log = logging.getLogger(f"{LOGGER}.{__name__}")

class Janitor:
    """Runs clean-up jobs one after another on a thread of its own (started on first use)."""

    def __init__(self, name: str = "sandbox-janitor") -> None:
        self._name = name
        self._jobs: queue.SimpleQueue[tuple[Callable[[], object], str] | None] = (
            queue.SimpleQueue()
        )
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._closed = False

    def submit(self, job: Callable[[], object], what: str) -> None:
        """Run ``job`` later; after :meth:`close` it runs at once, on the caller's thread."""
        with self._lock:
            if not self._closed:
                if self._thread is None:
                    self._thread = threading.Thread(target=self._run, name=self._name, daemon=True)
                    self._thread.start()
                self._jobs.put((job, what))
                return
        self._run_one(job, what)

    def remove_tree(self, path: str) -> None:
        """Remove a directory tree (see :func:`host.fsutil.remove_tree`) in the background."""
        self.submit(lambda: fsutil.remove_tree(path), f"removing {path}")

    def close(self, timeout: float | None = None) -> bool:
        """Run every queued job, then stop; False if they did not finish within ``timeout``."""
        with self._lock:
            self._closed = True
            thread = self._thread
            if thread is not None:
                self._jobs.put(None)
        if thread is None:
            return True
        thread.join(timeout)
        return not thread.is_alive()

    def _run(self) -> None:
        while True:
            item = self._jobs.get()
            if item is None:
                return
            self._run_one(*item)

    @staticmethod
    def _run_one(job: Callable[[], object], what: str) -> None:
        try:
            job()
        except Exception:
            log.exception("host clean-up failed: %s", what)
