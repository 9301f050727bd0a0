"""Per-call CPU time and peak memory of a worker's whole process tree, read by the host.

The worker's own report (``protocol.Usage``) comes from code that shares a process with the
provider: a provider can patch ``resource.getrusage`` or the runtime's usage function, disarm
its CPU timer, or burn CPU in a forked child the report never sees. So the host reads the
figures it decides on - ``Outcome.usage``, ``cpu_time``, ``max_memory_growth`` - from the
kernel's counters for the worker's cgroup, which cover every process of the tree (launcher and
init included: both sleep in ``sigwaitinfo`` while a call runs, so they add next to nothing):

- CPU: cgroup v1 ``cpuacct.usage`` (nanoseconds), v2 ``cpu.stat`` ``usage_usec``;
- peak memory: v1 ``memory.max_usage_in_bytes`` (writing 0 resets it to the current usage),
  v2 ``memory.peak`` (on Linux >= 6.12 a write through an open descriptor resets what that
  descriptor reads; older kernels: the peak since the worker's cgroup was made, said so by
  :attr:`TreeMeter.per_call_peak`).

The files are opened once per worker and read with ``pread``: polling a busy worker's CPU costs
one small read. Without a cgroup there is nothing the host can read for the tree, and usage is
the worker's own report, marked ``source="worker"`` (see :data:`LOST_WITHOUT_CGROUPS`).
"""

from __future__ import annotations

import contextlib
import math
import os
import time

from host.cgroups import CgroupSupport, WorkerCgroup
from host.errors import Usage
from sandbox import protocol

#: Longest gap between two looks at a busy worker's CPU once it nears its limit: the host's
#: ``cpu_time`` overshoot is at most this per CPU the tree runs on (plus the kill itself).
CPU_POLL_S = 0.025
#: CPU an idle worker may use per second idle (answering pings), on top of one ``cpu_time``.
IDLE_CPU_SHARE = 0.01

#: What a worker without a cgroup loses, for ``doctor``, the layer report and the README.
LOST_WITHOUT_CGROUPS = (
    "cpu_time enforced only inside the worker (its CPU timer and RLIMIT_CPU, per process)",
    "usage (cpu_s, max_rss_bytes) and max_memory_growth reported by the worker",
    "memory bounded per process (RLIMIT_DATA), not for the tree: each child may use it all",
    "processes bounded by RLIMIT_NPROC of the worker's user, not a count for the tree",
)


def _open(path: str, flags: int) -> int | None:
    try:
        return os.open(path, flags | os.O_CLOEXEC)
    except OSError:
        return None


def _pread(fd: int) -> bytes | None:
    try:
        return os.pread(fd, 4096, 0)
    except OSError:
        return None


class TreeMeter:
    """The CPU and memory counters of one worker's cgroup, kept open for the worker's life.

    Make it with :meth:`open` once the cgroup exists; :meth:`close` it before the cgroup is
    removed. Every read returns None when the counter cannot be read (never a made-up zero).
    """

    def __init__(
        self, version: int, cpu_fd: int, peak_fd: int | None, tasks_fd: int | None = None
    ) -> None:
        self.version = version
        self._cpu_fd: int | None = cpu_fd
        self._peak_fd = peak_fd
        self._tasks_fd = tasks_fd
        #: Whether :meth:`reset_peak` works here, so :meth:`peak_bytes` is the call's own peak
        #: (False: it is the peak since the worker started).
        self.per_call_peak = peak_fd is not None
        #: The tree's CPU counter when the running call started (see :meth:`start_call`).
        self.call_start_ns = 0
        #: CPU the tree used outside calls so far, and the counter when it last went idle.
        self.outside_ns = 0
        self.idle_from_ns: int | None = None
        #: When it last went idle (monotonic), and what the worker's own polls for the next
        #: call may have used outside calls so far (see :meth:`start_call`).
        self.idle_from_s: float | None = None
        self.spin_credit_s = 0.0
        #: Whether the running (or last) call let the worker poll after it (``Call.spin``).
        self.spin_after_call = False

    @classmethod
    def open(cls, group: WorkerCgroup) -> TreeMeter | None:
        """Open the counters of ``group``; None when its CPU counter is not readable."""
        if group.version == 2:
            directory = group.directories.get("")
            if directory is None:
                return None
            cpu_fd = _open(f"{directory}/cpu.stat", os.O_RDONLY)
            peak_fd = _open(f"{directory}/memory.peak", os.O_RDWR)
            tasks_fd = _open(f"{directory}/pids.current", os.O_RDONLY)
        else:
            cpu_dir = group.directories.get("cpuacct") or group.directories.get("cpu")
            memory = group.directories.get("memory")
            if cpu_dir is None:
                return None
            cpu_fd = _open(f"{cpu_dir}/cpuacct.usage", os.O_RDONLY)
            peak_fd = _open(f"{memory}/memory.max_usage_in_bytes", os.O_RDWR) if memory else None
            pids = group.directories.get("pids")
            tasks_fd = _open(f"{pids}/pids.current", os.O_RDONLY) if pids else None
        if cpu_fd is None:
            for fd in (peak_fd, tasks_fd):
                if fd is not None:
                    os.close(fd)
            return None
        meter = cls(group.version, cpu_fd, peak_fd, tasks_fd)
        if meter.cpu_ns() is None:
            meter.close()
            return None
        return meter

    def cpu_ns(self) -> int | None:
        """CPU time (user + system) the whole tree has used since its cgroup was made."""
        if self._cpu_fd is None:
            return None
        data = _pread(self._cpu_fd)
        if data is None:
            return None
        try:
            if self.version == 1:
                return int(data)
            for line in data.splitlines():
                key, _, value = line.partition(b" ")
                if key == b"usage_usec":
                    return int(value) * 1000
        except ValueError:
            pass
        return None

    def reset_peak(self) -> None:
        """Start a call's memory high-water mark at the tree's current usage."""
        if self._peak_fd is None or not self.per_call_peak:
            return
        try:
            os.pwrite(self._peak_fd, b"0" if self.version == 1 else b"reset", 0)
        except OSError:  # v2 before Linux 6.12: memory.peak is read-only
            self.per_call_peak = False

    def peak_bytes(self) -> int | None:
        """The tree's memory high-water mark since :meth:`reset_peak` (or since it started)."""
        if self._peak_fd is None:
            return None
        data = _pread(self._peak_fd)
        try:
            return int(data) if data is not None else None
        except ValueError:
            return None

    def start_call(self) -> bool:
        """Mark a call's start: its CPU is counted from here and its peak memory reset.

        What the tree used before (start-up, a zygote spare's life, earlier calls, idle time)
        is never charged to the call. False when the counter cannot be read.
        """
        now = self.cpu_ns()
        if now is None:
            return False
        used_ns = 0
        if self.idle_from_ns is not None:
            used_ns = max(0, now - self.idle_from_ns)
            self.outside_ns += used_ns
            self.idle_from_ns = None
        if self.idle_from_s is not None:
            # Never more than the gap used: a credit for polls that did not happen would be
            # saved up (a review banked 8 s in 20 s of calls 2 ms apart, then spent it).
            if self._tasks() <= protocol.TREE_TASKS:
                gap = max(0.0, time.monotonic() - self.idle_from_s)
                own = protocol.WORKER_TAIL_S + (
                    protocol.WORKER_SPIN_S if self.spin_after_call else 0.0
                )
                self.spin_credit_s += min(own, gap, used_ns / 1e9)
            self.idle_from_s = None
        self.call_start_ns = now
        self.reset_peak()
        return True

    def _tasks(self) -> float:
        """Tasks (threads) in the tree now; infinity when that cannot be read.

        Between calls the worker polls for the next one (``sandbox.wire``) only while it is
        the tree's one thread beside the launcher's and the init's, which never run provider
        code, and the call allowed it; so that poll, and the worker's own work between a
        result and its next read, are credited (``spin_credit_s``: at most ``WORKER_TAIL_S``,
        plus ``WORKER_SPIN_S`` after a call that allowed the poll, and never more than the
        gap's length or the CPU the tree used in it) only for a gap that ends with no other
        task in the tree. A thread or child left behind to use CPU between calls makes the
        tree bigger, and then its CPU outside calls is bounded as tightly as without the
        poll."""
        data = _pread(self._tasks_fd) if self._tasks_fd is not None else None
        try:
            return int(data) if data is not None else math.inf
        except ValueError:
            return math.inf

    def went_idle(self, now_ns: int | None = None) -> None:
        """The call ended (or the worker is idle for the first time): count CPU as outside."""
        self.idle_from_ns = now_ns if now_ns is not None else self.cpu_ns()
        self.idle_from_s = time.monotonic()

    def outside_calls_s(self) -> float | None:
        """CPU seconds the tree used while no call ran (a thread or child left spinning)."""
        if self.idle_from_ns is None:
            return self.outside_ns / 1e9
        now = self.cpu_ns()
        return None if now is None else (self.outside_ns + max(0, now - self.idle_from_ns)) / 1e9

    def call_cpu_s(self) -> float | None:
        """CPU seconds of the whole tree since :meth:`start_call`."""
        now = self.cpu_ns()
        return None if now is None else max(0, now - self.call_start_ns) / 1e9

    def close(self) -> None:
        for fd in (self._cpu_fd, self._peak_fd, self._tasks_fd):
            if fd is not None:
                with contextlib.suppress(OSError):
                    os.close(fd)
        self._cpu_fd = self._peak_fd = self._tasks_fd = None


def measured_usage(meter: TreeMeter | None, reported: protocol.Usage | None) -> Usage:
    """A call's usage: the host's figures when it can read them, else the worker's, marked."""
    claimed = (reported.cpu_s, reported.max_rss_bytes) if reported is not None else None
    if meter is not None:
        cpu = meter.call_cpu_s()
        if cpu is not None:
            return Usage(0.0, cpu, meter.peak_bytes() or 0, "cgroup", claimed)
    if reported is None:
        return Usage()
    return Usage(0.0, reported.cpu_s, reported.max_rss_bytes, "worker", claimed)


#: CPUs of the machine, read once (``os.cpu_count`` parses /sys on every call: it was the
#: costliest line of a call's dispatch).
_CPUS = os.cpu_count() or 1


def next_cpu_check_s(remaining_s: float) -> float:
    """When to look again at a call with ``remaining_s`` CPU left: no sooner than the tree
    could use it all on every CPU of the machine, and no later than :data:`CPU_POLL_S` after
    it could have."""
    return max(CPU_POLL_S, remaining_s / _CPUS - CPU_POLL_S)


def outside_cpu_allowance_s(cpu_time: float, age_s: float, spin_credit_s: float) -> float:
    """CPU a worker's tree may use outside calls over its life: one call's budget, a small
    share of its age, and the worker's own polls for its next call (``spin_credit_s``:
    :meth:`TreeMeter._tasks` says when they count). A thread or child left spinning after a
    result uses ~100% of a CPU and is caught after about one ``cpu_time``, however often short
    calls come between; the pings of a worker idle for hours are not."""
    return cpu_time + IDLE_CPU_SHARE * age_s + spin_credit_s


def lost_guarantees(support: CgroupSupport) -> tuple[str, ...]:
    """What the host cannot measure or enforce itself on this machine (for ``doctor``)."""
    if not support.version:
        return LOST_WITHOUT_CGROUPS
    if support.version == 1:
        accounting = support.parents.get("cpuacct") or support.parents.get("cpu", "")
        if not os.path.exists(f"{accounting}/cpuacct.usage"):
            return (
                "no cgroup v1 cpuacct hierarchy: " + LOST_WITHOUT_CGROUPS[0],
                "usage (cpu_s) reported by the worker",
            )
    return ()


def annotate_layers(layers: list[dict[str, object]]) -> list[dict[str, object]]:
    """A worker's layer report, with what is lost where its cgroups layer did not apply."""
    return [
        {**row, "lost": list(LOST_WITHOUT_CGROUPS)}
        if row.get("name") == "cgroups" and not row.get("applied")
        else dict(row)
        for row in layers
    ]
