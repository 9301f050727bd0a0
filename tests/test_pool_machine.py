"""The pool's decisions (``host.pool``) driven by Hypothesis: random submissions, starts,
start failures, results, deaths of every kind, cancellations and the passing of time, against
a small driver that applies the pool's answers the way the reactor does. No process runs: the
pool is pure, so thousands of histories take a few seconds.
"""

from __future__ import annotations

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)

from host.fairqueue import FairQueue
from host.pool import (
    MAX_UNDELIVERED,
    Limits,
    Pool,
    Spawn,
    State,
    WakeAt,
)

#: Steps of time that straddle the figures the pool decides with (back-off, idle timeout,
#: breaker cool-down).
STEPS = st.sampled_from([0.0, 0.01, 0.1, 0.3, 1.0, 2.5, 5.0, 12.0, 31.0, 61.0])
DEATHS = st.sampled_from(["crashed", "timeout", "memory", "cpu"])


class PoolMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.now = 1000.0
        #: Each call's tenant (the queue is fair between them: ``host.fairqueue``).
        self.tenant: dict[int, int] = {}
        self.pool: Pool[int, int] = Pool(Limits(), queue=FairQueue(self.tenant.__getitem__))
        self.ids = iter(range(1, 1 << 30))
        self.outcomes: dict[int, str] = {}
        self.submitted: set[int] = set()
        self.safe: dict[int, bool] = {}
        self.attempts: dict[int, int] = {}
        self.undelivered: dict[int, int] = {}
        #: Calls put back at the head of the queue (they may stand beyond its bound).
        self.requeued: set[int] = set()
        #: What each busy worker runs.
        self.running: dict[int, int] = {}
        self.wake: float | None = None
        self.failed_at: float | None = None

    @initialize(
        low=st.integers(0, 2),
        extra=st.integers(0, 2),
        queue=st.integers(0, 3),
        idle=st.sampled_from([1.0, 10.0, 60.0]),
        retries=st.integers(0, 2),
        max_calls=st.integers(0, 3),
        threshold=st.integers(1, 5),
        cooldown=st.sampled_from([1.0, 30.0]),
    )
    def limits(
        self,
        low: int,
        extra: int,
        queue: int,
        idle: float,
        retries: int,
        max_calls: int,
        threshold: int,
        cooldown: float,
    ) -> None:
        self.pool = Pool(
            Limits(
                min_workers=low,
                max_workers=max(1, low + extra),
                queue=queue,
                idle_timeout=idle,
                retries=retries,
                max_calls=max_calls,
                max_memory_growth=1000,
                breaker_threshold=threshold,
                breaker_cooldown_s=cooldown,
            ),
            queue=FairQueue(self.tenant.__getitem__),
        )
        self.pump()

    # ------------------------------------------------------------------ the driver

    def outcome(self, call: int, what: str) -> None:
        assert call not in self.outcomes, f"call {call} got a second outcome: {what}"
        assert call not in self.pool.queue
        self.outcomes[call] = what
        self.requeued.discard(call)

    def pump(self) -> None:
        """What ``Reactor._pump`` does with the pool's answers."""
        pool = self.pool
        while (pair := pool.next_dispatch()) is not None:
            call, worker = pair
            assert pool.state(worker) is State.READY
            assert worker not in self.running
            pool.dispatched(worker)
            self.running[worker] = call
            self.requeued.discard(call)
        decision = pool.scale(self.now)
        if isinstance(decision, WakeAt):
            assert decision.when > self.now
            self.wake = decision.when
        elif isinstance(decision, Spawn):
            assert decision.count >= 1
            for _ in range(decision.count):
                pool.spawned(next(self.ids))
        # Nothing is left to do once the answers are applied.
        assert not isinstance(pool.scale(self.now), Spawn)

    def pick(self, data: st.DataObject, state: State) -> int:
        workers = [w for w in self.pool.workers if self.pool.state(w) is state]
        return data.draw(st.sampled_from(workers))

    def has(self, state: State) -> bool:
        return self.pool.count(state) > 0

    def end_worker(self, worker: int) -> int | None:
        self.pool.gone(worker)
        return self.running.pop(worker, None)

    # ------------------------------------------------------------------ rules

    @rule(safe_rerun=st.booleans(), tenant=st.integers(0, 2))
    def submit(self, safe_rerun: bool, tenant: int) -> None:
        call = next(self.ids)
        self.tenant[call] = tenant
        self.submitted.add(call)
        self.safe[call] = safe_rerun
        self.attempts[call] = 1
        self.undelivered[call] = 0
        pool = self.pool
        before = len(pool.queue)
        mine = sum(1 for c in pool.queue if self.tenant[c] == tenant)
        tenants = len({self.tenant[c] for c in pool.queue} | {tenant})
        bound = pool.limits.queue
        # Up to the bound for anyone; beyond it, up to twice the bound in all, for a tenant
        # below its share of the bound (at least one call).
        room = before < bound or (before < 2 * bound and mine < max(1, bound // tenants))
        idle = pool.idle() is not None
        backing_off = pool.failures > 0 and self.now < pool.next_spawn and not pool.serving()
        breaker = self.now < pool.breaker_until
        refusal = pool.enqueue(call, self.now, "p")
        if breaker or backing_off:
            assert refusal is not None and refusal.kind == "unavailable"
        elif not room and not idle:
            assert refusal is not None and refusal.kind == "overloaded"
        else:
            assert refusal is None
        if refusal is not None:
            self.outcome(call, refusal.kind)
        self.pump()

    @precondition(lambda self: self.has(State.STARTING))
    @rule(data=st.data())
    def worker_ready(self, data: st.DataObject) -> None:
        worker = self.pick(data, State.STARTING)
        self.pool.set_state(worker, State.READY, self.now)
        assert self.pool.failures == 0 and not self.pool.breaker_open(self.now)
        self.pump()

    @precondition(lambda self: self.has(State.STARTING))
    @rule(data=st.data())
    def start_fails(self, data: st.DataObject) -> None:
        worker = self.pick(data, State.STARTING)
        assert self.end_worker(worker) is None
        failures = self.pool.failures + 1
        stuck = self.pool.count(State.STARTING, State.READY) == 0
        waiting = list(self.pool.queue)
        opened, stranded = self.pool.start_failed("boom", self.now)
        assert self.pool.failures == failures
        limits = self.pool.limits
        backoff = min(limits.backoff_max_s, limits.backoff_first_s * 2 ** (failures - 1))
        assert self.pool.next_spawn == self.now + backoff
        assert opened == (failures >= limits.breaker_threshold)
        if opened:
            assert self.pool.breaker_until == self.now + limits.breaker_cooldown_s
        # Calls that no worker could ever take fail; otherwise they wait.
        assert stranded == (waiting if stuck else [])
        for call in stranded:
            self.outcome(call, "unavailable")
        self.failed_at = self.now
        self.pump()

    @precondition(lambda self: self.has(State.BUSY))
    @rule(data=st.data(), peak=st.integers(0, 3000))
    def call_finishes(self, data: st.DataObject, peak: int) -> None:
        worker = self.pick(data, State.BUSY)
        call = self.running.pop(worker)
        failures, breaker = self.pool.failures, self.pool.breaker_until
        self.pool.set_state(worker, State.READY, self.now)
        # Only a start ends back-off and the breaker, not another worker's result.
        assert (self.pool.failures, self.pool.breaker_until) == (failures, breaker)
        served = self.pool.slots[worker].calls + 1
        reason = self.pool.served(worker, peak)
        assert self.pool.idle_deaths == 0  # (a call served: the deaths in a row start over)
        limits = self.pool.limits
        if limits.max_calls and served >= limits.max_calls:
            assert "max_calls" in reason
        if reason:
            self.pool.set_state(worker, State.STOPPING, self.now)
        self.outcome(call, "ok")
        self.pump()

    @precondition(lambda self: self.has(State.BUSY))
    @rule(data=st.data(), death=DEATHS, not_run=st.booleans(), host_ended=st.booleans())
    def worker_dies(self, data: st.DataObject, death: str, not_run: bool, host_ended: bool) -> None:
        worker = self.pick(data, State.BUSY)
        call = self.end_worker(worker)
        assert call is not None
        attempts = self.attempts[call]
        if self.pool.may_resend(
            not_run=not_run, host_ended=host_ended, undelivered=self.undelivered[call],
            stopping=False,
        ):
            assert not host_ended and self.undelivered[call] < MAX_UNDELIVERED
            self.undelivered[call] += 1
            self.pool.requeue(call)  # without an attempt
            self.requeued.add(call)
        elif self.pool.should_retry(
            attempts=attempts, safe_rerun=self.safe[call], crashed=death == "crashed",
            stopping=False,
        ):
            assert death == "crashed" and self.safe[call]
            assert attempts <= self.pool.limits.retries
            self.attempts[call] += 1
            self.pool.requeue(call)
            self.requeued.add(call)
        else:
            assert not (
                death == "crashed" and self.safe[call] and attempts <= self.pool.limits.retries
            )
            self.outcome(call, death)
        self.pump()

    @precondition(lambda self: self.has(State.READY))
    @rule(data=st.data())
    def idle_worker_dies(self, data: st.DataObject) -> None:
        """By itself (the host did not ask): the first in a row is free, each further one
        backs off the next start, and the breaker stays shut (the worker did start)."""
        self.end_worker(self.pick(data, State.READY))
        pool = self.pool
        deaths, before, breaker = pool.idle_deaths + 1, pool.next_spawn, pool.breaker_until
        pool.died_idle(self.now)
        assert pool.idle_deaths == deaths and pool.breaker_until == breaker
        if deaths == 1:
            assert pool.next_spawn == before
        else:
            limits = pool.limits
            delay = min(limits.backoff_max_s, limits.backoff_first_s * 2 ** (deaths - 2))
            assert pool.next_spawn == max(before, self.now + delay)
        self.pump()

    @precondition(lambda self: self.has(State.STOPPING))
    @rule(data=st.data())
    def stopped_worker_exits(self, data: st.DataObject) -> None:
        assert self.end_worker(self.pick(data, State.STOPPING)) is None
        self.pump()

    @rule(step=STEPS)
    def time_passes(self, step: float) -> None:
        """The heartbeat: idle workers past the timeout stop (above ``min``); a wake-up that
        is due pumps the queue."""
        self.now += step
        for worker in self.pool.workers:
            if self.pool.idle_expired(worker, self.now):
                slot = self.pool.slots[worker]
                assert self.now - slot.idle_since > self.pool.limits.idle_timeout
                self.pool.set_state(worker, State.STOPPING, self.now)
                active = len(self.pool.slots) - self.pool.count(State.STOPPING)
                assert active >= self.pool.limits.min_workers
        if self.wake is not None and self.now >= self.wake:
            self.wake = None
        self.pump()

    @precondition(lambda self: len(self.pool.queue) > 0)
    @rule(data=st.data())
    def cancel_queued(self, data: st.DataObject) -> None:
        call = data.draw(st.sampled_from(list(self.pool.queue)))
        assert self.pool.withdraw(call)
        assert not self.pool.withdraw(call)
        self.outcome(call, "cancelled")
        self.pump()

    @precondition(lambda self: self.has(State.BUSY))
    @rule(data=st.data())
    def cancel_running(self, data: st.DataObject) -> None:
        """Cancelling a running call kills its worker: the host ended it, so it never goes
        back to the queue whatever the death looks like."""
        worker = self.pick(data, State.BUSY)
        call = self.end_worker(worker)
        assert call is not None
        assert not self.pool.may_resend(
            not_run=True, host_ended=True, undelivered=0, stopping=False
        )
        self.outcome(call, "cancelled")
        self.pump()

    # ------------------------------------------------------------------ invariants

    @invariant()
    def never_more_workers_than_max(self) -> None:
        assert len(self.pool.slots) <= self.pool.limits.max_workers

    @invariant()
    def queue_within_its_bound(self) -> None:
        fresh = [c for c in self.pool.queue if c not in self.requeued]
        assert len(fresh) <= 2 * self.pool.limits.queue
        for tenant in set(self.tenant.values()):
            assert sum(1 for c in fresh if self.tenant[c] == tenant) <= self.pool.limits.queue

    @invariant()
    def a_queued_call_never_waits_beside_an_idle_worker(self) -> None:
        assert not (self.pool.queue and self.pool.idle() is not None)

    @invariant()
    def no_call_lost_and_one_place_each(self) -> None:
        queued = list(self.pool.queue)
        assert len(queued) == len(set(queued))
        running = list(self.running.values())
        assert len(running) == len(set(running))
        places = [set(queued), set(running), set(self.outcomes)]
        for i, a in enumerate(places):
            for b in places[i + 1 :]:
                assert not a & b
        assert set().union(*places) == self.submitted

    @invariant()
    def busy_workers_are_the_running_ones(self) -> None:
        busy = {w for w in self.pool.workers if self.pool.state(w) is State.BUSY}
        assert busy == set(self.running)

    @invariant()
    def waiting_calls_have_a_worker_coming_or_a_wake_up(self) -> None:
        pool = self.pool
        if not pool.queue:
            return
        coming = pool.count(State.STARTING) + pool.count(State.BUSY)
        full = len(pool.slots) >= pool.limits.max_workers
        blocked = self.now < max(pool.next_spawn, pool.breaker_until)
        assert coming or full or blocked
        if blocked and not full and len(pool.queue) > pool.count(State.STARTING):
            assert self.wake is not None and self.wake >= self.now

    @invariant()
    def min_workers_kept_when_starts_are_allowed(self) -> None:
        pool = self.pool
        if self.now < max(pool.next_spawn, pool.breaker_until):
            return
        active = len(pool.slots) - pool.count(State.STOPPING)
        room = pool.limits.max_workers - len(pool.slots)
        assert active >= pool.limits.min_workers or room == 0

    @invariant()
    def the_snapshot_counts_every_worker_once(self) -> None:
        snap = self.pool.snapshot(self.now)
        workers = snap["workers"]
        assert workers["live"] == len(self.pool.slots) == sum(
            workers[k] for k in ("idle", "busy", "starting", "stopping")
        )
        assert snap["queue"] == len(self.pool.queue)
        assert snap["breaker_open"] == (self.now < self.pool.breaker_until)

    @invariant()
    def breaker_timing(self) -> None:
        pool = self.pool
        if pool.failures >= pool.limits.breaker_threshold:
            assert self.failed_at is not None
            assert pool.breaker_until == self.failed_at + pool.limits.breaker_cooldown_s
        elif pool.failures == 0:
            assert pool.breaker_until == 0.0


PoolMachine.TestCase.settings = settings(
    max_examples=120,
    stateful_step_count=50,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
TestPoolMachine = PoolMachine.TestCase


def test_a_call_is_resent_without_an_attempt_at_most_max_undelivered_times() -> None:
    pool: Pool[int, int] = Pool(Limits(retries=5))
    resend = [
        pool.may_resend(not_run=True, host_ended=False, undelivered=n, stopping=False)
        for n in range(MAX_UNDELIVERED + 2)
    ]
    assert resend == [True] * MAX_UNDELIVERED + [False, False]
    assert not pool.may_resend(not_run=False, host_ended=False, undelivered=0, stopping=False)
    assert not pool.may_resend(not_run=True, host_ended=False, undelivered=0, stopping=True)


def test_closing_stops_idle_workers_waits_for_busy_ones_and_kills_the_rest() -> None:
    pool: Pool[int, int] = Pool(Limits(max_workers=4))
    for worker, state in enumerate(State):
        pool.spawned(worker)
        pool.set_state(worker, state, 0.0)
    actions = {state: pool.on_close(w, overdue=False) for w, state in enumerate(State)}
    assert actions == {
        State.STARTING: "kill", State.READY: "stop", State.BUSY: "wait", State.STOPPING: "kill"
    }
    assert pool.on_close(list(State).index(State.BUSY), overdue=True) == "kill"
