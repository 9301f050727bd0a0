"""A provider that prints far past a small log limit while it is imported, then serves."""

from __future__ import annotations

import sys

from providers import Provider

sys.stderr.write("w" * (512 * 1024))
sys.stderr.flush()

provider = Provider("chatty_import", version="1.0")


@provider.action
def ready() -> str:
    return "ready"
