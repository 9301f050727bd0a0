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


def admits(total: int, mine: int, holding: int, bound: int) -> bool:
    """The share rule, for a provider's queue and for what ``sandbox serve`` holds: whether
    one more of a tenant's calls is taken when ``total`` are held, ``mine`` of them its own,
    by ``holding`` tenants (itself among them if ``mine``; a newcomer is counted here).

    Anyone is taken below the bound. Beyond it, up to twice the bound in all, a tenant below
    its share of the bound (the bound divided among the tenants, and at least one call: with a
    bound smaller than the number of tenants, a share of nothing left a tenant that filled the
    queue alone in it) is taken too. No tenant holds more than the bound."""
    if total < bound:
        return True
    tenants = holding + (0 if mine else 1)
    return total < 2 * bound and mine < max(1, bound // tenants)


def tenant_attribute(call: object) -> Hashable:
    """A call's ``tenant`` attribute (None for calls without one, e.g. the pool tests' ints)."""
    return getattr(call, "tenant", None)


class _Cell(Generic[C]):
    """One place in a tenant's line: its call, until the call is removed (``live`` False, the
    place skipped when its turn comes): removing a call is O(1), not a scan of its line."""

    __slots__ = ("call", "live")

    def __init__(self, call: C) -> None:
        self.call = call
        self.live = True


class FairQueue(Generic[C]):
    """FIFO per tenant; :meth:`popleft` takes the tenants in turn (round robin).

    A call is queued at most once at a time (the pool's calls are). ``in`` and :meth:`remove`
    take constant time: a caller cancelling or timing out its ten thousand queued calls from
    the back used to scan its whole line for each (seconds of the host's loop, every other
    caller's calls waiting)."""

    def __init__(self, tenant_of: Callable[[C], Hashable] = tenant_attribute) -> None:
        self._tenant_of = tenant_of
        #: The tenants with waiting calls, in turn order: the first is served next. Each line
        #: holds at least one live cell; removed ones are skipped, and dropped when they are
        #: as many as the live ones (``_compact``).
        self._by_tenant: OrderedDict[Hashable, deque[_Cell[C]]] = OrderedDict()
        #: Each waiting call's cell, and each tenant's count of waiting calls.
        self._cells: dict[C, _Cell[C]] = {}
        self._live: dict[Hashable, int] = {}

    def tenant(self, call: C) -> Hashable:
        return self._tenant_of(call)

    def waiting(self, tenant: Hashable) -> int:
        """How many calls of this tenant wait."""
        return self._live.get(tenant, 0)

    def tenants(self) -> int:
        """How many tenants have calls waiting."""
        return len(self._live)

    def _add(self, call: C) -> tuple[Hashable, deque[_Cell[C]], _Cell[C]]:
        if call in self._cells:
            raise ValueError("the call is already queued")
        tenant = self._tenant_of(call)
        line = self._by_tenant.get(tenant)
        if line is None:
            line = self._by_tenant[tenant] = deque()
        cell = self._cells[call] = _Cell(call)
        self._live[tenant] = self._live.get(tenant, 0) + 1
        return tenant, line, cell

    def append(self, call: C) -> None:
        """Queue at the back of its tenant's line (a new tenant's turn comes after the others')."""
        _, line, cell = self._add(call)
        line.append(cell)

    def appendleft(self, call: C) -> None:
        """Put back at the head: it is the next call taken."""
        tenant, line, cell = self._add(call)
        line.appendleft(cell)
        self._by_tenant.move_to_end(tenant, last=False)

    def popleft(self) -> C:
        """The head call of the tenant whose turn it is; that tenant goes to the back."""
        if not self._by_tenant:
            raise IndexError("pop from an empty FairQueue")
        tenant, line = next(iter(self._by_tenant.items()))
        cell = line.popleft()
        while not cell.live:  # (a live one is in the line: see _by_tenant)
            cell = line.popleft()
        call = cell.call
        del self._cells[call]
        if self._gone(tenant):
            del self._by_tenant[tenant]
        else:
            self._by_tenant.move_to_end(tenant)
        return call

    def _gone(self, tenant: Hashable) -> bool:
        """One call of this tenant left: whether it has none waiting now."""
        left = self._live[tenant] - 1
        if left:
            self._live[tenant] = left
            return False
        del self._live[tenant]
        return True

    def remove(self, call: C) -> None:
        cell = self._cells.pop(call, None)
        if cell is None:
            raise ValueError("the call is not queued")
        cell.live = False
        tenant = self._tenant_of(call)
        if self._gone(tenant):
            del self._by_tenant[tenant]
            return
        line = self._by_tenant[tenant]
        if len(line) > 2 * self._live[tenant] + 16:
            self._compact(line)

    @staticmethod
    def _compact(line: deque[_Cell[C]]) -> None:
        """Drop the removed cells of a line (as many as its live ones: O(1) per removal)."""
        live = [cell for cell in line if cell.live]
        line.clear()
        line.extend(live)

    def clear(self) -> None:
        self._by_tenant.clear()
        self._cells.clear()
        self._live.clear()

    def __contains__(self, call: object) -> bool:
        return call in self._cells

    def __len__(self) -> int:
        return len(self._cells)

    def __bool__(self) -> bool:
        return bool(self._cells)

    def __iter__(self) -> Iterator[C]:
        """Every waiting call, tenant by tenant in turn order."""
        for line in list(self._by_tenant.values()):
            yield from [cell.call for cell in line if cell.live]
