"""uid drop: provider code never runs as root and holds no capability.

When the host is root, the worker switches to the dedicated unprivileged uid and gid the host
chose for it (supplementary groups cleared). Changing every uid from 0 clears the capability sets,
and the kernel also makes the process non-dumpable, so no other process of that uid can ptrace it
or read its memory. When the host is not root, the worker already runs as the host's user inside
a user namespace, where it holds capabilities over its own namespaces: those are dropped
explicitly. Either way the result is checked from ``/proc/self/status``.
"""

from __future__ import annotations

import ctypes
import os

from policies import Policy
from sandbox.layers import LayerContext, LayerError, Probe
from sandbox.libc import PR_SET_DUMPABLE, libc, prctl

NAME = "uid_drop"
STAGE = "worker"

_PR_CAPBSET_DROP = 24
_PR_CAP_AMBIENT = 47
_PR_CAP_AMBIENT_CLEAR_ALL = 4
_LINUX_CAPABILITY_VERSION_3 = 0x20080522
_CAP_FIELDS = ("CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb")


class _CapHeader(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class _CapData(ctypes.Structure):
    _fields_ = [
        ("effective", ctypes.c_uint32),
        ("permitted", ctypes.c_uint32),
        ("inheritable", ctypes.c_uint32),
    ]


def probe() -> Probe:
    if os.geteuid() == 0:
        return Probe(True, "the host is root: workers switch to a dedicated unprivileged uid")
    return Probe(True, f"the host is not root: workers run as uid {os.geteuid()}, no capabilities")


def capabilities() -> dict[str, int]:
    """The capability sets of this process, from /proc/self/status."""
    found = {}
    with open("/proc/self/status") as f:
        for line in f:
            key, _, value = line.partition(":")
            if key in _CAP_FIELDS:
                found[key] = int(value.strip(), 16)
    return found


def _drop_all_capabilities() -> None:
    """Clear the bounding, ambient, effective, permitted and inheritable sets."""
    last_cap = 63
    try:
        with open("/proc/sys/kernel/cap_last_cap") as f:
            last_cap = int(f.read())
    except (OSError, ValueError):
        pass
    for cap in range(last_cap + 1):
        try:
            prctl(_PR_CAPBSET_DROP, cap)
        except OSError:
            break  # without CAP_SETPCAP the bounding set cannot shrink; the sets below still can
    try:
        prctl(_PR_CAP_AMBIENT, _PR_CAP_AMBIENT_CLEAR_ALL)
    except OSError:
        pass
    header = _CapHeader(_LINUX_CAPABILITY_VERSION_3, 0)
    data = (_CapData * 2)()
    if libc().capset(ctypes.byref(header), data) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"capset: {os.strerror(err)}")


def _unreachable(path: str) -> bool:
    """Whether this uid is refused the way to ``path`` (EACCES), as opposed to its absence."""
    try:
        os.stat(path)
    except PermissionError:
        return True
    except OSError:
        return False
    return False


def apply(policy: Policy, context: LayerContext) -> str:
    try:
        if os.geteuid() == 0:
            if context.uid is None or context.gid is None or context.uid == 0:
                raise LayerError("the host is root but gave no unprivileged uid to switch to")
            os.setgroups([])
            os.setresgid(context.gid, context.gid, context.gid)
            os.setresuid(context.uid, context.uid, context.uid)
            how = f"switched to uid {context.uid}, gid {context.gid}, no supplementary groups"
        else:
            _drop_all_capabilities()
            how = f"runs as uid {os.getuid()}; capabilities dropped"
        prctl(PR_SET_DUMPABLE, 0)
        caps = capabilities()
    except OSError as exc:
        raise LayerError(str(exc)) from None
    if 0 in (os.getuid(), os.geteuid(), os.getgid(), os.getegid()):
        raise LayerError("still uid or gid 0 after the switch")
    # A path the worker may read but cannot even reach (a parent it may not search) means the
    # runtime would fail later in a confusing way: say it now, naming the path. A path that
    # does not exist at all is not that (a policy's missing path is reported as skipped).
    unreadable = [p for p in context.read_paths if _unreachable(p)]
    if unreadable:
        raise LayerError(
            f"uid {os.getuid()} cannot reach {unreadable[0]} (a parent directory is not "
            "searchable by other users); apply the mount namespace layer, which exposes it, "
            "or install Python where other users can read it"
        )
    held = {k: v for k, v in caps.items() if k in ("CapPrm", "CapEff", "CapAmb") and v}
    if held:
        raise LayerError(f"capabilities remain: {held}")
    return how + "; CapPrm=CapEff=CapAmb=0"
