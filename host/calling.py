"""``run``, ``call`` and ``acall`` on top of ``submit``: one definition for every kind of host
(``Host``, ``RemoteHost``, ``HostGroup``), so their semantics cannot drift apart."""

from __future__ import annotations

import math
import threading
from typing import Any

from host.errors import Cancelled, Outcome
from host.futures import CallFuture


class CallingAPI:
    """Mixin: a class with ``submit`` gets the rest of ``Host``'s calling API, same semantics."""

    def submit(
        self, action: str, input: Any = None, *, timeout: float | None = None
    ) -> CallFuture:
        raise NotImplementedError

    async def acall(self, action: str, input: Any = None, *, timeout: float | None = None) -> Any:
        """``await`` a call from asyncio; cancelling the awaiting task cancels the call."""
        import asyncio  # (here, not at the top: it spares other users, the CLI, ~40 ms)

        future = self.submit(action, input, timeout=timeout)
        try:
            return await asyncio.wrap_future(future)
        except asyncio.CancelledError:
            future.cancel()
            raise

    def run(self, action: str, input: Any = None, *, timeout: float | None = None) -> Outcome:
        """Call ``action`` and return its :class:`Outcome` (never raises a call error).

        An interrupted wait (``KeyboardInterrupt``, ``SystemExit`` or any other
        ``BaseException`` raised in the waiting thread) cancels the call - a running call's
        worker is killed - and is re-raised: Ctrl-C must stop the call, not be swallowed.
        """
        return wait_for_outcome(self.submit(action, input, timeout=timeout))

    def call(self, action: str, input: Any = None, *, timeout: float | None = None) -> Any:
        """Call ``action`` and return its value, or raise the outcome's :class:`SandboxError`.

        ``timeout`` (seconds) bounds the whole call including any wait for a worker; the
        provider's ``wall_time`` bounds the action itself. Both kill the worker's tree.
        """
        return self.run(action, input, timeout=timeout).unwrap()


def wait_for_outcome(future: CallFuture) -> Outcome:
    """Wait for a submitted call's :class:`Outcome` (``run``'s wait, for callers of
    ``submit``): an interrupted wait cancels the call and is re-raised."""
    try:
        latch = future.latch
        if latch is not None and threading.get_ident() == threading.main_thread().ident:
            latch.acquire()  # (see ``CallFuture.latch``; the future is complete after it)
            latch.release()  # (open for good: a second wait must not wait for ever)
        future.result()
    except Exception:  # the call's error (or CancelledError): the outcome says it
        pass
    except BaseException:
        future.cancel()
        raise
    if future.outcome is None:  # cancelled while queued
        return Outcome.failure(Cancelled("the call was cancelled"))
    return future.outcome


def checked_timeout(value: Any) -> float | None:
    """A caller's ``timeout``, checked alike by every kind of host: None (no deadline, also
    for infinity) or a positive float. ``ValueError`` for anything else - a bool, a string,
    NaN, zero or less, an integer too big for a float - saying so (a local host raised
    ``OverflowError`` for ``10**400`` and ``TypeError`` for ``"2"``)."""
    if value is None:
        return None
    if isinstance(value, float) and math.isinf(value) and value > 0:
        return None
    if not positive_seconds(value):
        raise ValueError(f"timeout must be a positive number of seconds, got {value!r}"[:200])
    return float(value)


def positive_seconds(value: Any) -> bool:
    """A finite positive number (an integer of 400 digits is finite, but no float: refused)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return False
    try:
        return math.isfinite(value) and value > 0
    except OverflowError:
        return False
