"""Landlock: the worker may only touch the paths its policy names, and (optionally) no TCP.

Landlock is an unprivileged Linux security module a process applies to *itself*: it builds a
ruleset ("these access rights are handled, i.e. denied unless a rule allows them"), adds rules
("beneath this directory, allow these rights"), then enforces it with
``landlock_restrict_self(2)``. The restriction is inherited by every child and can never be
lifted, only stacked with further rulesets.

What this layer enforces, using the highest ABI the kernel offers (capped at what this module
knows, ABI 7):

* **Filesystem** (ABI >= 1): every access right the ABI knows is handled. Read-only
  (execute, read file, list directory) beneath ``context.read_paths`` and :data:`SYSTEM_READ_PATHS`;
  every right beneath ``context.write_paths`` (which include the workdir); read/write on
  ``/dev/null``. Everything else is denied, including reading ``/etc`` and ``/home``.
* **TCP** (ABI >= 4): with ``policy.network`` false, bind and connect are handled with no rule,
  so every TCP bind/connect fails with ``EACCES``. (UDP, raw sockets and unix sockets are not
  covered by Landlock; the seccomp/namespace layers are what close those.)
* **Scopes** (ABI >= 6): the worker cannot signal, nor connect to abstract unix sockets of,
  processes outside its own Landlock domain (the host, other workers).

Landlock applies to the calling *thread* and its future children; the worker applies it while it
is still single-threaded, before any provider code is imported.
"""

from __future__ import annotations

import ctypes
import errno
import os
import stat
from collections.abc import Iterable

from policies import Policy
from policies.paths import unsafe_reason
from sandbox.layers import LayerContext, LayerError, Probe
from sandbox.libc import PR_GET_NO_NEW_PRIVS, PR_SET_NO_NEW_PRIVS, libc, prctl

NAME = "landlock"
STAGE = "worker"

# System call numbers: Landlock came after the syscall tables were unified, so they are the same
# on x86_64 and aarch64 (and every other architecture).
SYS_LANDLOCK_CREATE_RULESET = 444
SYS_LANDLOCK_ADD_RULE = 445
SYS_LANDLOCK_RESTRICT_SELF = 446

#: Flag of landlock_create_ruleset(NULL, 0, flag): return the highest supported ABI version.
LANDLOCK_CREATE_RULESET_VERSION = 1 << 0
#: Rule type of landlock_add_rule: struct landlock_path_beneath_attr.
LANDLOCK_RULE_PATH_BENEATH = 1

# Filesystem access rights (include/uapi/linux/landlock.h), with the ABI that introduced them.
ACCESS_FS_EXECUTE = 1 << 0
ACCESS_FS_WRITE_FILE = 1 << 1
ACCESS_FS_READ_FILE = 1 << 2
ACCESS_FS_READ_DIR = 1 << 3
ACCESS_FS_REMOVE_DIR = 1 << 4
ACCESS_FS_REMOVE_FILE = 1 << 5
ACCESS_FS_MAKE_CHAR = 1 << 6
ACCESS_FS_MAKE_DIR = 1 << 7
ACCESS_FS_MAKE_REG = 1 << 8
ACCESS_FS_MAKE_SOCK = 1 << 9
ACCESS_FS_MAKE_FIFO = 1 << 10
ACCESS_FS_MAKE_BLOCK = 1 << 11
ACCESS_FS_MAKE_SYM = 1 << 12
ACCESS_FS_REFER = 1 << 13  # ABI 2
ACCESS_FS_TRUNCATE = 1 << 14  # ABI 3
ACCESS_FS_IOCTL_DEV = 1 << 15  # ABI 5

# Network access rights (ABI 4).
ACCESS_NET_BIND_TCP = 1 << 0
ACCESS_NET_CONNECT_TCP = 1 << 1

# Scopes (ABI 6).
SCOPE_ABSTRACT_UNIX_SOCKET = 1 << 0
SCOPE_SIGNAL = 1 << 1

#: The highest ABI whose rights this module knows; a newer kernel is used at this level.
KNOWN_ABI = 7

_FS_ABI_1 = (
    ACCESS_FS_EXECUTE
    | ACCESS_FS_WRITE_FILE
    | ACCESS_FS_READ_FILE
    | ACCESS_FS_READ_DIR
    | ACCESS_FS_REMOVE_DIR
    | ACCESS_FS_REMOVE_FILE
    | ACCESS_FS_MAKE_CHAR
    | ACCESS_FS_MAKE_DIR
    | ACCESS_FS_MAKE_REG
    | ACCESS_FS_MAKE_SOCK
    | ACCESS_FS_MAKE_FIFO
    | ACCESS_FS_MAKE_BLOCK
    | ACCESS_FS_MAKE_SYM
)

#: Rights that make sense on a non-directory. The kernel rejects (EINVAL) a rule on a file that
#: grants anything else, because directory rights (list, create, remove, refer) can only ever
#: apply to entries *beneath* a directory.
ACCESS_FS_FILE = (
    ACCESS_FS_EXECUTE
    | ACCESS_FS_WRITE_FILE
    | ACCESS_FS_READ_FILE
    | ACCESS_FS_TRUNCATE
    | ACCESS_FS_IOCTL_DEV
)

#: What a read-only rule grants: run, read and list, nothing that changes the tree.
ACCESS_FS_READ_ONLY = ACCESS_FS_EXECUTE | ACCESS_FS_READ_FILE | ACCESS_FS_READ_DIR

#: Paths the Python runtime needs after confinement, whatever the provider: shared libraries
#: (the dynamic loader maps them at import time for C extensions such as ``_sqlite3``), the
#: loader cache, time zone data, and the random/zero devices. Read-only; missing ones are skipped.
SYSTEM_READ_PATHS: tuple[str, ...] = (
    "/usr/lib",
    "/usr/lib64",
    "/lib",
    "/lib64",
    "/usr/local/lib",
    "/etc/ld.so.cache",
    "/etc/localtime",
    "/usr/share/zoneinfo",
    "/dev/urandom",
    "/dev/random",
    "/dev/zero",
)

#: Paths granted read/write on top of ``context.write_paths``.
SYSTEM_WRITE_PATHS: tuple[str, ...] = ("/dev/null",)


class _RulesetAttr(ctypes.Structure):
    """``struct landlock_ruleset_attr``: three u64 bitmasks, grown one field per ABI step.

    The kernel takes the struct's size as an argument and accepts any known prefix, so an old
    kernel is given only the fields it understands: 8 bytes (fs), 16 (+net, ABI 4) or 24
    (+scoped, ABI 6). Passing a field the kernel does not know would fail with E2BIG.
    """

    _fields_ = [
        ("handled_access_fs", ctypes.c_uint64),
        ("handled_access_net", ctypes.c_uint64),
        ("scoped", ctypes.c_uint64),
    ]


class _PathBeneathAttr(ctypes.Structure):
    """``struct landlock_path_beneath_attr``: u64 allowed_access + s32 parent_fd, *packed*.

    The kernel declares it ``__attribute__((packed))``, so it is 12 bytes, not the 16 a natural
    C layout would give; ``_pack_ = 1`` reproduces that.
    """

    _pack_ = 1
    _fields_ = [
        ("allowed_access", ctypes.c_uint64),
        ("parent_fd", ctypes.c_int32),
    ]


def _syscall(number: int, *args: int | None) -> int:
    """syscall(2) with every argument passed as a C long; raise ``OSError`` on -1."""
    c_args = [ctypes.c_long(0 if a is None else a) for a in args]
    result: int = libc().syscall(ctypes.c_long(number), *c_args)
    if result < 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))
    return result


def abi_version() -> int:
    """The highest Landlock ABI the running kernel supports; 0 when it has no Landlock.

    ENOSYS (kernel built without it) and EOPNOTSUPP (built in but not enabled at boot) mean
    "unsupported"; any other failure is raised as ``OSError``.
    """
    try:
        return _syscall(SYS_LANDLOCK_CREATE_RULESET, None, 0, LANDLOCK_CREATE_RULESET_VERSION)
    except OSError as exc:
        if exc.errno in (errno.ENOSYS, errno.EOPNOTSUPP):
            return 0
        raise


def _describe_abi(abi: int) -> str:
    gives = ["filesystem rules"]
    if abi >= 4:
        gives.append("TCP bind/connect rules")
    if abi >= 6:
        gives.append("signal and abstract-socket scopes")
    return f"Landlock ABI {abi}: " + ", ".join(gives)


def probe() -> Probe:
    try:
        abi = abi_version()
    except OSError as exc:
        return Probe(False, f"landlock_create_ruleset(VERSION) failed: {exc.strerror}")
    if abi < 1:
        return Probe(False, "the kernel does not support Landlock (or it is disabled at boot)")
    return Probe(True, _describe_abi(abi), version=f"ABI {abi}")


def handled_fs(abi: int) -> int:
    """Every filesystem right ``abi`` knows: anything not handled would silently stay allowed."""
    rights = _FS_ABI_1
    if abi >= 2:
        rights |= ACCESS_FS_REFER
    if abi >= 3:
        rights |= ACCESS_FS_TRUNCATE
    if abi >= 5:
        rights |= ACCESS_FS_IOCTL_DEV
    return rights


def _unique(paths: Iterable[str]) -> list[str]:
    seen: dict[str, None] = {}
    for path in paths:
        if not os.path.isabs(path):
            raise LayerError(f"path {path!r} is not absolute")
        seen.setdefault(os.path.normpath(path), None)
    return list(seen)


#: The worker's private /tmp: a fresh tmpfs of its own mount namespace, not a rule path the
#: worker checked (it holds nothing of the host's).
PRIVATE_TMP = "/tmp"


def _recheck_opened(fd: int, path: str, state: tuple[str, ...]) -> None:
    """Refuse the rule unless the inode ``fd`` names is still a place it may grant.

    The worker checked ``path`` (:mod:`policies.paths`) before this layer opened it; a
    component swapped for a symlink in between (by an earlier worker that could write there)
    would make the rule grant where the link points. What the kernel opened is what the rule
    grants, so its path is what is checked here."""
    try:
        opened = os.readlink(f"/proc/self/fd/{fd}")
    except OSError as exc:
        raise LayerError(f"cannot tell what the rule {path!r} opened: {exc.strerror}") from None
    reason = unsafe_reason(opened, state)
    if reason is not None:
        raise LayerError(f"refusing the rule {path!r}: it now opens {opened!r}, and {reason}")


def _add_path_rule(
    ruleset_fd: int, path: str, access: int, state: tuple[str, ...] | None = None
) -> bool:
    """Allow ``access`` beneath ``path``; False (and no rule) when the path does not exist.

    The path is opened with ``O_PATH``: that needs no read permission and does not open a
    device, it only names the inode the rule is attached to. For a non-directory the rights
    are masked to :data:`ACCESS_FS_FILE`, or the kernel refuses the rule with EINVAL. With
    ``state``, the opened inode is checked again (:func:`_recheck_opened`).
    """
    try:
        fd = os.open(path, os.O_PATH | os.O_CLOEXEC)
    except (FileNotFoundError, NotADirectoryError):
        return False
    except OSError as exc:
        raise LayerError(f"open {path}: {exc.strerror}") from None
    try:
        if state is not None:
            _recheck_opened(fd, path, state)
        if not stat.S_ISDIR(os.fstat(fd).st_mode):
            access &= ACCESS_FS_FILE
        attr = _PathBeneathAttr(allowed_access=access, parent_fd=fd)
        try:
            _syscall(
                SYS_LANDLOCK_ADD_RULE,
                ruleset_fd,
                LANDLOCK_RULE_PATH_BENEATH,
                ctypes.addressof(attr),
                0,
            )
        except OSError as exc:
            raise LayerError(f"landlock_add_rule {path}: {exc.strerror}") from None
    finally:
        os.close(fd)
    return True


def _state_for(path: str, context: LayerContext) -> tuple[str, ...] | None:
    """What ``path``'s opened inode is checked against: the host's state for the rule paths
    the worker checked; None (no check) for the fixed system paths and the private /tmp."""
    if context.state is None or path in SYSTEM_READ_PATHS or path in SYSTEM_WRITE_PATHS:
        return None
    return None if path == PRIVATE_TMP else context.state


def _ensure_no_new_privs() -> None:
    """Landlock requires no_new_privs (or CAP_SYS_ADMIN); set it, it can only be set, not undone.

    Without it a confined process could exec a set-uid program and trick it, running with more
    privileges but under our ruleset, into misbehaving (a confused deputy). The sandbox sets it
    whatever uid it runs as, root included.
    """
    try:
        if prctl(PR_GET_NO_NEW_PRIVS) != 1:
            prctl(PR_SET_NO_NEW_PRIVS, 1)
    except OSError as exc:
        raise LayerError(f"prctl(PR_SET_NO_NEW_PRIVS): {exc.strerror}") from None


def _count(label: str, added: int, missing: int) -> str:
    text = f"{label} {added} paths"
    return text + (f" ({missing} absent, skipped)" if missing else "")


def apply(policy: Policy, context: LayerContext) -> str:
    """Confine the calling process; return e.g. ``"ABI 7: read-only 14 paths, ..."``."""
    try:
        kernel_abi = abi_version()
    except OSError as exc:
        raise LayerError(f"landlock_create_ruleset(VERSION): {exc.strerror}") from None
    if kernel_abi < 1:
        raise LayerError("the kernel does not support Landlock (or it is disabled at boot)")
    abi = min(kernel_abi, KNOWN_ABI)

    fs_rights = handled_fs(abi)
    attr = _RulesetAttr(handled_access_fs=fs_rights)
    size = 8
    notes: list[str] = []
    if abi >= 4:
        size = 16
        if policy.network:
            notes.append("TCP allowed")
        else:
            # Handled with no rule at all: every TCP bind and connect is denied.
            attr.handled_access_net = ACCESS_NET_BIND_TCP | ACCESS_NET_CONNECT_TCP
            notes.append("TCP bind/connect denied")
    else:
        notes.append("TCP not confined (needs ABI 4)")
    if abi >= 6:
        size = 24
        attr.scoped = SCOPE_ABSTRACT_UNIX_SOCKET | SCOPE_SIGNAL
        notes.append("signal+abstract-socket scoped")
    else:
        notes.append("no scopes (needs ABI 6)")

    read_only = _unique([*context.read_paths, *SYSTEM_READ_PATHS])
    read_write = _unique([context.workdir, *context.write_paths, *SYSTEM_WRITE_PATHS])

    try:
        ruleset_fd = _syscall(SYS_LANDLOCK_CREATE_RULESET, ctypes.addressof(attr), size, 0)
    except OSError as exc:
        raise LayerError(f"landlock_create_ruleset: {exc.strerror}") from None
    try:
        ro_added = sum(
            _add_path_rule(ruleset_fd, p, ACCESS_FS_READ_ONLY, _state_for(p, context))
            for p in read_only
        )
        rw_added = sum(
            _add_path_rule(ruleset_fd, p, fs_rights, _state_for(p, context)) for p in read_write
        )
        _ensure_no_new_privs()
        try:
            _syscall(SYS_LANDLOCK_RESTRICT_SELF, ruleset_fd, 0)
        except OSError as exc:
            raise LayerError(f"landlock_restrict_self: {exc.strerror}") from None
    finally:
        os.close(ruleset_fd)

    parts = [
        _count("read-only", ro_added, len(read_only) - ro_added),
        _count("read-write", rw_added, len(read_write) - rw_added),
        *notes,
    ]
    return f"ABI {abi}: " + ", ".join(parts)
