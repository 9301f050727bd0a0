"""Counts executions: each call leaves one file in a shared directory, so a test can tell how
many times a call really ran (a call re-sent after a lost connection would leave two)."""

from __future__ import annotations

import os
import time

from providers import Provider

provider = Provider("ledger", version="1.0")


def _mark(directory: str, token: str, seconds: float) -> str:
    # The record comes first: a call whose server dies during the sleep did run.
    path = os.path.join(directory, f"{token}.{os.getpid()}.{time.monotonic_ns()}")
    with open(path, "x"):
        pass
    time.sleep(seconds)
    return token


@provider.action
def mark(directory: str, token: str, seconds: float = 0.0) -> str:
    """Record one execution of ``token``, then sleep; not safe to re-run."""
    return _mark(directory, token, seconds)


@provider.action(safe_rerun=True)
def mark_idempotent(directory: str, token: str, seconds: float = 0.0) -> str:
    """The same, declared safe to re-run: a group may re-send it after a lost connection."""
    return _mark(directory, token, seconds)
