"""The future of one call: its result is the action's value, ``outcome`` the whole Outcome."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable
from concurrent.futures import Future, InvalidStateError
from concurrent.futures._base import CANCELLED
from typing import Any

from host.errors import Outcome

#: The interpreter's main thread, where signal handlers run.
_MAIN_THREAD = threading.main_thread().ident


class CallFuture(Future[Any]):
    """A ``concurrent.futures.Future`` for a sandboxed call.

    ``result()`` returns the action's value or raises the outcome's ``SandboxError``; ``outcome``
    holds the full :class:`Outcome` (usage, logs, attempts) once done.

    Done-callbacks run on the host's loop thread (or on the thread of a ``Host.run`` caller
    that read its worker's reply itself, while it holds the loop's lock): keep them short and
    never call the host synchronously from one (hand work to another thread).

    ``cancel()`` on a queued call removes it (the future is then cancelled, as usual). Unlike a
    plain future, a *running* call can be cancelled too: its worker is killed, ``cancel()``
    returns True and the call ends with the ``Cancelled`` outcome (``result()`` raises it).
    """

    def __init__(self, canceller: Callable[[CallFuture], None] | None = None) -> None:
        super().__init__()
        self.outcome: Outcome | None = None
        self._canceller = canceller
        #: Made on the main thread: a held lock released when the future completes, which
        #: ``host.calling.wait_for_outcome`` waits on there instead of in ``result()``. A
        #: signal handler may run at any point of a wait and call a host; inside ``result()``
        #: it would hold this future's lock, which the thread completing the future (a host's
        #: loop, a remote host's I/O thread) needs, while the handler waits for that thread.
        self.latch: threading.Lock | None = None
        if threading.get_ident() == _MAIN_THREAD:
            self.latch = threading.Lock()
            self.latch.acquire()

    def _invoke_callbacks(self) -> None:
        # Every completion (a result, an exception, a cancel) ends here, once, outside the
        # future's lock: open the latch first, then run the done-callbacks.
        latch = self.latch
        if latch is not None:
            with contextlib.suppress(RuntimeError):  # (released already)
                latch.release()
        super()._invoke_callbacks()  # type: ignore[misc]

    def cancel(self) -> bool:
        if super().cancel():
            if self._canceller is not None:
                self._canceller(self)
            return True
        if self.running() and self._canceller is not None:
            self._canceller(self)
            return True
        return False

    def settle(self, outcome: Outcome) -> None:
        """Called once by the host's loop: record the outcome and complete the future.

        A future cancelled while its call was queued is only CANCELLED until someone calls
        ``set_running_or_notify_cancel``, which is what tells the waiters of
        ``concurrent.futures.wait`` and ``as_completed`` (an executor does it when it takes
        the item from its queue): without it they never saw the call end."""
        self.outcome = outcome
        if not self.cancelled():
            try:
                if outcome.error is not None:
                    self.set_exception(outcome.error)
                else:
                    self.set_result(outcome.value)
                return
            except InvalidStateError:  # a cancel() came between the look and the result
                pass
        with self._condition:  # (a reentrant lock: the call below takes it too)
            if self._state == CANCELLED:  # (not yet notified)
                self.set_running_or_notify_cancel()
