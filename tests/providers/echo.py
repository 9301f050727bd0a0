"""A small well-behaved provider for host tests."""

from __future__ import annotations

import os
import sys
import time

from providers import Provider

provider = Provider("echo", version="2.0", description="test provider")


@provider.action(safe_rerun=True)
def echo(value: str) -> str:
    """Return the value."""
    return value


@provider.action
def add(a: int, b: int = 1) -> int:
    """Add two integers."""
    return a + b


@provider.action
def slow(seconds: float) -> float:
    """Sleep, then return."""
    time.sleep(seconds)
    return seconds


@provider.action
def shout(text: str) -> str:
    """Print to stdout and stderr, interleaved, then return."""
    print(f"out:{text}")
    print(f"err:{text}", file=sys.stderr)
    print(f"out:{text}!")
    print(f"err:{text}!", file=sys.stderr)
    return text.upper()


@provider.action
def environment() -> dict[str, str]:
    """The worker's environment, to check what passes."""
    return dict(os.environ)


@provider.action
def cwd() -> str:
    """The worker's working directory."""
    return os.getcwd()


@provider.action
def write_files(megabytes: int, where: str = ".") -> int:
    """Write ``megabytes`` MiB into ``where`` (1 MiB files, removed again); return the bytes."""
    written = 0
    for i in range(megabytes):
        path = os.path.join(where, f"echo-write-{os.getpid()}-{i}")
        with open(path, "wb") as f:
            written += f.write(b"\0" * (1 << 20))
    for i in range(megabytes):
        os.unlink(os.path.join(where, f"echo-write-{os.getpid()}-{i}"))
    return written
