"""A provider's pool decisions, as a pure state machine: no I/O, no clock, no processes.

The reactor tells a :class:`Pool` what happened (a call was submitted, a worker started, said
HELLO, finished a call, died, a start failed) with the time it happened, and the pool answers
with what to do: refuse a call, hand call C to worker W, start N workers, wake up at T and look
again, stop an idle worker, put a dead worker's call back in the queue. The reactor applies
those answers (it spawns, sends, kills and arms timers); every piece of pool state - the queue,
each worker's place in the pool, start-up failures, back-off and the circuit breaker - lives
here and is changed only by these methods. ``tests/test_pool_machine.py`` drives it with a
Hypothesis ``RuleBasedStateMachine``.

Calls and workers are opaque to the pool (any hashable objects): it never looks inside them,
so the same machine runs in the tests with plain integers.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from typing import TYPE_CHECKING, Any, Generic, Literal, TypeVar

from host.fairqueue import FairQueue, admits

if TYPE_CHECKING:
    from policies import Policy

#: The defaults of the figures in ``Limits`` (the reactor passes its own module's, which tests
#: may shorten). Start-up failures in a row: back-off doubles from the first up to the cap; at
#: the threshold the circuit breaker opens and calls fail fast for the cool-down.
BACKOFF_FIRST_S = 0.1
BACKOFF_MAX_S = 5.0
BREAKER_THRESHOLD = 5
BREAKER_COOLDOWN_S = 30.0
#: How often one call may be handed again because its worker had died before it was sent.
MAX_UNDELIVERED = 3

C = TypeVar("C")
W = TypeVar("W")


class State(Enum):
    """A worker's place in its pool."""

    STARTING = "starting"
    READY = "ready"
    BUSY = "busy"
    STOPPING = "stopping"


@dataclass(frozen=True)
class Limits:
    """The part of a policy the pool decides with, and the host's own figures."""

    min_workers: int = 0
    max_workers: int = 1
    queue: int = 1000
    idle_timeout: float = 60.0
    retries: int = 0
    max_calls: int = 0
    max_memory_growth: int = 0
    backoff_first_s: float = BACKOFF_FIRST_S
    backoff_max_s: float = BACKOFF_MAX_S
    breaker_threshold: int = BREAKER_THRESHOLD
    breaker_cooldown_s: float = BREAKER_COOLDOWN_S
    max_undelivered: int = MAX_UNDELIVERED

    @classmethod
    def of(cls, policy: Policy, **figures: Any) -> Limits:
        """A policy's limits; ``figures``: the host's own (``backoff_first_s`` ...)."""
        return cls(
            min_workers=policy.workers.min,
            max_workers=policy.workers.max,
            queue=policy.queue,
            idle_timeout=policy.idle_timeout,
            retries=policy.retries,
            max_calls=policy.max_calls,
            max_memory_growth=policy.max_memory_growth,
            **figures,
        )


@dataclass(frozen=True)
class Refusal:
    """Why a submitted call is not queued: the provider cannot start workers now
    (``unavailable``: back-off with nothing serving, or the breaker is open), or its queue
    is full and no worker is idle (``overloaded``)."""

    kind: Literal["unavailable", "overloaded"]
    text: str


@dataclass(frozen=True)
class Spawn:
    """Start this many workers now, one after another; stop at the first that fails."""

    count: int


@dataclass(frozen=True)
class WakeAt:
    """Calls wait but back-off (or the breaker) forbids a start before ``when``: look again
    then."""

    when: float


@dataclass(eq=False)
class Slot:
    """One worker as the pool sees it."""

    state: State = State.STARTING
    #: When it last became idle (HELLO or the end of a call).
    idle_since: float = 0.0
    #: Calls it has finished, and the peak memory of its first (the ``max_memory_growth``
    #: baseline).
    calls: int = 0
    first_peak: int = 0


@dataclass(eq=False)
class Pool(Generic[C, W]):
    """One provider's queue and workers. Every method takes the time it is told of."""

    limits: Limits
    #: Fair between tenants (``host.fairqueue``): each waits for one call of each other
    #: waiting tenant at most, and holds at most its share of the bound.
    queue: FairQueue[C] = field(default_factory=FairQueue)
    #: Every worker that holds a slot (a stopping one still counts against ``max_workers``),
    #: in the order they were started: the first idle one gets the next call.
    slots: dict[W, Slot] = field(default_factory=dict)
    #: Start-up failures in a row, when the next start may be tried, until when the circuit
    #: breaker makes calls fail fast, and what the last failure was.
    failures: int = 0
    #: Workers in a row that died by themselves while idle, after a good start: none served a
    #: call since (``died_idle``). Such deaths never counted: a worker that said HELLO and
    #: died 50 ms later was replaced at once to keep ``min_workers``, 30-40 times a second
    #: with no call at all, each start a few ms of the host's CPU.
    idle_deaths: int = 0
    next_spawn: float = 0.0
    breaker_until: float = 0.0
    last_failure: str = ""

    # ------------------------------------------------------------------ views

    @property
    def workers(self) -> list[W]:
        return list(self.slots)

    def state(self, worker: W) -> State:
        """A worker's state; one the pool has forgotten takes nothing (``STOPPING``)."""
        slot = self.slots.get(worker)
        return State.STOPPING if slot is None else slot.state

    def count(self, *states: State) -> int:
        return sum(1 for s in self.slots.values() if s.state in states)

    def idle(self) -> W | None:
        """The first idle worker, in start order."""
        return next((w for w, s in self.slots.items() if s.state is State.READY), None)

    def serving(self) -> bool:
        return self.count(State.READY, State.BUSY) > 0

    def breaker_open(self, now: float) -> bool:
        return now < self.breaker_until

    def snapshot(self, now: float) -> dict[str, Any]:
        """The pool's part of ``host.stats()``: workers by state, queue depth, breaker."""
        return {
            "workers": {
                "live": len(self.slots),
                "idle": self.count(State.READY),
                "busy": self.count(State.BUSY),
                "starting": self.count(State.STARTING),
                "stopping": self.count(State.STOPPING),
            },
            "queue": len(self.queue),
            "breaker_open": self.breaker_open(now),
        }

    def unavailable_text(self, name: str, now: float) -> str:
        if now < self.breaker_until:
            state = (
                f"circuit open after {self.failures} failed starts in a row; retried in "
                f"{self.breaker_until - now:.1f}s"
            )
        else:
            state = f"{self.failures} failed starts in a row; next try in " + (
                f"{max(0.0, self.next_spawn - now):.1f}s"
            )
        return f"provider {name!r} is unavailable ({state}): {self.last_failure}"

    # ------------------------------------------------------------------ calls

    def enqueue(self, call: C, now: float, name: str) -> Refusal | None:
        """Queue a submitted call, or say why not (``name``: the provider's, for the text)."""
        if now < self.breaker_until or (
            self.failures and now < self.next_spawn and not self.serving()
        ):
            return Refusal("unavailable", self.unavailable_text(name, now))
        if self.idle() is None:
            full = self._full(call, name)
            if full is not None:
                return full
        self.queue.append(call)
        return None

    def _full(self, call: C, name: str) -> Refusal | None:
        """Why the queue takes no more of this call's tenant, if it does not.

        One tenant (every local call) may fill the queue up to its bound. With more, a tenant
        below its share (the bound divided among the tenants waiting, itself included, and at
        least one call) is taken beyond the bound, up to twice the bound in all: a tenant that
        filled the queue first must not leave the others nothing but ``Overloaded``. No tenant
        holds more than the bound (``host.fairqueue.admits``)."""
        bound, total = self.limits.queue, len(self.queue)
        tenant = self.queue.tenant(call)
        mine = self.queue.waiting(tenant)
        if admits(total, mine, self.queue.tenants(), bound):
            return None
        tenants = self.queue.tenants() + (0 if mine else 1)
        if tenants <= 1:
            text = f"provider {name!r} has {total} calls waiting (its queue limit)"
        else:
            text = (
                f"provider {name!r} has {total} calls waiting, {mine} of them this tenant's "
                f"(its share of the queue limit {bound}, among {tenants} tenants)"
            )
        return Refusal("overloaded", f"{text}; try again later")

    def requeue(self, call: C) -> None:
        """A call that did not run (its worker was unreachable, or was killed before the
        call was sent) goes back to the head of the queue, ahead of the bound."""
        self.queue.appendleft(call)

    def withdraw(self, call: C) -> bool:
        """Take a queued call out (cancelled, or its caller's deadline passed)."""
        if call in self.queue:
            self.queue.remove(call)
            return True
        return False

    def drain(self) -> list[C]:
        """Empty the queue (the provider is removed, or the host closes): the caller fails
        these calls."""
        calls = list(self.queue)
        self.queue.clear()
        return calls

    def next_dispatch(self) -> tuple[C, W] | None:
        """The head of the queue and the worker to hand it to, if a worker is idle. The call
        leaves the queue; the worker stays idle until ``dispatched`` (the reactor may find the
        call cancelled meanwhile, and ask again)."""
        if not self.queue:
            return None
        worker = self.idle()
        if worker is None:
            return None
        return self.queue.popleft(), worker

    def dispatched(self, worker: W) -> None:
        self.slots[worker].state = State.BUSY

    def served(self, worker: W, peak: int) -> str:
        """A worker finished a call with this peak memory: why it must be recycled ("" if it
        need not be). The caller stops it (``stopping``) when a reason is given."""
        slot = self.slots[worker]
        slot.calls += 1
        self.idle_deaths = 0
        if slot.calls == 1:
            slot.first_peak = peak
        limits = self.limits
        if limits.max_calls and slot.calls >= limits.max_calls:
            return f"served {slot.calls} calls (max_calls)"
        if limits.max_memory_growth and peak - slot.first_peak > limits.max_memory_growth:
            return f"peak memory grew by {peak - slot.first_peak} bytes (max_memory_growth)"
        return ""

    def should_retry(
        self, *, attempts: int, safe_rerun: bool, crashed: bool, stopping: bool
    ) -> bool:
        """After a worker died under a call that ran: only a plain crash (``WorkerCrashed``,
        not a limit the call hit) of a ``safe_rerun`` action is run again, within ``retries``
        (``attempts`` counts runs so far), and not while the pool is going away. A retried
        call goes back to the head of the queue; the caller counts the attempt."""
        return crashed and safe_rerun and attempts <= self.limits.retries and not stopping

    def may_resend(
        self, *, not_run: bool, host_ended: bool, undelivered: int, stopping: bool
    ) -> bool:
        """After a worker died under a call: whether the call never ran (``not_run``: the
        worker's receipt or its time of death says so), so it goes back to the queue without
        counting an attempt. Not when the host itself ended the worker for this call, and at
        most ``max_undelivered`` times per call."""
        return (
            not_run
            and not host_ended
            and undelivered < self.limits.max_undelivered
            and not stopping
        )

    # ------------------------------------------------------------------ workers

    def spawned(self, worker: W) -> None:
        self.slots[worker] = Slot()

    def set_state(self, worker: W, state: State, now: float) -> None:
        """A worker's state changed: a worker that reaches READY from STARTING (its HELLO)
        is a successful start, which ends back-off and closes the breaker."""
        slot = self.slots.get(worker)
        if slot is None:
            return
        if state is State.READY and slot.state is State.STARTING:
            self.failures = 0
            self.breaker_until = 0.0
        if state is State.READY:
            slot.idle_since = now
        slot.state = state

    def idle_since(self, worker: W) -> float:
        slot = self.slots.get(worker)
        return 0.0 if slot is None else slot.idle_since

    def set_idle_since(self, worker: W, when: float) -> None:
        slot = self.slots.get(worker)
        if slot is not None:
            slot.idle_since = when

    def calls_served(self, worker: W) -> int:
        slot = self.slots.get(worker)
        return 0 if slot is None else slot.calls

    def gone(self, worker: W) -> None:
        """The worker exited (or was abandoned): its slot is free."""
        self.slots.pop(worker, None)

    def idle_expired(self, worker: W, now: float) -> bool:
        """Whether an idle worker should be stopped: idle past the timeout while the pool
        has more than ``min_workers`` that are not already stopping."""
        slot = self.slots.get(worker)
        if slot is None or slot.state is not State.READY:
            return False
        active = len(self.slots) - self.count(State.STOPPING)
        return now - slot.idle_since > self.limits.idle_timeout and (
            active > self.limits.min_workers
        )

    def on_close(self, worker: W, overdue: bool) -> Literal["stop", "wait", "kill"]:
        """While the host closes (not already being stopped): an idle worker is asked to
        stop; a busy one may finish its call until the close timeout (``overdue``); any other
        (starting, stopping on its own, or busy past the timeout) is killed."""
        state = self.state(worker)
        if state is State.READY:
            return "stop"
        if state is State.BUSY and not overdue:
            return "wait"
        return "kill"

    def scale(self, now: float) -> Spawn | WakeAt | None:
        """How many workers to start now: one per waiting call not already covered by a
        starting worker, and enough to keep ``min_workers``, within ``max_workers``; while
        back-off or the breaker forbids a start, when to look again."""
        room = self.limits.max_workers - len(self.slots)
        if room <= 0 or not (self.queue or self.limits.min_workers):
            return None  # (the common case, decided without a look at each worker)
        starting = stopping = 0
        for slot in self.slots.values():
            if slot.state is State.STARTING:
                starting += 1
            elif slot.state is State.STOPPING:
                stopping += 1
        active = len(self.slots) - stopping
        wanted = max(len(self.queue) - starting, self.limits.min_workers - active)
        if wanted <= 0:
            return None
        if now < self.next_spawn or now < self.breaker_until:
            return WakeAt(max(self.next_spawn, self.breaker_until))
        return Spawn(min(wanted, room))

    def died_idle(self, now: float) -> None:
        """A worker that had started died by itself while idle (it is already ``gone``): the
        first in a row costs nothing (an operator's kill, the kernel's OOM killer: its
        replacement starts at once), each further one backs the next start off as a failed
        start does, up to the same cap, until a worker serves a call. Calls are still taken
        meanwhile (they wait for that start): the worker did start, so the breaker stays
        shut."""
        self.idle_deaths += 1
        if self.idle_deaths > 1:
            limits = self.limits
            delay = min(limits.backoff_max_s, limits.backoff_first_s * 2 ** (self.idle_deaths - 2))
            self.next_spawn = max(self.next_spawn, now + delay)

    def start_failed(self, reason: str, now: float) -> tuple[bool, list[C]]:
        """A worker failed to start (it is already ``gone``, or never had a slot): back off,
        open the breaker at the threshold. Returns whether the breaker opened now, and the
        waiting calls to fail - all of them when no worker is starting or idle, since none
        would ever take them."""
        self.failures += 1
        self.last_failure = reason
        limits = self.limits
        self.next_spawn = now + min(
            limits.backoff_max_s, limits.backoff_first_s * 2 ** (self.failures - 1)
        )
        opened = self.failures >= limits.breaker_threshold
        if opened:
            self.breaker_until = now + limits.breaker_cooldown_s
        if self.count(State.STARTING, State.READY) == 0:
            return opened, self.drain()
        return opened, []
