"""A hostile provider: every action tries one real escape from the sandbox and reports the effect.

Each action returns ``{"escaped": bool, "detail": str, "errno": int | None, ...}``: it decides
"escaped" by checking the *effect* (content read, connection made, signal accepted, namespace
entered), never by the absence of an exception alone. Actions that take the worker down (bombs,
spins, floods) are judged by the call's outcome instead (see ``catalog.py``).

SAFETY. The test machine is a shared dev machine and the tests run as root, so every action is
bounded by construction even if the sandbox failed entirely: at most 2000 processes, 4 GiB of
memory, 300 MB written, 60 s of spinning or sleeping. Attacks that could do lasting harm if they
succeeded (kill(-1), ptrace, reboot, modules, the clock, mount, mknod, swapon, acct, hostname,
sysrq) first check that this process is neither root nor holds a capability; if it is, they
report ``escaped`` *without trying* ("guarded"). Where they do try, they use harmless arguments
(invalid magic numbers, invalid clock ids, NULL module images, a tmpfs inside the own workdir).
Never run these actions outside a sandbox.
"""

from __future__ import annotations

import ctypes
import errno as errno_module
import hashlib
import os
import platform
import resource
import signal
import socket
import stat
import time
from collections.abc import Callable
from typing import Any

from providers import Provider
from providers.examples.hostile import allocate_in_children as hostile_allocate_in_children
from providers.examples.hostile import flood_stdout as hostile_flood_stdout

provider = Provider("attacks", version="1.0", description="Real sandbox escape attempts.")

MiB = 1024 * 1024
MAX_SECONDS = 60.0
MAX_PROCESSES = 2000
MAX_MEMORY_MIB = 4096
MAX_WRITE_MB = 300
MAX_INODES = 20_000

_OPEN = {"type": "object"}
Result = dict[str, Any]


def attack(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Register ``fn`` with an open input schema and any JSON output."""
    return provider.action(input=_OPEN, output={})(fn)


def _libc() -> ctypes.CDLL:
    return ctypes.CDLL(None, use_errno=True)


def _err(exc: OSError) -> Result:
    return {"escaped": False, "detail": f"{type(exc).__name__}: {exc}", "errno": exc.errno}


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _clamp(value: float, cap: float) -> float:
    return 0.0 if not value > 0 else min(float(value), cap)


# --- syscall numbers (x86_64 and aarch64; the rest use libc wrappers) ----------------------------

_SYSCALLS = {
    "x86_64": {
        "init_module": 175, "finit_module": 313, "reboot": 169, "bpf": 321,
        "userfaultfd": 323, "io_uring_setup": 425, "keyctl": 250, "perf_event_open": 298,
        "capget": 125, "setns": 308,
    },
    "aarch64": {
        "init_module": 105, "finit_module": 273, "reboot": 142, "bpf": 280,
        "userfaultfd": 282, "io_uring_setup": 425, "keyctl": 219, "perf_event_open": 241,
        "capget": 90, "setns": 268,
    },
}  # fmt: skip


def _syscall(name: str, *args: int | ctypes._SimpleCData[Any] | ctypes.Array[Any] | None) -> int:
    """Raw syscall; returns the result or raises OSError with errno."""
    number = _SYSCALLS[platform.machine()][name]
    libc = _libc()
    c_args = [
        ctypes.c_long(0) if a is None else (ctypes.c_long(a) if isinstance(a, int) else a)
        for a in args
    ]
    result = int(libc.syscall(ctypes.c_long(number), *c_args))
    if result == -1:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))
    return result


def _call(fn: Any, *args: Any) -> int:
    result = int(fn(*args))
    if result == -1:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))
    return result


# --- the guard ------------------------------------------------------------------------------------


class _CapHeader(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class _CapData(ctypes.Structure):
    _fields_ = [("effective", ctypes.c_uint32), ("permitted", ctypes.c_uint32),
                ("inheritable", ctypes.c_uint32)]  # fmt: skip


def privileged() -> str | None:
    """Why this process must not try a dangerous attack (root, or any capability), else None.

    capget(2) needs no file access (Landlock may hide /proc); /proc/self/status is the second
    opinion when readable. Any doubt counts as privileged.
    """
    if 0 in (os.getuid(), os.geteuid(), os.getgid(), os.getegid()):
        return "running as root (uid or gid 0)"
    try:
        header = _CapHeader(0x20080522, 0)
        data = (_CapData * 2)()
        _syscall("capget", ctypes.addressof(header), ctypes.addressof(data))
        for item in data:
            if item.effective or item.permitted:
                return "holds capabilities (capget)"
    except (OSError, KeyError):
        return "cannot read its own capabilities"
    try:
        with open("/proc/self/status") as f:
            for line in f:
                key, _, value = line.partition(":")
                if key in ("CapEff", "CapPrm", "CapAmb") and int(value.strip(), 16):
                    return f"holds capabilities ({key})"
    except OSError:
        pass
    return None


def _guard() -> Result | None:
    why = privileged()
    if why is None:
        return None
    return {"escaped": True, "guarded": True, "errno": None,
            "detail": f"{why}: attack not attempted"}  # fmt: skip


def _in_child(body: Callable[[], int]) -> tuple[int, str]:
    """Run ``body`` in a forked child (single-threaded, so namespace calls are meaningful and the
    worker is not changed); returns (errno or 0, text)."""
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - child
        code = 0
        message = b"ok"
        try:
            os.close(read)
            body()
        except OSError as exc:
            code = exc.errno or 255
            message = str(exc).encode()[:300]
        except BaseException as exc:
            code = 254
            message = repr(exc).encode()[:300]
        finally:
            os.write(write, message)
            os._exit(code if code < 256 else 255)
    os.close(write)
    with os.fdopen(read, "rb") as f:
        text = f.read().decode(errors="replace")
    _, status = os.waitpid(pid, 0)
    return (os.WEXITSTATUS(status) if os.WIFEXITED(status) else 253), text


def _contained_unless(ok: bool, detail: str, err: int | None = None, **extra: Any) -> Result:
    return {"escaped": ok, "detail": detail, "errno": err, **extra}


def _set_comm(marker: str) -> None:
    """Name this process (PR_SET_NAME) so the test can find it from outside with psutil."""
    try:
        _libc().prctl(15, ctypes.c_char_p(marker.encode()[:15]), 0, 0, 0)
    except Exception:
        pass


# --- files ----------------------------------------------------------------------------------------


@attack
def read_file(path: str) -> Result:
    """Read a file outside the allowance; reports its length and hash, never its content."""
    try:
        with open(path, "rb") as f:
            data = f.read(1 << 20)
    except OSError as exc:
        return _err(exc)
    return {"escaped": True, "detail": f"read {len(data)} bytes", "errno": None,
            "sha256": _sha(data), "length": len(data)}  # fmt: skip


@attack
def list_dir(path: str) -> Result:
    """List a directory outside the allowance; reports how many entries and their hash."""
    try:
        names = sorted(os.listdir(path))
    except OSError as exc:
        return _err(exc)
    return {"escaped": True, "detail": f"listed {len(names)} entries", "errno": None,
            "count": len(names), "sha256": _sha("\n".join(names).encode())}  # fmt: skip


@attack
def write_file(path: str, text: str = "escaped") -> Result:
    """Create a file outside the workdir (the test checks the host side for it)."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        with os.fdopen(fd, "w") as f:
            f.write(text)
    except OSError as exc:
        return _err(exc)
    return {"escaped": True, "detail": f"created {path}", "errno": None}


@attack
def plant_symlinks(target_file: str, target_dir: str) -> Result:
    """Plant links in the workdir to a host file and a host directory, then use them."""
    here = os.getcwd()
    notes = []
    try:
        os.symlink(target_file, os.path.join(here, "link_file"))
        os.symlink(target_dir, os.path.join(here, "link_dir"))
        notes.append("planted")
    except OSError as exc:
        return {**_err(exc), "planted": False}
    escaped = False
    try:
        with open(os.path.join(here, "link_file"), "rb") as f:
            data = f.read()
        escaped = True
        notes.append(f"read the target through the link ({len(data)} bytes)")
        sha: str | None = _sha(data)
    except OSError as exc:
        notes.append(f"read through link: {exc}")
        sha = None
    try:
        os.listdir(os.path.join(here, "link_dir"))
        escaped = True
        notes.append("listed the target directory through the link")
    except OSError as exc:
        notes.append(f"list through link: {exc}")
    return {"escaped": escaped, "planted": True, "sha256": sha, "errno": None,
            "detail": "; ".join(notes), "workdir": here}  # fmt: skip


def _fill_bytes(directory: str, cap_mb: int, tag: str = "") -> Result:
    """Write 8 MiB files (below RLIMIT_FSIZE) into ``directory`` until something stops it, or
    ``cap_mb`` (at most 300 MB); give the bytes back if nothing did. ``tag`` (the run's own)
    names the files, so the judge finds exactly these where they should not be."""
    cap = int(_clamp(cap_mb, MAX_WRITE_MB)) * MiB
    chunk = b"\0" * MiB
    written = 0
    paths: list[str] = []
    stop: OSError | None = None
    while written < cap and stop is None:
        path = os.path.join(directory, f"escape-fill-{tag or os.getpid()}-{len(paths)}")
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except OSError as exc:
            stop = exc
            break
        paths.append(path)
        try:
            for _ in range(8):  # 8 MiB per file: below RLIMIT_FSIZE
                if written >= cap:
                    break
                written += os.write(fd, chunk)
        except OSError as exc:
            stop = exc
        finally:
            os.close(fd)
    escaped = written >= cap
    if escaped:  # nothing stopped us: the bytes went somewhere real, give them back
        for path in paths:
            try:
                os.unlink(path)
            except OSError:
                pass
    return {"escaped": escaped, "written": written, "errno": stop.errno if stop else None,
            "directory": directory,
            "detail": f"wrote {written} bytes in {len(paths)} files into {directory}; stopped by "
            f"{stop if stop else 'the cap'}"}  # fmt: skip


def _fill_inodes(directory: str, cap: int, tag: str = "") -> Result:
    """Create empty files in a new directory under ``directory`` until there are no inodes left
    (or ``cap``, at most 20000); remove them again if nothing stopped it."""
    limit = int(_clamp(cap, MAX_INODES))
    base = os.path.join(directory, f"escape-inodes-{tag or os.getpid()}")
    made = 0
    stop: OSError | None = None
    try:
        os.mkdir(base)
        for i in range(limit):
            os.close(os.open(f"{base}/{i}", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
            made += 1
    except OSError as exc:
        stop = exc
    escaped = made >= limit
    if escaped:
        for i in range(made):
            try:
                os.unlink(f"{base}/{i}")
            except OSError:
                pass
        try:
            os.rmdir(base)
        except OSError:
            pass
    return {"escaped": escaped, "created": made, "errno": stop.errno if stop else None,
            "detail": f"created {made} files in {directory}; "
            f"stopped by {stop or 'the cap'}"}  # fmt: skip


@attack
def fill_tmp_bytes(cap_mb: int = MAX_WRITE_MB, tag: str = "") -> Result:
    """Write files into /tmp until the disk is full (or ``cap_mb``, at most 300 MB)."""
    return _fill_bytes("/tmp", cap_mb, tag)


@attack
def fill_tmp_inodes(cap: int = MAX_INODES, tag: str = "") -> Result:
    """Create empty files in /tmp until there are no inodes left (or ``cap``, at most 20000)."""
    return _fill_inodes("/tmp", cap, tag)


@attack
def fill_workdir_bytes(cap_mb: int = MAX_WRITE_MB, tag: str = "") -> Result:
    """Write files into the workdir (the cwd) until it is full (or ``cap_mb``, at most 300 MB);
    report what the worker's own view of it says (``statvfs``) and where it is."""
    result = _fill_bytes(os.getcwd(), cap_mb, tag)
    st = os.statvfs(".")
    result["view_free"] = st.f_bavail * st.f_frsize
    result["view_size"] = st.f_blocks * st.f_frsize
    return result


@attack
def fill_workdir_inodes(cap: int = MAX_INODES) -> Result:
    """Create empty files in the workdir until there are no inodes left (or ``cap``)."""
    return _fill_inodes(os.getcwd(), cap)


@attack
def fill_dev_shm(cap_mb: int = 48, tag: str = "") -> Result:
    """Fill POSIX shared memory: /dev/shm is where shm_open puts its objects, and on most
    machines it is one tmpfs (half the RAM) that every process shares."""
    return _fill_bytes("/dev/shm", cap_mb, tag)


# --- other processes ------------------------------------------------------------------------------


@attack
def read_proc(pid: int, what: str, address: int = 0, length: int = 64) -> Result:
    """Read another process through /proc: ``environ`` (hash), ``mem`` at ``address``, ``fd``
    (the link targets), ``cmdline`` (hash)."""
    base = f"/proc/{int(pid)}"
    try:
        if what == "fd":
            links = []
            for entry in os.listdir(f"{base}/fd"):
                try:
                    links.append(os.readlink(f"{base}/fd/{entry}"))
                except OSError as exc:
                    links.append(f"? {exc}")
            return {"escaped": True, "errno": None, "links": links[:200],
                    "detail": f"listed {len(links)} descriptors"}  # fmt: skip
        if what == "mem":
            with open(f"{base}/mem", "rb", buffering=0) as f:
                f.seek(int(address))
                data = f.read(max(1, min(int(length), 4096)))
            return {"escaped": True, "errno": None, "hex": data.hex(),
                    "detail": f"read {len(data)} bytes of memory"}  # fmt: skip
        with open(f"{base}/{what}", "rb") as f:
            data = f.read(1 << 20)
        return {"escaped": True, "errno": None, "sha256": _sha(data), "length": len(data),
                "detail": f"read {len(data)} bytes of {what}"}  # fmt: skip
    except OSError as exc:
        return _err(exc)


@attack
def find_env_secret(name: str) -> Result:
    """Look for the host's secret variable in our environment and in every /proc/*/environ."""
    if name in os.environ:
        return {"escaped": True, "errno": None, "where": "os.environ",
                "sha256": _sha(os.environ[name].encode()),
                "detail": "the variable was passed to the worker"}  # fmt: skip
    needle = name.encode() + b"="
    try:
        entries = [e for e in os.listdir("/proc") if e.isdigit()]
    except OSError as exc:
        return {**_err(exc), "detail": f"not in os.environ; cannot list /proc: {exc}"}
    readable = 0
    for entry in entries:
        try:
            with open(f"/proc/{entry}/environ", "rb") as f:
                data = f.read(1 << 20)
        except OSError:
            continue
        readable += 1
        for item in data.split(b"\0"):
            if item.startswith(needle):
                return {"escaped": True, "errno": None, "where": f"/proc/{entry}/environ",
                        "sha256": _sha(item[len(needle):]),
                        "detail": f"found in /proc/{entry}/environ"}  # fmt: skip
    return {"escaped": False, "errno": None,
            "detail": f"not in os.environ; {readable} of {len(entries)} environ files readable, "
            "none holds it"}  # fmt: skip


def _block_usr2() -> None:
    # If a pid number collides with our own in the pid namespace, the signal must not kill us.
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGUSR2})


@attack
def kill_pid(pid: int, signum: int = int(signal.SIGUSR2)) -> Result:
    """Send a signal to the host process (the test counts SIGUSR2 deliveries)."""
    _block_usr2()
    if int(pid) == os.getpid():
        return {"escaped": False, "errno": None, "detail": "that pid is our own in this namespace"}
    try:
        os.kill(int(pid), int(signum))
    except OSError as exc:
        return _err(exc)
    return {"escaped": True, "errno": None, "detail": f"kill({pid}, {signum}) was accepted"}


@attack
def kill_parent() -> Result:
    """SIGKILL our parent (the sandbox's init / supervisor)."""
    parent = os.getppid()
    try:
        os.kill(parent, signal.SIGKILL)
    except OSError as exc:
        return _err(exc)
    time.sleep(0.3)  # if it died, the parent-death signal ends us now
    if os.getppid() == parent:
        return {"escaped": False, "errno": None,
                "detail": f"kill({parent}, SIGKILL) returned 0 but the parent ignored it "
                "(init of a pid namespace)"}  # fmt: skip
    return {"escaped": True, "errno": None, "detail": f"parent {parent} was killed"}


#: The inode of the machine's initial pid namespace (PROC_PID_INIT_INO, fixed by the kernel).
_INITIAL_PID_NAMESPACE = 0xEFFFFFFC


def _ppids() -> dict[int, int]:
    """pid -> parent pid of every process visible in /proc (raises OSError if /proc is hidden)."""
    parents = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as f:
                stat_line = f.read()
        except OSError:
            continue
        # "pid (comm) state ppid ...": comm may hold spaces and parentheses; split after the last.
        fields = stat_line[stat_line.rindex(b")") + 2 :].split()
        parents[int(entry)] = int(fields[1])
    return parents


def kill_all_blast_radius(run_pid_namespace: int) -> str | None:
    """Why ``kill(-1)`` from here could reach a process that is not the test run's, else None.

    kill(-1) reaches every process of this pid namespace (and those nested in it) that this one
    may signal, but its pid 1. That is harmless when the namespace is the test run's own (the
    run is its pid 1, and says so in ``run_pid_namespace``), or when every process it may signal
    is a descendant of this one (or there is none: ``kill(-1, 0)`` fails with ESRCH, which needs
    no /proc, hidden by Landlock). Otherwise (the machine's namespace, another one, or /proc
    unreadable) firing could kill a process of the person running the tests: do not.
    """
    try:
        namespace = os.stat("/proc/self/ns/pid").st_ino
    except OSError as exc:
        return f"cannot tell its own pid namespace ({exc.strerror})"
    if namespace == _INITIAL_PID_NAMESPACE:
        return "it is in the machine's initial pid namespace"
    if run_pid_namespace and namespace == run_pid_namespace:
        return None
    try:
        os.kill(-1, 0)  # ESRCH: there is no other process it could reach (its pid 1 aside)
    except ProcessLookupError:
        return None
    except OSError:
        pass
    try:
        parents = _ppids()
    except OSError as exc:
        return f"cannot list /proc to see whom kill(-1) would reach ({exc.strerror})"
    me = os.getpid()
    for pid in sorted(parents):
        if pid in (1, me):
            continue
        try:
            os.kill(pid, 0)  # the permission check of a real signal, delivering nothing
        except OSError:
            continue
        ancestor, seen = parents.get(pid, 0), set()
        while ancestor not in (0, 1, me) and ancestor not in seen:
            seen.add(ancestor)
            ancestor = parents.get(ancestor, 0)
        if ancestor != me:
            return f"it may signal pid {pid}: not its own descendant, not the test run's"
    return None


@attack
def kill_all(signum: int = int(signal.SIGUSR2), run_pid_namespace: int = 0) -> Result:
    """kill(-1, sig): every process we may signal (guarded). The kernel answers 0 as soon as
    it *looked at* another process, even if every one refused, so the return value proves
    nothing: the test judges by the effect (SIGUSR2 kills a process without a handler, and the
    host counts the ones it receives).

    Besides the privilege guard, it fires only when it can see that every process the signal
    could reach belongs to the test run (:func:`kill_all_blast_radius`); otherwise it reports
    "escaped" without firing, since the sandbox left it a process outside to hit."""
    guard = _guard()
    if guard:
        return guard
    outside = kill_all_blast_radius(int(run_pid_namespace))
    if outside:
        return {"escaped": True, "guarded": True, "errno": None,
                "detail": f"would escape: {outside}; kill(-1) not attempted"}  # fmt: skip
    _block_usr2()
    try:
        os.kill(-1, int(signum))
    except OSError as exc:
        return _err(exc)
    return {"escaped": False, "errno": None,
            "detail": f"kill(-1, {signum}) returned 0 (see the effect)"}  # fmt: skip


@attack
def signal_pids(pids: list[int], signum: int = int(signal.SIGKILL)) -> Result:
    """Signal the given pids (another provider's worker processes)."""
    _block_usr2()
    hit = []
    errors = []
    for pid in pids:
        if int(pid) in (os.getpid(), os.getppid()) or int(pid) <= 1:
            errors.append(f"{pid}: our own process in this namespace, skipped")
            continue
        try:
            os.kill(int(pid), int(signum))
            hit.append(int(pid))
        except OSError as exc:
            errors.append(f"{pid}: {exc.strerror}")
    return {"escaped": bool(hit), "hit": hit, "errno": None,
            "detail": f"signalled {hit}; " + "; ".join(errors)}  # fmt: skip


def _own_init_is_pid_1() -> bool:
    """Whether pid 1 here is the sandbox's own init: our parent, in a pid namespace that is not
    the machine's. (A non-root host's init runs as the worker's uid, so it may be signalled; it
    is inside the sandbox, and the kernel ignores signals it has no handler for.)"""
    try:
        namespace = os.stat("/proc/self/ns/pid").st_ino
    except OSError:
        return False
    return os.getppid() == 1 and namespace != _INITIAL_PID_NAMESPACE


@attack
def signal_visible_pids() -> Result:
    """kill(pid, 0) every process visible in /proc: which ones outside our own could we signal?"""
    try:
        pids = [int(e) for e in os.listdir("/proc") if e.isdigit()]
    except OSError as exc:
        return {**_err(exc), "detail": f"cannot list /proc: {exc}"}
    me = os.getpid()
    allowed = []
    for pid in pids:
        if pid == me or (pid == 1 and _own_init_is_pid_1()):
            continue
        try:
            os.kill(pid, 0)  # the permission check of a real signal, delivering nothing
            allowed.append(pid)
        except OSError:
            continue
    detail = f"{len(pids)} visible, {len(allowed)} signalable: {allowed[:10]}"
    return {"escaped": bool(allowed), "errno": None, "visible": len(pids), "detail": detail}


PTRACE_SEIZE = 0x4206
PTRACE_INTERRUPT = 0x4207
PTRACE_DETACH = 17


@attack
def ptrace_attach(pid: int) -> Result:
    """PTRACE_SEIZE the host (guarded: root could trace anything). Detaches at once if it works."""
    guard = _guard()
    if guard:
        return guard
    libc = _libc()
    libc.ptrace.argtypes = [ctypes.c_long, ctypes.c_long, ctypes.c_void_p, ctypes.c_void_p]
    libc.ptrace.restype = ctypes.c_long
    try:
        _call(libc.ptrace, PTRACE_SEIZE, int(pid), None, None)
    except OSError as exc:
        return _err(exc)
    try:  # undo: stop it, wait for the stop, detach (a seized tracee must be stopped to detach)
        _call(libc.ptrace, PTRACE_INTERRUPT, int(pid), None, None)
        os.waitpid(int(pid), 0x40000000)  # __WALL
        _call(libc.ptrace, PTRACE_DETACH, int(pid), None, None)
    except OSError:
        pass
    return {"escaped": True, "errno": None, "detail": f"attached to {pid} (and detached)"}


class _IoVec(ctypes.Structure):
    _fields_ = [("base", ctypes.c_void_p), ("len", ctypes.c_size_t)]


@attack
def process_vm_readv(pid: int, address: int, length: int = 32) -> Result:
    """Read the host's memory at ``address`` with process_vm_readv(2)."""
    size = max(1, min(int(length), 4096))
    buffer = ctypes.create_string_buffer(size)
    local = _IoVec(ctypes.cast(buffer, ctypes.c_void_p), size)
    remote = _IoVec(ctypes.c_void_p(int(address)), size)
    libc = _libc()
    libc.process_vm_readv.restype = ctypes.c_ssize_t
    libc.process_vm_readv.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_ulong,
                                      ctypes.c_void_p, ctypes.c_ulong, ctypes.c_ulong]  # fmt: skip
    n = libc.process_vm_readv(int(pid), ctypes.byref(local), 1, ctypes.byref(remote), 1, 0)
    if n < 0:
        err = ctypes.get_errno()
        return {"escaped": False, "errno": err, "detail": f"process_vm_readv: {os.strerror(err)}"}
    return {"escaped": True, "errno": None, "hex": buffer.raw[:n].hex(),
            "detail": f"read {n} bytes of the host's memory"}  # fmt: skip


# --- network and ipc ------------------------------------------------------------------------------


@attack
def inet_socket() -> Result:
    """Create AF_INET sockets (TCP and UDP)."""
    made = []
    errors = []
    for kind in (socket.SOCK_STREAM, socket.SOCK_DGRAM):
        try:
            socket.socket(socket.AF_INET, kind).close()
            made.append(kind.name)
        except OSError as exc:
            errors.append(f"{kind.name}: {exc}")
            err = exc.errno
    if made:
        return {"escaped": True, "errno": None, "detail": f"created {made}; {errors}"}
    return {"escaped": False, "errno": err, "detail": "; ".join(errors)}


@attack
def tcp_connect(host: str, port: int) -> Result:
    """Connect to a TCP listener the test opened on the host's loopback."""
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.settimeout(1.0)
            sock.connect((host, int(port)))
            sock.sendall(b"escaped")
    except OSError as exc:
        return _err(exc)
    return {"escaped": True, "errno": None, "detail": f"connected to {host}:{port}"}


@attack
def unix_connect(path: str) -> Result:
    """Connect to a pathname Unix socket that anyone may open, outside the allowance (a
    non-root host's agents and buses, ``/dev/log``, a rootless container daemon)."""
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(1.0)
            sock.connect(path)
            sock.sendall(b"escaped")
    except OSError as exc:
        return _err(exc)
    return {"escaped": True, "errno": None, "detail": f"connected to {path}"}


@attack
def tcp_bind(port: int, wait: float = 1.5) -> Result:
    """Bind and listen on a TCP port; escaped if the test, from the host, reaches it."""
    try:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    except OSError as exc:
        return _err(exc)
    with sock:
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind(("0.0.0.0", int(port)))
            sock.listen(4)
        except OSError as exc:
            return _err(exc)
        sock.settimeout(_clamp(wait, 5.0))
        try:
            conn, peer = sock.accept()
            conn.close()
        except OSError:
            return {"escaped": False, "errno": None, "bound": True,
                    "detail": f"bound port {port}, but nothing from the host reached it "
                    "(isolated network namespace)"}  # fmt: skip
    return {"escaped": True, "errno": None, "bound": True,
            "detail": f"bound port {port} and accepted a connection from {peer}"}  # fmt: skip


@attack
def zmq_forge(path: str, routing_id: str) -> Result:
    """Connect to another worker's ipc endpoint and send forged HELLO/RESULT frames as it."""
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
            probe.settimeout(1.0)
            probe.connect(path)
    except OSError as exc:
        return _err(exc)

    def forge() -> int:
        import zmq

        context = zmq.Context(io_threads=1)
        try:
            dealer = context.socket(zmq.DEALER)
            dealer.setsockopt(zmq.IDENTITY, routing_id.encode())
            dealer.setsockopt(zmq.LINGER, 500)
            dealer.connect(f"ipc://{path}")
            forged = [
                [b"HELLO", b'{"token": "forged", "pid": 1, "provider": {"name": "echo"}, '
                 b'"actions": [], "layers": []}'],
                [b"RESULT", b'{"call_id": "c1", "value": "forged", "usage": {"cpu_s": 0, '
                 b'"max_rss_bytes": 0, "cpu_total_s": 0}}'],
            ]  # fmt: skip
            for frames in forged:
                dealer.send_multipart(frames)
            time.sleep(0.3)
            dealer.close()
        finally:
            context.term()
        return 0

    # Connecting is the escape; the forging runs in a child, so a failure of libzmq there (it
    # aborts when it cannot start its I/O thread, e.g. for want of RLIMIT_NPROC) is reported.
    code, text = _in_child(forge)
    sent = "sent forged frames" if code == 0 else f"could not send forged frames ({code}: {text})"
    return {"escaped": True, "errno": None,
            "detail": f"connected to {path}; {sent} as {routing_id}"}  # fmt: skip


# --- privileges, namespaces, kernel interfaces ---------------------------------------------------


@attack
def raise_rlimits() -> Result:
    """Raise rlimits above their hard limits."""
    raised = []
    errors = []
    for name in ("RLIMIT_NOFILE", "RLIMIT_NPROC", "RLIMIT_CPU", "RLIMIT_DATA", "RLIMIT_FSIZE",
                 "RLIMIT_CORE"):  # fmt: skip
        which = getattr(resource, name)
        _soft, hard = resource.getrlimit(which)
        if hard == resource.RLIM_INFINITY:
            errors.append(f"{name} is unlimited already")
            continue
        higher = hard * 2 + 1
        try:
            resource.setrlimit(which, (higher, higher))
            raised.append(name)
        except (OSError, ValueError) as exc:
            errors.append(f"{name}: {exc}")
    return {"escaped": bool(raised), "errno": None,
            "detail": f"raised {raised}; " + "; ".join(errors)}  # fmt: skip


@attack
def setuid_root() -> Result:
    """setuid(0) / setresuid(0, 0, 0)."""
    last: OSError | None = None
    try:
        os.setuid(0)
    except OSError as exc:
        last = exc
    try:
        os.setresuid(0, 0, 0)
    except OSError as exc:
        last = exc
    if os.getuid() == 0 or os.geteuid() == 0 or last is None:
        return {"escaped": True, "errno": None, "detail": f"uid {os.getuid()}"}
    return _err(last)


CLONE_NEWNS = 0x00020000
CLONE_NEWUSER = 0x10000000
CLONE_NEWNET = 0x40000000


@attack
def unshare_namespaces() -> Result:
    """unshare(2) a user namespace and a network namespace (in a throw-away child)."""
    libc = _libc()
    results = {}
    for name, flags in (("user", CLONE_NEWUSER), ("net", CLONE_NEWNET)):
        code, text = _in_child(lambda f=flags: _call(libc.unshare, f))  # type: ignore[misc]
        results[name] = (code, text)
    made = [n for n, (code, _) in results.items() if code == 0]
    errs = [code for code, _ in results.values() if code]
    return {"escaped": bool(made), "errno": errs[0] if errs else None,
            "detail": f"created {made}; {results}"}  # fmt: skip


@attack
def setns_host(pid: int) -> Result:
    """setns(2) into the host process's mount, network and pid namespaces (in a throw-away
    child): the way back out of the sandbox's namespaces."""
    results = {}

    def enter(kind: str) -> int:
        fd = os.open(f"/proc/{int(pid)}/ns/{kind}", os.O_RDONLY)
        return _syscall("setns", fd, 0)

    for kind in ("mnt", "net", "pid"):
        results[kind] = _in_child(lambda k=kind: enter(k))  # type: ignore[misc]
    entered = [k for k, (code, _) in results.items() if code == 0]
    errs = [code for code, _ in results.values() if code]
    return {
        "escaped": bool(entered),
        "errno": errs[0] if errs else None,
        "detail": f"entered {entered}; {results}",
    }


@attack
def chroot_escape() -> Result:
    """chroot(2) into the workdir (in a throw-away child): step one of the classic breakout."""
    here = os.getcwd()

    def enter() -> int:
        os.chroot(here)
        return 0

    code, text = _in_child(enter)
    return _contained_unless(code == 0, f"chroot: {text}", code or None)


@attack
def mount_tmpfs() -> Result:
    """mount(2) a tmpfs on a directory inside our own workdir (guarded)."""
    guard = _guard()
    if guard:
        return guard
    target = os.path.join(os.getcwd(), "mnt")
    os.makedirs(target, exist_ok=True)
    libc = _libc()
    try:
        _call(libc.mount, b"none", target.encode(), b"tmpfs", ctypes.c_ulong(0), b"size=1m")
    except OSError as exc:
        return _err(exc)
    try:
        _call(libc.umount2, target.encode(), 2)  # MNT_DETACH
    except OSError:
        pass
    return {"escaped": True, "errno": None, "detail": f"mounted a tmpfs on {target}"}


@attack
def load_module() -> Result:
    """init_module(NULL, 0, "") and finit_module(-1, "", 0) (guarded; no module is ever given)."""
    guard = _guard()
    if guard:
        return guard
    outcomes = {}
    for name, args in (("init_module", (None, 0, ctypes.c_char_p(b""))),
                       ("finit_module", (-1, ctypes.c_char_p(b""), 0))):  # fmt: skip
        try:
            _syscall(name, *args)
            outcomes[name] = 0
        except OSError as exc:
            outcomes[name] = exc.errno or -1
    # EPERM: no capability (or seccomp); ENOSYS: the kernel has no modules. Anything else means
    # the kernel went on to look at the (absent) module: the permission check passed.
    passed = {k: v for k, v in outcomes.items() if v not in (errno_module.EPERM,
                                                             errno_module.ENOSYS)}  # fmt: skip
    return {"escaped": bool(passed), "errno": next(iter(outcomes.values())),
            "detail": f"errnos {outcomes}"}  # fmt: skip


@attack
def make_device() -> Result:
    """mknod(2) a character device (a copy of /dev/null's numbers) in the workdir (guarded)."""
    guard = _guard()
    if guard:
        return guard
    path = os.path.join(os.getcwd(), "device")
    try:
        os.mknod(path, stat.S_IFCHR | 0o600, os.makedev(1, 3))
    except OSError as exc:
        return _err(exc)
    os.unlink(path)
    return {"escaped": True, "errno": None, "detail": "created a device node"}


@attack
def set_clock() -> Result:
    """clock_settime with an invalid clock id, and adjtimex(ADJ_TICK) with an invalid tick
    (guarded; neither can change the time: EINVAL after the permission check)."""
    guard = _guard()
    if guard:
        return guard
    libc = _libc()
    timespec = (ctypes.c_long * 2)(0, 0)
    notes = {}
    try:
        _call(libc.clock_settime, 0x7FFF, ctypes.byref(timespec))
        notes["clock_settime"] = 0
    except OSError as exc:
        notes["clock_settime"] = exc.errno or -1
    timex = ctypes.create_string_buffer(512)
    ctypes.c_uint.from_buffer(timex, 0).value = 0x4000  # ADJ_TICK
    ctypes.c_long.from_buffer(timex, 88).value = 1  # tick = 1: out of range, EINVAL if allowed
    try:
        _call(libc.adjtimex, ctypes.byref(timex))
        notes["adjtimex"] = 0
    except OSError as exc:
        notes["adjtimex"] = exc.errno or -1
    # adjtimex says EPERM when it may not set anything; clock_settime on a bad id says EPERM
    # (filtered) or EINVAL (the kernel rejects the id before looking at privileges).
    escaped = notes["adjtimex"] != errno_module.EPERM or notes["clock_settime"] not in (
        errno_module.EPERM,
        errno_module.EINVAL,
    )
    return {"escaped": escaped, "errno": notes["adjtimex"], "detail": f"errnos {notes}"}


@attack
def reboot_machine() -> Result:
    """reboot(2) with an invalid magic number (guarded): EPERM without CAP_SYS_BOOT, EINVAL with."""
    guard = _guard()
    if guard:
        return guard
    try:
        _syscall("reboot", 0x12345678, 0x12345678, 0, None)
    except OSError as exc:
        return _contained_unless(exc.errno != errno_module.EPERM, str(exc), exc.errno)
    return {"escaped": True, "errno": None, "detail": "reboot() returned 0"}


@attack
def swapon_file() -> Result:
    """swapon(2) a path that does not exist (guarded): EPERM without CAP_SYS_ADMIN."""
    guard = _guard()
    if guard:
        return guard
    try:
        _call(_libc().swapon, b"/nonexistent-escape-swap", 0)
    except OSError as exc:
        return _contained_unless(exc.errno != errno_module.EPERM, str(exc), exc.errno)
    return {"escaped": True, "errno": None, "detail": "swapon() returned 0"}


@attack
def process_accounting() -> Result:
    """acct(2) to a path that does not exist (guarded): EPERM without CAP_SYS_PACCT."""
    guard = _guard()
    if guard:
        return guard
    try:
        _call(_libc().acct, b"/nonexistent-escape-dir/acct")
    except OSError as exc:
        return _contained_unless(exc.errno != errno_module.EPERM, str(exc), exc.errno)
    return {"escaped": True, "errno": None, "detail": "acct() returned 0"}


@attack
def set_hostname() -> Result:
    """sethostname(2) (guarded)."""
    guard = _guard()
    if guard:
        return guard
    try:
        _call(_libc().sethostname, b"escaped", 7)
    except OSError as exc:
        return _err(exc)
    return {"escaped": True, "errno": None, "detail": "sethostname() returned 0"}


@attack
def sysrq_trigger() -> Result:
    """Open /proc/sysrq-trigger for writing (guarded; nothing is ever written)."""
    guard = _guard()
    if guard:
        return guard
    try:
        os.close(os.open("/proc/sysrq-trigger", os.O_WRONLY))
    except OSError as exc:
        return _err(exc)
    return {"escaped": True, "errno": None, "detail": "opened /proc/sysrq-trigger for writing"}


@attack
def sys_write() -> Result:
    """Open kernel tunables under /sys for writing (nothing is written)."""
    opened = []
    last: OSError | None = None
    for path in ("/sys/kernel/mm/transparent_hugepage/enabled", "/sys/kernel/uevent_helper",
                 "/sys/fs/cgroup/cgroup.procs", "/sys/fs/cgroup/memory/cgroup.procs"):  # fmt: skip
        try:
            os.close(os.open(path, os.O_WRONLY))
            opened.append(path)
        except OSError as exc:
            last = exc
    return {"escaped": bool(opened), "errno": last.errno if last else None,
            "detail": f"opened for writing: {opened}; last error: {last}"}  # fmt: skip


def _bpf() -> int:
    attr = ctypes.create_string_buffer(64)
    for offset, value in ((0, 2), (4, 4), (8, 4), (12, 1)):  # ARRAY map, key 4, value 4, 1 entry
        ctypes.c_uint32.from_buffer(attr, offset).value = value
    return _syscall("bpf", 0, ctypes.addressof(attr), 64)  # BPF_MAP_CREATE


def _userfaultfd() -> int:
    try:
        return _syscall("userfaultfd", os.O_CLOEXEC)
    except OSError:
        return _syscall("userfaultfd", os.O_CLOEXEC | 1)  # UFFD_USER_MODE_ONLY


def _io_uring() -> int:
    params = ctypes.create_string_buffer(120)
    return _syscall("io_uring_setup", 4, ctypes.addressof(params))


def _keyctl() -> int:
    return _syscall("keyctl", 0, -3, 0)  # KEYCTL_GET_KEYRING_ID, KEY_SPEC_SESSION_KEYRING


def _perf() -> int:
    attr = ctypes.create_string_buffer(128)
    ctypes.c_uint32.from_buffer(attr, 0).value = 1  # PERF_TYPE_SOFTWARE
    ctypes.c_uint32.from_buffer(attr, 4).value = 64  # PERF_ATTR_SIZE_VER0
    ctypes.c_uint64.from_buffer(attr, 40).value = 0x61  # disabled, exclude_kernel, exclude_hv
    return _syscall("perf_event_open", ctypes.addressof(attr), 0, -1, -1, 0)


_KERNEL_INTERFACES: dict[str, Callable[[], int]] = {
    "bpf": _bpf,
    "userfaultfd": _userfaultfd,
    "io_uring": _io_uring,
    "keyctl": _keyctl,
    "perf_event_open": _perf,
}


@attack
def kernel_interface(which: str) -> Result:
    """Use a kernel interface with a history of exploits: bpf, userfaultfd, io_uring, keyctl,
    perf_event_open. Harmless arguments; any file descriptor is closed at once."""
    try:
        fd = _KERNEL_INTERFACES[which]()
    except OSError as exc:
        return _err(exc)
    if which != "keyctl":
        os.close(fd)
    return {"escaped": True, "errno": None, "detail": f"{which} returned {fd}"}


TIOCSTI = 0x5412


@attack
def tiocsti() -> Result:
    """Push a character into a terminal's input queue (TIOCSTI) on fds 0-2, /dev/tty and a fresh
    pty of our own. A real terminal is only tried when unprivileged (where the kernel refuses it
    for a terminal that is not ours); a pty we opened ourselves is harmless either way."""
    libc = _libc()
    char = ctypes.c_char(b" ")
    notes = []
    escaped = False
    last: int | None = None
    fds: list[tuple[str, int, bool]] = [(f"fd {fd}", fd, False) for fd in (0, 1, 2)]
    for path in ("/dev/tty", "/dev/ptmx"):
        try:
            fds.append((path, os.open(path, os.O_RDWR | os.O_NOCTTY), True))
        except OSError as exc:
            notes.append(f"open {path}: {exc.strerror}")
            last = exc.errno
    for label, fd, close in fds:
        if os.isatty(fd) and label != "/dev/ptmx" and privileged():
            notes.append(f"{label}: a real terminal and we are privileged: not attempted")
            escaped = True
            continue
        if label == "/dev/ptmx":
            libc.unlockpt(fd)
        result = libc.ioctl(fd, TIOCSTI, ctypes.byref(char))
        if result == 0:
            escaped = True
            notes.append(f"{label}: TIOCSTI accepted")
        else:
            last = ctypes.get_errno()
            notes.append(f"{label}: {os.strerror(last)}")
        if close:
            os.close(fd)
    return {"escaped": escaped, "errno": last, "detail": "; ".join(notes)}


@attack
def inherited_fds(canary_dev: int, canary_ino: int, canary_path: str) -> Result:
    """Look through every open descriptor for one the host left open (the canary file)."""
    found = []
    for fd in range(0, 4096):
        try:
            st = os.fstat(fd)
        except OSError:
            continue
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError as exc:
            target = f"? ({exc.strerror})"
        found.append({"fd": fd, "target": target, "canary": (st.st_dev, st.st_ino) == (
            int(canary_dev), int(canary_ino)) or target == canary_path})  # fmt: skip
    hits = [f for f in found if f["canary"]]
    return {
        "escaped": bool(hits),
        "errno": None,
        "fds": found,
        "detail": f"{len(found)} descriptors open; the canary among them: {bool(hits)}",
    }


# --- resources: judged by the call's outcome ------------------------------------------------------


@attack
def fork_bomb(
    limit: int = MAX_PROCESSES, child_seconds: float = 10, marker: str = "escfork"
) -> Result:
    """Fork up to ``limit`` (max 2000) children that sleep ``child_seconds`` and exit; children
    never fork. Returns how many forks succeeded."""
    total = int(_clamp(limit, MAX_PROCESSES))
    nap = _clamp(child_seconds, MAX_SECONDS)
    forked = 0
    stop = ""
    for _ in range(total):
        try:
            pid = os.fork()
        except OSError as exc:
            stop = str(exc)
            break
        if pid == 0:  # pragma: no cover - child
            try:
                _set_comm(marker)
                time.sleep(nap)
            finally:
                os._exit(0)
        forked += 1
    return {"escaped": forked >= total, "forked": forked, "errno": None,
            "detail": f"{forked} forks succeeded; stopped by: {stop or 'the limit'}"}  # fmt: skip


@attack
def allocate_once(mib: int = 2048) -> Result:
    """One allocation of ``mib`` MiB (max 4096), touched."""
    block = bytearray(int(_clamp(mib, MAX_MEMORY_MIB)) * MiB)
    return {"escaped": True, "mib": len(block) // MiB, "errno": None, "detail": "allocated"}


@attack
def allocate_steps(mib: int = 2048, step_mib: int = 8) -> Result:
    """Many small allocations up to ``mib`` MiB (max 4096)."""
    limit = int(_clamp(mib, MAX_MEMORY_MIB))
    step = max(1, min(int(step_mib), 64))
    chunks = []
    held = 0
    while held + step <= limit:
        chunks.append(bytearray(step * MiB))
        held += step
    return {"escaped": True, "mib": held, "errno": None, "detail": f"held {held} MiB"}


@attack
def allocate_in_children(
    children: int = 8, mib_each: int = 200, hold_seconds: float = 1.0
) -> Result:
    """Fork ``children`` processes that each allocate ``mib_each`` MiB (total at most 4 GiB) and
    hold it: a per-process limit lets each of them have the whole limit."""
    count = max(1, min(int(children), 16))
    each = max(1, min(int(mib_each), MAX_MEMORY_MIB // count))
    hold = _clamp(hold_seconds, 10.0)
    # The example provider's bounded bomb does the forking; this action judges the result.
    succeeded = hostile_allocate_in_children(children=count, mib_each=each, hold_seconds=hold)
    return {"escaped": True, "succeeded": succeeded, "mib_each": each, "errno": None,
            "detail": f"{succeeded} of {count} children held {each} MiB each "
            f"({succeeded * each} MiB at once)"}  # fmt: skip


@attack
def spin(seconds: float = 30) -> Result:
    """Burn CPU for up to ``seconds`` (max 60)."""
    deadline = time.monotonic() + _clamp(seconds, MAX_SECONDS)
    n = 0
    while time.monotonic() < deadline:
        n += 1
    return {"escaped": True, "errno": None, "detail": f"spun {n} times"}


@attack
def sleep(seconds: float = 30) -> Result:
    """Sleep for up to ``seconds`` (max 60)."""
    time.sleep(_clamp(seconds, MAX_SECONDS))
    return {"escaped": True, "errno": None, "detail": "slept"}


@attack
def double_fork(seconds: float = 30, marker: str = "escdaemon") -> Result:
    """setsid + double fork a grandchild named ``marker`` that sleeps ``seconds`` (max 60), then
    sleep ourselves so the host has to kill us."""
    nap = _clamp(seconds, MAX_SECONDS)
    middle = os.fork()
    if middle == 0:  # pragma: no cover - child
        try:
            os.setsid()
            if os.fork() == 0:
                _set_comm(marker)
                time.sleep(nap)
        finally:
            os._exit(0)
    os.waitpid(middle, 0)
    time.sleep(nap)
    return {"escaped": True, "errno": None, "detail": "the host never killed us"}


@attack
def flood_stdout(megabytes: int = 50) -> Result:
    """Write ``megabytes`` MiB (max 300) to stdout."""
    written = hostile_flood_stdout(int(_clamp(megabytes, MAX_WRITE_MB)))
    return {"escaped": False, "written": written, "errno": None, "detail": f"wrote {written}"}


@attack
def huge_result(megabytes: int = 2) -> Any:
    """Return a string of ``megabytes`` MiB (max 300)."""
    return "x" * (int(_clamp(megabytes, MAX_WRITE_MB)) * MiB)


def _raise_core_limit() -> bool:
    try:
        resource.setrlimit(resource.RLIMIT_CORE, (resource.RLIM_INFINITY, resource.RLIM_INFINITY))
        return True
    except (OSError, ValueError):
        return False


@attack
def core_dump() -> Result:
    """Raise RLIMIT_CORE if we can, say so on stderr, then abort(): the worker itself dumps."""
    raised = _raise_core_limit()
    dumpable = _libc().prctl(3, 0, 0, 0, 0)  # PR_GET_DUMPABLE
    os.write(2, f"core-limit-raised={raised} dumpable={dumpable}\n".encode())
    os.abort()


@attack
def core_dump_child() -> Result:
    """A child raises RLIMIT_CORE if it can and aborts; did the kernel write a core dump?"""
    pid = os.fork()
    if pid == 0:  # pragma: no cover - child
        _raise_core_limit()
        os.abort()
    _, status = os.waitpid(pid, 0)
    dumped = os.WIFSIGNALED(status) and os.WCOREDUMP(status)
    cores = [n for n in os.listdir(".") if n.startswith("core")]
    for name in cores:  # do not leave a large file behind
        try:
            os.unlink(name)
        except OSError:
            pass
    return {"escaped": bool(dumped or cores), "errno": None,
            "detail": f"child ended with status {status:#x}; core dumped: {dumped}; "
            f"core files: {cores}"}  # fmt: skip


@attack
def ping() -> Result:
    """A harmless call: the provider still serves."""
    return {"escaped": False, "errno": None, "detail": "pong", "pid": os.getpid()}
