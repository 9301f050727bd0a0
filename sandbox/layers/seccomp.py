"""A seccomp-bpf filter: the kernel interfaces provider code has no business touching return EPERM.

Default action ALLOW with a deny list modelled on Docker's default profile: a provider is ordinary
Python, so the filter only removes what escapes or weakens the other layers (namespaces, mounts,
other processes' memory, kernel modules, BPF, io_uring, keyrings, the clock, the terminal).
``clone3`` returns ENOSYS so glibc falls back to ``clone``, whose flags a filter *can* inspect (a
``clone3`` flag word lives behind a pointer), and ``clone`` with any namespace flag is refused.
With ``policy.network`` false, sockets other than AF_UNIX fail with EAFNOSUPPORT; a new AF_UNIX
socket fails with EPERM whatever the policy (``socketpair`` still works): the worker makes its
connection to the host before the filter is loaded.

libseccomp (through ``pyseccomp``) sets no_new_privs before loading (``CTL_NNP``, kept on), and
its filter kills the process on a foreign architecture (int 0x80 / x32 calls cannot dodge the
x86_64 rules). ``pyseccomp`` is imported lazily: the host imports ``sandbox.layers`` and loading
libseccomp there would be wasted work, or an import error on a machine without it.
"""

from __future__ import annotations

import ctypes
import errno
import os
import signal
import sys
from typing import Any

from policies import Policy
from sandbox.layers import LayerContext, LayerError, Probe
from sandbox.libc import PR_GET_NO_NEW_PRIVS, prctl

NAME = "seccomp"
STAGE = "worker"

PR_GET_SECCOMP = 21

#: Syscalls denied with EPERM, grouped by the threat they carry. Names this architecture does not
#: have (``vm86`` on x86_64, say) are skipped when the filter is built.
DENIED_SYSCALLS: tuple[str, ...] = (
    # reading or writing another process's memory, registers or file descriptors
    "ptrace", "process_vm_readv", "process_vm_writev", "pidfd_getfd", "kcmp",
    # changing the mount table / filesystem root (escapes the mount namespace and landlock view)
    "mount", "umount2", "pivot_root", "chroot", "move_mount", "open_tree", "open_tree_attr",
    "fsopen", "fsconfig", "fsmount", "fspick", "mount_setattr",
    # entering or creating namespaces (user namespaces unlock a large kernel attack surface)
    "unshare", "setns",
    # loading programs into the kernel, and perf's history of kernel bugs and info leaks
    "bpf", "perf_event_open",
    # kernel keyrings are not namespaced: reading or planting keys of other users of the uid
    "keyctl", "add_key", "request_key",
    # userfaultfd stalls kernel copies at will, a staple of exploiting kernel races
    "userfaultfd",
    # io_uring performs syscalls the filter never sees, and has a long CVE record
    "io_uring_setup", "io_uring_enter", "io_uring_register",
    # replacing the running kernel or loading code into it
    "kexec_load", "kexec_file_load", "init_module", "finit_module", "delete_module",
    # taking the whole machine down or redirecting its swap / process accounting
    "reboot", "swapon", "swapoff", "acct",
    # changing the system clock for everyone (breaks TLS, logs, timeouts)
    "settimeofday", "clock_settime", "clock_adjtime", "adjtimex",
    # raw I/O port access
    "iopl", "ioperm",
    # opening files by handle bypasses path-based confinement (the "shocker" container escape)
    "open_by_handle_at", "name_to_handle_at",
    # inotify instances are counted per user up every user namespace: under a non-root host a
    # worker took all 128 of the host user's (fs.inotify.max_user_instances)
    "inotify_init", "inotify_init1",
    # kernel and system information or control that a provider never needs
    "lookup_dcookie", "quotactl", "syslog", "vhangup", "fanotify_init",
    # NUMA placement of memory: can degrade other processes' performance (CAP_SYS_NICE in Docker)
    "mbind", "set_mempolicy", "migrate_pages", "move_pages",
    # obsolete interfaces kept only for compatibility: pure attack surface
    "nfsservctl", "uselib", "_sysctl", "sysfs", "ustat", "get_kernel_syms", "query_module",
    "create_module", "vm86", "vm86old",
)  # fmt: skip

#: ``clone`` flags that create a namespace; ``clone`` with any of them fails with EPERM.
CLONE_NAMESPACE_FLAGS: dict[str, int] = {
    "CLONE_NEWNS": 0x00020000,
    "CLONE_NEWCGROUP": 0x02000000,
    "CLONE_NEWUTS": 0x04000000,
    "CLONE_NEWIPC": 0x08000000,
    "CLONE_NEWUSER": 0x10000000,
    "CLONE_NEWPID": 0x20000000,
    "CLONE_NEWNET": 0x40000000,
    "CLONE_NEWTIME": 0x00000080,
}

#: Terminal ioctls that inject input into (or reconfigure) a terminal someone else reads from.
TIOCSTI = 0x5412
TIOCLINUX = 0x541C
DENIED_IOCTLS: dict[str, int] = {"TIOCSTI": TIOCSTI, "TIOCLINUX": TIOCLINUX}

AF_UNIX = 1
SOCK_DGRAM = 2
#: The socket type's own bits (``SOCK_NONBLOCK`` and ``SOCK_CLOEXEC`` are above them).
SOCK_TYPE_MASK = 0xF


def _import_pyseccomp() -> Any:
    """``pyseccomp``, or ``LayerError`` saying why it cannot be used (it raises at import time
    when libseccomp is missing, so every exception counts)."""
    if not sys.platform.startswith("linux"):
        raise LayerError("seccomp is Linux-only")
    # Its import finds libc and libseccomp with ``ctypes.util.find_library``, which runs
    # ``ldconfig -p`` in a child: a Ctrl-C landing meanwhile (``sandbox doctor``) left that
    # child unreaped, a zombie for whoever inherits it. The stop signals wait until it is done.
    blocked = signal.pthread_sigmask(signal.SIG_BLOCK, _STOP_SIGNALS)
    try:
        import pyseccomp
    except Exception as exc:
        raise LayerError(f"pyseccomp/libseccomp unavailable: {type(exc).__name__}: {exc}") from None
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, blocked)
    return pyseccomp


#: What :func:`_import_pyseccomp` holds off.
_STOP_SIGNALS = {signal.SIGINT, signal.SIGTERM, signal.SIGHUP}


def _library_version(seccomp: Any) -> str:
    """``libseccomp X.Y.Z API N`` as far as it can be found out."""

    class _Version(ctypes.Structure):
        _fields_ = [
            ("major", ctypes.c_uint),
            ("minor", ctypes.c_uint),
            ("micro", ctypes.c_uint),
        ]

    parts = []
    getter = getattr(seccomp, "get_library_version", None)
    lib = getattr(seccomp, "_libseccomp", None)
    try:
        if getter is not None:
            parts.append(f"libseccomp {getter()}")
        elif lib is not None:
            fn = lib.seccomp_version
            fn.argtypes = ()
            fn.restype = ctypes.POINTER(_Version)
            v = fn().contents
            parts.append(f"libseccomp {v.major}.{v.minor}.{v.micro}")
    except Exception:  # an old libseccomp without seccomp_version(): the API level still helps
        parts.append("libseccomp (version unknown)")
    try:
        parts.append(f"API {seccomp.get_api()}")
    except Exception:
        pass
    return " ".join(parts) or "libseccomp"


def _kernel_support() -> str | None:
    """None when the kernel can load seccomp filters, else why not."""
    try:
        prctl(PR_GET_SECCOMP)
    except OSError as exc:
        return f"kernel without seccomp (prctl(PR_GET_SECCOMP): {exc.strerror})"
    try:
        with open("/proc/sys/kernel/seccomp/actions_avail") as f:
            actions = f.read().split()
    except OSError:
        return None  # older kernels lack the file; prctl answering is enough
    if "errno" not in actions:
        return f"kernel seccomp filters lack the errno action (available: {' '.join(actions)})"
    return None


def probe() -> Probe:
    try:
        seccomp = _import_pyseccomp()
    except LayerError as exc:
        return Probe(False, f"not available: {exc}")
    try:
        version = _library_version(seccomp)
    except Exception as exc:
        return Probe(False, f"not available: libseccomp does not answer: {exc}")
    why = _kernel_support()
    if why is not None:
        return Probe(False, f"not available: {why}", version)
    return Probe(True, "seccomp filters and libseccomp are available", version)


#: Syscalls newer than the libseccomp a machine may have, by their number in the table every
#: architecture has shared since Linux 5.1 (424 and up), for the architectures we run on.
UNIFIED_NUMBERS = {"open_tree_attr": 467}
_UNIFIED_ARCHES = ("x86_64", "aarch64")


def _resolve(seccomp: Any, name: str) -> int | None:
    """The native syscall number of ``name``, or None when this architecture has no such call
    (libseccomp answers -1 for unknown names and negative pseudo-numbers for other arches')."""
    try:
        number = int(seccomp.resolve_syscall(seccomp.Arch.NATIVE, name))
    except Exception:
        return None
    if number < 0 and name in UNIFIED_NUMBERS and os.uname().machine in _UNIFIED_ARCHES:
        return UNIFIED_NUMBERS[name]
    return number if number >= 0 else None


def _seccomp_mode() -> str:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("Seccomp:"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "?"


#: Filters built ahead of need, by ``policy.network`` (see :func:`prebuild`): the filter, what
#: it holds (for the report) and the syscalls this architecture does not have.
_PREBUILT: dict[bool, tuple[Any, list[str], list[str]]] = {}


def prebuild() -> None:
    """Build the filter for both ``network`` settings now. The zygote calls this: each launcher
    it forks inherits them (a libseccomp filter is plain memory: no descriptor, no thread) and
    its worker loads one, instead of spending ~2 ms of its start building it (75 rules through
    ctypes). The zygote never loads one itself. Anything that fails here is left for
    :func:`apply` to meet and report."""
    try:
        seccomp = _import_pyseccomp()
        if _kernel_support() is not None:
            return
        for network in (False, True):
            _PREBUILT[network] = _build(seccomp, network)
    except Exception:
        _PREBUILT.clear()


def _build(seccomp: Any, network: bool) -> tuple[Any, list[str], list[str]]:
    """The filter of a worker whose policy says ``network``, not loaded."""
    eperm = seccomp.ERRNO(errno.EPERM)
    skipped: list[str] = []
    sf = seccomp.SyscallFilter(seccomp.ALLOW)
    # no_new_privs is libseccomp's default; insist on it (a filter without it needs
    # CAP_SYS_ADMIN and would let a setuid binary run under a filter it did not expect).
    sf.set_attr(seccomp.Attr.CTL_NNP, 1)
    tsync = getattr(seccomp.Attr, "CTL_TSYNC", None)
    if tsync is not None:
        try:
            sf.set_attr(tsync, 1)  # cover every thread, should the worker have started any
        except OSError:
            pass

    denied = 0
    for name in DENIED_SYSCALLS:
        number = _resolve(seccomp, name)
        if number is None:
            skipped.append(name)
            continue
        sf.add_rule(eperm, number)
        denied += 1
    parts = [f"deny list of {denied} syscalls (EPERM)"]

    # personality(2): only the default persona (0) is allowed; READ_IMPLIES_EXEC,
    # ADDR_NO_RANDOMIZE and friends weaken exploit mitigations. libseccomp cannot put two
    # comparisons on one argument, so the 0xffffffff query is refused too.
    personality = _resolve(seccomp, "personality")
    if personality is not None:
        sf.add_rule(eperm, personality, seccomp.Arg(0, seccomp.NE, 0))
        parts.append("personality other than 0")

    clone3 = _resolve(seccomp, "clone3")
    if clone3 is not None:
        sf.add_rule(seccomp.ERRNO(errno.ENOSYS), clone3)
        parts.append("clone3 ENOSYS")

    clone = _resolve(seccomp, "clone")
    if clone is not None:
        for flag in CLONE_NAMESPACE_FLAGS.values():
            # Rules for one syscall are ORed: any namespace flag set is refused.
            sf.add_rule(eperm, clone, seccomp.Arg(0, seccomp.MASKED_EQ, flag, flag))
        parts.append("namespace flags on clone")

    ioctl = _resolve(seccomp, "ioctl")
    if ioctl is not None:
        for request in DENIED_IOCTLS.values():
            # The kernel takes the request as unsigned int: compare the low 32 bits only, or
            # garbage in the upper half would slip past.
            sf.add_rule(eperm, ioctl, seccomp.Arg(1, seccomp.MASKED_EQ, 0xFFFFFFFF, request))
        parts.append("TIOCSTI/TIOCLINUX")

    socket_call = _resolve(seccomp, "socket")
    socketpair_call = _resolve(seccomp, "socketpair")
    if socket_call is not None and socketpair_call is not None:
        # The worker's one Unix socket (its wire) is made before this filter is loaded. A new
        # one could connect to any pathname socket the worker's uid may open (Landlock has no
        # right for connect up to ABI 7): the host user's agents, buses and daemons when the
        # host is not root. A stream pair reaches nothing outside; a datagram pair can
        # sendto() any pathname datagram socket (/dev/log, journald), so it is refused too.
        # The kernel reads family and type as int: compare the low 32 bits only, or a value
        # with high bits set (0x1_00000001) would pass for "not AF_UNIX" (a review's bypass).
        unix = seccomp.Arg(0, seccomp.MASKED_EQ, 0xFFFFFFFF, AF_UNIX)
        sf.add_rule(eperm, socket_call, unix)
        sf.add_rule(eperm, socketpair_call, unix,
                    seccomp.Arg(1, seccomp.MASKED_EQ, SOCK_TYPE_MASK, SOCK_DGRAM))  # fmt: skip
        parts.append("new AF_UNIX sockets but stream pairs")
    if not network:
        eafnosupport = seccomp.ERRNO(errno.EAFNOSUPPORT)
        for name in ("socket", "socketpair"):
            number = _resolve(seccomp, name)
            if number is not None:
                sf.add_rule(eafnosupport, number, seccomp.Arg(0, seccomp.NE, AF_UNIX))
        parts.append("non-AF_UNIX sockets")
    return sf, parts, skipped


def apply(policy: Policy, context: LayerContext) -> str:
    seccomp = _import_pyseccomp()
    why = _kernel_support()
    if why is not None:
        raise LayerError(why)
    try:
        built = _PREBUILT.pop(bool(policy.network), None)
        _PREBUILT.clear()  # (the other one is not needed in this process)
        sf, parts, skipped = built if built is not None else _build(seccomp, policy.network)
        sf.load()
    except LayerError:
        raise
    except Exception as exc:
        raise LayerError(f"building or loading the seccomp filter failed: {exc}") from None

    # Trust, but verify: the kernel must now report filter mode and no_new_privs.
    mode = _seccomp_mode()
    if mode not in ("2", "?"):
        raise LayerError(f"seccomp filter loaded but /proc/self/status says Seccomp: {mode}")
    try:
        nnp = prctl(PR_GET_NO_NEW_PRIVS)
    except OSError as exc:
        raise LayerError(f"cannot confirm no_new_privs: {exc}") from None
    if nnp != 1:
        raise LayerError("seccomp filter loaded but no_new_privs is not set")
    if skipped:
        parts.append(f"({len(skipped)} not on this arch: {' '.join(skipped)})")
    return ", ".join(parts)


def prepare_stage() -> None:
    """Load libseccomp now: once Landlock is on, ``find_library`` can no longer locate it."""
    try:
        _import_pyseccomp()
    except LayerError:
        pass  # apply() reports it
