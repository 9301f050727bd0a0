"""Functions the peer pools (ProcessPoolExecutor, pebble, loky) run: importable by name so every
peer, whatever its start method, runs the same code as our providers' actions."""

from __future__ import annotations

import os
import time
from typing import Any


def echo(value: Any) -> Any:
    """The peers' ``text.echo``: returns its input unchanged."""
    return value


def getpid() -> int:
    return os.getpid()


def sleep(seconds: float) -> float:
    started = time.monotonic()
    time.sleep(seconds)
    return time.monotonic() - started


def spin(seconds: float) -> int:
    deadline = time.monotonic() + seconds
    iterations = 0
    while True:
        iterations += 1
        if iterations % 4096 == 0 and time.monotonic() >= deadline:
            return iterations


def double_fork(seconds: float, pid_file: str) -> int:
    """fork, setsid, fork: a grandchild that sleeps ``seconds``; its pid goes to ``pid_file``."""
    middle = os.fork()
    if middle == 0:
        try:
            os.setsid()
            grandchild = os.fork()
            if grandchild == 0:
                try:
                    time.sleep(seconds)
                finally:
                    os._exit(0)
            with open(pid_file, "w") as handle:
                handle.write(str(grandchild))
        finally:
            os._exit(0)
    os.waitpid(middle, 0)
    time.sleep(seconds)
    return middle


def getpid_arg(_: Any) -> int:
    return os.getpid()
