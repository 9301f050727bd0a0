"""Thin ctypes access to the few libc calls the standard library does not expose."""

from __future__ import annotations

import ctypes
import os

PR_SET_PDEATHSIG = 1
PR_SET_DUMPABLE = 4
PR_SET_CHILD_SUBREAPER = 36
PR_SET_NO_NEW_PRIVS = 38
PR_GET_NO_NEW_PRIVS = 39

_libc: ctypes.CDLL | None = None


def libc() -> ctypes.CDLL:
    """The C library, loaded once, with errno captured for error messages.

    The interpreter is linked against it, so the process's own symbols (``dlopen(NULL)``) hold
    it; that spares ``ctypes.util`` (which imports subprocess, tempfile, shutil) and
    ``find_library``, which runs ``ldconfig -p`` in a child process. A static interpreter falls
    back to ``find_library``.
    """
    global _libc
    if _libc is None:
        lib = ctypes.CDLL(None, use_errno=True)
        if not hasattr(lib, "prctl"):
            from ctypes.util import find_library

            lib = ctypes.CDLL(find_library("c"), use_errno=True)
        _libc = lib
    return _libc


def prctl(option: int, arg2: int = 0, arg3: int = 0, arg4: int = 0, arg5: int = 0) -> int:
    """Call prctl(2); raise ``OSError`` with errno on failure."""
    args = [ctypes.c_ulong(a) for a in (arg2, arg3, arg4, arg5)]
    result: int = libc().prctl(ctypes.c_int(option), *args)
    if result < 0:
        err = ctypes.get_errno()
        raise OSError(err, f"prctl({option}): {os.strerror(err)}")
    return result


CLONE_NEWNS = 0x00020000
CLONE_NEWUTS = 0x04000000
CLONE_NEWIPC = 0x08000000
CLONE_NEWUSER = 0x10000000
CLONE_NEWPID = 0x20000000
CLONE_NEWNET = 0x40000000

MS_RDONLY = 1
MS_NOSUID = 2
MS_NODEV = 4
MS_NOEXEC = 8
MS_REMOUNT = 32
MS_NOATIME = 1024
MS_NODIRATIME = 2048
MS_BIND = 4096
MS_REC = 16384
MS_PRIVATE = 1 << 18


def _check(result: int, what: str) -> int:
    if result < 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")
    return result


def unshare(flags: int) -> None:
    """unshare(2): move this process into new namespaces."""
    _check(libc().unshare(ctypes.c_int(flags)), f"unshare({flags:#x})")


def mount(source: str, target: str, fstype: str | None, flags: int, data: str | None) -> None:
    """mount(2)."""
    result = libc().mount(
        source.encode(),
        target.encode(),
        fstype.encode() if fstype else None,
        ctypes.c_ulong(flags),
        data.encode() if data else None,
    )
    _check(result, f"mount {target}")


#: mount_setattr(2) (Linux 5.12): the same number on every architecture but alpha.
SYS_MOUNT_SETATTR = 442
AT_FDCWD = -100
AT_RECURSIVE = 0x8000
MOUNT_ATTR_RDONLY = 0x1


class _MountAttr(ctypes.Structure):
    """``struct mount_attr`` (MOUNT_ATTR_SIZE_VER0, 32 bytes)."""

    _fields_ = [
        ("attr_set", ctypes.c_uint64),
        ("attr_clr", ctypes.c_uint64),
        ("propagation", ctypes.c_uint64),
        ("userns_fd", ctypes.c_uint64),
    ]


def mount_setattr(path: str, *, set_flags: int = 0, clear_flags: int = 0) -> None:
    """mount_setattr(2) on the mount at ``path`` and every mount below it (AT_RECURSIVE).

    Raises ``OSError`` (ENOSYS before Linux 5.12).
    """
    attr = _MountAttr(set_flags, clear_flags, 0, 0)
    result = libc().syscall(
        ctypes.c_long(SYS_MOUNT_SETATTR),
        ctypes.c_int(AT_FDCWD),
        path.encode(),
        ctypes.c_uint(AT_RECURSIVE),
        ctypes.byref(attr),
        ctypes.c_size_t(ctypes.sizeof(attr)),
    )
    _check(result, f"mount_setattr {path}")


def sethostname(name: str) -> None:
    raw = name.encode()
    _check(libc().sethostname(raw, ctypes.c_size_t(len(raw))), "sethostname")
