"""Faults inside the host's loop still give every call its one outcome.

An exception on the loop used to be logged and dropped with the command that raised it: the
call that command was queueing or starting a worker for then waited for its caller's timeout,
or forever without one (how the Mistral stall in tests/test_state_removed.py presented). The
faults are injected into the host's own code at the spots where they happened or could; the
workers are real.
"""

from __future__ import annotations

import time

from host import Host
from policies import Policy
from tests.conftest import provider_file

ECHO = provider_file("echo.py")


def test_an_unforeseen_error_starting_a_worker_fails_the_waiting_call_at_once() -> None:
    """Any exception while a worker is started is a failed start (the call waiting for that
    worker gets its outcome), not an error lost on the loop with the call left waiting. Here
    the fault is injected where the ipc endpoint is made; the cause of the Mistral stall was
    an AttributeError at that spot."""
    with Host() as host:
        host.add_provider(ECHO, policy=Policy(wall_time=1.0))
        transport = host._reactor.transport

        def broken(*args: object, **kwargs: object) -> object:
            raise RuntimeError("injected fault")

        transport.listen = broken  # type: ignore[method-assign]
        outcome = host.run("echo.slow", {"seconds": 30}, timeout=20)  # its worker is killed
        assert outcome.error is not None and outcome.error.type == "Timeout", outcome
        started = time.monotonic()
        after = host.run("echo.echo", {"value": "after"}, timeout=20)
        assert after.error is not None and after.error.type == "ProviderUnavailable", after
        assert "RuntimeError: injected fault" in after.error.message
        assert time.monotonic() - started < 5



def test_an_unforeseen_error_queueing_a_call_fails_that_call_at_once() -> None:
    with Host() as host:
        host.add_provider(ECHO)
        assert host.call("echo.echo", {"value": "before"}, timeout=20) == "before"
        pool = host._reactor.providers["echo"].pool

        def broken(*args: object, **kwargs: object) -> object:
            raise RuntimeError("injected fault")

        pool.enqueue = broken  # type: ignore[method-assign]
        started = time.monotonic()
        outcome = host.run("echo.echo", {"value": "lost?"}, timeout=20)
        assert outcome.error is not None and outcome.error.type == "ProviderUnavailable", outcome
        assert "RuntimeError: injected fault" in outcome.error.message
        assert time.monotonic() - started < 5
