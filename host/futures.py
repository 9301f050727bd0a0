"""The future of one call: its result is the action's value, ``outcome`` the whole Outcome."""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import Future
from concurrent.futures._base import CANCELLED
from typing import Any

from host.errors import Outcome


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
        if self.cancelled():
            with self._condition:  # (a reentrant lock: the call below takes it too)
                if self._state == CANCELLED:  # (not yet notified)
                    self.set_running_or_notify_cancel()
            return
        if outcome.error is not None:
            self.set_exception(outcome.error)
        else:
            self.set_result(outcome.value)
