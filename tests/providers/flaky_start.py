"""A provider that imports fine until a marker file appears next to it; then every import
fails. The worker may read its own directory (Landlock), so it can see the marker.

Marker content ``raise``: the import raises (the worker reports the exception). Marker content
``exit``: the worker writes to stderr and dies at import (the host only sees the exit and the
captured stderr)."""

from __future__ import annotations

import os
import sys

from providers import Provider

MARKER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "flaky_start.marker")

if os.path.exists(MARKER):
    with open(MARKER) as _handle:
        _mode = _handle.read().strip()
    if _mode == "exit":
        print("flaky_start: dying at import on purpose", file=sys.stderr, flush=True)
        os._exit(3)
    raise RuntimeError("flaky_start refuses to import: marker file present")

provider = Provider("flaky_start", version="1.0")


@provider.action
def ping() -> str:
    """Answer."""
    return "pong"
