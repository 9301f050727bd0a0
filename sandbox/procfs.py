"""Processes by owner, from ``/proc``: used by the host (is a dedicated uid free?) and by the
worker's rlimits layer (``RLIMIT_NPROC`` counts every process of the uid). Standard library only,
so the host can import it without the confinement layers."""

from __future__ import annotations

import os
from collections.abc import Iterator


def processes_of(uid: int) -> Iterator[int]:
    """The pids of the processes running as ``uid`` that this process can see."""
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                if os.stat(f"/proc/{entry}").st_uid == uid:
                    yield int(entry)
            except OSError:  # it exited while we looked
                continue


def tasks_of(uid: int) -> int:
    """How many tasks (threads included) the processes of ``uid`` this process sees have:
    ``RLIMIT_NPROC`` counts threads, not processes."""
    count = 0
    for pid in processes_of(uid):
        try:
            count += len(os.listdir(f"/proc/{pid}/task"))
        except OSError:  # it exited while we looked
            continue
    return count
