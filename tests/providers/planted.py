"""A provider with one planted bug of each kind the fuzzer checks for, and clean actions.

Each bug needs a specific input (a threshold) to trigger, so the fuzzer must find it and
shrink it to the boundary: crash at n >= 50, raise at n >= 30, bad output at n >= 20, hang at
n >= 40, output blow-up at n >= 60.
"""

from __future__ import annotations

import os
import time

from providers import Provider

provider = Provider("planted", version="1.0")


@provider.action
def crash(n: int) -> int:
    """Dies (no exception: the process exits) for n >= 50."""
    if n >= 50:
        os._exit(3)
    return n


@provider.action
def fails(n: int) -> int:
    """Raises an undeclared KeyError for n >= 30."""
    if n >= 30:
        raise KeyError(n)
    return n


@provider.action
def bad_output(n: int) -> int:
    """Returns a string where an integer is declared, for n >= 20."""
    if n >= 20:
        return "twenty"  # type: ignore[return-value]
    return n


@provider.action
def hang(n: int) -> int:
    """Sleeps far past any timeout for n >= 40."""
    if n >= 40:
        time.sleep(60)
    return n


@provider.action
def blowup(n: int) -> str:
    """Returns 4 MiB of text (past the output limit) for n >= 60."""
    if n >= 60:
        return "x" * (4 * 1024 * 1024)
    return "ok"


@provider.action(raises=[ValueError])
def declared(n: int) -> int:
    """Raises ValueError on purpose (declared) for negative n: not a finding."""
    if n < 0:
        raise ValueError("n must not be negative")
    return n


@provider.action
def clean(text: str, times: int = 1) -> str:
    """Well-behaved."""
    return text * max(0, min(times, 3))
