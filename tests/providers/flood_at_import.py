"""A provider whose import writes to stderr as fast as it can, past any log limit, and never
finishes starting. Bounded here: 60 s or 8 GiB, whichever comes first."""

from __future__ import annotations

import os
import time

chunk = b"s" * (64 * 1024)
deadline = time.monotonic() + 60
written = 0
while written < 8 << 30 and time.monotonic() < deadline:
    written += os.write(2, chunk)
