"""Who owns what on disk and in the cgroup tree, so that what a killed host left is reclaimed.

A host killed with SIGKILL cannot clean up: its ipc directory, its workers' workdirs and their
cgroups would stay for ever. Each host therefore keeps everything it creates under one state
directory, ``<tmp>/sandbox-host-<id>/`` (``ipc/``, ``work/``), names its cgroups with the same id
(``sandbox-w<worker>.<id>``), and holds an ``flock`` on ``lock`` in that directory for its whole
life; ``owner.json`` says who it was (pid, start time, boot id, pid namespace, cgroup parents) for
people and for the reclaimer's cgroup sweep.

Liveness is decided by the lock, never by the pid: hosts run in different pid namespaces
(containers, every test run here), where a pid means nothing, but the kernel drops a dead
process's locks in any namespace. The directory is published complete - made under a hidden
name, its lock file locked before it gets the name ``lock``, then renamed - so no reclaimer
ever sees a lock that is not yet held. A new ``Host`` takes the lock of every state directory
whose owner is gone, renames it out of the way (only one reclaimer can), and has its janitor
remove the tree (``host.fsutil``: no link followed) and the dead host's cgroups. Nothing whose
lock is held is ever touched, and nothing here raises into ``Host()``: problems are logged.
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import json
import logging
import os
import secrets
import stat
import tempfile
import time
from collections.abc import Iterable

from host import cgroups, fsutil
from host.janitor import Janitor
from host.logs import LOGGER
from host.orphans import start_time

log = logging.getLogger(f"{LOGGER}.{__name__}")

PREFIX = "sandbox-host-"
#: Hidden names: a state directory being set up, and one being reclaimed.
_SETUP = ".sandbox-setup-"
_RECLAIM = ".sandbox-reclaim-"
#: A hidden directory with no lock file at all is removed once older than this.
_UNLOCKED_GRACE_S = 60.0


class HostState:
    """This host's state directory and the lock that says it is alive."""

    def __init__(self, *, shared_with_other_uids: bool, parent: str | None = None) -> None:
        self.parent = parent or tempfile.gettempdir()
        self.id = secrets.token_hex(6)
        mode = 0o711 if shared_with_other_uids else 0o700
        staging = os.path.join(self.parent, f"{_SETUP}{self.id}")
        os.mkdir(staging, 0o700)
        try:
            os.chmod(staging, mode)
            # The lock is taken under a name no reclaimer opens, then renamed to ``lock``: a
            # file named ``lock`` is always held already. (Created as ``lock`` and locked
            # after, another host's sweep could open and lock it in between, judge this
            # host dead, and take its directory away while it starts.)
            unlocked = os.path.join(staging, "lock.new")
            self._lock = os.open(
                unlocked, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600
            )
            fcntl.flock(self._lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            os.rename(unlocked, os.path.join(staging, "lock"))
            self.directory = os.path.join(self.parent, f"{PREFIX}{self.id}")
            os.rename(staging, self.directory)  # published with its lock already held
        except BaseException:
            fsutil.remove_tree(staging)
            raise
        self._mode = mode

    def subdir(self, name: str) -> str:
        path = os.path.join(self.directory, name)
        os.mkdir(path, 0o700)
        os.chmod(path, self._mode)
        return path

    def cgroup_name(self, stem: str) -> str:
        """A cgroup name that says which host owns it (found again by :func:`reclaim`)."""
        return f"{stem}.{self.id}"

    def write_owner(self, cgroup_parents: Iterable[str]) -> None:
        record = {
            "pid": os.getpid(),
            "start_time": start_time(os.getpid()),
            "boot_id": _read("/proc/sys/kernel/random/boot_id"),
            "pid_namespace": _readlink("/proc/self/ns/pid"),
            "created": time.time(),
            "cgroup_parents": sorted(cgroup_parents),
        }
        path = os.path.join(self.directory, "owner.json")
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                     0o600)
        with os.fdopen(fd, "w") as f:
            json.dump(record, f)

    def remove(self) -> None:
        """Remove the state directory, then let go of the lock (the host is gone)."""
        fsutil.remove_tree(self.directory)
        with contextlib.suppress(OSError):
            os.close(self._lock)

    def discard(self) -> None:
        """Remove the state of a host that failed to start: as :meth:`remove`, and if the
        directory is still there (out of file descriptors, it could not be walked), again
        once the lock's descriptor, the last one this can free, is closed."""
        self.remove()
        if os.path.lexists(self.directory):
            fsutil.remove_tree(self.directory)


def _read(path: str) -> str:
    try:
        with open(path) as f:
            return f.read().strip()
    except OSError:
        return ""


def _readlink(path: str) -> str:
    try:
        return os.readlink(path)
    except OSError:
        return ""


def _cgroup_parents_of(directory: str) -> list[str]:
    try:
        with open(os.path.join(directory, "owner.json")) as f:
            record = json.load(f)
    except (OSError, ValueError):
        return []
    parents = record.get("cgroup_parents") if isinstance(record, dict) else None
    if not isinstance(parents, list):
        return []
    return [p for p in parents if isinstance(p, str)]


def reclaim(janitor: Janitor, own_cgroup_parents: Iterable[str], parent: str | None = None) -> int:
    """Hand every state directory whose host is dead (its lock is free) to ``janitor`` for
    removal, with that host's cgroups. Returns how many were found; never raises."""
    try:
        return _reclaim(janitor, list(own_cgroup_parents), parent or tempfile.gettempdir())
    except Exception:
        log.exception("reclaiming what dead hosts left failed")
        return 0


def _reclaim(janitor: Janitor, own_parents: list[str], parent: str) -> int:
    found = 0
    try:
        entries = os.listdir(parent)
    except OSError:
        return 0
    uid = os.geteuid()
    for entry in entries:
        if not entry.startswith((PREFIX, _SETUP, _RECLAIM)):
            continue
        path = os.path.join(parent, entry)
        try:
            info = os.lstat(path)
        except OSError:
            continue
        if not stat.S_ISDIR(info.st_mode) or info.st_uid != uid:
            continue  # not a directory a host of ours made (a link, another user's)
        try:
            lock = os.open(os.path.join(path, "lock"), os.O_RDWR | os.O_NOFOLLOW | os.O_CLOEXEC)
        except FileNotFoundError:
            if entry.startswith(PREFIX) or time.time() - info.st_mtime < _UNLOCKED_GRACE_S:
                continue  # being set up (or removed) right now
            janitor.remove_tree(path)
            found += 1
            continue
        except OSError:
            continue
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(lock)  # held: its host is alive
            continue
        if entry.startswith(_RECLAIM):  # a reclaimer died mid-way: its owner's id first
            owner = entry[len(_RECLAIM):].split("-")[0]
        else:
            owner = entry.rsplit("-", 1)[-1]
        claimed = os.path.join(parent, f"{_RECLAIM}{owner}-{secrets.token_hex(4)}")
        try:
            os.rename(path, claimed)  # only one reclaimer wins; the others find nothing
        except OSError:
            os.close(lock)
            continue
        log.info("reclaiming %s, left by a host that is gone", path)
        parents = sorted(set(_cgroup_parents_of(claimed)) | set(own_parents))
        janitor.submit(functools.partial(_remove_dead, claimed, owner, parents, lock),
                       f"reclaiming {path}")
        found += 1
    return found


def _remove_dead(directory: str, owner: str, parents: list[str], lock: int) -> None:
    try:
        if owner and all(c in "0123456789abcdef" for c in owner):
            cgroups.remove_owned(parents, owner)
        fsutil.remove_tree(directory)
    finally:
        os.close(lock)
