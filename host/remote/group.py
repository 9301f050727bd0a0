"""``HostGroup``: one calling API over many hosts, local ``Host``s and ``RemoteHost``s mixed.

Each call goes to the least-loaded host (fewest of the group's calls in flight there) whose
catalog has the action and that is available. A call that ends ``HostUnavailable`` with
``delivered=False`` certainly never ran, so it is sent to the next host; one that was
delivered (it may have run) is re-sent only if its action is ``safe_rerun``. Every call ends
in exactly one outcome, that of its last attempt (``attempts`` counts the hosts tried).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from dataclasses import replace
from typing import Any, Protocol

from host.calling import CallingAPI
from host.catalog import ActionDescriptor
from host.errors import HostUnavailable, Outcome, ProviderUnavailable
from host.futures import CallFuture
from host.host import ProviderInfo
from host.logs import LOGGER

log = logging.getLogger(f"{LOGGER}.{__name__}")


class _AnyHost(Protocol):
    catalog: Any

    def submit(
        self, action: str, input: Any = None, *, timeout: float | None = None
    ) -> CallFuture: ...

    def providers(self) -> list[ProviderInfo]: ...

    def stats(self) -> dict[str, Any]: ...

    def close(self, timeout: float = ...) -> None: ...


class _GroupCatalog:
    """``find`` and ``find_all`` over every member's catalog (first host wins a name)."""

    def __init__(self, hosts: Sequence[_AnyHost]) -> None:
        self._hosts = hosts

    def find(self, name: str, namespace: str | None = None) -> ActionDescriptor | None:
        for host in self._hosts:
            found: ActionDescriptor | None = host.catalog.find(name, namespace)
            if found is not None:
                return found
        return None

    def find_all(self, namespace: str | None = None, **kwargs: Any) -> list[ActionDescriptor]:
        seen: dict[str, ActionDescriptor] = {}
        for host in self._hosts:
            for d in host.catalog.find_all(namespace, **{k: v for k, v in kwargs.items()
                                                         if k != "limit"}):  # fmt: skip
                seen.setdefault(d.full_name, d)
        items = sorted(seen.values(), key=lambda d: d.full_name)
        limit = kwargs.get("limit")
        return items if limit is None else items[:limit]


class HostGroup(CallingAPI):
    """Routes calls across ``hosts``; closing the group closes them."""

    def __init__(self, hosts: Sequence[_AnyHost]) -> None:
        if not hosts:
            raise ValueError("a HostGroup needs at least one host")
        self.hosts = list(hosts)
        self.catalog = _GroupCatalog(self.hosts)
        self._load = [0] * len(self.hosts)
        self._lock = threading.Lock()

    def _candidates(self, action: str, tried: set[int]) -> list[int]:
        usable = [
            i for i, host in enumerate(self.hosts)
            if i not in tried and host.catalog.find(action) is not None
            and getattr(host, "available", True)
        ]  # fmt: skip
        with self._lock:
            return sorted(usable, key=lambda i: self._load[i])

    def submit(
        self, action: str, input: Any = None, *, timeout: float | None = None
    ) -> CallFuture:
        """Start a call on the least-loaded host that serves ``action``; never blocks."""
        outer = CallFuture()
        outer.set_running_or_notify_cancel()
        descriptor = self.catalog.find(action)
        safe = descriptor is not None and descriptor.safe_rerun
        state: dict[str, Any] = {"inner": None, "cancelled": False}
        tried: set[int] = set()

        def attempt(last: Outcome | None) -> None:
            candidates = self._candidates(action, tried)
            if not candidates or state["cancelled"]:
                outer.settle(last if last is not None else Outcome.failure(
                    ProviderUnavailable(f"no available host in the group offers {action!r}")
                ))  # fmt: skip
                return
            index = candidates[0]
            tried.add(index)
            with self._lock:
                self._load[index] += 1
            try:
                inner = self.hosts[index].submit(action, input, timeout=timeout)
            except Exception as exc:  # (closed meanwhile): it did not take the call, which
                with self._lock:  # never ran there, so the next host may have it
                    self._load[index] -= 1
                host = self.hosts[index]
                endpoint = getattr(host, "endpoint", "local")
                attempt(Outcome.failure(HostUnavailable(
                    f"host {index} ({endpoint}) did not take the call: "
                    f"{type(exc).__name__}: {exc}", endpoint=endpoint, delivered=False,
                ), attempts=len(tried)))  # fmt: skip
                return
            state["inner"] = inner
            inner.add_done_callback(lambda f: finished(index, f))

        def finished(index: int, inner: Any) -> None:
            with self._lock:
                self._load[index] -= 1
            outcome = inner.outcome
            if outcome is None:
                outcome = Outcome.failure(ProviderUnavailable("the call was cancelled"))
            error = outcome.error
            if isinstance(error, HostUnavailable) and (
                not error.details.get("delivered", True) or safe
            ):
                attempt(replace(outcome, attempts=len(tried)))
                return
            outer.settle(replace(outcome, attempts=outcome.attempts + len(tried) - 1))

        def cancel(_: CallFuture) -> None:
            state["cancelled"] = True
            if state["inner"] is not None:
                state["inner"].cancel()

        outer._canceller = cancel
        attempt(None)
        return outer

    def providers(self) -> list[ProviderInfo]:
        """Every member's providers (a provider served by three hosts is listed three times).

        A member that cannot answer (closed, its server unreachable) is left out, with a
        warning in the log, as its calls go elsewhere: one lost member must not hide what the
        others serve. One known to be unavailable is not asked (a remote one would wait for
        its ``connect_timeout``) unless every member is. Only if no member answers is the
        first one's error raised."""
        found: list[ProviderInfo] = []
        errors: list[Exception] = []
        members = list(enumerate(self.hosts))
        available = [(i, h) for i, h in members if getattr(h, "available", True)]
        for i, host in available or members:
            try:
                found.extend(host.providers())
            except Exception as exc:
                errors.append(exc)
                log.warning("group member %d (%s) did not list its providers: %s: %s",
                            i, getattr(host, "endpoint", "local"), type(exc).__name__, exc)
        if errors and len(errors) == len(available or members):
            raise errors[0]
        return found

    def stats(self) -> dict[str, Any]:
        """Per member (by index and, for remote ones, endpoint): its ``stats()``."""
        result: dict[str, Any] = {}
        for i, host in enumerate(self.hosts):
            label = f"{i}:{getattr(host, 'endpoint', 'local')}"
            try:
                result[label] = host.stats()
            except Exception as exc:  # one unreachable member must not hide the others
                result[label] = {"error": f"{type(exc).__name__}: {exc}"}
        return result

    def close(self, timeout: float = 5.0) -> None:
        for host in self.hosts:
            host.close(timeout)

    def __enter__(self) -> HostGroup:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
