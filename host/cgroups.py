"""Control groups for workers: memory (with swap), pids and CPU limits for a whole process tree.

rlimits are per process, so a tree of processes could use the memory limit once each and fork
without bound under root; a cgroup limits the tree. The host (trusted) creates one cgroup per
worker, sets its limits, moves the freshly spawned launcher into it *before* sending the spawn
spec (so nothing runs unconfined in between), reads the OOM-kill counter when the worker dies and
removes the cgroup afterwards.

Two layouts are supported, probed at run time, never assumed:
- cgroup v2 where the host's own cgroup is a writable, delegated subtree with the memory and pids
  controllers enabled for its children;
- cgroup v1 when the host can write the memory, pids and cpu hierarchies (root, as on our CI).
"""

from __future__ import annotations

import contextlib
import errno
import os
import signal
import time
from dataclasses import dataclass, field

from policies import Policy

#: Where cgroup hierarchies are mounted (v1: one per controller beneath it; v2: the tree).
ROOT = _ROOT = "/sys/fs/cgroup"
#: CPU quota per worker tree: one full CPU (the per-call limit is the CPU timer, not this).
CPU_PERIOD_US = 100_000
CPU_QUOTA_US = 100_000
#: Processes allowed in a worker's cgroup beyond ``policy.processes`` for the launcher and init.
PIDS_OVERHEAD = 4


@dataclass(frozen=True)
class CgroupSupport:
    """What this machine offers: ``version`` 1 or 2, or 0 with the reason."""

    version: int
    reason: str
    #: v1: controller name -> directory under which worker cgroups are made; v2: {"": dir}.
    parents: dict[str, str] = field(default_factory=dict)


def _own_paths() -> dict[str, str]:
    """The host's cgroup path per v1 controller (and "" for the v2 unified hierarchy)."""
    paths: dict[str, str] = {}
    with open("/proc/self/cgroup") as f:
        for line in f:
            _, controllers, path = line.rstrip("\n").split(":", 2)
            for controller in controllers.split(",") if controllers else [""]:
                paths[controller] = path
    return paths


def probe() -> CgroupSupport:
    """Find a place where this process may create worker cgroups, or say why there is none."""
    try:
        own = _own_paths()
    except OSError as exc:
        return CgroupSupport(0, f"cannot read /proc/self/cgroup: {exc.strerror}")
    if os.path.exists(f"{_ROOT}/cgroup.controllers"):  # a pure v2 hierarchy
        parent = f"{_ROOT}{own.get('', '/')}".rstrip("/")
        try:
            with open(f"{parent}/cgroup.subtree_control") as f:
                enabled = f.read().split()
        except OSError as exc:
            return CgroupSupport(0, f"cgroup v2: cannot read {parent}: {exc.strerror}")
        missing = {"memory", "pids"} - set(enabled)
        if missing:
            return CgroupSupport(
                0,
                f"cgroup v2: {parent} does not delegate {', '.join(sorted(missing))} to its "
                "children (run the host in a delegated cgroup, e.g. systemd-run --user -p "
                "Delegate=yes)",
            )
        if not os.access(parent, os.W_OK):
            return CgroupSupport(0, f"cgroup v2: {parent} is not writable by this user")
        return CgroupSupport(2, f"cgroup v2 delegated subtree {parent}", {"": parent})
    parents = {}
    for controller in ("memory", "pids", "cpu"):
        base = f"{_ROOT}/{controller}"
        if not os.path.isdir(base):
            return CgroupSupport(0, f"cgroup v1: no {controller} hierarchy at {base}")
        parent = f"{base}{own.get(controller, '/')}".rstrip("/")
        if not os.access(parent, os.W_OK):
            return CgroupSupport(0, f"cgroup v1: {parent} is not writable (needs root)")
        parents[controller] = parent
    # cpuacct holds the tree's CPU counter the host reads per call (``host.usage``). Where it
    # is mounted together with cpu (``cpu,cpuacct``), the cpu directory has it already.
    accounting = f"{_ROOT}/cpuacct{own.get('cpuacct', '/')}".rstrip("/")
    if os.path.realpath(accounting) != os.path.realpath(parents["cpu"]) and os.access(
        accounting, os.W_OK
    ):
        parents["cpuacct"] = accounting
    kinds = "memory, pids, cpu and cpuacct" if "cpuacct" in parents else "memory, pids and cpu"
    return CgroupSupport(1, f"cgroup v1 {kinds} hierarchies (as root)", parents)


#: Worker cgroups are named with this prefix; an empty one older than this is left over from a
#: host that was killed before it could remove it.
NAME_PREFIX = "sandbox-w"
STALE_AFTER_S = 60.0


def remove_stale(support: CgroupSupport) -> int:
    """Remove empty worker cgroups that a killed host left behind; returns how many.

    Only empty ones can be removed at all (the kernel refuses otherwise), and only old ones are
    tried, so a cgroup another host has just created is never touched. A name with an owner's
    id is removed only once that owner is dead (``remove_owned``, or ``empty_owned``).
    """
    return remove_if_still_empty(_old_and_empty(support, named=False))


#: A live host removes its worker's cgroup within seconds of the worker's exit; a named one
#: (``.<owner>``) still empty this long after a host first saw it empty belongs to a host that
#: died where no later host will find it dead (``remove_owned`` needs its state directory,
#: which a tmp cleaner, ``PrivateTmp`` or another TMPDIR takes out of sight).
ORPHANED_RECHECK_S = 60.0


def empty_owned(support: CgroupSupport, exclude: str) -> list[str]:
    """Empty worker cgroups older than ``STALE_AFTER_S`` that name an owner other than
    ``exclude``: candidates for :func:`remove_if_still_empty` once ``ORPHANED_RECHECK_S`` has
    passed (an empty cgroup of a live host is short-lived; one of a dead host stays)."""
    return _old_and_empty(support, named=True, exclude=exclude)


def _old_and_empty(support: CgroupSupport, *, named: bool, exclude: str = "") -> list[str]:
    """Worker cgroups older than ``STALE_AFTER_S`` with no process in them: those whose name
    carries an owner's id (``named``; not ``exclude``'s), or those whose name carries none."""
    found = []
    now = time.time()
    for parent in support.parents.values():
        try:
            entries = os.listdir(parent)
        except OSError:
            continue
        for entry in entries:
            if not entry.startswith(NAME_PREFIX) or ("." in entry) != named:
                continue
            if named and entry.endswith(f".{exclude}"):
                continue
            path = f"{parent}/{entry}"
            try:
                if now - os.stat(path).st_mtime > STALE_AFTER_S and not _read(
                    f"{path}/cgroup.procs"
                ).strip():
                    found.append(path)
            except OSError:
                continue
    return found


def remove_if_still_empty(paths: list[str]) -> int:
    """Remove those of ``paths`` that are still there and still empty; returns how many (the
    kernel refuses a cgroup with a process or a child in it anyway)."""
    removed = 0
    for path in paths:
        try:
            if not _read(f"{path}/cgroup.procs").strip():
                os.rmdir(path)
                removed += 1
        except OSError:
            continue
    return removed


def remove_owned(parents: list[str], owner: str, timeout: float = 2.0) -> int:
    """Remove the cgroups a dead host (id ``owner``) left under ``parents``; returns how many.

    Names end with ``.<owner>`` (``host.ownership``), so only that host's cgroups are touched,
    whatever their age; a process still in one (its host is dead: nothing should be) is killed
    first. The caller has made sure the owner is dead (its lock was free).
    """
    removed = 0
    suffix = f".{owner}"
    for parent in parents:
        real = os.path.realpath(parent)
        if not real.startswith(f"{_ROOT}/") or real != parent.rstrip("/"):
            continue  # never follow a recorded path out of the cgroup tree
        try:
            entries = os.listdir(parent)
        except OSError:
            continue
        for entry in entries:
            if not (entry.startswith("sandbox-") and entry.endswith(suffix)):
                continue
            group = WorkerCgroup(2 if os.path.exists(f"{_ROOT}/cgroup.controllers") else 1,
                                 {"": f"{parent}/{entry}"})
            group.kill_all()
            if group.remove(timeout=timeout):
                removed += 1
    return removed


def _write(path: str, value: str) -> None:
    with open(path, "w") as f:
        f.write(value)


def _read(path: str) -> str:
    with open(path) as f:
        return f.read()


class WorkerCgroup:
    """The cgroup(s) of one worker. Create with :meth:`create`; always :meth:`remove`."""

    def __init__(self, version: int, directories: dict[str, str]) -> None:
        self.version = version
        self.directories = directories

    @classmethod
    def create(cls, support: CgroupSupport, name: str, policy: Policy) -> WorkerCgroup:
        """Make the cgroup and set the policy's limits. Raises ``OSError`` on failure."""
        directories = {key: f"{parent}/{name}" for key, parent in support.parents.items()}
        group = cls(support.version, {})
        try:
            for key, directory in directories.items():
                os.mkdir(directory, 0o755)
                group.directories[key] = directory
            group.limit(policy)
        except OSError:
            group.remove()
            raise
        return group

    def limit(self, policy: Policy) -> None:
        """Set (or reset) the policy's limits; a spare launcher's cgroup gets them when taken."""
        pids = str(policy.processes + PIDS_OVERHEAD)
        if self.version == 2:
            d = self.directories[""]
            _write(f"{d}/memory.max", str(policy.memory))
            with contextlib.suppress(OSError):  # absent without swap accounting
                _write(f"{d}/memory.swap.max", "0")
            _write(f"{d}/pids.max", pids)
            with contextlib.suppress(OSError):  # cpu may not be delegated
                _write(f"{d}/cpu.max", f"{CPU_QUOTA_US} {CPU_PERIOD_US}")
            return
        memory = self.directories["memory"]
        try:
            _write(f"{memory}/memory.limit_in_bytes", str(policy.memory))
        except OSError as exc:
            # Raising it: v1 refuses a memory limit above the memory+swap one, so that goes first.
            if exc.errno != errno.EINVAL:
                raise
            _write(f"{memory}/memory.memsw.limit_in_bytes", str(policy.memory))
            _write(f"{memory}/memory.limit_in_bytes", str(policy.memory))
        with contextlib.suppress(OSError):  # absent without swap accounting
            _write(f"{memory}/memory.memsw.limit_in_bytes", str(policy.memory))
        _write(f"{self.directories['pids']}/pids.max", pids)
        cpu = self.directories["cpu"]
        _write(f"{cpu}/cpu.cfs_period_us", str(CPU_PERIOD_US))
        _write(f"{cpu}/cpu.cfs_quota_us", str(CPU_QUOTA_US))

    def add(self, pid: int) -> None:
        """Move ``pid`` (the launcher, before it runs anything) into every hierarchy."""
        for directory in self.directories.values():
            _write(f"{directory}/cgroup.procs", str(pid))

    def describe(self) -> str:
        return ", ".join(sorted(self.directories.values()))

    def membership(self) -> list[str]:
        """Lines a member's /proc/self/cgroup must contain (checked inside the worker)."""
        lines = []
        for key, directory in self.directories.items():
            relative = directory.removeprefix(f"{_ROOT}/{key}" if key else _ROOT)
            lines.append(f"{key}:{relative}" if key else f"::{relative}")
        return lines

    def oom_killed(self) -> bool:
        """Whether the kernel OOM-killed a process of this cgroup (its memory limit was hit)."""
        return self.oom_kills() > 0

    def oom_kills(self) -> int:
        """How many processes of this cgroup the kernel OOM-killed in its life (0 if unknown)."""
        try:
            if self.version == 2:
                text = _read(f"{self.directories['']}/memory.events")
            else:
                text = _read(f"{self.directories['memory']}/memory.oom_control")
        except (OSError, KeyError):
            return 0
        for line in text.splitlines():
            key, _, value = line.partition(" ")
            if key == "oom_kill" and value.strip().isdigit():
                return int(value)
        return 0

    def pids(self) -> list[int]:
        found: set[int] = set()
        for directory in self.directories.values():
            with contextlib.suppress(OSError):
                found.update(int(p) for p in _read(f"{directory}/cgroup.procs").split())
        return sorted(found)

    def kill_all(self) -> None:
        """SIGKILL every process in the cgroup (the last resort when the launcher hangs)."""
        if self.version == 2:
            with contextlib.suppress(OSError):
                _write(f"{self.directories['']}/cgroup.kill", "1")
                return
        for _ in range(100):  # v1: processes can fork while we kill; repeat until empty
            pids = self.pids()
            if not pids:
                return
            for pid in pids:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            time.sleep(0.005)

    def remove(self, timeout: float = 2.0) -> bool:
        """Remove the cgroup directories once they are empty; True when all are gone."""
        deadline = time.monotonic() + timeout
        for directory in list(self.directories.values()):
            while True:
                try:
                    os.rmdir(directory)
                    break
                except FileNotFoundError:
                    break
                except OSError:  # EBUSY: a process is still exiting
                    if time.monotonic() > deadline:
                        return False
                    time.sleep(0.005)
        self.directories = {}
        return True
