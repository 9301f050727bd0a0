"""Read-only views of mounts, inside the worker's own mount namespace.

The init makes every mount it inherited from the host read-only in its namespace, so the only
places a worker can write are the ones mounted afterwards - its private ``/tmp`` and workdir, two
tmpfs with a size and an inode limit - and the operator's ``write`` paths, which are made
writable again exactly as far as they were writable on the host. That the worker's uid could
write a world-writable host directory (``/var/tmp``, ``/dev/shm``, ``/run/lock``, a 0777
directory somewhere) stops mattering: the host's disk is not writable from inside, whatever
Landlock does. Nothing changes outside the namespace (its mounts are private).

``mount_setattr(2)`` (Linux 5.12) does a whole tree in one call; older kernels get one
``MS_REMOUNT | MS_BIND`` per mount, keeping the flags a user namespace locks.
"""

from __future__ import annotations

import errno
import os

from sandbox.libc import (
    MOUNT_ATTR_RDONLY,
    MS_BIND,
    MS_NOATIME,
    MS_NODEV,
    MS_NODIRATIME,
    MS_NOEXEC,
    MS_NOSUID,
    MS_RDONLY,
    MS_REC,
    MS_REMOUNT,
    mount,
    mount_setattr,
)

_KEPT_FLAGS = {
    "nosuid": MS_NOSUID,
    "nodev": MS_NODEV,
    "noexec": MS_NOEXEC,
    "noatime": MS_NOATIME,
    "nodiratime": MS_NODIRATIME,
}


def _unescape(field: str) -> str:
    """Mount points in mountinfo escape space, tab, newline and backslash as octal."""
    for code, char in (("\\040", " "), ("\\011", "\t"), ("\\012", "\n"), ("\\134", "\\")):
        field = field.replace(code, char)
    return field


def mounts() -> list[tuple[str, set[str]]]:
    """(mount point, per-mount options) of every mount this process sees, in mount order."""
    found = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            fields = line.split()
            if len(fields) > 5:
                found.append((_unescape(fields[4]), set(fields[5].split(","))))
    return found


def _beneath(path: str, top: str) -> bool:
    return top == "/" or path == top or path.startswith(top.rstrip("/") + "/")


def _remount(path: str, options: set[str], readonly: bool) -> None:
    flags = MS_REMOUNT | MS_BIND | (MS_RDONLY if readonly else 0)
    for name, flag in _KEPT_FLAGS.items():
        if name in options:
            flags |= flag
    mount("none", path, None, flags, None)


def set_readonly(top: str, readonly: bool) -> None:
    """Make the mount at ``top`` and every mount beneath it read-only (or writable again)."""
    try:
        if readonly:
            mount_setattr(top, set_flags=MOUNT_ATTR_RDONLY)
        else:
            mount_setattr(top, clear_flags=MOUNT_ATTR_RDONLY)
        return
    except OSError as exc:
        if exc.errno not in (errno.ENOSYS, errno.EINVAL):
            raise
    for point, options in mounts():  # before Linux 5.12: one remount per mount
        if _beneath(point, top) and os.path.exists(point):
            _remount(point, options, readonly)


def host_readonly(path: str) -> list[str] | None:
    """Before anything changes: None if ``path`` is not writable on the host's mounts (so it
    must stay read-only), else the mount points beneath it that are read-only."""
    if os.statvfs(path).f_flag & os.ST_RDONLY:
        return None
    return [point for point, options in mounts() if _beneath(point, path) and "ro" in options]


def writable_again(path: str, host_readonly: list[str]) -> None:
    """Make ``path`` (an operator's ``write`` path) writable as far as it was on the host.

    ``path`` gets a mount of its own (a bind onto itself) so that only it, not the filesystem
    holding it, becomes writable; then every mount beneath it that was read-only on the host
    (``host_readonly``, from :func:`host_readonly` before the tree was made read-only) is
    made read-only again, so the worker never gains a write the host did not grant.
    """
    mount(path, path, None, MS_BIND | MS_REC, None)
    restore(path, host_readonly)


def restore(path: str, host_readonly: list[str]) -> None:
    """Undo :func:`set_readonly` for the mount at ``path`` and those beneath it, except the
    mounts that were read-only on the host (``host_readonly``, from :func:`host_readonly`)."""
    set_readonly(path, False)
    for point in host_readonly:
        if _beneath(point, path) and os.path.exists(point):
            _remount_one_readonly(point)


def _remount_one_readonly(point: str) -> None:
    options = next((o for p, o in reversed(mounts()) if p == point), set())
    _remount(point, options, True)
