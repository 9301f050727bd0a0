"""The fair queue of waiting calls (``host.fairqueue``) and the pool's share rule, driven by
Hypothesis against plain models: what a deque would hold, and how long a call may wait."""

from __future__ import annotations

import time
from dataclasses import dataclass

import pytest
from hypothesis import given
from hypothesis import strategies as st

from host.fairqueue import FairQueue
from host.pool import Limits, Pool


@dataclass(eq=False)
class Call:
    tenant: int
    n: int


#: append(tenant) | appendleft of the last popped call | popleft | remove the k-th waiting call
OPS = st.lists(
    st.one_of(
        st.tuples(st.just("append"), st.integers(0, 3)),
        st.tuples(st.just("appendleft"), st.just(0)),
        st.tuples(st.just("pop"), st.just(0)),
        st.tuples(st.just("remove"), st.integers(0, 50)),
    ),
    max_size=200,
)


@given(OPS)
def test_it_holds_what_a_deque_would_and_each_tenant_in_order(ops: list[tuple[str, int]]) -> None:
    queue: FairQueue[Call] = FairQueue()
    held: list[Call] = []  # what should be waiting, any order
    numbers = iter(range(1 << 30))
    popped: list[Call] = []
    for op, arg in ops:
        if op == "append":
            call = Call(arg, next(numbers))
            queue.append(call)
            held.append(call)
        elif op == "appendleft" and popped:
            call = popped.pop()
            queue.appendleft(call)
            held.append(call)
            assert queue.popleft() is call  # put back at the head: the next one taken
            queue.appendleft(call)
        elif op == "pop" and held:
            call = queue.popleft()
            held.remove(call)
            # Within a tenant, first in, first out (a put-back call is its tenant's head).
            assert all(c.n >= call.n for c in held if c.tenant == call.tenant)
            popped.append(call)
        elif op == "remove" and held:
            call = held.pop(arg % len(held))
            queue.remove(call)
            assert call not in queue
        assert len(queue) == len(held) and bool(queue) == bool(held)
        assert sorted(c.n for c in queue) == sorted(c.n for c in held)
        assert all(c in queue for c in held)
        assert queue.tenants() == len({c.tenant for c in held})
        for tenant in range(4):
            assert queue.waiting(tenant) == sum(1 for c in held if c.tenant == tenant)
    with pytest.raises(ValueError):
        queue.remove(Call(9, -1))
    queue.clear()
    assert len(queue) == 0 and list(queue) == []
    with pytest.raises(IndexError):
        queue.popleft()


@given(st.lists(st.tuples(st.integers(0, 4), st.integers(0, 3)), max_size=300))
def test_a_call_waits_for_one_call_of_each_other_tenant_per_call_ahead_of_it(
    steps: list[tuple[int, int]],
) -> None:
    """Each step appends a call of a tenant, then takes up to ``pops`` calls. A call that has
    ``ahead`` calls of its own tenant before it waits for at most ``(ahead + 1) * tenants``
    calls to be taken (``tenants``: the most that waited at once while it did). A FIFO queue
    fails this: one tenant's burst makes every later tenant wait for all of it."""
    queue: FairQueue[Call] = FairQueue()
    waited: dict[int, tuple[int, int, int]] = {}  # n -> (taken when it came, ahead, tenants)
    taken = 0
    for n, (tenant, pops) in enumerate(steps):
        ahead = queue.waiting(tenant)
        queue.append(Call(tenant, n))
        waited[n] = (taken, ahead, 0)
        for key, (since, before, tenants) in waited.items():
            waited[key] = (since, before, max(tenants, queue.tenants()))
        for _ in range(pops):
            if not queue:
                break
            call = queue.popleft()
            taken += 1
            since, ahead, tenants = waited.pop(call.n)
            assert taken - since <= (ahead + 1) * tenants, (call, taken - since, ahead, tenants)


def test_a_tenant_that_filled_the_queue_leaves_the_others_their_share() -> None:
    """One tenant filling a provider's queue (``queue = 10``) used to leave every other caller
    only ``Overloaded``; now another tenant gets its share beyond the bound, no tenant holds
    more than the bound, and everything waiting stays within twice the bound."""
    pool: Pool[Call, int] = Pool(Limits(queue=10))
    pool.spawned(1)  # starting, not idle: every call waits
    hog = [pool.enqueue(Call(0, n), 0.0, "p") for n in range(15)]
    assert hog[:10] == [None] * 10
    assert all(r is not None and r.kind == "overloaded" for r in hog[10:])
    assert hog[10] is not None and "10 calls waiting (its queue limit)" in hog[10].text
    second = [pool.enqueue(Call(1, n), 0.0, "p") for n in range(8)]
    assert second[:5] == [None] * 5  # its share: 10 // 2
    refused = second[5]
    assert refused is not None and "this tenant's" in refused.text
    third = [pool.enqueue(Call(2, n), 0.0, "p") for n in range(8)]
    assert third[:3] == [None] * 3  # 10 // 3
    assert len(pool.queue) == 18 <= 20
    # The hog gets nothing more while it is over its share; the others' calls are taken first.
    assert pool.enqueue(Call(0, 99), 0.0, "p") is not None
    order = [pool.queue.popleft().tenant for _ in range(9)]
    assert order == [0, 1, 2, 0, 1, 2, 0, 1, 2]


def test_calls_without_a_tenant_are_one_fifo_queue_with_the_old_bound() -> None:
    pool: Pool[int, int] = Pool(Limits(queue=3))
    pool.spawned(1)
    refusals = [pool.enqueue(n, 0.0, "p") for n in range(5)]
    assert refusals[:3] == [None] * 3 and all(r is not None for r in refusals[3:])
    assert [pool.queue.popleft() for _ in range(3)] == [0, 1, 2]


def test_a_queue_shorter_than_the_number_of_tenants_still_takes_each_tenants_first_call() -> None:
    """A share was the bound divided among the tenants, rounded down: with ``queue = 1`` (or
    any bound below the number of tenants waiting) it was nothing, so one tenant keeping a
    call waiting left every other one only ``Overloaded``. A share is now at least one call,
    still within twice the bound in all."""
    pool: Pool[Call, int] = Pool(Limits(queue=1))
    pool.spawned(1)
    assert pool.enqueue(Call(0, 0), 0.0, "p") is None
    assert pool.enqueue(Call(0, 1), 0.0, "p") is not None  # the hog: the bound, no more
    assert pool.enqueue(Call(1, 0), 0.0, "p") is None  # another tenant: its one call
    assert pool.enqueue(Call(1, 1), 0.0, "p") is not None
    assert pool.enqueue(Call(2, 0), 0.0, "p") is not None  # twice the bound in all
    assert [pool.queue.popleft().tenant for _ in range(2)] == [0, 1]
    pool = Pool(Limits(queue=2))
    pool.spawned(1)
    taken = [pool.enqueue(Call(t, n), 0.0, "p") is None for t in range(4) for n in range(3)]
    assert taken == [True, True, False, True, False, False, True, False, False] + [False] * 3


def test_withdrawing_a_tenants_calls_from_the_back_takes_constant_time_each() -> None:
    """``withdraw`` (a cancel, or a caller's timeout, of a queued call) scanned its tenant's
    line: a client with 12,000 calls queued (its share on a provider with a long queue) that
    cancelled them last first, or gave them shorter timeouts the later it sent them, held the
    host's loop (every provider, every client) for about 3 s. The removed calls are skipped
    now, and dropped once they are as many as the waiting ones."""
    pool: Pool[Call, int] = Pool(Limits(queue=20_000))
    pool.spawned(1)
    calls = [Call(0, n) for n in range(12_000)]
    others = [Call(1, n) for n in range(3)]
    for call in calls + others:
        assert pool.enqueue(call, 0.0, "p") is None
    started = time.perf_counter()
    for call in reversed(calls[1:]):
        assert pool.withdraw(call)
        assert not pool.withdraw(call)
    elapsed = time.perf_counter() - started
    assert len(pool.queue) == 4 and pool.queue.waiting(0) == 1 and pool.queue.tenants() == 2
    assert [(c.tenant, c.n) for c in pool.drain()] == [(0, 0), (1, 0), (1, 1), (1, 2)]
    assert elapsed < 1.0, f"{elapsed:.2f}s"
