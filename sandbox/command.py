"""The ``sandbox`` console script's entry point: ``host.cli.main`` behind an import that a
Ctrl-C may interrupt.

The script imports its entry point before anything of ours runs, and the CLI's modules take
~0.1 s to import: a Ctrl-C then was a ``KeyboardInterrupt`` traceback. This module lives in
the ``sandbox`` package because importing that package costs nothing (importing ``host``
already loads its error types and logging).
"""

from __future__ import annotations

import signal
import sys

#: 128 + SIGINT, as the CLI itself exits when interrupted.
EXIT_INTERRUPTED = 130
#: The signals that stop a command (``host.cli`` handles them while it runs).
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


def main() -> int:
    try:
        from host.cli import main as run
    except KeyboardInterrupt:
        try:
            sys.stderr.write("sandbox: interrupted\n")
        except (OSError, ValueError, AttributeError):
            pass
        return EXIT_INTERRUPTED
    code = run()
    ignore_stop_signals()
    return code


def ignore_stop_signals() -> None:
    """The command is done and the process exits: a stop signal from here on would only
    raise inside the interpreter's shutdown ("Exception ignored in: <module 'threading'>")
    or kill the process with the signal instead of the command's exit code."""
    for signum in STOP_SIGNALS:
        try:
            signal.signal(signum, signal.SIG_IGN)
        except (OSError, ValueError):  # (not the main thread)
            pass
