"""``run``, ``call`` and ``acall`` on top of ``submit``: the same for every kind of host."""

from __future__ import annotations

import asyncio
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
        future = self.submit(action, input, timeout=timeout)
        try:
            return await asyncio.wrap_future(future)
        except asyncio.CancelledError:
            future.cancel()
            raise

    def run(self, action: str, input: Any = None, *, timeout: float | None = None) -> Outcome:
        """Call ``action`` and return its :class:`Outcome` (never raises a call error); an
        interrupted wait cancels the call and is re-raised, as ``Host.run``."""
        future = self.submit(action, input, timeout=timeout)
        try:
            future.result()
        except Exception:
            pass
        except BaseException:
            future.cancel()
            raise
        if future.outcome is None:
            return Outcome.failure(Cancelled("the call was cancelled"))
        return future.outcome

    def call(self, action: str, input: Any = None, *, timeout: float | None = None) -> Any:
        """Call ``action`` and return its value, or raise the outcome's error."""
        return self.run(action, input, timeout=timeout).unwrap()
