"""A provider's queue of waiting calls, fair between the tenants that submit them.

Without tenants (every local call: tenant ``None``) it is a plain FIFO queue. With them (the
clients of ``sandbox serve``, or an embedder's users: ``Host.submit(..., tenant=...)``), each
tenant has a FIFO of its own and the workers take calls from the tenants in turn: a client that
submits ten thousand calls makes another client's one call wait for at most one call of each
other waiting tenant, not for all ten thousand. The pool (``host.pool``) also bounds the queue
per tenant, so one tenant cannot fill it and leave the others only ``Overloaded``.

The queue behaves as the ``deque`` it replaces for everything the pool does with it:
``append``, ``appendleft`` (a call put back at the head: its tenant's turn comes next),
``popleft``, ``remove``, ``in``, ``len``, iteration and ``clear``.
"""

from __future__ import annotations

from collections import OrderedDict, deque
from collections.abc import Callable, Hashable, Iterator
from typing import Generic, TypeVar

C = TypeVar("C")


def admits(total: int, mine: int, tenants: int, bound: int) -> bool:
    """The share rule, for a provider's queue and for what ``sandbox serve`` holds: whether
    one more of a tenant's calls is taken when ``total`` are held, ``mine`` of them its own,
    among ``tenants`` (itself included).

    Anyone is taken below the bound. Beyond it, up to twice the bound in all, a tenant below
    its share of the bound (the bound divided among the tenants, and at least one call: with a
    bound smaller than the number of tenants, a share of nothing left a tenant that filled the
    queue alone in it) is taken too. No tenant holds more than the bound."""
    if total < bound:
        return True
    return total < 2 * bound and mine < max(1, bound // tenants)


def tenant_attribute(call: object) -> Hashable:
    """A call's ``tenant`` attribute (None for calls without one, e.g. the pool tests' ints)."""
    return getattr(call, "tenant", None)


class FairQueue(Generic[C]):
    """FIFO per tenant; :meth:`popleft` takes the tenants in turn (round robin)."""

    def __init__(self, tenant_of: Callable[[C], Hashable] = tenant_attribute) -> None:
        self._tenant_of = tenant_of
        #: The tenants with waiting calls, in turn order: the first is served next.
        self._by_tenant: OrderedDict[Hashable, deque[C]] = OrderedDict()
        self._length = 0

    def tenant(self, call: C) -> Hashable:
        return self._tenant_of(call)

    def waiting(self, tenant: Hashable) -> int:
        """How many calls of this tenant wait."""
        calls = self._by_tenant.get(tenant)
        return 0 if calls is None else len(calls)

    def tenants(self) -> int:
        """How many tenants have calls waiting."""
        return len(self._by_tenant)

    def append(self, call: C) -> None:
        """Queue at the back of its tenant's line (a new tenant's turn comes after the others')."""
        tenant = self._tenant_of(call)
        calls = self._by_tenant.get(tenant)
        if calls is None:
            calls = self._by_tenant[tenant] = deque()
        calls.append(call)
        self._length += 1

    def appendleft(self, call: C) -> None:
        """Put back at the head: it is the next call taken."""
        tenant = self._tenant_of(call)
        calls = self._by_tenant.get(tenant)
        if calls is None:
            calls = self._by_tenant[tenant] = deque()
        calls.appendleft(call)
        self._by_tenant.move_to_end(tenant, last=False)
        self._length += 1

    def popleft(self) -> C:
        """The head call of the tenant whose turn it is; that tenant goes to the back."""
        if not self._by_tenant:
            raise IndexError("pop from an empty FairQueue")
        tenant, calls = next(iter(self._by_tenant.items()))
        call = calls.popleft()
        if calls:
            self._by_tenant.move_to_end(tenant)
        else:
            del self._by_tenant[tenant]
        self._length -= 1
        return call

    def remove(self, call: C) -> None:
        tenant = self._tenant_of(call)
        calls = self._by_tenant.get(tenant)
        if calls is None:
            raise ValueError("the call is not queued")
        calls.remove(call)
        if not calls:
            del self._by_tenant[tenant]
        self._length -= 1

    def clear(self) -> None:
        self._by_tenant.clear()
        self._length = 0

    def __contains__(self, call: object) -> bool:
        calls = self._by_tenant.get(self._tenant_of(call))  # type: ignore[arg-type]
        return calls is not None and call in calls

    def __len__(self) -> int:
        return self._length

    def __bool__(self) -> bool:
        return self._length > 0

    def __iter__(self) -> Iterator[C]:
        """Every waiting call, tenant by tenant in turn order."""
        for calls in list(self._by_tenant.values()):
            yield from list(calls)
