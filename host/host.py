"""``Host``: the trusted object an engine talks to. It owns providers, workers and the catalog.

The host never imports a provider's module. It starts a worker, learns the catalog from the
worker's HELLO, validates every input before dispatch and every output after receipt, and
enforces the provider's policy. All I/O runs on one reactor thread (see ``host.reactor``); the
methods here are thread-safe and may be called from any thread.
"""

from __future__ import annotations

import atexit
import gc
import itertools
import os
import threading
import time
import weakref
from collections.abc import Hashable, Iterable
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any, TypeVar

from host import installed
from host.calling import CallingAPI, checked_timeout, wait_for_outcome
from host.catalog import MAX_NAME_LENGTH, ActionDescriptor, Catalog, is_name
from host.errors import (
    InputInvalid,
    Outcome,
    ProviderUnavailable,
    SandboxError,
    Timeout,
)
from host.futures import CallFuture
from host.inputs import encode_input
from host.reactor import (
    PENDING_PREFIX,
    QUICK_SECONDS,
    QUICK_STEPS,
    STARTUP_TIMEOUT_S,
    PendingCall,
    ProviderState,
    Reactor,
    WorkerHandle,
)
from host.usage import annotate_layers
from host.validation import DeadlineExceeded
from policies import Policy, PolicyError, load_config
from sandbox import protocol

#: How long ``close()`` (and leaving a ``with`` block) lets running calls finish.
DEFAULT_CLOSE_TIMEOUT_S = 5.0
#: How much longer than its ``timeout`` a second ``close`` waits for the first: the first
#: waits ``timeout`` + 30 s for the loop's close and 30 s for its thread.
CLOSE_WAIT_SLACK_S = 60.0
#: How a host's workers may start (see ``Host(spawn=...)``).
SPAWN_MODES = ("zygote", "fresh")
#: How long ``add_provider`` waits for the first worker's HELLO, on top of its own start-up limit.
_ADD_PROVIDER_SLACK_S = 5.0


def _absolute_file_ref(ref: str) -> str:
    """Make a ``path/to/file.py[:attr]`` reference absolute: the worker runs in its own workdir."""
    from providers.loader import split_reference

    path, attribute = split_reference(ref)
    if path.endswith(".py") and not os.path.isabs(path):
        return os.path.abspath(path) + ("" if attribute is None else f":{attribute}")
    return ref


@dataclass(frozen=True)
class ProviderInfo:
    """What the host knows of one loaded provider."""

    name: str
    ref: str
    version: str
    namespace: str
    policy: Policy
    #: The confinement layers its first worker reported: name, applied, detail.
    layers: list[dict[str, Any]]
    workers: int

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON data: how a remote host (``sandbox serve``, a Ray actor) sends it."""
        return {
            "name": self.name, "ref": self.ref, "version": self.version,
            "namespace": self.namespace, "policy": self.policy.to_dict(),
            "layers": self.layers, "workers": self.workers,
        }  # fmt: skip

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ProviderInfo:
        """Back from :meth:`to_dict` on the caller's side; a policy it cannot read is shown as
        the default one (the caller only displays it; the remote host enforces its own)."""
        try:
            policy = Policy.from_mapping(data.get("policy") or {})
        except (PolicyError, TypeError):
            policy = Policy()
        return cls(
            name=str(data["name"]), ref=str(data["ref"]), version=str(data["version"]),
            namespace=str(data["namespace"]), policy=policy, layers=list(data["layers"]),
            workers=int(data["workers"]),
        )  # fmt: skip


_frozen = False


T = TypeVar("T")


def _latch(future: Future[Any]) -> threading.Lock | None:
    """On the main thread, a held lock that ``future``'s completion releases; give it to
    :func:`_result` with the future. Made before the loop is handed the future, so taking the
    future's lock here never holds up the loop.

    The main thread waits on it rather than in ``future.result()``: a signal handler may run
    at any point of the wait and call the host, and inside ``result()`` it would hold the
    future's lock, which the loop needs to complete the future, while the handler waits for
    the loop (``run`` waits on ``CallFuture.latch`` for the same reason)."""
    if threading.get_ident() != threading.main_thread().ident:
        return None
    latch = threading.Lock()
    latch.acquire()
    future.add_done_callback(lambda _: latch.release())
    return latch


def _result(future: Future[T], latch: threading.Lock | None, timeout: float) -> T:
    """``future.result(timeout)``, waiting on ``latch`` first where :func:`_latch` made one."""
    if latch is not None and not latch.acquire(timeout=timeout):
        raise TimeoutError(f"no answer from the host's loop within {timeout:g}s")
    return future.result(timeout=0 if latch is not None else timeout)


def _freeze_imports() -> None:
    """Once per process: move what exists now (mostly modules: jsonschema and its format
    checkers alone are 150,000 objects) to the collector's permanent generation. A full
    collection, which any thread's allocations can trigger and which holds the GIL, then scans
    only what came later: it took 80-130 ms here, a stall of the loop and of every provider's
    calls, before it was done; a few ms after."""
    global _frozen
    if not _frozen:
        _frozen = True
        gc.freeze()


class Host(CallingAPI):
    """Runs untrusted providers in confined workers and calls their actions.

    Use it as a context manager (or call :meth:`close`): closing stops every worker and removes
    the ipc directory and work directories. A host that is garbage-collected or still open at
    interpreter exit is closed then.
    """

    def __init__(self, *, protect_memory: bool = False, spawn: str | None = None) -> None:
        """``protect_memory=True`` marks this whole process non-dumpable (``PR_SET_DUMPABLE 0``):
        no process of the same uid can then ptrace it or read ``/proc/<pid>/mem``, and it writes
        no core dump. Workers already run under other uids and seccomp forbids ptrace; this is
        for hosts whose workers share the host's uid (no root, or ``uid_drop`` skipped). It is
        an opt-in because it changes the embedding process (debuggers cannot attach).

        ``spawn`` says how workers start: ``"zygote"`` (the default) forks each launcher from a
        pre-started zygote process (a few ms instead of ~100), ``"fresh"`` starts a new
        interpreter for each (the reference path). Unset, the ``SANDBOX_SPAWN`` environment
        variable decides, else ``"zygote"``. A zygote that cannot start or dies falls back to
        fresh interpreters (logged); confinement is the same either way.
        """
        spawn = spawn if spawn is not None else os.environ.get("SANDBOX_SPAWN") or "zygote"
        if spawn not in SPAWN_MODES:
            raise ValueError(f"spawn must be one of {', '.join(SPAWN_MODES)}, got {spawn!r}")
        #: How this host's workers start ("zygote" or "fresh").
        self.spawn = spawn
        if protect_memory:
            from sandbox.libc import PR_SET_DUMPABLE, prctl

            prctl(PR_SET_DUMPABLE, 0)
        _freeze_imports()
        self.catalog = Catalog()
        self._reactor = Reactor(self.catalog, search_path=[os.getcwd()], spawn=spawn)
        self._thread = threading.Thread(target=self._reactor.run, name="sandbox-host", daemon=True)
        self._thread.start()
        self._ids = itertools.count(1)
        self._closed = False
        self._close_calls = itertools.count()
        self._close_done = threading.Event()
        self._closing_thread: int | None = None
        self._close_timeout = 0.0  # (the first close's: a second one waits as long)
        self._finalizer = weakref.finalize(self, Host._close_reactor, self._reactor, self._thread)
        atexit.register(self._finalizer)

    # ------------------------------------------------------------------ providers

    def add_provider(
        self, ref: str, *, policy: Policy | None = None, name: str | None = None
    ) -> str:
        """Start a worker for provider ``ref`` and add its actions to the catalog.

        ``ref`` is ``package.module``, ``package.module:attribute``, ``path/to/file.py`` or
        ``entrypoint:NAME`` (an installed provider, see :mod:`host.installed`).
        Returns the provider's name (``name`` if given, else the name the provider declares).
        That name is also its namespace: every action it announces must be ``NAME.action``, or
        it fails to load. A name another provider has (also in another case) is refused, with
        ``ValueError`` for a given ``name``. Raises :class:`ProviderUnavailable` if it cannot
        start (import error, missing layer, an action outside its namespace, a taken name).
        """
        self._check_open()
        policy = policy if policy is not None else Policy()
        if not isinstance(ref, str) or not ref.strip():
            raise ValueError("a provider reference must be a non-empty string")
        try:
            ref.encode("utf-8")  # the worker is sent it as JSON
        except UnicodeEncodeError:
            raise ValueError(f"a provider reference must be UTF-8 text, got {ref!r}") from None
        if name is not None and not is_name(name):
            raise ValueError(
                "a provider name must be letters, digits and underscores (ASCII, not starting "
                f"with a digit, at most {MAX_NAME_LENGTH} characters), got {name!r}"
            )
        ref = _absolute_file_ref(installed.resolve(ref.strip()))
        key = name if name is not None else f"{PENDING_PREFIX}{next(self._ids)}>"
        ready: Future[str] = Future()
        latch = _latch(ready)
        state = ProviderState(
            name=key, ref=ref, policy=policy, ready=ready, explicit_name=name is not None
        )
        self._reactor.submit(lambda: self._reactor.add_provider(state))
        return _result(ready, latch, STARTUP_TIMEOUT_S + _ADD_PROVIDER_SLACK_S)

    def add_installed(self, names: Iterable[str] | None = None) -> list[str]:
        """Add the providers installed as packages (entry-point group
        ``actionsandbox.providers``), all of them or those ``names``; returns their names."""
        self._check_open()
        wanted = installed.installed_providers() if names is None else list(names)
        return [self.add_provider(f"{installed.PREFIX}{entry}") for entry in wanted]

    def remove_provider(self, name: str) -> None:
        """Stop a provider's workers and remove its actions from the catalog."""
        self._check_open()
        self._reactor.submit(lambda: self._reactor.remove_provider(name))

    def load_config(self, path: str | os.PathLike[str]) -> list[str]:
        """Add every provider a ``sandbox.toml`` (or JSON) file names; returns their names."""
        config = load_config(path)
        return [
            self.add_provider(entry.source, policy=entry.policy, name=entry.name)
            for entry in config.providers
        ]

    def providers(self) -> list[ProviderInfo]:
        """Every loaded provider, with the confinement layers its worker reported."""
        result = []
        for state in list(self._reactor.providers.values()):
            if state.signature is None or state.removed:
                continue
            result.append(
                ProviderInfo(
                    name=state.name,
                    ref=state.ref,
                    version=str(state.info.get("version", "")),
                    namespace=state.name,  # the namespace it is bound to (see catalog)
                    policy=state.policy,
                    layers=annotate_layers(state.layers),
                    workers=len(state.workers),
                )
            )
        return result

    # ------------------------------------------------------------------ calls

    def submit(
        self,
        action: str,
        input: Any = None,
        *,
        timeout: float | None = None,
        tenant: Hashable = None,
    ) -> CallFuture:
        """Start a call and return its future at once (thread-safe, never blocks).

        ``result()`` gives the value or raises the outcome's :class:`SandboxError`;
        ``future.outcome`` holds the whole :class:`Outcome` once done. ``cancel()`` removes a
        queued call, or kills the worker of a running one (which then ends ``Cancelled``).

        ``tenant`` (any hashable: a user, a client) makes a provider's queue fair: waiting
        calls are taken from the tenants in turn, and one tenant may not fill the queue (see
        ``host.fairqueue``). Calls without one are a single tenant, served in order.
        """
        return self._submit_with(
            action, {} if input is None else input, timeout=timeout, tenant=tenant
        )

    def _submit_with(
        self,
        action: str,
        input: Any,
        *,
        timeout: float | None = None,
        future: CallFuture | None = None,
        payload: bytes | None = None,
        tenant: Hashable = None,
    ) -> CallFuture:
        future = future if future is not None else CallFuture()
        try:
            self._prepare(action, input, timeout, future, payload, tenant)
        except SandboxError as error:
            future.set_running_or_notify_cancel()
            future.settle(Outcome.failure(error))
        return future

    def run(self, action: str, input: Any = None, *, timeout: float | None = None) -> Outcome:
        """Call ``action`` and return its :class:`Outcome` (never raises a call error).

        An interrupted wait (``KeyboardInterrupt``, ``SystemExit`` or any other
        ``BaseException`` raised in the waiting thread) cancels the call - a running call's
        worker is killed - and is re-raised: Ctrl-C must stop the call, not be swallowed.

        When a worker is idle, this thread (unless it is the main thread, where signal
        handlers run) hands it the call and reads its reply itself (``Reactor.wait_here``):
        the same outcome as through :meth:`submit`, without the thread hand-offs to the host's
        loop and back.

        On the main thread it waits on the future's latch (``CallFuture.latch``), not in the
        future: a signal handler may run at any point of the wait and call the host.
        """
        future = CallFuture()
        try:
            call, lent = self._prepare(
                action, {} if input is None else input, timeout, future, borrow=True
            )
            if lent is not None:
                self._reactor.wait_here(call, lent)
        except SandboxError as error:
            future.set_running_or_notify_cancel()
            future.settle(Outcome.failure(error))
        except BaseException:  # (interrupted: the call, if it was accepted, is cancelled)
            future.cancel()
            raise
        return wait_for_outcome(future)

    def stats(self) -> dict[str, Any]:
        """Per provider: calls by outcome, latency p50/p99 (s), workers live/idle/busy/starting,
        restarts, failed starts, retries, recycled and hung workers, queue depth."""
        self._check_open()
        done: Future[dict[str, Any]] = Future()
        latch = _latch(done)
        self._reactor.submit(lambda: done.set_result(self._reactor.stats()))
        return _result(done, latch, 30)

    def _prepare(
        self,
        action: str,
        input: Any,
        timeout: float | None,
        future: CallFuture,
        payload: bytes | None = None,
        tenant: Hashable = None,
        borrow: bool = False,
    ) -> tuple[PendingCall, tuple[int, WorkerHandle] | None]:
        """Check and encode a call, and hand it to the loop. ``borrow``: the caller will wait
        in ``Reactor.wait_here`` with what is returned with the call, if anything."""
        self._check_open()
        descriptor, policy = self._find(action)
        try:
            return self._hand_over(
                descriptor, policy, input, timeout, future, payload, tenant, borrow
            )
        except SandboxError as error:  # refused here: the provider's stats count it too
            self._reactor.count_refusal(descriptor.provider, error.type)
            raise

    def _hand_over(
        self,
        descriptor: ActionDescriptor,
        policy: Policy,
        input: Any,
        timeout: float | None,
        future: CallFuture,
        payload: bytes | None,
        tenant: Hashable,
        borrow: bool,
    ) -> tuple[PendingCall, tuple[int, WorkerHandle] | None]:
        # In the caller's thread: a private copy of plain JSON types, encoded once; the copy is
        # what is validated and its encoding is exactly what the worker decodes (host.inputs).
        plain, encoded = encode_input(
            input, limit=policy.input, payload_size=0 if payload is None else len(payload)
        )
        timeout = checked_timeout(timeout)
        now = time.monotonic()
        # Bounded (host.bounded) and within the caller's timeout, which it counts against.
        try:
            problem = descriptor.input_validator.problem(
                plain, None if timeout is None else now + timeout
            )
        except DeadlineExceeded:
            raise Timeout(
                f"the call's timeout passed after {time.monotonic() - now:.3f}s while its "
                "input was being validated"
            ) from None
        if problem is not None:
            raise InputInvalid(f"invalid input at {problem}", path=problem.path)
        call_id = f"c{next(self._ids)}"
        frames = protocol.encode_call(call_id, descriptor.name, encoded, payload)
        call = PendingCall(
            call_id=call_id,
            frames=frames,
            provider=descriptor.provider,
            descriptor=descriptor,
            future=future,
            submitted=now,
            caller_deadline=None if timeout is None else now + timeout,
            tenant=tenant,
        )
        reactor = self._reactor
        call.future._canceller = lambda _: reactor.submit(lambda: reactor.cancel(call))
        return call, reactor.accept(call, borrow)

    def input_check_is_costly(self, action: str, value: Any) -> bool:
        """True if checking ``value`` against ``action``'s input schema takes more than a
        trial's budget (``host.reactor.QUICK_STEPS`` keyword evaluations, about
        ``QUICK_SECONDS``). ``submit`` validates in the caller's thread, with the whole budget
        (a schema may cost seconds for a tiny value: ``tests/providers/stall.py``): a thread
        that submits for many clients (``sandbox serve``, the Ray actor) asks this first, and
        submits a costly one from a thread of its own, so that one client's call does not
        hold up the others'. False also when the action is unknown (submit refuses it)."""
        descriptor = self.catalog.find(action)
        if descriptor is None:
            return False
        return descriptor.input_validator.trial(value, QUICK_STEPS, QUICK_SECONDS) is False

    def _find(self, action: str) -> tuple[ActionDescriptor, Policy]:
        """The action's descriptor and the policy of the provider bound to its namespace. (The
        loop checks again, when it queues the call, that the catalog still holds this very
        descriptor: a provider removed and another loaded under its name in between never gets
        a call validated against the old one's schema.)"""
        descriptor = self.catalog.find(action)
        if descriptor is not None:
            state = self._reactor.providers.get(descriptor.provider)
            if state is not None and not state.removed and state.name == descriptor.namespace:
                return descriptor, state.policy
        namespace = action.partition(".")[0]
        if namespace and any(p.name == namespace for p in list(self._reactor.providers.values())):
            raise ProviderUnavailable(f"provider {namespace!r} has no action {action!r}")
        known = ", ".join(d.full_name for d in self.catalog.find_all(limit=20))
        raise ProviderUnavailable(
            f"no loaded provider offers {action!r}" + (f" (known: {known})" if known else "")
        )

    # ------------------------------------------------------------------ lifetime

    def _check_open(self) -> None:
        if self._closed:
            raise RuntimeError("the host is closed")

    def close(self, timeout: float = DEFAULT_CLOSE_TIMEOUT_S) -> None:
        """Stop the host: queued calls are cancelled, running calls may finish for up to
        ``timeout`` seconds (then they are cancelled too), every worker and its tree is stopped,
        and the ipc directory, work directories and cgroups are removed."""
        if next(self._close_calls):  # (one C call: atomic, unlike a test and a set)
            self._wait_for_close(timeout)
            return
        self._closed = True
        self._closing_thread = threading.get_ident()
        self._close_timeout = timeout
        if self._reactor.in_callback():
            # A call's done-callback: waiting here would stall the very loop that closes (35
            # s, then TimeoutError). The close goes on once the callback returns; a later
            # ``close`` waits for it, and so does the interpreter's exit.
            if self._finalizer.detach() is not None:
                self._close_later(timeout)
            else:
                self._close_done.set()
            return
        try:
            if self._finalizer.detach() is not None:
                Host._close_reactor(self._reactor, self._thread, timeout)
        finally:
            self._close_done.set()

    def _close_later(self, timeout: float) -> None:
        done: Future[None] = Future()
        done.add_done_callback(lambda _: self._close_done.set())
        try:
            self._reactor.submit(lambda: self._reactor.close(done, timeout))
        except RuntimeError:  # (the loop has stopped already)
            self._close_done.set()
            return
        atexit.register(self._close_done.wait, timeout + CLOSE_WAIT_SLACK_S)

    def _wait_for_close(self, timeout: float) -> None:
        """A second ``close`` returns once the first has ended (an engine's shutdown hook
        must not go on while workers still run), except where waiting cannot end: on the
        thread of the first close (a signal handler that interrupted it) or the loop's own
        (a done-callback). The first close is bounded; so is this wait, by the longer of the
        two timeouts."""
        me = threading.get_ident()
        if me in (self._closing_thread, self._reactor.loop_ident) or self._reactor.in_callback():
            return
        if self._closing_thread is None and me == threading.main_thread().ident:
            return  # (a handler that interrupted the first close before it said whose it is)
        self._close_done.wait(max(timeout, self._close_timeout) + CLOSE_WAIT_SLACK_S)

    @staticmethod
    def _close_reactor(reactor: Reactor, thread: threading.Thread, timeout: float = 0.0) -> None:
        """Close the loop and wait for it, however long the close takes (it is bounded).

        A ``KeyboardInterrupt`` or ``SystemExit`` raised in this thread meanwhile (a stop
        signal's handler runs here, on the main thread) waits for the close to end and is
        re-raised after it: raised through, it ended the process while the loop removed the
        host's directories and cgroups, and left them (a SIGTERM a few ms after a call of
        ``sandbox call`` returned did, in 17 runs of 30)."""
        done: Future[None] = Future()
        try:
            reactor.submit(lambda: reactor.close(done, timeout))
        except RuntimeError:
            return
        deadline = time.monotonic() + timeout + 30
        interrupted: BaseException | None = None
        while True:
            try:
                done.result(timeout=max(0.0, deadline - time.monotonic()))
                thread.join(timeout=30)
                break
            except (KeyboardInterrupt, SystemExit) as exc:
                interrupted = interrupted or exc
        if interrupted is not None:
            raise interrupted

    def __enter__(self) -> Host:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
