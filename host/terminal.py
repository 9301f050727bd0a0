"""What the CLI does on a terminal and only there: colour and a transient status line.

Piped or redirected output gets neither (not one escape byte), so scripts see plain text;
``NO_COLOR`` (https://no-color.org) or ``--color never`` turns colour off on a terminal,
``--color always`` on when piped.
"""

from __future__ import annotations

import os
import threading
from types import TracebackType
from typing import Any

COLOURS = ("auto", "always", "never")
GREEN, YELLOW, RED, BOLD_RED = "32", "33", "31", "1;31"


def plural(count: int, noun: str) -> str:
    """``count`` and ``noun``, which takes an "s" unless there is one (CLI lines)."""
    return f"{count} {noun}{'' if count == 1 else 's'}"


def is_terminal(stream: Any) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):  # no isatty, or closed
        return False


def colour_wanted(stream: Any, choice: str = "auto") -> bool:
    """Whether to colour what goes to ``stream`` (``choice`` is ``--color``'s value)."""
    if choice == "always":
        return True
    if choice == "never":
        return False
    return is_terminal(stream) and not os.environ.get("NO_COLOR")


def paint(text: str, code: str, on: bool) -> str:
    return f"\x1b[{code}m{text}\x1b[0m" if on else text


class Status:
    """A line on a terminal saying what the command waits for, shown only if the wait lasts
    longer than ``delay`` seconds and erased when it ends; nothing at all when ``stream`` is
    not a terminal.

    Used as ``with Status(sys.stderr, "starting the worker..."):`` around a blocking step."""

    def __init__(self, stream: Any, text: str, delay: float = 1.0) -> None:
        self._stream = stream if is_terminal(stream) else None
        self._text = text
        self._lock = threading.Lock()
        self._shown = False
        self._timer: threading.Timer | None = None
        if self._stream is not None:
            self._timer = threading.Timer(delay, self._show)
            self._timer.daemon = True

    def _show(self) -> None:
        with self._lock:
            if self._stream is not None and not self._shown:
                self._stream.write(f"\r\x1b[K{self._text}")
                self._stream.flush()
                self._shown = True

    def __enter__(self) -> Status:
        if self._timer is not None:
            self._timer.start()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if self._timer is not None:
            self._timer.cancel()
        with self._lock:
            if self._shown and self._stream is not None:
                self._stream.write("\r\x1b[K")
                self._stream.flush()
            self._stream = None  # a timer that fires late writes nothing
