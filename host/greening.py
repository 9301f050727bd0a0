"""Running inside a process that ``eventlet.monkey_patch()`` patched (older OpenStack services).

Nothing here imports eventlet into a process that has not: only when eventlet has patched a
module does anything change. What the patching breaks, and how the host goes around it:

- ``select`` loses ``poll`` and ``epoll`` (eventlet deletes them): the loop's poll sets come
  from the original module (:func:`real_select`); they are only asked what is ready now.
- ``os.read``/``os.write`` wait for the descriptor instead of raising ``BlockingIOError``: the
  loop's non-blocking pipes are read and written with ``posix.read``/``posix.write``, which
  eventlet never replaces (reactor, process).
- ``threading`` makes the loop a green thread sharing one OS thread with its callers: it must
  wait in eventlet's hub (:func:`hub_wait`), or a blocking poll would stop every green thread,
  the callers waiting for its results included.
"""

from __future__ import annotations

import importlib
import select
import sys
import types
from collections.abc import Callable


def patched(name: str) -> bool:
    """Whether eventlet has monkey-patched the module ``name`` in this process."""
    patcher = sys.modules.get("eventlet.patcher")
    return patcher is not None and bool(patcher.is_monkey_patched(name))


def real_select() -> types.ModuleType:
    """The ``select`` module as the standard library made it (with ``poll`` and ``epoll``)."""
    if patched("select"):
        return sys.modules["eventlet.patcher"].original("select")  # type: ignore[no-any-return]
    return select


def hub_wait() -> Callable[[list[int], float | None], object] | None:
    """How the host's loop waits for its descriptors when it runs as a green thread
    (``threading`` patched): eventlet's green ``select``, which lets every other green thread
    run meanwhile (a blocking poll would stop them all, the loop's callers included). None
    when the loop is a real thread."""
    if not patched("thread"):
        return None
    green = importlib.import_module("eventlet.green.select")

    def wait(fds: list[int], timeout: float | None) -> object:
        return green.select(fds, [], [], timeout)

    return wait
