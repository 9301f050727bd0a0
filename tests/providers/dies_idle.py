"""A provider whose every worker says HELLO and then dies by itself a moment later, idle (a
thread started at import ends the process)."""

from __future__ import annotations

import os
import threading
import time

from providers import Provider

provider = Provider("dies_idle", version="1.0")


def _die() -> None:
    time.sleep(0.05)
    os._exit(9)


threading.Thread(target=_die, daemon=True).start()


@provider.action
def fine(x: int) -> int:
    return x + 1
