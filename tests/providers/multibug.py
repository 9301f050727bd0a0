"""Actions whose failures Hypothesis reports in ways beyond one failure per run: two distinct
failures in one action (an ExceptionGroup), a failure that comes and goes (a FlakyFailure),
and an action slow enough, without hanging, to outrun the fuzzer's shorter deadline while it
shrinks a real hang (tests/test_fuzz.py)."""

from __future__ import annotations

import os
import time

from providers import Provider

provider = Provider("multibug", version="1.0")


@provider.action
def two(n: int) -> int:
    """Raises below 0, returns a string (not the declared integer) above 100."""
    if n < 0:
        raise ValueError("negative")
    if n > 100:
        return "not an int"  # type: ignore[return-value]
    return n


@provider.action
def coin(n: int) -> int:
    """Fails about half the time, whatever the input."""
    if os.urandom(1)[0] < 128:
        raise ValueError("sometimes")
    return n


@provider.action
def slowish(text: str) -> str:
    """Hangs for a text of three characters or more; a shorter non-empty one takes 0.6 s."""
    if len(text) >= 3:
        time.sleep(60)
    if text:
        time.sleep(0.6)
    return text


_seen: set[int] = set()


@provider.action
def once(n: int) -> int:
    """Fails the first time this worker sees ``n``: a failure's replay passes (flaky)."""
    if n not in _seen:
        _seen.add(n)
        raise ValueError("the first time")
    return n


@provider.action
def control(text: str) -> str:
    """Fails on a DEL or C1 control character (which the CLI escapes when it prints)."""
    if any(0x7F <= ord(c) < 0xA0 for c in text):
        raise ValueError("a control character")
    return text


@provider.action
def optional(n: int = 0, text: str = "") -> int:
    """Takes no input at all as well: ``{}`` is valid."""
    return n + len(text)


@provider.action
def noisy(n: int) -> int:
    """Fails with a message holding a NUL and an ESC (which XML cannot hold)."""
    raise ValueError("a NUL \x00 and an ESC \x1b[2J in the message")


@provider.action(raises=[LookupError])
def lookup(key: str) -> int:
    """Declares LookupError, and raises its subclass KeyError for any key but ``a``."""
    return {"a": 1}[key]


@provider.action(raises=[ValueError])
def parse(text: str) -> int:
    """Declares ValueError; json.JSONDecodeError, which it raises for most texts, is one."""
    import json

    return len(str(json.loads(text)))
