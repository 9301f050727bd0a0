"""Every attack as data, and the machinery that runs one and judges it.

An :class:`Attack` names the threat, the layers expected to stop it, the action of
``attacks.py`` that tries it, how to build its input and how to judge the outcome. The same
catalog drives the default-policy test, the degraded runs and the report.

``layers`` is a tuple of alternatives, *any one* of which is expected to stop the attack on its
own (the first is the primary); ``"a+b"`` means both are needed together. ``"host"`` stands for
what the trusted side enforces whatever the policy skips (wall clock, output and log caps, the
environment allowlist, ``close_fds``, the supervisor's reaping, the cleanup);
``"no-CAP_SYS_RESOURCE"`` for a machine whose capability bounding set lacks it (containers:
not even root can raise a hard rlimit there). A *guarded* attack is not even tried while the
worker is root or holds a capability (see ``attacks.py``), so it is only ever contained when
``uid_drop`` is applied. :func:`expected_contained` turns this into the
expected verdict for any set of applied layers; that is the EXPECTED table of the degraded runs.

The :class:`Arena` holds what the attacks aim at, set up by the trusted test process before any
host exists: a canary file outside the allowance, directories DAC would let anyone write, a
secret in the test's memory and environment, an inherited file descriptor, a SIGUSR2 counter.
"""

from __future__ import annotations

import contextlib
import ctypes
import hashlib
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil

from host import Host, Outcome, ProviderUnavailable
from policies import LAYERS, Policy
from tests import confinement

ATTACKS = str(Path(__file__).with_name("attacks.py"))
ECHO = str(Path(__file__).parent.parent / "providers" / "echo.py")
MiB = 1024 * 1024
SECRET_ENV = "ESCAPE_SUITE_SECRET"
HOST_IS_ROOT = os.geteuid() == 0

Check = Callable[["Run", Outcome], tuple[bool, str]]
After = Callable[["Run"], tuple[bool, str] | None]


# --- verdicts ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Verdict:
    """What happened to one attack in one run."""

    attack: str
    state: str  # "contained", "ESCAPED" or "unavailable" (the provider refused to start)
    detail: str
    layers: tuple[tuple[str, bool], ...] = ()
    seconds: float = 0.0

    @property
    def contained(self) -> bool:
        return self.state != "ESCAPED"


def _describe(outcome: Outcome) -> str:
    if outcome.ok:
        value = outcome.value
        if isinstance(value, dict):
            return str(value.get("detail", ""))[:600]
        return f"returned {type(value).__name__} of {len(str(value))} chars"
    assert outcome.error is not None
    return f"{outcome.error.type}: {outcome.error.message[:400]}"


def _value(outcome: Outcome) -> dict[str, Any]:
    return outcome.value if outcome.ok and isinstance(outcome.value, dict) else {}


# --- checks ---------------------------------------------------------------------------------------


def effect(run: Run, outcome: Outcome) -> tuple[bool, str]:
    """The action checked the effect itself: escaped iff it says so."""
    return bool(_value(outcome).get("escaped")), _describe(outcome)


def same_sha(expected: Callable[[Run], str]) -> Check:
    """Escaped iff the action read exactly the bytes the test knows are there."""

    def check(run: Run, outcome: Outcome) -> tuple[bool, str]:
        got = _value(outcome).get("sha256")
        return got is not None and got == expected(run), _describe(outcome)

    return check


def same_hex(run: Run, outcome: Outcome) -> tuple[bool, str]:
    got = _value(outcome).get("hex", "")
    return got == run.arena.secret.hex(), _describe(outcome)


def created_on_host(run: Run, outcome: Outcome) -> tuple[bool, str]:
    """Escaped iff the file the action wrote exists as the *host* sees it."""
    path = run.notes["path"]
    exists = os.path.lexists(path)
    with contextlib.suppress(OSError):
        os.unlink(path)
    return exists, _describe(outcome) + f"; on the host, {path} exists: {exists}"


def error_is(*types: str) -> Check:
    def check(run: Run, outcome: Outcome) -> tuple[bool, str]:
        contained = not outcome.ok and outcome.error is not None and outcome.error.type in types
        return not contained, _describe(outcome)

    return check


def memory_held(field_name: str) -> Check:
    """Contained if the allocation failed, or if what was held at once fits the memory limit."""

    def check(run: Run, outcome: Outcome) -> tuple[bool, str]:
        if not outcome.ok:
            return False, _describe(outcome)
        value = _value(outcome)
        held = value.get(field_name, 0) * value.get("mib_each", 1) * MiB
        return held > run.policy.memory, _describe(outcome) + f" (limit {run.policy.memory})"

    return check


def forks_bounded(run: Run, outcome: Outcome) -> tuple[bool, str]:
    if not outcome.ok:
        return False, _describe(outcome)
    forked = _value(outcome).get("forked", 0)
    return forked > 2 * run.policy.processes, _describe(outcome)


def _usr2_received(run: Run, wait: float) -> int:
    """SIGUSR2s the test process received since the attack began; its handler runs in the main
    thread, a moment after delivery, so give it ``wait`` seconds to show."""
    deadline = time.monotonic() + wait
    while run.arena.usr2_count == run.notes["usr2_before"] and time.monotonic() < deadline:
        time.sleep(0.02)
    return int(run.arena.usr2_count - run.notes["usr2_before"])


def signalled_host(run: Run, outcome: Outcome) -> tuple[bool, str]:
    delta = _usr2_received(run, 1.0 if _value(outcome).get("escaped") else 0.1)
    return delta > 0, _describe(outcome) + f"; SIGUSR2 received by the host: {delta}"


def kill_all_effect(run: Run, outcome: Outcome) -> tuple[bool, str]:
    """Escaped iff a process outside the sandbox got the signal: the host (it counts SIGUSR2),
    the other provider's worker or the decoy (SIGUSR2 kills both)."""
    if _value(outcome).get("guarded"):
        return True, _describe(outcome)
    host = _usr2_received(run, 0.3 if outcome.ok and _value(outcome).get("errno") is None else 0)
    other, other_detail = other_worker_alive(run, outcome)
    decoy = run.arena.decoy.poll() is not None
    escaped = host > 0 or other or decoy
    return escaped, f"{other_detail}; the host got {host} signal(s); the decoy was killed: {decoy}"


def parent_killed(run: Run, outcome: Outcome) -> tuple[bool, str]:
    if not outcome.ok:  # the worker died with its parent (parent-death signal)
        return True, "the worker died right after killing its parent: " + _describe(outcome)
    return effect(run, outcome)


def listener_reached(run: Run, outcome: Outcome) -> tuple[bool, str]:
    listener: socket.socket = run.notes["listener"]
    accepted = 0
    listener.setblocking(False)
    with contextlib.suppress(BlockingIOError):
        while True:
            conn, _ = listener.accept()
            conn.close()
            accepted += 1
    escaped = bool(_value(outcome).get("escaped")) or accepted > 0
    return escaped, _describe(outcome) + f"; the listener accepted {accepted} connection(s)"


def port_reached(run: Run, outcome: Outcome) -> tuple[bool, str]:
    run.notes["stop"].set()
    run.notes["prober"].join()
    reached = run.notes["reached"]
    escaped = bool(_value(outcome).get("escaped")) or bool(reached)
    return escaped, _describe(outcome) + f"; the host reached the port: {bool(reached)}"


def other_worker_alive(run: Run, outcome: Outcome) -> tuple[bool, str]:
    """Escaped iff a process of the other provider died (or its worker was replaced)."""
    assert run.echo is not None
    deadline = time.monotonic() + 1.0
    while True:
        dead = []
        for pid, created in run.echo.processes:
            try:
                process = psutil.Process(pid)
                if process.create_time() != created or process.status() == psutil.STATUS_ZOMBIE:
                    dead.append(pid)
            except psutil.NoSuchProcess:
                dead.append(pid)
        if dead or not _value(outcome).get("hit") or time.monotonic() > deadline:
            break
        time.sleep(0.05)  # a signal that was accepted takes a moment to show
    state = run.host._reactor.providers.get("echo")
    replaced = state is None or run.echo.worker_id not in [w.worker_id for w in state.workers]
    escaped = bool(dead) or replaced
    return escaped, _describe(outcome) + (
        f"; the other provider's processes killed: {dead}; its worker replaced: {replaced}"
    )


def logs_bounded(run: Run, outcome: Outcome) -> tuple[bool, str]:
    size = len(outcome.logs.encode())
    escaped = not outcome.ok or size > run.policy.log + 512
    return escaped, _describe(outcome) + f"; {size} bytes of log kept (limit {run.policy.log})"


def no_core(run: Run, outcome: Outcome) -> tuple[bool, str]:
    error = outcome.error
    logs = outcome.logs or (str(error.details.get("logs", "")) if error else "")
    crashed = (
        error is not None
        and error.type == "WorkerCrashed"
        and error.details.get("signal") == signal.SIGABRT
    )
    could_dump = "core-limit-raised=True" in logs and "dumpable=1" in logs
    cores = [  # os.walk, not rglob: workdirs of other workers may vanish meanwhile
        os.path.join(top, name)
        for top, dirs, files in os.walk(run.arena.workdir_root(run.host))
        for name in dirs + files
        if name.startswith("core")
    ]
    escaped = not crashed or could_dump or bool(cores)
    return escaped, _describe(outcome) + f"; logs: {logs.strip()[-120:]!r}; core files: {cores}"


def _attack_files_in(directory: str, prefix: str) -> list[str]:
    """The attack's own files (named ``prefix...`` by ``tests.escapes.attacks``) in the host's
    ``directory``: where its writes landed if a private mount did not catch them."""
    try:
        return sorted(name for name in os.listdir(directory) if name.startswith(prefix))
    except OSError:
        return []


def tmp_bytes(run: Run, outcome: Outcome) -> tuple[bool, str]:
    """Escaped if nothing stopped the writes before the cap (the private tmpfs stops them at
    its size), or if its files are in the host's /tmp. The host's /tmp free space is only
    reported: the other shard's tests share it (its 54 MiB in one CI run looked like this
    attack's), so a drop in it proves nothing by itself."""
    used = run.notes["tmp_free"] - _tmp_free()[0]
    landed = _attack_files_in("/tmp", f"escape-fill-{_run_tag(run)}-")
    escaped = bool(_value(outcome).get("escaped")) or bool(landed)
    return escaped, _describe(outcome) + (
        f"; the host's /tmp lost {used // MiB} MiB; the attack's files there: {landed[:3]}"
    )


def tmp_inodes(run: Run, outcome: Outcome) -> tuple[bool, str]:
    used = run.notes["tmp_inodes"] - _tmp_free()[1]
    landed = _attack_files_in("/tmp", f"escape-inodes-{_run_tag(run)}")
    escaped = bool(_value(outcome).get("escaped")) or bool(landed)
    return escaped, _describe(outcome) + (
        f"; the host's /tmp lost {used} inodes; the attack's files there: {landed[:3]}"
    )


def _host_bytes_below(directory: str | None) -> int:
    """Bytes of the files below ``directory`` as the host sees it (0 if it is gone)."""
    total = 0
    for top, _dirs, files in os.walk(directory or "\0"):
        for name in files:
            with contextlib.suppress(OSError):
                total += os.lstat(os.path.join(top, name)).st_size
    return total


def _other_provider_writes(run: Run) -> str | None:
    """Why the victim provider could not write 8 MiB into its workdir and its /tmp, or None."""
    for where in (".", "/tmp"):
        wrote = run.host.run("echo.write_files", {"megabytes": 8, "where": where})
        if not (wrote.ok and wrote.value == 8 * MiB):
            return f"the other provider could not write 8 MiB into {where}: {_describe(wrote)}"
    return None


def workdir_bytes(run: Run, outcome: Outcome) -> tuple[bool, str]:
    """Escaped if nothing stopped the writes, if they reached the host's disk (the host-side
    workdir or the host's /tmp, which holds it), or if the other provider can no longer write."""
    value = _value(outcome)
    on_host = _host_bytes_below(run.workdir)
    used = run.notes["tmp_free"] - _tmp_free()[0]  # (reported only: see tmp_bytes)
    victim = _other_provider_writes(run)
    escaped = bool(value.get("escaped")) or on_host > MiB or bool(victim)
    return escaped, _describe(outcome) + (
        f"; the worker's view: {value.get('view_size')} bytes, {value.get('view_free')} free;"
        f" the host-side workdir holds {on_host} bytes; the host's /tmp lost {used // MiB} MiB"
        + (f"; {victim}" if victim else "")
    )


def _host_entries_below(directory: str | None) -> int:
    """Files and directories below ``directory`` as the host sees it (0 if it is gone)."""
    return sum(len(dirs) + len(files) for _top, dirs, files in os.walk(directory or "\0"))


def workdir_inodes(run: Run, outcome: Outcome) -> tuple[bool, str]:
    """Escaped if nothing stopped it or the files reached the host-side workdir (counted
    there: the host's /tmp as a whole is shared with other processes)."""
    on_host = _host_entries_below(run.workdir)
    escaped = bool(_value(outcome).get("escaped")) or on_host > 100
    return escaped, _describe(outcome) + f"; the host-side workdir holds {on_host} entries"


def _shm_free() -> int:
    try:
        st = os.statvfs("/dev/shm")
    except OSError:
        return 0
    return st.f_bavail * st.f_frsize


def _shm_snapshot(run: Run) -> dict[str, Any]:
    run.notes["shm_free"] = _shm_free()
    return {"cap_mb": 48, "tag": _run_tag(run)}


def shm_bytes(run: Run, outcome: Outcome) -> tuple[bool, str]:
    used = run.notes["shm_free"] - _shm_free()  # (reported only: see tmp_bytes)
    landed = _attack_files_in("/dev/shm", f"escape-fill-{_run_tag(run)}-")
    escaped = bool(_value(outcome).get("escaped")) or bool(landed)
    return escaped, _describe(outcome) + (
        f"; the host's /dev/shm lost {used // MiB} MiB; the attack's files there: {landed[:3]}"
    )


def fds_clean(run: Run, outcome: Outcome) -> tuple[bool, str]:
    value = _value(outcome)
    own = (run.workdir or "\0", "/proc/", "/dev/null", "/dev/urandom")
    foreign = [
        f["target"]
        for f in value.get("fds", [])
        if f["target"].startswith("/") and not f["target"].startswith(own)
    ]
    escaped = bool(value.get("escaped")) or bool(foreign) or not outcome.ok
    listing = ", ".join(f"{f['fd']}->{f['target']}" for f in value.get("fds", []))
    return escaped, _describe(outcome) + f"; host paths: {foreign}; open: {listing[:400]}"


def symlink_read(run: Run, outcome: Outcome) -> tuple[bool, str]:
    value = _value(outcome)
    escaped = value.get("sha256") == run.arena.target_sha or "listed the target" in str(
        value.get("detail", "")
    )
    return escaped, _describe(outcome)


def planted(run: Run, outcome: Outcome) -> tuple[bool, str]:
    return False, _describe(outcome)


# --- after-checks: run once the attack's worker is gone -------------------------------------------


def targets_intact(run: Run) -> tuple[bool, str]:
    arena = run.arena
    ok = (
        arena.target_file.read_bytes() == arena.target_content
        and (arena.target_dir / "keep.txt").read_bytes() == arena.target_content
    )
    return not ok, f"after the workdir was removed, link targets intact: {ok}"


def no_marker_left(run: Run) -> tuple[bool, str]:
    marker = run.notes["marker"]
    deadline = time.monotonic() + 5
    while True:
        left = _named(marker)
        if not left or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    # A dedicated worker uid (root host) has no process but the worker's; a non-root host's
    # workers share the runner's uid, whose processes are the whole test run: the autouse leak
    # check covers those instead.
    dedicated = run.worker_uid is not None and run.worker_uid != os.getuid()
    left_uid = _owned_by(run.worker_uid) if dedicated else []
    return bool(left or left_uid), (
        f"processes named {marker!r} left: {left}; processes of uid {run.worker_uid} left: "
        f"{left_uid}"
    )


def _named(name: str) -> list[int]:
    found = []
    for p in psutil.process_iter(["name", "status"]):
        if p.info["name"] == name[:15] and p.info["status"] != psutil.STATUS_ZOMBIE:
            found.append(p.pid)
    return found


def _owned_by(uid: int | None) -> list[int]:
    if uid is None:
        return []
    found = []
    for p in psutil.process_iter(["uids"]):
        with contextlib.suppress(psutil.Error, TypeError):
            if uid in tuple(p.info["uids"]):
                found.append(p.pid)
    return found


def _tmp_free() -> tuple[int, int]:
    st = os.statvfs("/tmp")
    return st.f_bavail * st.f_frsize, st.f_favail


# --- the catalog ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Attack:
    name: str
    threat: str
    #: Alternatives, any one of which stops it on its own; "a+b" needs both. First = primary.
    layers: tuple[str, ...]
    action: str
    input_factory: Callable[[Run], dict[str, Any]] = lambda run: {}
    check: Check = effect
    #: Policy keys set for this attack (short limits for spins and sleeps).
    policy: Mapping[str, Any] = field(default_factory=dict)
    #: Not tried while the worker is root or holds a capability (reports "escaped" instead).
    guarded: bool = False
    #: Takes seconds; left out of the degraded runs (its stoppers do not depend on the layers).
    slow: bool = False
    #: Runs alone (it watches host-wide state: signals to the test process, /tmp, process counts).
    exclusive: bool = False
    #: A second provider (tests/providers/echo.py) is loaded first, as the victim.
    needs_echo: bool = False
    #: It aims at processes or files of the host's own uid, so ``uid_drop`` stops it only by
    #: giving the worker a uid of its own, which happens only under a root host (a non-root
    #: host's workers share its uid; see :func:`expected_contained`).
    aims_at_host_uid: bool = False
    after: After | None = None


def _path(name: str) -> Callable[[Run], dict[str, Any]]:
    def factory(run: Run) -> dict[str, Any]:
        return {"path": name}

    return factory


def _write_in(directory: Callable[[Run], str]) -> Callable[[Run], dict[str, Any]]:
    def factory(run: Run) -> dict[str, Any]:
        path = os.path.join(directory(run), f"escaped-{run.label}-{run.attack.name}")
        run.notes["path"] = path
        return {"path": path}

    return factory


def _proc(what: str) -> Callable[[Run], dict[str, Any]]:
    def factory(run: Run) -> dict[str, Any]:
        return {"pid": os.getpid(), "what": what, "address": run.arena.secret_address,
                "length": len(run.arena.secret)}  # fmt: skip

    return factory


def _listener(run: Run) -> dict[str, Any]:
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    run.notes["listener"] = listener
    run.cleanups.append(listener.close)
    return {"host": "127.0.0.1", "port": listener.getsockname()[1]}


def _unix_listener(run: Run) -> dict[str, Any]:
    """A listening socket of mode 0666 in the arena (a directory anyone may enter)."""
    path = str(run.arena.scratch / f"open-{secrets.token_hex(4)}.sock")
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path)
    os.chmod(path, 0o666)
    listener.listen(8)
    run.notes["listener"] = listener
    run.cleanups.append(listener.close)
    run.cleanups.append(lambda: os.unlink(path))
    return {"path": path}


def _free_port_with_prober(run: Run) -> dict[str, Any]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    stop = threading.Event()
    reached: list[bool] = []

    def probe() -> None:
        while not stop.is_set():
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                    reached.append(True)
                    return
            except OSError:
                stop.wait(0.05)

    prober = threading.Thread(target=probe, daemon=True)
    prober.start()
    run.notes.update(stop=stop, prober=prober, reached=reached)
    run.cleanups.append(stop.set)
    return {"port": port}


def _echo_workdir_file(run: Run) -> dict[str, Any]:
    assert run.echo is not None
    os.chmod(run.echo.workdir, 0o755)  # only the sandbox may stop a read now, not DAC
    path = os.path.join(run.echo.workdir, "private.txt")
    Path(path).write_bytes(run.arena.canary_content)
    os.chmod(path, 0o644)
    return {"path": path}


def _echo_workdir_open(run: Run) -> str:
    assert run.echo is not None
    os.chmod(run.echo.workdir, 0o777)  # only the sandbox may stop a write now, not DAC
    return run.echo.workdir


def _echo_endpoint(run: Run) -> dict[str, Any]:
    assert run.echo is not None
    directory = run.arena.ipc_directory(run.host)
    # Where the echo worker's endpoint was: the host takes one connection (the worker's own,
    # checked by SO_PEERCRED) and then closes and unlinks it, so nothing is listed any more.
    listed = sorted(os.listdir(directory))
    assert run.echo.worker_id not in listed, (run.echo.worker_id, listed)
    return {"path": os.path.join(directory, run.echo.worker_id), "routing_id": run.echo.worker_id}


def _echo_pids(run: Run) -> dict[str, Any]:
    assert run.echo is not None
    return {"pids": [pid for pid, _ in run.echo.processes]}


def _usr2(run: Run) -> dict[str, Any]:
    run.notes["usr2_before"] = run.arena.usr2_count
    return {"pid": os.getpid(), "signum": int(signal.SIGUSR2)}


def _env_secret(run: Run) -> dict[str, Any]:
    run.arena.ensure_decoy()
    return {"name": SECRET_ENV}


def _usr2_all(run: Run) -> dict[str, Any]:
    run.arena.ensure_decoy()
    run.notes["usr2_before"] = run.arena.usr2_count
    # The run's own pid namespace, where kill(-1) may fire (it holds only the run's processes).
    namespace = confinement.pid_namespace() if confinement.confined() else 0
    return {"signum": int(signal.SIGUSR2), "run_pid_namespace": namespace}


def _marker(prefix: str, extra: Mapping[str, Any]) -> Callable[[Run], dict[str, Any]]:
    def factory(run: Run) -> dict[str, Any]:
        marker = f"{prefix}{secrets.token_hex(4)}"
        run.notes["marker"] = marker
        return {**extra, "marker": marker}

    return factory


def _fork_bomb(run: Run) -> dict[str, Any]:
    # Degraded policies fork 500: enough to show an escape (the limit is 32), small enough for
    # the supervisor's sweep to finish (see test_degraded.py: it does not with 2000).
    limit = 500 if run.policy.skip else 2000
    return _marker("escfork", {"limit": limit, "child_seconds": 10})(run)


def _run_tag(run: Run) -> str:
    """A name of this run's own for the files an attack makes (pids repeat across workers and
    pid namespaces: the degraded suite's attacks, run meanwhile by the other shard, made
    files of the same names in the host's /tmp, which a judge took for this run's)."""
    return str(run.notes.setdefault("tag", secrets.token_hex(6)))


def _tmp_snapshot(run: Run) -> dict[str, Any]:
    run.notes["tmp_free"], run.notes["tmp_inodes"] = _tmp_free()
    return {"tag": _run_tag(run)}


def _canary_fd(run: Run) -> dict[str, Any]:
    st = os.fstat(run.arena.inherited_fd)
    return {"canary_dev": st.st_dev, "canary_ino": st.st_ino, "canary_path": str(run.arena.canary)}


def _symlinks(run: Run) -> dict[str, Any]:
    return {"target_file": str(run.arena.target_file), "target_dir": str(run.arena.target_dir)}


def _sysctl(name: str, default: int) -> int:
    try:
        return int(Path(f"/proc/sys/{name}").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return default


def _kernel_interface_layers(which: str) -> tuple[str, ...]:
    """seccomp always; dropping privileges too where this kernel refuses unprivileged callers."""
    refused_unprivileged = {
        "bpf": _sysctl("kernel/unprivileged_bpf_disabled", 1) != 0,
        # the attack falls back to UFFD_USER_MODE_ONLY, which any user may use
        "userfaultfd": False,
        "io_uring": _sysctl("kernel/io_uring_disabled", 0) != 0,
        "keyctl": False,
        "perf_event_open": _sysctl("kernel/perf_event_paranoid", 2) > 2,
    }[which]
    return ("seccomp", "uid_drop") if refused_unprivileged else ("seccomp",)


def _machine_facts() -> frozenset[str]:
    """Properties of this machine that stop an attack whatever the policy, named like layers."""
    facts = set()
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("CapBnd:") and not int(line.split()[1], 16) & (1 << 24):
                facts.add(NO_SYS_RESOURCE)  # even root cannot raise a hard rlimit here
    except (OSError, ValueError):
        pass
    return frozenset(facts)


#: Pseudo-layer: the machine's capability bounding set lacks CAP_SYS_RESOURCE (containers).
NO_SYS_RESOURCE = "no-CAP_SYS_RESOURCE"
MACHINE_FACTS = _machine_facts()
HOST_PROCS = ("landlock", "pid_namespace", "uid_drop")
SHORT = {"wall_time": 2, "cpu_time": 1}


def _kernel(which: str, threat: str) -> Attack:
    return Attack(which, threat, _kernel_interface_layers(which), "kernel_interface",
                  lambda run: {"which": which})  # fmt: skip


CATALOG: tuple[Attack, ...] = (
    # --- files
    Attack("read_shadow", "read /etc/shadow (password hashes)", ("landlock", "uid_drop"),
           "read_file", _path("/etc/shadow")),
    Attack("read_canary", "read a world-readable file outside the allowance",
           ("landlock",), "read_file", lambda run: {"path": str(run.arena.canary)},
           same_sha(lambda run: run.arena.canary_sha)),
    Attack("list_home", "list /home", ("landlock",), "list_dir", _path("/home")),
    Attack("list_root", "list /root", ("landlock", "uid_drop"), "list_dir", _path("/root")),
    Attack("write_outside_workdir", "write into a world-writable directory outside the workdir",
           ("landlock", "mount_namespace"), "write_file",
           _write_in(lambda run: str(run.arena.open_dir)), created_on_host),
    Attack("write_host_tmp", "write into the host's /tmp", ("mount_namespace", "landlock"),
           "write_file", _write_in(lambda run: str(run.arena.host_tmp_dir)), created_on_host),
    Attack("write_other_workdir", "write into another provider's workdir",
           ("landlock", "mount_namespace"), "write_file", _write_in(_echo_workdir_open),
           created_on_host, needs_echo=True),
    Attack("read_other_workdir", "read a file in another provider's workdir",
           ("landlock", "mount_namespace"), "read_file", _echo_workdir_file,
           same_sha(lambda run: run.arena.canary_sha), needs_echo=True),
    Attack("symlink_read", "read a host file through a symlink planted in the workdir",
           ("landlock",), "plant_symlinks", _symlinks, symlink_read),
    Attack("symlink_cleanup", "make the host's cleanup follow a planted symlink",
           ("host",), "plant_symlinks", _symlinks, planted, after=targets_intact),
    Attack("inherited_fds", "use a file descriptor inherited from the host", ("host",),
           "inherited_fds", _canary_fd, fds_clean),
    Attack("fill_tmp_bytes", "fill the disk through /tmp", ("mount_namespace", "landlock"),
           "fill_tmp_bytes", lambda run: {**_tmp_snapshot(run), "cap_mb": 300}, tmp_bytes,
           exclusive=True),
    Attack("fill_tmp_inodes", "exhaust /tmp's inodes", ("mount_namespace", "landlock"),
           "fill_tmp_inodes", lambda run: {**_tmp_snapshot(run), "cap": 20000}, tmp_inodes,
           exclusive=True),
    Attack("fill_workdir", "fill the disk through the workdir (bound: workdir = 32MiB)",
           ("mount_namespace",), "fill_workdir_bytes",
           lambda run: {**_tmp_snapshot(run), "cap_mb": 300}, workdir_bytes,
           policy={"workdir": "32MiB"}, exclusive=True, needs_echo=True),
    Attack("fill_workdir_inodes", "exhaust the workdir's inodes", ("mount_namespace",),
           "fill_workdir_inodes", lambda run: {"cap": 20000}, workdir_inodes),
    Attack("fill_dev_shm", "fill the host's shared memory tmpfs (/dev/shm)",
           ("mount_namespace", "landlock"), "fill_dev_shm", _shm_snapshot, shm_bytes,
           exclusive=True),
    Attack("sys_write", "open kernel tunables under /sys for writing", ("landlock", "uid_drop"),
           "sys_write"),
    Attack("sysrq_trigger", "open /proc/sysrq-trigger for writing", ("landlock", "uid_drop"),
           "sysrq_trigger", guarded=True),
    # --- the host process and other workers
    Attack("proc_host_environ", "read the host's /proc/<pid>/environ", HOST_PROCS,
           "read_proc", _proc("environ"), same_sha(lambda run: run.arena.host_environ_sha),
           aims_at_host_uid=True),
    Attack("proc_host_mem", "read the host's memory through /proc/<pid>/mem",
           ("landlock", "uid_drop", "pid_namespace"), "read_proc", _proc("mem"), same_hex,
           aims_at_host_uid=True),
    Attack("proc_host_fd", "list the host's open files in /proc/<pid>/fd", HOST_PROCS,
           "read_proc", _proc("fd"),
           lambda run, outcome: (str(run.arena.canary) in _value(outcome).get("links", []),
                                 _describe(outcome)), aims_at_host_uid=True),
    Attack("host_env_secret", "read the host's secret environment variable",
           HOST_PROCS, "find_env_secret",
           _env_secret,
           same_sha(lambda run: run.arena.secret_env_sha), aims_at_host_uid=True),
    Attack("proc1_cmdline", "read the command line of the machine's pid 1",
           ("landlock", "pid_namespace"), "read_proc",
           lambda run: {"pid": 1, "what": "cmdline"},
           same_sha(lambda run: run.arena.proc1_cmdline_sha)),
    Attack("kill_parent", "kill the supervisor: kill(getppid(), SIGKILL)",
           ("landlock", "uid_drop", "pid_namespace"), "kill_parent", check=parent_killed,
           aims_at_host_uid=True),
    Attack("kill_host", "signal the host process by its pid", HOST_PROCS, "kill_pid", _usr2,
           signalled_host, exclusive=True, aims_at_host_uid=True),
    Attack("kill_all", "kill(-1): signal every process it may (SIGUSR2, to observe it)",
           ("pid_namespace", "uid_drop", "landlock"), "kill_all", _usr2_all, kill_all_effect,
           guarded=True, exclusive=True, needs_echo=True, aims_at_host_uid=True),
    Attack("ptrace_host", "PTRACE_SEIZE the host",
           ("seccomp", "landlock", "uid_drop", "pid_namespace"), "ptrace_attach",
           lambda run: {"pid": os.getpid()}, guarded=True, aims_at_host_uid=True),
    Attack("process_vm_readv", "read the host's memory with process_vm_readv",
           ("seccomp", "landlock", "uid_drop", "pid_namespace"), "process_vm_readv",
           lambda run: {"pid": os.getpid(), "address": run.arena.secret_address,
                        "length": len(run.arena.secret)}, same_hex, aims_at_host_uid=True),
    Attack("signal_other_worker", "SIGKILL another provider's worker processes",
           ("landlock", "pid_namespace", "uid_drop"), "signal_pids", _echo_pids,
           other_worker_alive, needs_echo=True, aims_at_host_uid=True),
    Attack("signal_visible_pids", "find any process outside the sandbox it may signal",
           ("landlock", "pid_namespace", "uid_drop"), "signal_visible_pids", aims_at_host_uid=True),
    Attack("zmq_forge", "connect to another worker's ZeroMQ endpoint and forge its messages",
           ("host", "mount_namespace", "uid_drop", "seccomp"), "zmq_forge", _echo_endpoint,
           needs_echo=True, aims_at_host_uid=True),
    Attack("unix_connect", "connect to a pathname Unix socket anyone may open (mode 0666)",
           ("seccomp",), "unix_connect", _unix_listener, listener_reached),
    # --- network
    Attack("inet_socket", "open an AF_INET socket", ("seccomp",), "inet_socket"),
    Attack("tcp_connect", "connect to a TCP listener on the host's loopback",
           ("seccomp", "network_namespace", "landlock"), "tcp_connect", _listener,
           listener_reached),
    Attack("tcp_bind", "bind a TCP port the host can reach",
           ("seccomp", "landlock", "network_namespace"), "tcp_bind", _free_port_with_prober,
           port_reached),
    # --- privileges, namespaces, kernel
    Attack("raise_rlimit", "raise rlimits above the hard limit", ("uid_drop", NO_SYS_RESOURCE),
           "raise_rlimits"),
    Attack("setuid_root", "setuid(0)", ("uid_drop",), "setuid_root"),
    Attack("unshare", "unshare(CLONE_NEWUSER / CLONE_NEWNET)", ("seccomp",),
           "unshare_namespaces"),
    Attack("setns", "setns into the host process's namespaces",
           ("seccomp", "landlock", "uid_drop"), "setns_host",
           lambda run: {"pid": os.getpid()}),
    Attack("chroot", "chroot(2)", ("seccomp", "uid_drop"), "chroot_escape"),
    Attack("mount", "mount a tmpfs", ("seccomp", "uid_drop"), "mount_tmpfs", guarded=True),
    Attack("load_module", "load a kernel module (init_module/finit_module)",
           ("seccomp", "uid_drop"), "load_module", guarded=True),
    Attack("mknod", "create a device node", ("uid_drop",), "make_device", guarded=True),
    Attack("set_clock", "set the system clock (clock_settime, adjtimex)",
           ("seccomp", "uid_drop"), "set_clock", guarded=True),
    Attack("reboot", "reboot the machine", ("seccomp", "uid_drop"), "reboot_machine",
           guarded=True),
    Attack("swapon", "swapon(2)", ("seccomp", "uid_drop"), "swapon_file", guarded=True),
    Attack("acct", "turn on process accounting (acct(2))", ("seccomp", "uid_drop"),
           "process_accounting", guarded=True),
    Attack("sethostname", "change the hostname", ("uid_drop",), "set_hostname", guarded=True),
    _kernel("bpf", "load into the kernel with bpf(2)"),
    _kernel("userfaultfd", "userfaultfd(2), the kernel-race exploit staple"),
    _kernel("io_uring", "io_uring_setup(2)"),
    _kernel("keyctl", "use the kernel keyrings (keyctl)"),
    _kernel("perf_event_open", "perf_event_open(2)"),
    Attack("tiocsti", "inject input into a terminal (TIOCSTI)",
           ("seccomp", "landlock", "uid_drop"), "tiocsti"),
    Attack("core_dump", "dump core (abort() after raising RLIMIT_CORE)",
           ("rlimits+uid_drop", f"rlimits+{NO_SYS_RESOURCE}"), "core_dump", check=no_core),
    Attack("core_dump_child", "make a child dump core into the workdir",
           ("rlimits+uid_drop", f"rlimits+{NO_SYS_RESOURCE}"), "core_dump_child"),
    # --- resources: judged by the outcome
    Attack("fork_bomb", "fork 2000 processes", ("cgroups", "rlimits+uid_drop"), "fork_bomb",
           _fork_bomb, forks_bounded,
           exclusive=True, after=no_marker_left),
    Attack("memory_one_allocation", "allocate 2 GiB at once", ("rlimits", "cgroups"),
           "allocate_once", lambda run: {"mib": 2048}, memory_held("mib")),
    Attack("memory_many_small", "allocate 2 GiB in 8 MiB steps", ("rlimits", "cgroups"),
           "allocate_steps", lambda run: {"mib": 2048, "step_mib": 8}, memory_held("mib")),
    Attack("memory_in_children", "allocate 8 x 200 MiB in child processes", ("cgroups",),
           "allocate_in_children", lambda run: {"children": 8, "mib_each": 200,
                                                "hold_seconds": 1.0},
           memory_held("succeeded"), exclusive=True),
    Attack("cpu_spin", "spin the CPU", ("host", "rlimits"), "spin",
           lambda run: {"seconds": 30}, error_is("CpuExceeded", "Timeout"), SHORT, slow=True),
    Attack("sleep", "sleep forever", ("host",), "sleep", lambda run: {"seconds": 30},
           error_is("Timeout"), SHORT, slow=True),
    Attack("setsid_double_fork", "setsid + double fork a daemon that outlives the kill",
           ("pid_namespace", "host"), "double_fork", _marker("escdaemon", {"seconds": 30}),
           error_is("Timeout"), SHORT, slow=True, after=no_marker_left),
    Attack("flood_stdout", "flood stdout with 50 MiB", ("host",), "flood_stdout",
           lambda run: {"megabytes": 50}, logs_bounded),
    Attack("huge_result", "return a 2 MiB result", ("host",), "huge_result",
           lambda run: {"megabytes": 2}, error_is("OutputTooLarge")),
)  # fmt: skip

BY_NAME = {attack.name: attack for attack in CATALOG}
assert len(BY_NAME) == len(CATALOG)


# --- expectations --------------------------------------------------------------------------------


def applied_layers(policy: Policy) -> frozenset[str]:
    """The layers a worker under ``policy`` applies on this machine (what the report must say)."""
    from host import cgroups

    cgroups_available = cgroups.probe().version > 0
    required = policy.required_layers(host_is_root=HOST_IS_ROOT,
                                      cgroups_available=cgroups_available)  # fmt: skip
    wanted = set(LAYERS) - set(policy.skip)
    if HOST_IS_ROOT:
        wanted.discard("user_namespace")
    if not cgroups_available:
        wanted.discard("cgroups")
    if policy.network:
        wanted.discard("network_namespace")
    return frozenset(wanted | set(required))


def expected_contained(attack: Attack, applied: frozenset[str]) -> bool:
    """Whether ``attack`` should be contained when exactly ``applied`` layers hold."""
    have = set(applied | {"host"} | MACHINE_FACTS)
    if not HOST_IS_ROOT:
        # A non-root host's worker is the host's own unprivileged uid: without a user namespace
        # it holds no capability at all, as if uid_drop held. But it never gets a uid of its
        # own, so uid_drop stops nothing that aims at the host's (same) uid.
        if "user_namespace" not in applied:
            have.add("uid_drop")
        unprivileged = "uid_drop" in have
        if attack.aims_at_host_uid:
            have.discard("uid_drop")
    else:
        unprivileged = "uid_drop" in have
    if attack.guarded and not unprivileged:
        return False  # the guard reports "escaped" without trying: the worker is privileged
    return any(all(part in have for part in option.split("+")) for option in attack.layers)


# --- degraded policies ---------------------------------------------------------------------------

NAMESPACES = ("user_namespace", "pid_namespace", "mount_namespace", "network_namespace",
              "ipc_uts_namespace")  # fmt: skip


def runtime_hidden_from_other_users() -> str | None:
    """The directory that stops a dedicated uid from reaching Python, if any (e.g. /root).

    Every part of the runtime counts: a virtualenv may be reachable while the interpreter's
    own prefix (``sys.base_prefix``, the standard library) lives below a private directory.
    """
    for prefix in (sys.prefix, sys.base_prefix, sys.exec_prefix):
        path = ""
        for part in Path(prefix).parts[1:-1]:
            path += "/" + part
            if not os.stat(path).st_mode & 0o001:
                return path
    return None


def degraded_policies() -> dict[str, Policy]:
    """The degraded configurations, each an explicit opt-in (``allow_missing``)."""
    hidden = runtime_hidden_from_other_users()
    # Without a mount namespace the dedicated uid cannot reach a Python installed below a
    # 0700 directory (pyenv under /root): the worker refuses to start (uid_drop fails closed).
    # Keep the mount namespace then, so the column still says what the other layers buy.
    no_ns = tuple(n for n in NAMESPACES if not (hidden and n == "mount_namespace"))
    keep = {"pdeathsig", "rlimits"}
    return {
        "no seccomp": Policy(skip=("seccomp",), allow_missing=True),
        "no landlock": Policy(skip=("landlock",), allow_missing=True),
        "no namespaces": Policy(skip=no_ns, allow_missing=True),
        "rlimits only": Policy(skip=tuple(n for n in LAYERS if n not in keep), allow_missing=True),
    }


# --- running --------------------------------------------------------------------------------------


@dataclass
class EchoInfo:
    worker_id: str
    workdir: str
    #: (pid, create time) of its launcher, init and worker, as the host sees them.
    processes: list[tuple[int, float]]


@dataclass
class Run:
    """One attack in one host under one policy."""

    arena: Arena
    host: Host
    attack: Attack
    policy: Policy
    label: str
    worker_uid: int | None = None
    workdir: str | None = None
    echo: EchoInfo | None = None
    notes: dict[str, Any] = field(default_factory=dict)
    cleanups: list[Callable[[], object]] = field(default_factory=list)


class RunLock:
    """Exclusive attacks run alone; the others may run together (the degraded runs' threads).

    Alone means with no other attack at all, not just no other exclusive one: under a non-root
    host every worker shares the runner's uid, so a fork bomb's processes count against every
    other worker's RLIMIT_NPROC, and one starting meanwhile could fail for want of a process.
    """

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._shared = 0
        self._exclusive = False

    @contextlib.contextmanager
    def shared(self) -> Iterator[None]:
        with self._cond:
            self._cond.wait_for(lambda: not self._exclusive)
            self._shared += 1
        try:
            yield
        finally:
            with self._cond:
                self._shared -= 1
                self._cond.notify_all()

    @contextlib.contextmanager
    def exclusive(self) -> Iterator[None]:
        with self._cond:
            self._cond.wait_for(lambda: not self._exclusive)
            self._exclusive = True  # no new shared holder from now on
            self._cond.wait_for(lambda: self._shared == 0)
        try:
            yield
        finally:
            with self._cond:
                self._exclusive = False
                self._cond.notify_all()


class Arena:
    """The targets and tripwires, set up by the trusted test process before any host exists."""

    scratch: Path
    canary: Path
    canary_content: bytes
    canary_sha: str
    open_dir: Path
    host_tmp_dir: Path
    target_file: Path
    target_dir: Path
    target_content: bytes
    target_sha: str
    inherited_fd: int
    secret: bytes
    secret_address: int
    secret_env: str
    secret_env_sha: str
    decoy: subprocess.Popen[bytes]
    host_environ_sha: str
    proc1_cmdline_sha: str
    usr2_count: int

    def __init__(self) -> None:
        self.scratch = Path(tempfile.mkdtemp(prefix="escape-arena-", dir="/var/tmp"))
        self.scratch.chmod(0o755)
        self.canary_content = b"canary " + secrets.token_hex(16).encode()
        self.canary = self.scratch / "canary.txt"
        self.canary.write_bytes(self.canary_content)
        self.canary.chmod(0o644)  # DAC alone would let anyone read it
        self.canary_sha = hashlib.sha256(self.canary_content).hexdigest()
        self.open_dir = self.scratch / "open"
        self.open_dir.mkdir()
        self.open_dir.chmod(0o777)  # DAC alone would let anyone write here
        self.host_tmp_dir = Path(tempfile.mkdtemp(prefix="escape-host-tmp-", dir="/tmp"))
        self.host_tmp_dir.chmod(0o777)
        self.target_content = b"symlink target " + secrets.token_hex(8).encode()
        self.target_file = self.scratch / "target.txt"
        self.target_file.write_bytes(self.target_content)
        self.target_file.chmod(0o644)
        self.target_sha = hashlib.sha256(self.target_content).hexdigest()
        self.target_dir = self.scratch / "target-dir"
        self.target_dir.mkdir(mode=0o755)
        (self.target_dir / "keep.txt").write_bytes(self.target_content)
        # Left open and inheritable *before* any host exists: no worker may see it.
        self.inherited_fd = os.open(self.canary, os.O_RDONLY)
        os.set_inheritable(self.inherited_fd, True)
        self.secret = b"SECRET-IN-HOST-MEMORY-" + secrets.token_hex(8).encode()
        self._secret_buffer = ctypes.create_string_buffer(self.secret)
        self.secret_address = ctypes.addressof(self._secret_buffer)
        self.secret_env = secrets.token_hex(16)
        self.secret_env_sha = hashlib.sha256(self.secret_env.encode()).hexdigest()
        self._old_env = os.environ.get(SECRET_ENV)
        os.environ[SECRET_ENV] = self.secret_env
        # /proc/<pid>/environ shows the environment a process was *started* with, so a decoy
        # started with the secret stands for "a process of the host's user holding a secret".
        self.decoy = self._start_decoy()
        self.host_environ_sha = hashlib.sha256(Path("/proc/self/environ").read_bytes()).hexdigest()
        self.proc1_cmdline_sha = hashlib.sha256(Path("/proc/1/cmdline").read_bytes()).hexdigest()
        self.usr2_count = 0
        self._old_usr2 = signal.signal(signal.SIGUSR2, self._on_usr2)
        self.lock = RunLock()

    @staticmethod
    def _start_decoy() -> subprocess.Popen[bytes]:
        return subprocess.Popen(["sleep", "600"], env={**os.environ}, stdin=subprocess.DEVNULL)

    def ensure_decoy(self) -> None:
        """Restart the decoy if an attack killed it (an escape that was already reported)."""
        if self.decoy.poll() is not None:
            self.decoy = self._start_decoy()

    def _on_usr2(self, signum: int, frame: object) -> None:
        self.usr2_count += 1

    @staticmethod
    def ipc_directory(host: Host) -> str:
        return host._reactor.transport.directory

    @staticmethod
    def workdir_root(host: Host) -> str:
        return host._reactor._workdir_root

    def close(self) -> None:
        signal.signal(signal.SIGUSR2, self._old_usr2)
        self.decoy.kill()
        self.decoy.wait()
        with contextlib.suppress(OSError):
            os.close(self.inherited_fd)
        if self._old_env is None:
            os.environ.pop(SECRET_ENV, None)
        else:
            os.environ[SECRET_ENV] = self._old_env
        shutil.rmtree(self.scratch, ignore_errors=True)
        shutil.rmtree(self.host_tmp_dir, ignore_errors=True)

    def __enter__(self) -> Arena:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- one attack

    def run(self, host: Host, attack: Attack, base: Policy, label: str = "default") -> Verdict:
        """Load the attacks provider under ``base`` (plus the attack's own limits), run the
        attack, judge it, check the host still serves, remove the provider and run the
        after-checks once its worker is gone."""
        started = time.monotonic()
        policy = base.merged(dict(attack.policy)) if attack.policy else base
        run = Run(self, host, attack, policy, re.sub(r"\W", "_", label))
        lock = self.lock.exclusive() if attack.exclusive else self.lock.shared()
        try:
            with lock:
                return self._run(run, started)
        finally:
            for cleanup in reversed(run.cleanups):
                with contextlib.suppress(Exception):
                    cleanup()

    def _run(self, run: Run, started: float) -> Verdict:
        host, attack = run.host, run.attack
        if attack.needs_echo:
            self._start_echo(run)
        try:
            name = host.add_provider(ATTACKS, policy=run.policy, name="attacks")
        except ProviderUnavailable as exc:
            self._remove(run, [])
            return Verdict(attack.name, "unavailable", f"the provider refused to start: {exc}")
        state = host._reactor.providers[name]
        layers = tuple((str(r["name"]), bool(r["applied"])) for r in state.layers)
        workers = list(state.workers)
        if workers:
            run.workdir = workers[0].process.workdir
        run.worker_uid = _uid_from_layers(state.layers)
        try:
            payload = attack.input_factory(run)
            outcome = host.run(f"attacks.{attack.action}", payload)
            escaped, detail = attack.check(run, outcome)
            serves = host.run("attacks.ping", {})
            if not serves.ok:
                escaped = True
                detail += f"; the provider no longer serves: {_describe(serves)}"
            if run.echo is not None:
                echoed = host.run("echo.echo", {"value": "still here"})
                if not (echoed.ok and echoed.value == "still here"):
                    escaped = True
                    detail += f"; the other provider no longer serves: {_describe(echoed)}"
        finally:
            self._remove(run, [name])
        if attack.after is not None:
            late = attack.after(run)
            if late is not None:
                escaped = escaped or late[0]
                detail += "; " + late[1]
        return Verdict(attack.name, "ESCAPED" if escaped else "contained", detail, layers,
                       time.monotonic() - started)  # fmt: skip

    def _start_echo(self, run: Run) -> None:
        host = run.host
        name = host.add_provider(ECHO, policy=run.policy.merged({"wall_time": 30, "cpu_time": 10}),
                                 name="echo")  # fmt: skip
        workdir = host.call("echo.cwd", {})
        worker = host._reactor.providers[name].workers[0]
        processes = []
        with contextlib.suppress(psutil.Error):
            launcher = psutil.Process(worker.process.pid)
            for p in [launcher, *launcher.children(recursive=True)]:
                processes.append((p.pid, p.create_time()))
        run.echo = EchoInfo(worker.worker_id, workdir, processes)

    def _remove(self, run: Run, names: list[str]) -> None:
        """Remove the providers and wait until their workers have exited and been cleaned up."""
        host = run.host
        if run.echo is not None:
            names = [*names, "echo"]
        states = [host._reactor.providers.get(n) for n in names]
        workers = [w for s in states if s is not None for w in s.workers]
        for name in names:
            host.remove_provider(name)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if all(w.process.exited and not os.path.exists(w.process.workdir) for w in workers):
                break
            time.sleep(0.01)
        # the catalog entry goes on the reactor thread; wait for it so the next add cannot clash
        while any(n in host._reactor.providers for n in names) and time.monotonic() < deadline:
            time.sleep(0.01)


def _uid_from_layers(layers: list[dict[str, Any]]) -> int | None:
    for report in layers:
        if report.get("name") == "uid_drop" and report.get("applied"):
            found = re.search(r"uid (\d+)", str(report.get("detail", "")))
            if found:
                return int(found.group(1))
    return None


def run_catalog(
    base: Policy,
    label: str,
    attacks: tuple[Attack, ...] = CATALOG,
    arena: Arena | None = None,
) -> dict[str, Verdict]:
    """Run ``attacks`` one after another in one host under ``base``."""
    owned = arena is None
    arena = arena or Arena()
    try:
        with Host() as host:
            return {a.name: arena.run(host, a, base, label) for a in attacks}
    finally:
        if owned:
            arena.close()


def in_parallel(jobs: dict[str, Callable[[], dict[str, Verdict]]]) -> dict[str, dict[str, Verdict]]:
    """Run independent catalog runs (one host each) in threads."""
    results: dict[str, dict[str, Verdict]] = {}
    errors: dict[str, BaseException] = {}

    def work(key: str, job: Callable[[], dict[str, Verdict]]) -> None:
        try:
            results[key] = job()
        except BaseException as exc:
            errors[key] = exc

    threads = [threading.Thread(target=work, args=item) for item in jobs.items()]
    for t in threads:
        t.start()
    for t in threads:
        while t.is_alive():
            t.join(0.05)  # keep the main thread running Python: signal handlers run there
    if errors:
        key, exc = next(iter(errors.items()))
        where = "".join(traceback.format_exception(exc)[-6:])  # CI shows only the summary
        raise RuntimeError(f"the {key!r} run failed: {exc!r}\n{where}") from exc
    return results


__all__ = [
    "BY_NAME", "CATALOG", "Arena", "Attack", "Run", "Verdict", "applied_layers",
    "degraded_policies", "expected_contained", "in_parallel", "run_catalog",
]  # fmt: skip
