"""The host's event loop: one thread that owns the wire, the workers and every deadline.

The wire's state (``host.transport``) is the loop's alone, and ``PR_SET_PDEATHSIG`` fires when
the *thread* that spawned a process ends, so one long-lived thread does all I/O and all
spawning. Other threads talk to it through a command queue and a wake-up pipe. Every call
reaches exactly one outcome here: results, failures, deadlines, worker deaths, protocol
violations and shutdown all end in ``_finish``, which ignores a second attempt to finish the
same call.
"""

from __future__ import annotations

import contextlib
import functools
import gc
import heapq
import hmac
import itertools
import json
import logging
import math
import os
import posix  # os.read/os.write that eventlet's patching of os never replaces
import queue
import secrets
import select
import threading
import time
from collections.abc import Callable, Hashable, Iterator
from concurrent.futures import Future
from dataclasses import dataclass, field, replace
from typing import Any

from host import cgroups, greening, ownership, zmtp
from host.catalog import (
    ActionDescriptor,
    Catalog,
    CatalogInvalid,
    OutsideNamespace,
    SchemaRejected,
    cached_catalog,
    checked_catalog,
    is_name,
    same_name,
)
from host.deaths import death_outcome, death_usage
from host.errors import (
    ERROR_TYPES,
    Cancelled,
    CpuExceeded,
    Outcome,
    OutputInvalid,
    OutputTooLarge,
    Overloaded,
    ProtocolViolation,
    ProviderUnavailable,
    SandboxError,
    Timeout,
    Usage,
    WorkerCrashed,
)
from host.fairqueue import FairQueue
from host.futures import CallFuture
from host.janitor import Janitor
from host.lanes import Lane
from host.logs import LOGGER
from host.orphans import Orphans, stat_of
from host.pipes import WorkerPipes
from host.pool import Limits, Pool, Spawn, State, WakeAt
from host.process import CapturedLogs, ExitStatus, LogCapture, SpareLauncher, WorkerProcess
from host.provider_frame import MAX_TRACEBACK_CHARS, provider_frame
from host.rules import check_worker_rules
from host.stats import ProviderStats
from host.transport import ENVELOPE_BYTES, Channel, Transport
from host.transport import release as release_connection
from host.usage import TreeMeter, measured_usage, next_cpu_check_s, outside_cpu_allowance_s
from host.validation import DeadlineExceeded, Problem
from host.zygote import ZygoteKeeper
from policies import Policy
from policies.paths import UnsafeRulePath
from sandbox import protocol
from sandbox.procfs import processes_of

log = logging.getLogger(f"{LOGGER}.{__name__}")

#: How long a worker may take from spawn to HELLO before it is killed.
STARTUP_TIMEOUT_S = 20.0
#: How long the supervisor gets to kill its tree and exit before the host SIGKILLs everything.
KILL_GRACE_S = 2.0
#: How long a disconnected worker's init gets to report a death before the host decides the
#: connection was dropped under a live worker (an oversized or malformed frame) and kills it.
DISCONNECT_GRACE_S = 0.25
#: How often one call may be handed again because its worker had died before it was sent.
MAX_UNDELIVERED = 3
#: How long an idle worker gets to exit after SHUTDOWN before it is killed.
SHUTDOWN_GRACE_S = 1.0
#: Longest wait for a killed worker's report before its call's outcome is given without it
#: (and for a starting worker's UNAVAILABLE once its exit is known).
OUTCOME_WAIT_S = 0.05
#: The exit code of a worker that sent UNAVAILABLE (``sandbox.worker.EXIT_UNAVAILABLE``).
WORKER_EXIT_UNAVAILABLE = 3
#: Workers of a root host run as uids from this range, one per worker (never a real user's).
DEDICATED_UID_BASE = 1_900_000_000
DEDICATED_UID_SPAN = 10_000_000
#: Idle workers are pinged this often; one that has not answered within the timeout is hung.
HEARTBEAT_INTERVAL_S = 1.0
HEARTBEAT_TIMEOUT_S = 3.0
#: Start-up failures in a row: back-off doubles from the first up to the cap; at the threshold
#: the circuit breaker opens and calls fail fast for the cool-down.
BACKOFF_FIRST_S = 0.1
BACKOFF_MAX_S = 5.0
BREAKER_THRESHOLD = 5
BREAKER_COOLDOWN_S = 30.0
#: A HELLO may carry this much catalog even when the policy's result limit is smaller.
MAX_CATALOG_BYTES = 1024 * 1024
#: Connections with the wrong credentials a worker's endpoint refuses before the worker fails.
MAX_REFUSED_CONNECTIONS = 8
#: Deepest process tree walked from a connecting pid up to the worker's launcher.
MAX_TREE_DEPTH = 16
#: Largest PONG body: ``{"seq":N}`` with N a counter; padding is not a PONG.
MAX_PONG_BYTES = 64
#: How a provider added without a name is keyed until its HELLO names it; not a valid name, so
#: it never stands for (or blocks) a name an engine or a provider may claim.
PENDING_PREFIX = "<pending "
#: Longest ``close`` waits for the workdirs' removal (it goes on in the background after).
JANITOR_CLOSE_TIMEOUT_S = 60.0
#: A HELLO at most this big from a provider already loaded is compared on the loop (the common
#: respawn); the first HELLO of a provider, or a bigger one, is handled on its lane.
QUICK_HELLO_BYTES = 64 * 1024
#: What a starting worker may print past its log limit before its output is left in the pipe
#: (``Reactor._idle_flood``): far more than any import prints, and a few ms of the host's CPU.
STARTUP_LOG_SLACK = 16 * 1024 * 1024
#: After the loop reads a worker's output it leaves the pipes for ``LOG_COALESCE_S``, so what
#: comes meanwhile is read at once: a worker writing a byte at a time made the loop read each
#: byte (82% of a core), whatever it wrote in all. A pipe's 64 KiB per 2 ms keeps a writer of
#: up to 32 MB/s from waiting; the call's end reads what waits, so no call's logs are later.
LOG_COALESCE_S = 0.002
#: What a call may print past its log limit at that pace; past it, the pipes are read once
#: per ``LOG_THROTTLE_S`` (6.4 MB/s, a hundred wake-ups a second), and a writer waits on them
#: in between. A call writing stderr as fast as it could kept the host's loop reading as
#: fast: a core of the host's CPU for the call's wall time.
CALL_LOG_SLACK = 16 * 1024 * 1024
LOG_THROTTLE_S = 0.01
#: A result at most this big is first judged on the loop, by the fast path or by at most
#: QUICK_STEPS keyword evaluations (about QUICK_SECONDS); one that needs more, or a bigger
#: one, is validated on the provider's lane.
QUICK_RESULT_BYTES = 16 * 1024
#: A message body bigger than this is decoded (JSON, depth and text checks: ~1 s per MB for a
#: value of many small containers) on the provider's lane, not on the loop.
DECODE_ON_LOOP_BYTES = 64 * 1024
#: A call whose tree's peak memory reached this share of the limit may have had a process
#: OOM-killed: its cgroup's count is read after it (``Reactor._note_oom_kills``).
OOM_NEAR_LIMIT = 0.9
QUICK_STEPS = 2000
QUICK_SECONDS = 0.002
#: A caller reading its own call's reply (``Reactor.wait_here``) looks at whether the call
#: ended some other way (the host closing) at least this often.
DIRECT_SLICE_MS = 50
#: How long the thread that reads a call's reply (the loop, or the caller in ``wait_here``)
#: polls for it before it blocks, while that worker's replies come within it: a thread that
#: blocks lets its vCPU go idle, and waking it again costs tens of microseconds on a virtual
#: machine, paid by the waker too (``python -m benchmarks.spin``). One caller polls at a time.
REPLY_SPIN_S = 0.001


@contextlib.contextmanager
def _collector_paused() -> Iterator[None]:
    """No garbage collection while JSON is decoded: the decoder holds the GIL throughout, and
    the collections its hundreds of thousands of new containers trigger doubled that time
    (they cannot form cycles, so nothing is missed). Left as it was found: if the collector
    was already off (an embedding engine's choice, or another decode), it stays off."""
    paused = gc.isenabled()
    if paused:
        gc.disable()
    try:
        yield
    finally:
        if paused:
            gc.enable()


def _largest_message(policy: Policy) -> int:
    """The biggest message a worker may send: its result limit (or a catalog), plus envelope.
    It is the wire's budget until the worker's HELLO; ``_largest_result`` after it."""
    return max(policy.output, MAX_CATALOG_BYTES) + ENVELOPE_BYTES


def _largest_result(policy: Policy) -> int:
    """The biggest message a worker that said HELLO may send: a RESULT, plus envelope."""
    return policy.output + ENVELOPE_BYTES


def _outbox_limit(policy: Policy) -> int:
    """What the host may have queued for one worker: a CALL (with its payload) and the small
    control messages around it, with room for the framing."""
    return protocol.largest_call(policy.input) + ENVELOPE_BYTES


@dataclass(eq=False)
class PendingCall:
    """One call from submission to outcome."""

    call_id: str
    #: The CALL message, encoded (and so proven to be strict JSON) in the caller's thread.
    #: Its input is kept only so (bytes, which the garbage collector never walks): the checked
    #: copy was kept too while the call waited, 2-28 MiB for a 1 MiB input (floats, lists), 1.3
    #: GiB for one client's queued calls behind busy workers, and seconds-long collections.
    frames: list[bytes]
    provider: str
    descriptor: ActionDescriptor
    future: CallFuture
    submitted: float
    caller_deadline: float | None
    #: Whose call it is, for the queue's fairness (``host.fairqueue``): None for a local call.
    tenant: Hashable = None
    dispatched: float | None = None
    worker: WorkerHandle | None = None
    done: bool = False
    #: When a deadline ended the call: its wall time is measured to here, not to the report.
    deadline_hit: float | None = None
    #: 1 for the first run; a safe_rerun action whose worker died may run again.
    attempts: int = 1
    #: Times it was sent to a worker that was already dead (it ran nowhere; queued again).
    undelivered: int = 0
    #: Deadlines armed for this call; cancelled when it finishes, so the timer heap does not
    #: keep every finished call (its future, input and closures) alive until its wall time.
    timers: list[_Timer] = field(default_factory=list)


@dataclass(eq=False)
class WorkerHandle:
    """The host's view of one worker."""

    worker_id: str
    token: str
    provider: ProviderState
    process: WorkerProcess
    channel: Channel
    logs: LogCapture
    call: PendingCall | None = None
    pid: int | None = None
    #: Why the host is killing this worker, if it is: the outcome already given to its call.
    kill_reason: str | None = None
    disconnected: bool = False
    unavailable: str | None = None
    #: The traceback an UNAVAILABLE message carried (a provider that failed to import).
    unavailable_traceback: str = ""
    cpu_total_s: float = 0.0
    #: The outcome decided for the running call when the host killed the worker; it is given
    #: once the supervisor reports (so it carries CPU and memory use) or after the grace time.
    pending_error: SandboxError | None = None
    ping_seq: int = 0
    #: When the unanswered ping was sent (0: none outstanding).
    ping_sent: float = 0.0
    #: The host's reader of the tree's CPU and memory counters (None: no cgroup).
    meter: TreeMeter | None = None
    spawned: float = field(default_factory=time.monotonic)
    #: Whether the host has recorded the worker's init as a process it may inherit.
    init_known: bool = False
    #: Whether its HELLO arrived (it may be being checked, off the loop).
    hello_seen: bool = False
    #: A big message of this worker is being decoded on its provider's lane; what happens to
    #: the worker meanwhile (its next messages, a protocol violation, the connection's end,
    #: its exit) is held here and handled, in order, once that message has been.
    decoding: bool = False
    held: list[Callable[[], None]] = field(default_factory=list)
    #: Its cgroup's OOM kills as of the end of its last call (see ``Reactor._note_oom_kills``).
    oom_kills_seen: int = 0
    #: Its connection is read by the caller waiting for its call (``Reactor.wait_here``),
    #: not by the loop, until given back.
    lent: bool = False
    #: Its last reply came within ``REPLY_SPIN_S`` of its call: the next one is polled for.
    quick_replies: bool = True
    #: Its output pipes are not watched (``Reactor._on_output``): until ``logs_resume`` fires
    #: (set: read a moment ago), or, if it is None, until its next call is dispatched (it
    #: filled its log limit while no call ran).
    logs_paused: bool = False
    logs_resume: _Timer | None = None

    # Its state, when it went idle, and its call count live in its provider's pool (the
    # pool's decisions depend on them); these read and report changes to it.
    @property
    def label(self) -> str:
        """How log records name it: its id and its provider's real name."""
        return f"{self.worker_id} of provider {self.provider.label}"

    @property
    def state(self) -> State:
        return self.provider.pool.state(self)

    @state.setter
    def state(self, state: State) -> None:
        self.provider.pool.set_state(self, state, time.monotonic())

    @property
    def idle_since(self) -> float:
        return self.provider.pool.idle_since(self)

    @idle_since.setter
    def idle_since(self, when: float) -> None:
        self.provider.pool.set_idle_since(self, when)

    @property
    def calls(self) -> int:
        """Calls it has finished (what ``max_calls`` counts)."""
        return self.provider.pool.calls_served(self)


@dataclass(eq=False)
class ProviderState:
    """One provider: its policy, its workers and the calls waiting for one."""

    name: str
    ref: str
    policy: Policy
    #: Resolved with the provider's name at its first HELLO (``add_provider`` waits on it).
    ready: Future[str] | None = None
    signature: str | None = None
    info: dict[str, Any] = field(default_factory=dict)
    layers: list[dict[str, Any]] = field(default_factory=list)
    explicit_name: bool = False
    removed: bool = False
    stats: ProviderStats = field(default_factory=ProviderStats)
    #: Where this provider's costly host-side work runs (output validation), off the loop.
    lane: Lane = field(default_factory=lambda: Lane("sandbox-lane"))
    #: Its queue, its workers' places, back-off and breaker: the pool's decisions (``host.pool``).
    pool: Pool[PendingCall, WorkerHandle] = field(init=False)

    def __post_init__(self) -> None:
        # The host's figures are read here, when the provider is added (tests shorten them).
        self.pool = Pool(Limits.of(
            self.policy,
            backoff_first_s=BACKOFF_FIRST_S,
            backoff_max_s=BACKOFF_MAX_S,
            breaker_threshold=BREAKER_THRESHOLD,
            breaker_cooldown_s=BREAKER_COOLDOWN_S,
            max_undelivered=MAX_UNDELIVERED,
        ))

    @property
    def label(self) -> str:
        """Its name for log records: the real name, or its reference while the name is not known
        yet (the first worker's HELLO tells it), never the internal placeholder key."""
        if self.name.startswith(PENDING_PREFIX):
            return f"{self.ref} (name not known yet)"
        return self.name

    @property
    def workers(self) -> list[WorkerHandle]:
        """Its workers, in the order they were started (a copy)."""
        return self.pool.workers

    @property
    def queue(self) -> FairQueue[PendingCall]:
        """The calls waiting for a worker (the pool's own queue: read it, do not change it)."""
        return self.pool.queue


@dataclass(order=True)
class _Timer:
    when: float
    seq: int
    #: None once cancelled: the entry stays in the heap (heapq cannot remove it) but holds
    #: nothing, and the loop skips it.
    action: Callable[[], None] | None = field(compare=False)
    #: The worker the timer concerns: if its action raises, that worker is ended.
    worker: WorkerHandle | None = field(default=None, compare=False)


class Reactor:
    """The event loop. Public methods are thread-safe; ``_``-methods run on the loop thread."""

    def __init__(self, catalog: Catalog, search_path: list[str], spawn: str = "zygote") -> None:
        self.catalog = catalog
        #: How launchers start: forked by a zygote (started with the loop), or fresh.
        self.zygotes = ZygoteKeeper(enabled=spawn == "zygote")
        #: A launcher forked ahead of need, already in a cgroup (see ``SpareLauncher``).
        self._spare: SpareLauncher | None = None
        self.search_path = search_path
        self.providers: dict[str, ProviderState] = {}
        self._commands: queue.SimpleQueue[Callable[[], None]] = queue.SimpleQueue()
        self._wake_read, self._wake_write = os.pipe()
        self._wake_pending = False
        self._wake_local = threading.local()
        os.set_blocking(self._wake_read, False)
        os.set_blocking(self._wake_write, False)
        self._timers: list[_Timer] = []
        #: Held by whichever thread runs the loop's logic: the loop thread while it handles
        #: what a poll returned, or a caller's thread dispatching its own call or reading its
        #: reply (:meth:`accept`, :meth:`wait_here`), which spares the call the thread
        #: hand-offs to the loop and back. Never held while the loop waits in poll.
        self._lock = threading.Lock()
        #: The thread running a call's done-callbacks (in ``_finish``), if any.
        self._settling: int | None = None
        #: The loop thread's ident (set when it starts): what runs elsewhere may not spawn.
        self._loop_ident: int | None = None
        #: When the loop's current poll returns by itself (its earliest timer): a timer set
        #: by a caller's thread before then wakes the loop.
        self._poll_until = math.inf
        #: Until when the loop polls for a reply without blocking (see ``_poll``).
        self._spin_until = 0.0
        self._cancelled_timers = 0
        self._seq = itertools.count()
        self._workers: dict[bytes, WorkerHandle] = {}
        #: Each worker's endpoint (its listener, then its one connection) by fd.
        self._wire_fds: dict[int, WorkerHandle] = {}
        self._closing: Future[None] | None = None
        self._stopped = False
        #: Removes workdirs (and other slow clean-up) off this loop; joined at close.
        self._janitor = Janitor()
        #: Processes of workers the host gave up on after failing to handle their events:
        #: killed, forgotten, and reaped here once they have exited (with when they were).
        self._abandoned: list[tuple[WorkerProcess, float]] = []
        #: Processes the host started indirectly and may inherit (see ``host.orphans``).
        self._orphans = Orphans()
        self.host_is_root = os.geteuid() == 0
        # Everything on disk lives in one state directory whose lock says this host is alive,
        # so a later host reclaims it if this one is killed (``host.ownership``). With root,
        # 0711: workers under their own uids enter their own workdir and socket only.
        self._state = ownership.HostState(shared_with_other_uids=self.host_is_root)
        try:
            #: State directories this host moved out of (``_ensure_state``): removed at close.
            self._left_states: list[ownership.HostState] = []
            self._workdir_root = self._state.subdir("work")
            self.transport = Transport(
                shared_with_other_uids=self.host_is_root, directory=self._state.subdir("ipc")
            )
            self.cgroup_support = cgroups.probe()
            parents = list(self.cgroup_support.parents.values())
            try:
                self._state.write_owner(parents)
            except OSError as exc:
                log.warning("cannot record this host's ownership: %s", exc)
            ownership.reclaim(self._janitor, parents)
            if self.cgroup_support.version:
                cgroups.remove_stale(self.cgroup_support)
            #: Dedicated uids of this host's live workers (never handed out twice).
            self._uids_in_use: set[int] = set()
            # Workers' pipes (two log pipes and a status pipe each) sit in one epoll set and their
            # wire endpoints in another, which the poller watches as one fd each: a loop iteration
            # then costs the same with one worker or hundreds. The wire is handled first in every
            # iteration, so a result that arrived with its worker's death still counts.
            # (Under eventlet's monkey-patching, from the original select module: host.greening.)
            real_select = greening.real_select()
            self._pipes: WorkerPipes[WorkerHandle] = WorkerPipes(real_select)
            self._wire = real_select.epoll()
            self._poller = real_select.poll()
            self._loop_fds = [self._wake_read, self._wire.fileno(), self._pipes.fileno()]
            for fd in self._loop_fds:
                self._poller.register(fd, select.POLLIN)
            #: Set when the loop is a green thread (eventlet): it then waits in eventlet's hub.
            self._hub_wait = greening.hub_wait()
            self._at(time.monotonic() + HEARTBEAT_INTERVAL_S, self._tick)
            if self.cgroup_support.version:
                self._look_again_at_orphaned_cgroups()
            self._close_deadline: float | None = None
            #: Calls handed to the loop and not finished, so none is lost if the loop stops.
            self._pending: set[PendingCall] = set()
            # (Reentrant: a signal handler's call on the main thread may interrupt a call of
            # that thread holding it.)
            self._pending_lock = threading.RLock()
            #: Held by the one caller polling for its reply (``wait_here``).
            self._spinner = threading.Lock()
            #: Calls whose result is being validated on their provider's lane.
            self._validating: set[PendingCall] = set()
            #: Callers may dispatch their own calls (not under eventlet, whose hub runs the loop).
            self._direct = self._hub_wait is None
            #: The main thread never runs the loop's logic: Python runs signal handlers there, at
            #: any bytecode, so one could run (or a KeyboardInterrupt land) in the middle of a
            #: handler holding the loop's lock: a handler calling the host waited for the lock
            #: for ever, and an interrupted dispatch left a call without an outcome.
            self._main_ident = threading.main_thread().ident
        except BaseException:
            # (a full TMPDIR, too few descriptors, an interrupt: the state directory made
            # above would stay behind, and the next host would only rename it)
            self._discard_partial()
            raise

    def _look_again_at_orphaned_cgroups(self) -> None:
        """Empty cgroups named for other hosts: removed if still empty after
        ``cgroups.ORPHANED_RECHECK_S`` (their host died out of a later host's sight)."""
        candidates = cgroups.empty_owned(self.cgroup_support, exclude=self._state.id)
        if not candidates:
            return

        def remove() -> None:
            self._janitor.submit(
                lambda: cgroups.remove_if_still_empty(candidates), "removing orphaned cgroups"
            )

        self._at(time.monotonic() + cgroups.ORPHANED_RECHECK_S, remove)

    def _discard_partial(self) -> None:
        """Undo a construction that failed half-way: close what it opened (out of file
        descriptors, the state directory could not even be walked to be removed), then
        remove the state directory."""
        for name in ("_pipes", "_wire", "transport"):
            part = self.__dict__.get(name)
            if part is not None:
                with contextlib.suppress(Exception):
                    part.close()
        for name in ("_wake_read", "_wake_write"):
            fd = self.__dict__.get(name)
            if isinstance(fd, int):
                with contextlib.suppress(OSError):
                    os.close(fd)
        self._state.discard()

    # ------------------------------------------------------------------ thread-safe entry points

    @property
    def loop_ident(self) -> int | None:
        """The loop thread's ident, once it runs."""
        return self._loop_ident

    def count_refusal(self, provider: str, kind: str) -> None:
        """Thread-safe: a call to ``provider`` was refused before it reached the loop (its
        input was invalid, say); ``stats()`` counts it under ``kind`` (no latency: it ran
        nowhere)."""

        def count() -> None:
            state = self.providers.get(provider)
            if state is not None and not state.removed:
                state.stats.outcomes[kind] += 1

        with contextlib.suppress(RuntimeError):  # (closed meanwhile: nothing to count)
            self.submit(count)

    def in_callback(self) -> bool:
        """Whether this thread runs a call's done-callbacks now: the loop's thread, or a
        caller's that read its own reply, holding the loop's lock. Waiting for the loop there
        waits for ever (see ``Host.close``)."""
        return self._settling == threading.get_ident()

    def submit(self, command: Callable[[], None]) -> None:
        """Run ``command`` on the loop thread."""
        if self._stopped:
            raise RuntimeError("the host is closed")
        self._commands.put(command)
        self._wake()

    def _wake(self) -> None:
        """Make the loop's poll return (a command, or a timer set from a caller's thread)."""
        # One wake-up byte per batch of commands: a write per command would make every
        # submit a system call that also hands the GIL to the loop thread. The loop reads the
        # byte, then clears the flag, then drains the queue: a command put while the flag was
        # set is drained after the clear; one put after it writes a new byte.
        # A signal handler on the main thread may run between the flag and the write, and call
        # the host: it then writes a byte itself (this thread's ``writing``: per thread, as
        # another thread's finished write says nothing of the interrupted one), or it would
        # wait for a loop that was never woken, and the interrupted write with it, for ever.
        local = self._wake_local
        writing = getattr(local, "writing", False)
        if self._wake_pending and not writing:
            return
        local.writing = True
        try:
            self._wake_pending = True
            with contextlib.suppress(BlockingIOError):
                posix.write(self._wake_write, b"x")
        finally:
            local.writing = writing

    # ------------------------------------------------------------------ the loop

    def run(self) -> None:
        """The thread's body. Exits once closing has finished."""
        try:
            with self._lock:
                self._loop_ident = threading.get_ident()
                self.zygotes.start()  # from this thread: its parent-death signal follows it
            while not self._stopped:
                self._step()
        except BaseException:  # a bug here must not leave callers hanging
            log.exception("host reactor crashed; failing every call")
            with self._lock:
                self._stopped = True  # (no caller dispatches from here on)
                self._fail_everything("the host's event loop crashed")
            raise
        finally:
            # Once stopped (under the lock), no caller's thread runs the loop's handlers: the
            # release runs alone without holding the lock through its clean-up.
            with self._lock:
                self._stopped = True
            self._release()

    def _step(self) -> None:
        timeout_ms: int | None = None
        with self._lock:
            self._poll_until = self._timers[0].when if self._timers else math.inf
        if self._timers:
            timeout_ms = max(0, math.ceil((self._poll_until - time.monotonic()) * 1000))
        if self._hub_wait is not None:
            self._hub_wait(self._loop_fds, None if timeout_ms is None else timeout_ms / 1000)
            timeout_ms = 0
        events = self._poll(timeout_ms)
        with self._lock:
            self._poll_until = -math.inf  # (handling events: due timers are looked at below)
            self._handle(events)

    def _poll(self, timeout_ms: int | None) -> dict[int, int]:
        """What is ready, waiting at most ``timeout_ms``. Right after a call went out whose
        reply the loop reads, it polls without blocking for up to ``REPLY_SPIN_S``
        (``_spin_until``; ``sched_yield`` between polls lets a task woken on this CPU run)."""
        spin_until = self._spin_until
        if timeout_ms != 0 and spin_until > time.monotonic():
            started = time.monotonic()
            while time.monotonic() < spin_until:
                events = self._poller.poll(0)
                if events:
                    return dict(events)
                os.sched_yield()
            if timeout_ms is not None:
                spent_ms = math.floor((time.monotonic() - started) * 1000)
                timeout_ms = max(0, timeout_ms - spent_ms)
        return dict(self._poller.poll(timeout_ms))

    def _handle(self, events: dict[int, int]) -> None:
        """What one poll returned: the wire, then commands, pipes and due timers."""
        if self._wire.fileno() in events:
            for fd, mask in self._wire.poll(0):
                worker = self._wire_fds.get(fd)
                if worker is not None:
                    self._guard(worker, "its connection", self._on_wire, worker, mask)
        if self._wake_read in events:
            with contextlib.suppress(BlockingIOError):
                posix.read(self._wake_read, 4096)
            self._wake_pending = False  # after the read, before the drain (see ``submit``)
            while True:
                try:
                    command = self._commands.get_nowait()
                except queue.Empty:
                    break
                try:
                    command()
                except Exception:  # one bad command must not take every other call down
                    log.exception("host command failed")
        for fd in self._pipes.ready() if self._pipes.fileno() in events else ():
            owner = self._pipes.owner(fd)
            if owner is None:
                continue  # (forgotten by an earlier handler of this batch)
            worker, kind = owner
            if kind == "status":
                self._guard(worker, "its exit", self._on_status_readable, worker)
            else:
                self._guard(worker, "its output", self._on_output, worker, fd)
        now = time.monotonic()
        while self._timers and self._timers[0].when <= now:
            timer = heapq.heappop(self._timers)
            action, timer.action = timer.action, None  # fired: cancelling it later is a no-op
            if action is None:
                self._cancelled_timers -= 1
            else:
                self._guard(timer.worker, "a deadline", action)
        if self._closing is not None and not self._workers and not self._validating:
            self._stopped = True

    def _at(
        self, when: float, action: Callable[[], None], worker: WorkerHandle | None = None
    ) -> _Timer:
        timer = _Timer(when, next(self._seq), action, worker)
        heapq.heappush(self._timers, timer)
        if when < self._poll_until:  # set from a caller's thread, due before the loop wakes
            self._wake()
        return timer

    # ------------------------------------------------------------------ containing host failures

    def _guard(
        self, worker: WorkerHandle | None, what: str, handler: Callable[..., object], *args: Any
    ) -> None:
        """Run the handler of one event. If it raises, the host failed handling that worker
        (a bug, or something the worker made the host choke on - a workdir too deep to
        remove, say): that worker is ended, with an outcome for its call, and the loop every
        other call depends on goes on."""
        try:
            handler(*args)
        except Exception as exc:
            name = f" of worker {worker.worker_id}" if worker is not None else ""
            log.exception("the host failed handling %s%s", what, name)
            if worker is not None:
                self._abandon(worker, f"the host failed handling {what}: {type(exc).__name__}")

    def _abandon(self, worker: WorkerHandle, reason: str) -> None:
        """End a worker whose event the host could not handle, step by step, each on its own
        (one failing must not stop the others): its call fails, its processes are killed, the
        host forgets it, and its launcher is reaped later (``_collect_abandoned``)."""
        provider = worker.provider
        call = worker.call
        if call is not None and not call.done:
            error = WorkerCrashed(f"the worker was killed: {reason}")
            try:
                self._finish(call, error)
            except Exception:
                log.exception("failing call %s failed", call.call_id)
                with contextlib.suppress(Exception):
                    if not call.future.done():
                        call.future.set_exception(error)
                self._pending.discard(call)
        worker.call = None
        worker.kill_reason = worker.kill_reason or "host failure"
        worker.state = State.STOPPING
        process = worker.process
        steps: list[tuple[str, Callable[[], object]]] = [
            ("forgetting its pipes", lambda: self._pipes.forget_all(process)),
            ("closing its endpoint", lambda: self._close_channel(worker)),
            ("forgetting it", lambda: self._forget_worker(worker)),
        ]
        meter = worker.meter
        if meter is not None:
            steps.append(("closing its meter", meter.close))
        if not process.exited:  # (once reaped, its pid may be another process's)
            steps.insert(0, ("killing it", process.kill_everything))
        for what, step in steps:
            try:
                step()
            except Exception:
                log.exception("abandoning worker %s: %s failed", worker.worker_id, what)
        self._abandoned.append((process, time.monotonic()))
        if worker.pid is None and not provider.removed:  # it never started
            self._guard(
                None, "a failed start", self._provider_failed, provider,
                f"the worker was killed: {reason}",
            )
        if self._closing is None and not provider.removed:
            self._guard(None, "the provider's queue", self._pump, provider)

    def _forget_worker(self, worker: WorkerHandle) -> None:
        if worker.process.identity is not None:
            self._uids_in_use.discard(worker.process.identity[0])
        self._workers.pop(worker.worker_id.encode(), None)
        worker.provider.pool.gone(worker)

    def _collect_abandoned(self, final: bool = False) -> None:
        """Reap and clean up after abandoned workers that have exited (all of them, waiting a
        little, when ``final``); one whose exit the host cannot learn is closed after a while."""
        now = time.monotonic()
        for entry in list(self._abandoned):
            process, since = entry
            try:
                if final and not process.exited:
                    with contextlib.suppress(TimeoutError):
                        process.launcher.wait(KILL_GRACE_S)
                exited = process.exited or process.launcher.poll() is not None
                if not (exited or final or now - since > STARTUP_TIMEOUT_S):
                    continue
                process.exited = True
                process.close(self._janitor.remove_tree, self._janitor.submit)
            except Exception:
                log.exception("cleaning up after an abandoned worker failed")
            self._abandoned.remove(entry)

    def _cancel(self, timer: _Timer) -> None:
        """Disarm a timer; rebuild the heap once most of it is cancelled entries."""
        if timer.action is None:
            return
        timer.action = None
        self._cancelled_timers += 1
        if self._cancelled_timers > 256 and 2 * self._cancelled_timers > len(self._timers):
            self._timers = [t for t in self._timers if t.action is not None]
            heapq.heapify(self._timers)
            self._cancelled_timers = 0

    # ------------------------------------------------------------------ providers and workers

    def add_provider(self, state: ProviderState) -> None:
        """Register a provider and start its first worker; ``state.ready`` tells the outcome."""
        holder = self.name_holder(state.name, state)
        if holder is not None:
            assert state.ready is not None
            state.ready.set_exception(
                ValueError(
                    f"a provider named {holder.name!r} is already loaded ({holder.ref}); "
                    f"{state.ref} cannot be loaded as {state.name!r}"
                )
            )
            return
        self.providers[state.name] = state
        self._spawn(state)

    def name_holder(self, name: str, claimant: ProviderState) -> ProviderState | None:
        """The provider other than ``claimant`` that has ``name`` (or a name differing only in
        case), loaded or still starting; None if it is free."""
        for other in self.providers.values():
            if other is not claimant and not other.removed and same_name(other.name, name):
                return other
        return None

    def remove_provider(self, name: str) -> None:
        """Forget a provider: its actions leave the catalog and its workers are stopped."""
        provider = self.providers.pop(name, None)
        if provider is None:
            return
        provider.removed = True
        self.catalog.remove_provider(name)
        for call in provider.pool.drain():
            self._finish(call, ProviderUnavailable("the provider was removed"))
        for worker in list(provider.workers):
            if worker.call is not None:
                self._finish(worker.call, Cancelled("the provider was removed"))
            self._kill(worker, "provider removed")

    def _identity(self, policy: Policy) -> tuple[int, int] | None:
        """The unprivileged uid/gid a worker switches to when the host is root.

        By default each worker gets its own id, so workers cannot signal, ptrace or share files
        with one another even without the other layers, and RLIMIT_NPROC counts one worker.
        """
        if not self.host_is_root:
            return None
        if policy.uid is not None:
            return policy.uid, policy.uid
        for _ in range(100):
            uid = DEDICATED_UID_BASE + secrets.randbelow(DEDICATED_UID_SPAN)
            if uid not in self._uids_in_use and next(processes_of(uid), None) is None:
                break
        self._uids_in_use.add(uid)
        return uid, uid

    def _spawn(self, provider: ProviderState) -> WorkerHandle | None:
        """Start one worker for ``provider``; None if it could not be started, and then the
        start failed as every failed start does (its waiting calls get an outcome, back-off).

        Whatever goes wrong here is such a failure, not only the errors foreseen below: an
        exception that escaped used to end the loop command that was queueing a call, and
        that call then waited for its timeout, or forever without one."""
        try:
            return self._start_worker(provider)
        except Exception as exc:
            log.exception("starting a worker for provider %s failed", provider.label)
            self._provider_failed(
                provider, f"the host failed to start a worker: {type(exc).__name__}: {exc}"
            )
            return None

    def _start_worker(self, provider: ProviderState) -> WorkerHandle | None:
        worker_id = f"w{secrets.token_hex(6)}"
        token = secrets.token_urlsafe(24)
        policy = provider.policy
        try:  # before anything is made: a rule that undoes the confinement fails the start
            check_worker_rules(policy, self._own_state())
        except UnsafeRulePath as exc:
            self._provider_failed(provider, str(exc))
            return None
        self._ensure_state()
        try:
            channel = self.transport.listen(
                worker_id, budget=_largest_message(policy), outbox_limit=_outbox_limit(policy)
            )
        except OSError as exc:
            self._provider_failed(provider, f"cannot open an ipc endpoint: {exc}")
            return None
        endpoint = channel.endpoint
        group: cgroups.WorkerCgroup | None = None
        cgroup_error = self.cgroup_support.reason
        spare = self._take_spare(policy)
        if spare is not None:
            group = spare.cgroup
        elif self.cgroup_support.version and "cgroups" not in policy.skip:
            try:
                group = cgroups.WorkerCgroup.create(
                    self.cgroup_support,
                    self._state.cgroup_name(f"{cgroups.NAME_PREFIX}{worker_id[1:]}"),
                    policy,
                )
            except OSError as exc:
                cgroup_error = f"cannot create the worker's cgroup: {exc}"
        required = policy.required_layers(
            host_is_root=self.host_is_root, cgroups_available=self.cgroup_support.version > 0
        )
        try:
            process = WorkerProcess(
                worker_id=worker_id,
                token=token,
                endpoint=endpoint,
                provider_ref=provider.ref,
                policy=policy,
                workdir_root=self._workdir_root,
                search_path=self.search_path,
                required=list(required),
                identity=self._identity(policy),
                cgroup=group,
                cgroup_error=cgroup_error,
                zygotes=self.zygotes,
                spare=spare.forked if spare is not None else None,
            )
        except OSError as exc:
            channel.close()
            if spare is not None:
                spare.forked.discard()
            if group is not None:
                group.remove(timeout=0)
            self._provider_failed(provider, f"cannot start a worker: {exc}")
            return None
        worker = WorkerHandle(
            worker_id, token, provider, process, channel, LogCapture(provider.policy.log)
        )
        if process.cgroup is not None:
            worker.meter = TreeMeter.open(process.cgroup)
        process.adopt = self._orphans.expect
        self._expect_launcher(process.launcher)
        provider.pool.spawned(worker)
        self._workers[worker_id.encode()] = worker
        self._watch_wire(worker)
        self._pipes.register(worker)
        self._at(
            time.monotonic() + STARTUP_TIMEOUT_S, lambda: self._startup_expired(worker), worker
        )
        if self.zygotes.enabled and self.cgroup_support.version and self._spare is None:
            self._at(time.monotonic(), self._refill_spare)  # after this spawn's own work
        log.debug(
            "spawned worker %s for provider %s (pid %d, %s)",
            worker_id, provider.label, process.pid, process.spawn_kind,
        )
        return worker

    def _ensure_state(self) -> None:
        """If this host's ipc or work directory was removed under it (a test harness's
        per-test ``tempfile.tempdir`` going away, a tmp cleaner), move to a new state directory
        in the temporary directory of now: live workers keep their connections, new ones need
        a place for their endpoints and workdirs. The old one is removed at close."""
        if os.path.isdir(self.transport.directory) and os.path.isdir(self._workdir_root):
            return
        try:
            state = ownership.HostState(shared_with_other_uids=self.host_is_root)
        except OSError as exc:
            log.warning("the host's state directory %s is gone and no new one can be made: %s",
                        self._state.directory, exc)
            return
        try:
            workdir_root, ipc = state.subdir("work"), state.subdir("ipc")
            state.write_owner(list(self.cgroup_support.parents.values()))
        except OSError as exc:
            log.warning("cannot set up a new state directory %s: %s", state.directory, exc)
            state.remove()
            return
        log.warning("the host's state directory %s was removed; going on in %s",
                    self._state.directory, state.directory)
        self._left_states.append(self._state)
        self._state, self._workdir_root = state, workdir_root
        self.transport.directory = ipc

    def _own_state(self) -> list[str]:
        """The host's places no worker rule may be, or hold (see ``host.rules``)."""
        return [self._state.directory, self._workdir_root, self.transport.directory, cgroups.ROOT]
    def _expect_launcher(self, launcher: object) -> None:
        """A launcher the zygote forked is the zygote's child; if the zygote dies it is ours."""
        start = getattr(launcher, "start_time", None)
        pid = getattr(launcher, "pid", None)
        if isinstance(start, int) and isinstance(pid, int):
            self._orphans.expect(pid, start)

    def _take_spare(self, policy: Policy) -> SpareLauncher | None:
        """The spare launcher, with ``policy``'s limits on its cgroup, if it can serve."""
        spare = self._spare
        if spare is None or not self.cgroup_support.version or "cgroups" in policy.skip:
            return None
        if spare.pending():
            return None  # still moving into its cgroup: this spawn goes without it
        self._spare = None
        if spare.take(policy):
            return spare
        spare.discard()
        return None

    def _refill_spare(self) -> None:
        """Fork the next spare while nothing waits (only from a zygote that is ready now)."""
        zygote = self.zygotes.current
        if (
            self._spare is not None
            or self._closing is not None
            or self._stopped
            or zygote is None
            or not zygote.ready
        ):
            return
        support = self.cgroup_support
        name = self._state.cgroup_name(f"{cgroups.NAME_PREFIX}s{secrets.token_hex(6)}")
        self._spare = SpareLauncher.make(
            self.zygotes, lambda: cgroups.WorkerCgroup.create(support, name, Policy())
        )
        if self._spare is not None:
            self._expect_launcher(self._spare.forked.child)

    def _discard_spare(self) -> None:
        spare, self._spare = self._spare, None
        if spare is not None:
            spare.discard()

    def _tick(self) -> None:
        """Every heartbeat interval: ping idle workers, kill hung ones, stop long-idle ones."""
        now = time.monotonic()
        self._at(now + HEARTBEAT_INTERVAL_S, self._tick)
        for provider in list(self.providers.values()):
            for worker in list(provider.workers):
                self._guard(worker, "its heartbeat", self._tick_worker, worker, now)
        if self._abandoned:
            self._collect_abandoned()
        self._guard(None, "the zygotes' exits", self.zygotes.poll)
        if len(self._orphans):
            self._guard(None, "reaping orphans", self._orphans.sweep)

    def _tick_worker(self, worker: WorkerHandle, now: float) -> None:
        provider = worker.provider
        if worker.state is not State.READY or worker.kill_reason is not None:
            return
        if worker.decoding:  # (its connection is not read meanwhile: a PONG would wait)
            return
        if worker.meter is not None and worker.meter.idle_from_ns is None:
            worker.meter.went_idle()  # idle since its HELLO: count from here
        if self._outside_cpu_exceeded(worker, now):
            return
        if worker.ping_sent and now - worker.ping_sent > HEARTBEAT_TIMEOUT_S:
            log.warning("worker %s does not answer heartbeats; killing it", worker.label)
            provider.stats.hung += 1
            self._kill(worker, "hung")
            return
        if provider.pool.idle_expired(worker, now):
            self._stop_gracefully(worker, "idle")
            return
        if not worker.ping_sent and now - worker.idle_since >= HEARTBEAT_INTERVAL_S:
            worker.ping_seq += 1
            worker.ping_sent = now
            self._send(worker, protocol.encode(protocol.Ping(worker.ping_seq)))

    def _outside_cpu_exceeded(self, worker: WorkerHandle, now: float) -> bool:
        """Kill a worker whose tree burns CPU between calls (a thread or child left spinning
        after a result): no call is charged for it, so it is bounded over the worker's life.
        Checked at every heartbeat of an idle worker and at every dispatch (``start_call``
        has just added the idle stretch then, so no further read is needed)."""
        meter = worker.meter
        if meter is None:
            return False
        used = meter.outside_calls_s()
        policy = worker.provider.policy
        allowance = outside_cpu_allowance_s(
            policy.cpu_time, now - worker.spawned, meter.spin_credit_s
        )
        if used is None or used <= allowance:
            return False
        log.warning("worker %s used %.2fs of CPU outside calls; killing it",
                    worker.label, used)
        self._kill(worker, "cpu outside calls")
        return True

    def stats(self) -> dict[str, Any]:
        """Per provider: calls by outcome, latency, workers by state, restarts, queue depth."""
        result = {}
        for provider in self.providers.values():
            if provider.removed or provider.signature is None:
                continue
            pool = provider.pool.snapshot(time.monotonic())
            result[provider.name] = provider.stats.snapshot(**pool)
        return result

    def _startup_expired(self, worker: WorkerHandle) -> None:
        if worker.state is State.STARTING and worker.kill_reason is None:
            worker.unavailable = f"the worker did not start within {STARTUP_TIMEOUT_S:g}s"
            self._kill(worker, "startup timeout")

    def _kill(self, worker: WorkerHandle, reason: str, error: SandboxError | None = None) -> None:
        """Have the supervisor kill the worker's whole tree; escalate if it does not.

        ``error`` becomes the outcome of the worker's running call once the supervisor has
        reported (within milliseconds), so the outcome carries the call's CPU and memory use.
        """
        if error is not None and worker.call is not None and not worker.call.done:
            if worker.meter is not None:  # what it used so far, if no report comes in time
                error.usage = measured_usage(worker.meter, None)
            worker.pending_error = error
            call = worker.call
            call.timers.append(
                self._at(
                    time.monotonic() + OUTCOME_WAIT_S, lambda: self._finish(call, error), worker
                )
            )
        if worker.kill_reason is not None or worker.process.exited:
            return
        worker.kill_reason = reason
        worker.state = State.STOPPING
        worker.process.terminate()
        self._at(time.monotonic() + KILL_GRACE_S, lambda: self._escalate(worker), worker)

    def _escalate(self, worker: WorkerHandle) -> None:
        if not worker.process.exited:
            log.warning("supervisor of worker %s did not exit; killing it", worker.label)
            worker.process.kill_everything()

    # ------------------------------------------------------------------ calls

    def accept(
        self, call: PendingCall, borrow: bool = False
    ) -> tuple[int, WorkerHandle] | None:
        """Thread-safe: hand a call to the loop. It will get exactly one outcome, even if the
        loop stops before it runs.

        If the loop is waiting (not handling events) and has no command waiting (an earlier
        call of this thread may be one: calls are queued in the order they are submitted),
        the call is queued and dispatched from this thread, under the loop's lock: a thread
        hand-off less. Otherwise, when a worker must be started for it, or on the main thread,
        the loop does it; a caller never waits for the lock. ``borrow``: the caller will wait
        for the outcome in :meth:`wait_here`; if the call went to a worker at once, that
        worker's connection is lent to it: the descriptor it waits on and the worker are
        returned (None otherwise)."""
        with self._pending_lock:
            if self._stopped:
                raise RuntimeError("the host is closed")
            self._pending.add(call)
        if (
            self._direct
            and self._commands.empty()
            and threading.get_ident() != self._main_ident
            and self._lock.acquire(blocking=False)
        ):
            try:
                if not self._stopped and self._loop_ident is not None and self._commands.empty():
                    self._enqueue_guarded(call)
                    return self._lend_wire(call) if borrow else None
            finally:
                self._lock.release()
        self.submit(lambda: self._enqueue_guarded(call))
        return None

    def _lend_wire(self, call: PendingCall) -> tuple[int, WorkerHandle] | None:
        """Let the caller of a just-dispatched call read its worker's reply itself: the loop
        stops watching the connection (until :meth:`_give_back_wire`), and the caller waits
        on a duplicate of its descriptor, which stays valid whatever the loop does with the
        original meanwhile (closing it, say, if the worker is killed)."""
        worker = call.worker
        if call.done or worker is None or worker.call is not call or worker.channel.wants_write:
            return None
        fd = worker.channel.fileno()
        if fd < 0 or self._wire_fds.get(fd) is not worker:
            return None
        try:
            borrowed = os.dup(fd)
        except OSError:
            return None
        try:
            self._wire.modify(fd, 0)
        except OSError:
            os.close(borrowed)
            return None
        worker.lent = True
        self._spin_until = 0.0  # (the caller polls for this reply, not the loop)
        return borrowed, worker

    def _give_back_wire(self, worker: WorkerHandle) -> None:
        if not worker.lent:
            return
        worker.lent = False
        fd = worker.channel.fileno()
        if not self._stopped and fd >= 0 and self._wire_fds.get(fd) is worker:
            self._watch_wire(worker, write=worker.channel.wants_write)

    def wait_here(self, call: PendingCall, lent: tuple[int, WorkerHandle]) -> None:
        """Wait in the caller's thread for ``call``, whose worker's connection was lent to it
        (:meth:`accept`): read the reply here, and judge it with the loop's own handlers under
        the loop's lock, rather than have the loop wake, read it and hand the outcome over.
        ``lent``: what :meth:`accept` returned (the descriptor is closed here).

        Once the worker no longer runs this call (its reply came: it may still be validated
        on the provider's lane) or its message is decoded off the loop, or the call ended
        another way (a deadline killed the worker: its connection then ends too), the
        connection goes back to the loop and the caller waits on the future as any other.
        What deadlines and deaths do stays the loop's: this only moves who reads the reply.
        """
        # (The worker it was lent, not ``call.worker``: if that one died before this thread
        # got here, the call may already be on another worker, which the loop reads.)
        borrowed, worker = lent
        started = time.monotonic()
        try:
            poller = select.poll()
            poller.register(borrowed, select.POLLIN)
            ready = self._spin(poller, worker, started + REPLY_SPIN_S)
            while True:
                ready = ready or poller.poll(DIRECT_SLICE_MS)
                with self._lock:
                    fd = worker.channel.fileno()
                    watched = fd >= 0 and self._wire_fds.get(fd) is worker
                    ours = (
                        worker.call is call and not worker.decoding and not call.done
                        and not self._stopped
                    )  # fmt: skip
                    if ready and watched and ours:
                        self._guard(worker, "its connection", self._on_wire, worker, ready[0][1])
                    if (
                        call.done or self._stopped or worker.call is not call or worker.decoding
                        or not watched or worker.channel.closed
                    ):
                        self._give_back_wire(worker)
                        return
                ready = []
        except BaseException:
            with self._lock:
                self._give_back_wire(worker)
            raise
        finally:
            release_connection(borrowed, worker.channel.refuses_descriptors)

    def _spin(
        self, poller: select.poll, worker: WorkerHandle, until: float
    ) -> list[tuple[int, int]]:
        """Poll for ``worker``'s reply until ``until`` (monotonic) without blocking, if its
        replies come quickly and no other caller is polling; what the poll found, or nothing.
        Not under the loop's lock: the loop and other callers go on meanwhile (the GIL is free
        in every poll, and ``sched_yield`` lets a worker woken on this CPU run)."""
        if not worker.quick_replies or not self._spinner.acquire(blocking=False):
            return []
        try:
            while time.monotonic() < until:
                ready = poller.poll(0)
                if ready:
                    return ready
                os.sched_yield()
            return []
        finally:
            self._spinner.release()

    def _enqueue_guarded(self, call: PendingCall) -> None:
        """:meth:`enqueue`; if the host fails doing it (a bug), the call still gets an outcome
        rather than waiting for its timeout (or forever), and a worker it reached is ended."""
        try:
            self.enqueue(call)
        except Exception as exc:
            log.exception("queueing call %s failed", call.call_id)
            if call.done:
                return
            error = ProviderUnavailable(
                f"the host failed to queue this call: {type(exc).__name__}: {exc}"
            )
            if call.worker is not None and call.worker.call is call:
                self._kill(call.worker, "host error", error)
                return
            provider = self.providers.get(call.provider)
            if provider is not None:
                provider.pool.withdraw(call)
            self._finish(call, error)

    def enqueue(self, call: PendingCall) -> None:
        provider = self.providers.get(call.provider)
        if provider is None or provider.removed:
            self._finish(call, ProviderUnavailable(f"provider {call.provider!r} is not loaded"))
            return
        if self.catalog.find(call.descriptor.full_name) is not call.descriptor:
            # Removed and loaded again (perhaps another provider under the same name) since
            # the caller looked it up: the input was checked against another catalog entry.
            self._finish(call, ProviderUnavailable(
                f"provider {call.provider!r} was reloaded while the call was submitted"
            ))  # fmt: skip
            return
        if call.future.cancelled():
            self._finish(call, Cancelled("the call was cancelled before it was queued"))
            return
        if self._closing is not None:
            self._finish(call, Cancelled("the host is closing"))
            return
        refusal = provider.pool.enqueue(call, time.monotonic(), provider.name)
        if refusal is not None:
            kind = Overloaded if refusal.kind == "overloaded" else ProviderUnavailable
            self._finish(call, kind(refusal.text))
            return
        if call.caller_deadline is not None:
            call.timers.append(self._at(call.caller_deadline, lambda: self._caller_deadline(call)))
        self._pump(provider)

    def cancel(self, call: PendingCall) -> None:
        """Cancel a queued call (drop it) or a running one (kill its worker)."""
        if call.done:
            return
        provider = self.providers.get(call.provider)
        if provider is not None:
            provider.pool.withdraw(call)
        if call.worker is not None and call.worker.call is call:
            self._kill(call.worker, "cancelled", Cancelled("the call was cancelled"))
        else:
            self._finish(call, Cancelled("the call was cancelled"))

    def _pump(self, provider: ProviderState) -> None:
        """Hand queued calls to idle workers; start workers while calls wait and room remains."""
        pool = provider.pool
        while (next_call := pool.next_dispatch()) is not None:
            call, idle = next_call
            if not call.future.running() and not call.future.set_running_or_notify_cancel():
                self._finish(call, Cancelled("the call was cancelled while queued"))
                continue
            self._dispatch(idle, call)
        if self._closing is not None or provider.removed:
            return
        decision = pool.scale(time.monotonic())
        if decision is not None and threading.get_ident() != self._loop_ident:
            # On a caller's thread (``accept``, ``wait_here``): starting workers is the loop's
            # job (a child's parent-death signal follows the thread that started it).
            self.submit(lambda: self._pump(provider))
            return
        if isinstance(decision, WakeAt):
            self._at(decision.when, lambda: self._pump(provider))
        elif isinstance(decision, Spawn):
            for _ in range(decision.count):
                if self._spawn(provider) is None:
                    break

    def _dispatch(self, worker: WorkerHandle, call: PendingCall) -> None:
        worker.logs.take()  # (what it printed while idle is no call's)
        if worker.logs_paused and worker.logs_resume is None:
            self._pipes.discard_waiting(worker)  # (nor what waits in the pipes)
            self._pipes.watch(worker, True)
        provider_stats = worker.provider.stats
        provider_stats.dispatched += 1
        metered = worker.meter is not None and worker.meter.start_call()
        if metered and self._outside_cpu_exceeded(worker, time.monotonic()):
            worker.provider.pool.requeue(call)  # killed instead: the call waits
            return
        call.dispatched = time.monotonic()
        call.worker = worker
        worker.call = call
        worker.provider.pool.dispatched(worker)
        # With calls waiting, the loop is the bottleneck: a worker polling for its next call
        # would take CPU from it (10% fewer calls/s with 10,000 at once), and gain nothing;
        # nor does the loop poll for the reply then (below).
        backlog = bool(worker.provider.queue)
        frames = protocol.without_spin(call.frames) if backlog else call.frames
        if worker.meter is not None:
            worker.meter.spin_after_call = not backlog
        if not self._send(worker, frames):
            # No worker received it: it waits for the next worker, without counting a run.
            call.worker, call.dispatched, worker.call = None, None, None
            worker.provider.pool.requeue(call)
            self._kill(worker, "unreachable")
            return
        if worker.quick_replies and not backlog:  # (a backlog keeps the loop busy anyway,
            self._spin_until = call.dispatched + REPLY_SPIN_S  # and a poll holds the GIL)
        wall = worker.provider.policy.wall_time
        deadline = self._at(
            call.dispatched + wall, lambda: self._wall_deadline(call, worker), worker
        )
        call.timers.append(deadline)
        if metered:  # nothing is used yet: the first look is as late as the whole budget allows
            call.timers.append(self._at(
                call.dispatched + next_cpu_check_s(worker.provider.policy.cpu_time),
                lambda: self._watch_cpu(worker, call),
            ))

    def _watch_cpu(self, worker: WorkerHandle, call: PendingCall) -> None:
        """Enforce ``cpu_time`` from the host: kill the tree once the call's CPU passes it.

        The worker's own timer and RLIMIT_CPU stay as backstops, but provider code can disarm
        the one and escape the other in a child; the cgroup's counter covers the whole tree.
        The next look is as late as the tree could possibly reach the limit on every CPU of
        the machine, and at least every ``CPU_POLL_S``: a long budget costs few reads, and the
        overshoot stays within one poll interval per CPU.
        """
        if call.done or worker.call is not call or worker.kill_reason is not None:
            return
        assert worker.meter is not None
        used = worker.meter.call_cpu_s()
        if used is None:
            return
        budget = worker.provider.policy.cpu_time
        if used > budget:
            self._kill(worker, "cpu_time", CpuExceeded(
                f"the action used more than its CPU-time limit of {budget:g}s "
                "(measured by the host for the worker's whole process tree)",
            ))
            return
        call.timers = [t for t in call.timers if t.action is not None]  # drop fired ones
        call.timers.append(self._at(
            time.monotonic() + next_cpu_check_s(budget - used),
            lambda: self._watch_cpu(worker, call),
        ))

    def _wall_deadline(self, call: PendingCall, worker: WorkerHandle) -> None:
        if call.done or worker.call is not call:
            return
        wall = worker.provider.policy.wall_time
        error = Timeout(f"the action ran longer than its wall-time limit of {wall:g}s")
        call.deadline_hit = time.monotonic()
        self._kill(worker, "timeout", error)

    def _caller_deadline(self, call: PendingCall) -> None:
        if call.done:
            return
        provider = self.providers.get(call.provider)
        if provider is not None:
            provider.pool.withdraw(call)
        elapsed = time.monotonic() - call.submitted
        error = Timeout(f"the call's timeout passed after {elapsed:.3f}s")
        if call.worker is not None and call.worker.call is call:
            call.deadline_hit = time.monotonic()
            self._kill(call.worker, "timeout", error)
        else:
            self._finish(call, error)

    def _finish(
        self,
        call: PendingCall,
        error: SandboxError | None,
        value: Any = None,
        measured: Usage | None = None,
        logs: CapturedLogs | None = None,
    ) -> None:
        """Give ``call`` its one outcome: ``error``, or ``value`` with the worker's ``measured``
        CPU and memory. A second attempt to finish the same call is ignored. ``logs``: what
        the worker printed during the call, when the caller took them already."""
        if call.done:
            return
        call.done = True
        self._validating.discard(call)
        worker = call.worker
        end = call.deadline_hit if call.deadline_hit is not None else time.monotonic()
        wall = end - (call.dispatched if call.dispatched is not None else call.submitted)
        if worker is not None:
            if logs is None:
                logs = self._pipes.take(worker)
            if worker.call is call:
                worker.call = None
        logs = logs or CapturedLogs()
        if error is None:
            usage = replace(measured or Usage(), wall_s=wall)
            outcome = Outcome(
                ok=True, value=value, usage=usage, logs=logs.combined, attempts=call.attempts,
                stdout=logs.stdout, stderr=logs.stderr,
            )
        else:
            error.usage = replace(error.usage, wall_s=wall)
            if logs.combined:
                error.details.setdefault("logs", logs.combined)
            outcome = Outcome.failure(
                error, logs.combined, call.attempts, stdout=logs.stdout, stderr=logs.stderr
            )
        level = logging.DEBUG if outcome.ok else logging.WARNING
        if log.isEnabledFor(level):  # one record per call: build it only when someone listens
            name = "ok" if outcome.ok else outcome.error.type if outcome.error else "?"
            log.log(
                level,
                "call %s %s: %s",
                call.descriptor.full_name,
                call.call_id,
                name,
                extra={
                    "provider": call.provider,
                    "action": call.descriptor.full_name,
                    "outcome": name,
                    "usage": outcome.usage.to_dict(),
                },
            )
        provider = self.providers.get(call.provider)
        if provider is not None:
            provider.stats.record(outcome)
        # Nothing may keep a finished call alive: its deadlines are disarmed (the heap keeps
        # only empty entries) and the future's canceller, which refers back to it, is dropped.
        for timer in call.timers:
            self._cancel(timer)
        call.timers.clear()
        call.future._canceller = None
        call.frames = []
        self._pending.discard(call)
        outer, self._settling = self._settling, threading.get_ident()  # (its done-callbacks)
        try:
            call.future.settle(outcome)
        except Exception:
            log.exception("settling call %s failed", call.call_id)
            if not call.future.done():
                call.future.set_exception(
                    ProviderUnavailable("the host could not deliver this call's outcome")
                )
        finally:
            self._settling = outer

    # ------------------------------------------------------------------ messages from workers

    # ------------------------------------------------------------------ the wire

    def _watch_wire(self, worker: WorkerHandle, write: bool = False) -> None:
        """Watch the worker's endpoint (its listener, or its connection once accepted); not
        while a big message of it is decoded off the loop (see :meth:`_decode_off_loop`)."""
        fd = worker.channel.fileno()
        if fd < 0 or worker.decoding:
            return
        mask = select.EPOLLIN | (select.EPOLLOUT if write else 0)
        if fd in self._wire_fds:
            self._wire.modify(fd, mask)
        else:
            self._wire_fds[fd] = worker
            self._wire.register(fd, mask)

    def _unwatch_wire(self, worker: WorkerHandle) -> None:
        fd = worker.channel.fileno()
        if fd >= 0 and self._wire_fds.pop(fd, None) is not None:
            with contextlib.suppress(OSError):
                self._wire.unregister(fd)

    def _close_channel(self, worker: WorkerHandle) -> None:
        self._unwatch_wire(worker)
        worker.channel.close()

    def _send(self, worker: WorkerHandle, frames: list[bytes]) -> bool:
        """Send without blocking; False when the peer is gone or its outbox is full."""
        channel = worker.channel
        had_backlog = channel.wants_write
        if not channel.send(frames):
            return False
        if channel.wants_write and not had_backlog:
            self._watch_wire(worker, write=True)
        return True

    def _on_wire(self, worker: WorkerHandle, mask: int) -> None:
        channel = worker.channel
        if channel.conn is None:
            self._accept(worker)
            return
        if mask & select.EPOLLOUT:
            if not channel.flush():
                self._lost_connection(worker)
                return
            if not channel.wants_write:
                self._watch_wire(worker)
        if mask & (select.EPOLLIN | select.EPOLLHUP | select.EPOLLERR):
            self._read_wire(worker)

    def _accept(self, worker: WorkerHandle) -> None:
        """The worker's connection: taken if the kernel says it is the worker's, refused if
        not; after the first one taken, the endpoint is gone (no second connection)."""
        channel = worker.channel
        accepted = channel.accept()
        if accepted is None:
            return
        conn, pid, uid, _gid = accepted
        refusal = self._peer_refusal(worker, pid, uid)
        if refusal is not None:
            conn.close()
            channel.refused += 1
            log.warning("worker %s: refused a connection to its endpoint: %s",
                        worker.label, refusal)
            if channel.refused >= MAX_REFUSED_CONNECTIONS:
                self._close_channel(worker)
                self._violation(worker, f"{channel.refused} connections to its endpoint with "
                                f"the wrong credentials ({refusal})")
            return
        self._unwatch_wire(worker)
        channel.adopt(conn)
        self._watch_wire(worker, write=channel.wants_write)

    def _peer_refusal(self, worker: WorkerHandle, pid: int, uid: int) -> str | None:
        """Why a connection whose peer the kernel names (``SO_PEERCRED``) is not the worker's:
        its pid must be in the tree under the worker's launcher, and its uid the worker's: the
        dedicated uid of a root host's worker, or the host's own uid (what a worker's user
        namespace maps to outside it; and a root host's worker that has not switched uids
        yet: one telling the host that a required layer failed, or whose policy skips
        ``uid_drop``). None: it is the worker's."""
        identity = worker.process.identity
        allowed = {os.getuid()} | ({identity[0]} if identity is not None else set())
        if uid not in allowed:
            return f"peer uid {uid}, not the worker's {sorted(allowed)}"
        launcher = worker.process.pid
        current = pid
        for _ in range(MAX_TREE_DEPTH):
            if current == launcher:
                return None
            stat = stat_of(current) if current > 1 else None
            if stat is None:
                break
            current = stat[0]
        return f"peer pid {pid} is not in the worker's process tree"

    def _read_wire(self, worker: WorkerHandle) -> None:
        """What the worker's connection brought (bounded per event): its messages, its end of
        file, or its violation of the protocol or the budget, which ends the worker at once."""
        channel = worker.channel
        events, violation = channel.read()
        for event in events:
            if isinstance(event, zmtp.Message):
                self._in_order(worker, functools.partial(
                    self._on_message_guarded, worker, event.frames
                ))  # fmt: skip
            elif isinstance(event, zmtp.ConnectionClosed):
                self._unwatch_wire(worker)
                self._in_order(worker, functools.partial(self._on_disconnect, worker))
            if worker.channel.closed:
                return
        if violation is not None:
            self._close_channel(worker)  # (nothing more is read; the verdict keeps its turn)
            self._in_order(worker, functools.partial(self._wire_violation, worker, violation))

    def _wire_violation(self, worker: WorkerHandle, violation: str) -> None:
        if worker.kill_reason is None:
            self._violation(worker, f"its connection broke the wire protocol: {violation}")

    def _in_order(self, worker: WorkerHandle, event: Callable[[], None]) -> None:
        """Handle ``event`` now, or after the big message being decoded off the loop."""
        if worker.decoding:
            worker.held.append(event)
        else:
            event()

    def _decode_off_loop(self, worker: WorkerHandle, frames: list[bytes], budget: int) -> None:
        """Decode a big message on the provider's lane; the loop goes on supervising, and the
        worker's later events wait for it (``WorkerHandle.held``). Its connection is not read
        meanwhile: what it sends next waits in the kernel's socket buffer, which then stops
        the worker's writes. (Read on, every later message was kept in ``held``, outside the
        codec's budget: a worker that kept its lane busy, then flooded, had the host hold 601
        MiB of it, for a 1 MiB policy.) Its exit still arrives, on its status pipe."""
        worker.decoding = True
        self._unwatch_wire(worker)

        def job() -> None:
            decoded: protocol.WorkerMessage | Exception
            try:
                with _collector_paused():
                    decoded = protocol.decode_worker_message(frames, max_size=budget)
            except Exception as exc:  # (ProtocolError; anything else is reported the same way)
                decoded = exc
            with contextlib.suppress(RuntimeError):  # the host closed meanwhile
                self.submit(functools.partial(self._decoded, worker, frames, decoded))

        worker.provider.lane.submit(job)

    def _decoded(
        self, worker: WorkerHandle, frames: list[bytes], decoded: protocol.WorkerMessage | Exception
    ) -> None:
        worker.decoding = False
        if self._workers.get(worker.worker_id.encode()) is not worker:
            return  # it ended meanwhile (see _on_exit): what it said no longer counts
        try:
            self._guard(worker, "its message", self._on_decoded, worker, frames, decoded)
        finally:
            while worker.held and not worker.decoding:
                self._guard(worker, "its next event", worker.held.pop(0))
            channel = worker.channel
            if not worker.decoding and channel.conn is not None and not channel.closed:
                self._watch_wire(worker, write=channel.wants_write)  # (read again)

    def _lost_connection(self, worker: WorkerHandle) -> None:
        self._unwatch_wire(worker)
        self._on_disconnect(worker)

    def _on_message_guarded(self, worker: WorkerHandle, frames: list[bytes]) -> None:
        """A message that makes the host raise is that worker's protocol violation, never the
        end of the loop every other call depends on."""
        try:
            self._on_message(worker, frames)
        except Exception as exc:
            log.exception("handling a message from worker %s failed", worker.worker_id)
            reason = f"its message made the host fail ({type(exc).__name__})"
            self._guard(worker, "its message", lambda: self._violation(worker, reason))

    def _on_message(self, worker: WorkerHandle, frames: list[bytes]) -> None:
        if worker.kill_reason is not None:
            return  # it is being killed: what it says no longer counts
        if frames[0] == protocol.Pong.KIND and (
            not worker.ping_sent or len(frames) != 2 or len(frames[1]) > MAX_PONG_BYTES
        ):  # (checked before decoding: a padded or unasked-for PONG costs the host nothing)
            self._violation(worker, "a PONG the host did not ask for")
            return
        budget = worker.channel.codec.budget
        if len(frames) == 2 and len(frames[1]) > DECODE_ON_LOOP_BYTES:
            self._decode_off_loop(worker, frames, budget)
            return
        decoded: protocol.WorkerMessage | Exception
        try:
            decoded = protocol.decode_worker_message(frames, max_size=budget)
        except protocol.ProtocolError as exc:
            decoded = exc
        self._on_decoded(worker, frames, decoded)

    def _on_decoded(
        self, worker: WorkerHandle, frames: list[bytes], decoded: protocol.WorkerMessage | Exception
    ) -> None:
        if worker.kill_reason is not None:
            return  # killed while it was decoded: what it said no longer counts
        if isinstance(decoded, Exception):
            if not worker.disconnected:
                self._violation(worker, str(decoded))
            return
        message = decoded
        if worker.disconnected and not (
            worker.state is State.STARTING and isinstance(message, protocol.Unavailable)
        ):
            # Its connection broke: what it says no longer counts - except the reason a
            # starting worker gives for not serving, sent just before it exits, which the
            # monitor's disconnection event can overtake on a busy host.
            return
        if worker.state is State.STARTING:
            self._on_startup_message(worker, message, sum(len(frame) for frame in frames))
        elif isinstance(message, protocol.Result | protocol.Failure):
            self._on_call_message(worker, message, len(frames[1]))
        elif isinstance(message, protocol.Retire):
            worker.state = State.STOPPING
            worker.kill_reason = "retired"
            self._at(time.monotonic() + KILL_GRACE_S, lambda: self._retire_overdue(worker), worker)
        elif isinstance(message, protocol.Pong):
            if message.seq != worker.ping_seq:
                self._violation(worker, "a PONG for another PING")
                return
            worker.ping_sent = 0.0
        else:
            self._violation(worker, f"unexpected {type(message).__name__} after start-up")

    def _note_oom_kills(self, worker: WorkerHandle, peak: int | None) -> None:
        """After a call the worker survived: remember its cgroup's count of OOM kills, so a
        later death is taken for MemoryExceeded only if another one happened since (an earlier
        call whose child was OOM-killed, the call itself ending ok, made every later crash of
        that worker MemoryExceeded, and a ``safe_rerun`` action's retries were skipped). Read
        only when this call's peak came near the limit: only then can one have happened."""
        group = worker.process.cgroup
        if group is None:
            return
        near = worker.provider.policy.memory * OOM_NEAR_LIMIT
        per_call = worker.meter is not None and worker.meter.per_call_peak
        if peak is None or not per_call or peak >= near:
            worker.oom_kills_seen = group.oom_kills()

    def _retire_overdue(self, worker: WorkerHandle) -> None:
        if not worker.process.exited:
            worker.process.terminate()
            self._at(time.monotonic() + KILL_GRACE_S, lambda: self._escalate(worker), worker)

    def _on_startup_message(
        self, worker: WorkerHandle, message: protocol.WorkerMessage, size: int
    ) -> None:
        if worker.hello_seen:
            self._violation(worker, f"{type(message).__name__} while its HELLO was checked")
            return
        if not isinstance(message, protocol.Hello | protocol.Unavailable):
            self._violation(worker, f"{type(message).__name__} before HELLO")
            return
        if not hmac.compare_digest(message.token.encode(), worker.token.encode()):
            self._violation(worker, "wrong spawn token")
            return
        if isinstance(message, protocol.Unavailable):
            worker.unavailable = message.message
            worker.unavailable_traceback = message.traceback[-MAX_TRACEBACK_CHARS:]
            worker.state = State.STOPPING
            worker.kill_reason = "unavailable"  # it exits by itself; the exit handler reports
            self._at(time.monotonic() + KILL_GRACE_S, lambda: self._retire_overdue(worker), worker)
            return
        provider = worker.provider
        if provider.signature is None and not provider.explicit_name:
            declared = message.provider.get("name")
            if not is_name(declared):
                self._violation(worker, "the provider's name is not an identifier")
                return
            holder = self.name_holder(declared, provider)
            if holder is not None:  # the first to claim a name keeps it; never a swap
                worker.unavailable = (
                    f"provider {provider.ref} declares the name {declared!r}, which provider "
                    f"{holder.name!r} ({holder.ref}) already has"
                )
                self._kill(worker, "duplicate provider")
                return
            del self.providers[provider.name]
            provider.name = declared
            self.providers[declared] = provider
        # What the provider claims to be, with its catalog: a later worker must claim the same.
        claim = [message.provider.get("name"), message.provider.get("namespace"), message.actions]
        worker.hello_seen = True
        if size <= QUICK_HELLO_BYTES:
            signature = json.dumps(claim, sort_keys=True)
            if provider.signature is not None:
                self._on_hello_checked(worker, message, signature, None)
                return
            if cached_catalog(provider.name, signature, ref=provider.ref):
                # (checked before, by this host or another of this process: a lookup)
                self._on_hello_checked(worker, message, signature, None)
                return
        # Work in proportion to the catalog (up to MAX_CATALOG_BYTES of it): on the lane.
        name, ref, known = provider.name, provider.ref, provider.signature

        def job() -> None:
            signature = json.dumps(claim, sort_keys=True)
            result: list[ActionDescriptor] | CatalogInvalid | None = None
            if known is None or signature != known:
                try:
                    result = checked_catalog(
                        name, message.actions, signature, ref=ref,
                        declared_namespace=message.provider.get("namespace"),
                    )
                except CatalogInvalid as exc:
                    result = exc
            with contextlib.suppress(RuntimeError):  # the host closed meanwhile
                self.submit(lambda: self._guard(
                    worker, "its HELLO", self._on_hello_checked, worker, message, signature,
                    result,
                ))  # fmt: skip

        provider.lane.submit(job)

    def _on_hello_checked(
        self,
        worker: WorkerHandle,
        message: protocol.Hello,
        signature: str,
        checked: list[ActionDescriptor] | CatalogInvalid | None,
    ) -> None:
        """Go on with a HELLO whose catalog was checked (``checked``: its descriptors or why it
        was rejected; None if it was not checked, being that of a worker before it)."""
        if (
            worker.kill_reason is not None
            or worker.disconnected
            or worker.state is not State.STARTING
            or self._workers.get(worker.worker_id.encode()) is not worker
        ):
            return  # killed, or gone, while it was checked
        provider = worker.provider
        if provider.signature is None:
            try:
                if checked is None:  # cached (see above): a lookup
                    checked = checked_catalog(
                        provider.name, message.actions, signature, ref=provider.ref,
                        declared_namespace=message.provider.get("namespace"),
                    )
                if isinstance(checked, CatalogInvalid):
                    raise checked
                descriptors = checked
            except (SchemaRejected, OutsideNamespace) as exc:  # the provider's load error
                worker.unavailable = str(exc)
                self._kill(worker, "invalid catalog")
                return
            except CatalogInvalid as exc:
                self._violation(worker, f"invalid catalog: {exc}")
                return
            try:
                self.catalog.register(descriptors)
            except CatalogInvalid as exc:
                worker.unavailable = str(exc)
                self._kill(worker, "catalog clash")
                return
            provider.signature = signature
            provider.info = message.provider
            provider.layers = message.layers
        elif signature != provider.signature:  # (an identical one was checked already)
            self._violation(worker, "its catalog differs from the provider's first worker")
            return
        worker.pid = message.pid
        # After the HELLO the largest message it may send is a RESULT.
        worker.channel.codec.set_budget(_largest_result(provider.policy))
        worker.state = State.READY
        worker.idle_since = time.monotonic()
        if provider.ready is not None and not provider.ready.done():
            provider.ready.set_result(provider.name)
        self._pump(provider)

    def _on_call_message(
        self, worker: WorkerHandle, message: protocol.Result | protocol.Failure, body_size: int
    ) -> None:
        call = worker.call
        if worker.state is not State.BUSY or call is None or message.call_id != call.call_id:
            self._violation(worker, "a result for a call it was not running")
            return
        worker.cpu_total_s = message.usage.cpu_total_s
        if call.dispatched is not None:
            worker.quick_replies = time.monotonic() - call.dispatched < REPLY_SPIN_S
        usage = measured_usage(worker.meter, message.usage)
        policy = worker.provider.policy
        if usage.source == "cgroup" and usage.cpu_s > policy.cpu_time:
            # Over the limit before the host's last look: the tree is killed as at the limit.
            self._kill(worker, "cpu_time", CpuExceeded(
                f"the action used more than its CPU-time limit of {policy.cpu_time:g}s "
                "(measured by the host for the worker's whole process tree)",
                usage=usage,
            ))
            return
        if worker.meter is not None:
            worker.meter.went_idle()
        self._note_oom_kills(worker, usage.max_rss_bytes if usage.source == "cgroup" else None)
        # The call is over inside the worker. Take its logs (the worker flushed them before it
        # sent the result) and give the worker its next call *before* judging this one: the
        # output validation and waking the caller then overlap with the next call's run
        # instead of leaving the worker idle.
        logs = self._pipes.take(worker)
        worker.call = None
        worker.state = State.READY
        worker.idle_since = time.monotonic()
        try:
            self._recycle_if_due(worker, usage.max_rss_bytes)
            if self._closing is None:
                self._pump(worker.provider)
        finally:  # whatever happened to the next call, this one gets its outcome
            self._judge(call, message, body_size, policy, logs, usage)
        if self._closing is not None:
            self._close_step()

    def _judge(
        self,
        call: PendingCall,
        message: protocol.Result | protocol.Failure,
        body_size: int,
        policy: Policy,
        logs: CapturedLogs,
        usage: Usage,
    ) -> None:
        """Give a call the outcome its worker's RESULT or FAILURE earns (the host decides);
        ``usage`` is the host's measurement where it has one (see ``host.usage``)."""
        if isinstance(message, protocol.Failure):
            cls = ERROR_TYPES[message.error_type]
            error = cls(
                message.message,
                usage=usage,
                exception_type=message.exception_type,
                traceback=message.traceback,
                **({"declared": True} if message.declared else {}),
            )
            self._finish(call, error, logs=logs)
        elif body_size > policy.output + 1024:  # never trust the worker's own size check
            self._finish(
                call,
                OutputTooLarge(
                    f"the result is about {body_size} bytes; the limit is {policy.output}",
                    usage=usage,
                ),
                logs=logs,
            )
        else:
            verdict: Problem | bool | None = False
            if body_size <= QUICK_RESULT_BYTES:
                verdict = call.descriptor.output_validator.trial(
                    message.value, QUICK_STEPS, QUICK_SECONDS
                )
            if isinstance(verdict, bool):  # (undecided)
                self._validate_off_loop(call, message.value, policy, logs, usage)
            else:
                self._validated(call, message.value, verdict, False, usage, logs)

    def _validate_off_loop(
        self, call: PendingCall, value: Any, policy: Policy, logs: CapturedLogs, usage: Usage
    ) -> None:
        """Validate a result on its provider's lane: the loop goes on supervising. The time
        counts against the call: past its wall time or the caller's timeout (whichever comes
        first) it ends as Timeout, whatever the validation would have said."""
        assert call.dispatched is not None
        wall_end = call.dispatched + policy.wall_time
        deadline = wall_end
        if call.caller_deadline is not None:
            deadline = min(deadline, call.caller_deadline)
        provider = self.providers.get(call.provider)
        if provider is None:  # (removed while the call ran)
            self._finish(call, ProviderUnavailable(f"provider {call.provider!r} was removed"))
            return
        self._validating.add(call)
        call.timers.append(self._at(wall_end, lambda: self._validation_overdue(call, policy)))
        validator = call.descriptor.output_validator

        def job() -> None:
            timed_out = False
            problem: Problem | None = None
            try:
                problem = validator.problem(value, deadline, polite=True)
            except DeadlineExceeded:
                timed_out = True
            with contextlib.suppress(RuntimeError):  # the host closed meanwhile
                self.submit(lambda: self._validated(call, value, problem, timed_out, usage, logs))

        provider.lane.submit(job)

    def _validated(
        self,
        call: PendingCall,
        value: Any,
        problem: Problem | None,
        timed_out: bool,
        usage: Usage,
        logs: CapturedLogs,
    ) -> None:
        if call.done:
            return
        if timed_out:
            elapsed = time.monotonic() - call.submitted
            self._finish(call, Timeout(
                f"the call's deadline passed after {elapsed:.3f}s while its result was being "
                "validated", usage=usage,
            ), logs=logs)  # fmt: skip
        elif problem is not None:
            self._finish(
                call,
                OutputInvalid(
                    f"the result does not match the output schema at {problem}",
                    usage=usage,
                    path=problem.path,
                ),
                logs=logs,
            )
        else:
            self._finish(call, None, value, usage, logs=logs)
        if self._closing is not None:
            self._close_step()

    def _validation_overdue(self, call: PendingCall, policy: Policy) -> None:
        if call.done:
            return
        self._finish(call, Timeout(
            f"the action ran longer than its wall-time limit of {policy.wall_time:g}s "
            "(its result was still being validated)"
        ))  # fmt: skip

    def _recycle_if_due(self, worker: WorkerHandle, peak: int) -> None:
        """Retire a worker between calls after ``max_calls`` or ``max_memory_growth``."""
        reason = worker.provider.pool.served(worker, peak)
        if reason:
            log.debug("recycling worker %s: %s", worker.label, reason)
            worker.provider.stats.recycled += 1
            self._stop_gracefully(worker, "recycled")

    def _stop_gracefully(self, worker: WorkerHandle, reason: str) -> None:
        """Ask an idle worker to exit (SHUTDOWN); kill it if it does not within the grace."""
        worker.state = State.STOPPING
        worker.kill_reason = reason
        self._send(worker, protocol.encode(protocol.Shutdown()))
        self._at(time.monotonic() + SHUTDOWN_GRACE_S, lambda: self._retire_overdue(worker), worker)

    def _violation(self, worker: WorkerHandle, reason: str) -> None:
        log.warning("worker %s violated the protocol: %s", worker.label, reason)
        if worker.state is State.STARTING:
            worker.unavailable = f"the worker violated the protocol during start-up: {reason}"
        error = ProtocolViolation(f"the worker was killed: {reason}")
        self._close_channel(worker)  # nothing it sends from here on is read
        self._kill(worker, "protocol violation", error)

    def _on_disconnect(self, worker: WorkerHandle) -> None:
        if worker.kill_reason is not None or worker.process.exited:
            return
        # Either it died (its init reports within milliseconds: the connection closes during
        # the process's exit, just before its parent hears of it) or it closed its connection
        # and lives on. Decide nothing yet: a death reported within the grace
        # is a crash; a worker still alive after it is killed, and that is the violation. The
        # init also tells a worker that was already dying from one it killed for us (see
        # ``sandbox.supervisor._exiting``), so a late report still reads as the crash it was.
        worker.disconnected = True
        if worker.state is State.READY:
            worker.state = State.STOPPING  # no call may be handed to it meanwhile
        self._at(time.monotonic() + DISCONNECT_GRACE_S, lambda: self._disconnect_overdue(worker))

    def _disconnect_overdue(self, worker: WorkerHandle) -> None:
        if worker.kill_reason is None and not worker.process.exited:
            self._kill(worker, "disconnected")

    # ------------------------------------------------------------------ process output and exit

    def _on_output(self, worker: WorkerHandle, fd: int) -> None:
        """A worker's output pipe is readable: read it, then leave its pipes alone for a
        while (``LOG_COALESCE_S``; ``LOG_THROTTLE_S`` for a call that flooded past
        ``CALL_LOG_SLACK``), or until its next call if it floods no call (``_idle_flood``).
        A pipe that ended (EOF; EPOLLHUP comes at any interest) is read to its end and
        forgotten as before."""
        self._pipes.drain(worker, fd)
        if not self._pipes.watched(fd) or worker.logs_paused:
            return
        self._pipes.watch(worker, False)
        if worker.logs.full and self._idle_flood(worker):
            # Past its log limit with no call running: what more it writes would be read
            # only to be dropped, as fast as it cares to write (a core of the host's CPU
            # for a thread of the worker's). Leave it in the pipe; a writer waits on the
            # full pipe until its next call is dispatched.
            return
        flooding = worker.call is not None and worker.logs.dropped > CALL_LOG_SLACK
        worker.logs_resume = self._at(
            time.monotonic() + (LOG_THROTTLE_S if flooding else LOG_COALESCE_S),
            functools.partial(self._resume_output, worker),
            worker,
        )

    def _resume_output(self, worker: WorkerHandle) -> None:
        """Watch a worker's pipes again after a pause, unless it now floods no call (then
        they wait for its next dispatch)."""
        worker.logs_resume = None
        if worker.logs_paused and not (worker.logs.full and self._idle_flood(worker)):
            self._pipes.watch(worker, True)

    @staticmethod
    def _idle_flood(worker: WorkerHandle) -> bool:
        """Whether a worker past its log limit is flooding no call: idle, or still starting
        and ``STARTUP_LOG_SLACK`` past it (an import may print past a small limit and must not
        wait on the pipe for it, but a flood would cost every spawn its whole start-up time
        of the host's CPU, and such a worker then never starts)."""
        if worker.call is not None:
            return False
        state = worker.state
        if state is State.READY:
            return True
        return state is State.STARTING and worker.logs.dropped > STARTUP_LOG_SLACK

    def _on_status_readable(self, worker: WorkerHandle) -> None:
        done = worker.process.read_status()
        if not worker.init_known:
            self._expect_init(worker)
        if not done:
            return
        self._pipes.forget(worker.process.status_fd)
        if worker.channel.conn is not None and not worker.channel.closed:
            self._read_wire(worker)  # what it wrote before it died is in the socket: it counts
        status = worker.process.reap(timeout=KILL_GRACE_S)
        for fd in worker.process.log_fds:
            self._pipes.drain(worker, fd, limit=64)
        if (
            worker.state is State.STARTING
            and worker.unavailable is None
            and status.exit_code == WORKER_EXIT_UNAVAILABLE
        ):
            # It exited saying why (UNAVAILABLE), and the report of its exit overtook the
            # message on a busy host: give the message a moment to arrive.
            self._at(
                time.monotonic() + OUTCOME_WAIT_S, lambda: self._on_exit(worker, status), worker
            )
            return
        self._on_exit(worker, status)

    def _expect_init(self, worker: WorkerHandle) -> None:
        """Record the worker's init (its launcher named it): the host inherits it if the
        launcher is killed. Only a child of that launcher is taken for it."""
        pid = worker.process.init_pid()
        if pid is None:
            return
        worker.init_known = True
        stat = stat_of(pid)
        if stat is not None and stat[0] == worker.process.pid:
            self._orphans.expect(pid, stat[2])

    def _on_exit(self, worker: WorkerHandle, status: ExitStatus) -> None:
        if worker.decoding and worker.kill_reason is None:
            # What it sent before it died is judged first (also while closing: a worker that
            # sent a big result and retired lost it, as a crash). Not for a worker the host
            # ended: what it said no longer counts. (The lane's work is bounded, so this
            # wait is; a search that cost seconds on it once held a close past 30 s.)
            worker.held.append(functools.partial(self._on_exit, worker, status))
            return
        provider = worker.provider
        call = worker.call
        if call is not None and not call.done and self._never_delivered(worker, call, status):
            log.info("call %s was sent to worker %s after it had died; queued again",
                     call.call_id, worker.label)
            call.undelivered += 1
            call.worker, call.dispatched, worker.call = None, None, None
            provider.pool.requeue(call)
            call = None
        if call is not None and not call.done:
            death = self._death_outcome(worker, status)
            error = worker.pending_error or death
            error.usage = death.usage
            if self._should_retry(call, error, provider):
                log.warning("retrying %s after %s", call.descriptor.full_name, error.message)
                provider.stats.retries += 1
                call.attempts += 1
                call.worker, call.dispatched = None, None
                worker.call = None
                provider.pool.requeue(call)
            else:
                self._finish(call, error)
        expected = ("recycled", "idle", "shutdown", "provider removed")
        if worker.kill_reason not in expected and worker.pid is not None:
            provider.stats.restarts += 1
        # A worker that never said HELLO failed to start - whether it died by itself, or the
        # host killed it for dropping its connection or for a violation - unless the host
        # stopped it on purpose (the provider went away, or the host is closing).
        start_failed = worker.pid is None and (
            worker.unavailable is not None
            or worker.kill_reason not in ("provider removed", "shutdown")
        )
        if start_failed and worker.unavailable is None:
            tail = worker.logs.tail().strip()
            worker.unavailable = f"the worker exited during start-up ({status.describe()})" + (
                f": {tail}" if tail else ""
            )
        self._pipes.forget_all(worker.process)
        if worker.meter is not None:
            worker.meter.close()  # (before the cgroup is removed)
        worker.process.close(self._janitor.remove_tree, self._janitor.submit)
        self._close_channel(worker)
        self._forget_worker(worker)
        log.debug("worker %s ended: %s", worker.label, status.describe())
        if worker.pid is not None and call is None and worker.kill_reason in (
            None, "disconnected"
        ):
            provider.pool.died_idle(time.monotonic())  # (back-off after the first in a row)
        if start_failed:  # only once the worker is gone: it no longer counts as starting
            self._provider_failed(
                provider,
                worker.unavailable or "the worker did not start",
                traceback=worker.unavailable_traceback,
            )
        if self._closing is None:
            self._pump(provider)

    def _never_delivered(
        self, worker: WorkerHandle, call: PendingCall, status: ExitStatus
    ) -> bool:
        """Whether ``call`` never reached its worker before it died, so it ran nowhere.

        Sends are asynchronous: ``Channel.send`` succeeding means the kernel took the bytes,
        not that the worker read them (it may have been dying already). "Received" therefore
        means what the
        worker itself marked: it writes each call's id into a page shared with its init right
        after reading the call and before any provider code runs for it (``CallReceipt``), and
        the init reports the last id after the worker died. A different id means the call was
        never read. Where no receipt is reported, the init's ``dead_by`` (CLOCK_MONOTONIC, the
        same clock as ``time.monotonic`` here: no time namespace is used) is the fallback:
        ``call.dispatched`` is taken before the send, so ``dispatched > dead_by`` means the
        frames left after the worker was dead. Such a call is queued again without counting an
        attempt. What remains: a call the worker read and died on before its first line ran
        still counts as run (``WorkerCrashed``), which is the safe side. Both figures come from
        processes that share a uid with provider code; a forged one could at worst re-run that
        provider's own call, so it is accepted at most ``MAX_UNDELIVERED`` times per call.
        """
        sent_after_death = (
            status.dead_by is not None
            and call.dispatched is not None
            and worker.spawned <= status.dead_by < call.dispatched
        )
        not_received = status.received is not None and status.received != call.call_id
        return worker.provider.pool.may_resend(
            not_run=sent_after_death or not_received,
            host_ended=worker.pending_error is not None,  # the host ended it for this call
            undelivered=call.undelivered,
            stopping=self._closing is not None or worker.provider.removed,
        )

    def _should_retry(
        self, call: PendingCall, error: SandboxError, provider: ProviderState
    ) -> bool:
        """Only a worker's death is retried, only for safe_rerun actions, within ``retries``."""
        return provider.pool.should_retry(
            attempts=call.attempts,
            safe_rerun=call.descriptor.safe_rerun,
            crashed=type(error) is WorkerCrashed,
            stopping=self._closing is not None or provider.removed,
        )

    def _death_outcome(self, worker: WorkerHandle, status: ExitStatus) -> SandboxError:
        """The facts of a worker's death, for ``host.deaths`` to judge."""
        usage = death_usage(measured_usage(worker.meter, None), status, worker.cpu_total_s)
        group = worker.process.cgroup
        return death_outcome(
            status,
            usage,
            worker.provider.policy,
            disconnected=worker.disconnected,
            new_oom_kill=group is not None and group.oom_kills() > worker.oom_kills_seen,
        )

    def _provider_failed(
        self, provider: ProviderState, reason: str, *, traceback: str = ""
    ) -> None:
        """A start failed: fail the waiting calls (and ``add_provider``) with the reason, and
        the worker's traceback (with the provider's own frame in the message) if it sent one."""
        frame = provider_frame(traceback) if traceback else None
        if frame is not None:
            reason += f" (raised at {frame})"
        details: dict[str, Any] = {"traceback": traceback, "location": frame} if traceback else {}
        error_text = f"provider {provider.name!r} is unavailable: {reason}"
        if provider.name.startswith(PENDING_PREFIX):
            error_text = f"provider {provider.ref!r} is unavailable: {reason}"
        if provider.ready is not None and not provider.ready.done():
            provider.ready.set_exception(ProviderUnavailable(error_text, **details))
        if provider.signature is None:  # it never started: ``add_provider`` fails, forget it
            self.providers.pop(provider.name, None)
            provider.removed = True
        provider.stats.failed_starts += 1
        opened, stranded = provider.pool.start_failed(reason, time.monotonic())
        if opened:
            log.warning(
                "provider %s: %d failed starts in a row; failing calls fast for %gs",
                provider.label, provider.pool.failures, provider.pool.limits.breaker_cooldown_s,
            )
        for call in stranded:
            self._finish(call, ProviderUnavailable(error_text, **details))

    # ------------------------------------------------------------------ shutdown

    def close(self, done: Future[None], timeout: float = 0.0) -> None:
        """Stop: cancel queued calls, let running ones finish for up to ``timeout`` seconds
        (then cancel them too), stop every worker, then stop the loop."""
        self._closing = done
        self._close_deadline = time.monotonic() + timeout
        self._discard_spare()
        for provider in self.providers.values():
            for call in provider.pool.drain():
                self._finish(call, Cancelled("the host is closing"))
            if provider.ready is not None and not provider.ready.done():
                provider.ready.set_exception(ProviderUnavailable("the host is closing"))
        self._close_step()
        if timeout > 0:
            self._at(self._close_deadline, self._close_step)

    def _close_step(self) -> None:
        """Stop idle workers now; busy ones once their call ends or the close timeout passes."""
        overdue = self._close_deadline is not None and time.monotonic() >= self._close_deadline
        for provider in list(self.providers.values()):
            for worker in list(provider.workers):
                self._guard(worker, "its shutdown", self._close_worker, worker, overdue)
        if overdue:
            for call in list(self._validating):
                self._finish(call, Cancelled("the host is closing"))
        if not self._workers and not self._validating:
            self._stopped = True

    def _close_worker(self, worker: WorkerHandle, overdue: bool) -> None:
        if worker.kill_reason is not None:
            return
        action = worker.provider.pool.on_close(worker, overdue)
        if action == "stop":
            self._stop_gracefully(worker, "shutdown")
        elif action == "kill":
            error = Cancelled("the host is closing") if worker.call is not None else None
            self._kill(worker, "shutdown", error)

    def _fail_everything(self, reason: str) -> None:
        for worker in list(self._workers.values()):
            if worker.call is not None:
                with contextlib.suppress(Exception):
                    self._finish(worker.call, ProviderUnavailable(reason))
            with contextlib.suppress(Exception):
                worker.process.kill_everything()
        for provider in self.providers.values():
            for call in list(provider.pool.queue):
                with contextlib.suppress(Exception):
                    self._finish(call, ProviderUnavailable(reason))
            if provider.ready is not None and not provider.ready.done():
                provider.ready.set_exception(ProviderUnavailable(reason))

    def _release(self) -> None:
        """Free everything the loop owned. Each step runs even if an earlier one failed."""
        with self._pending_lock:
            self._stopped = True
        for worker in list(self._workers.values()):  # only after a crash: reap what is left
            self._attempt(f"stopping worker {worker.worker_id}", self._end_now, worker)
        self._attempt("reaping abandoned workers", self._collect_abandoned, True)
        self._attempt("discarding the spare launcher", self._discard_spare)
        self._attempt("stopping the zygote", self.zygotes.close)
        self._attempt("reaping orphans", self._orphans.drain, KILL_GRACE_S)
        self._attempt("closing the transport", self.transport.close)
        self._attempt("closing the pipe set", self._pipes.close)
        self._attempt("closing the wire set", self._wire.close)
        self._attempt("closing the wake-up pipe", os.close, self._wake_read)
        self._attempt("closing the wake-up pipe", os.close, self._wake_write)
        self._janitor.remove_tree(self._workdir_root)
        for state in (*self._left_states, self._state):
            self._janitor.submit(state.remove, "removing the host's state directory")
        if not self._janitor.close(timeout=JANITOR_CLOSE_TIMEOUT_S):
            log.warning("clean-up is still running after %gs; it goes on in the background",
                        JANITOR_CLOSE_TIMEOUT_S)
        with self._pending_lock:
            leftover = list(self._pending)
            self._pending.clear()
        for call in leftover:  # queued commands that never ran, or a crashed loop's calls
            with contextlib.suppress(Exception):
                self._finish(call, Cancelled("the host closed before the call could run"))
        if self._closing is not None and not self._closing.done():
            self._closing.set_result(None)
        while True:  # commands that raced with shutdown
            try:
                self._commands.get_nowait()
            except queue.Empty:
                break

    def _end_now(self, worker: WorkerHandle) -> None:
        worker.channel.close()
        process = worker.process
        if not process.exited:
            process.kill_everything()
            process.reap(timeout=KILL_GRACE_S)
        process.close(self._janitor.remove_tree, self._janitor.submit)

    @staticmethod
    def _attempt(what: str, step: Callable[..., object], *args: Any) -> None:
        try:
            step(*args)
        except Exception:
            log.exception("host clean-up: %s failed", what)
