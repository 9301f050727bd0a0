"""Ray as the placement engine: one sandbox host per Ray node, as a restartable Ray actor.

``deploy`` places one :class:`SandboxActor` on every node that holds a custom resource
(``"sandbox"`` by default); each owns a :class:`host.Host` loaded from a config file on its
node, and Ray restarts it when its process dies. :class:`RayHost` gives one such actor
``Host``'s calling API, so ``HostGroup([RayHost(a) for a in actors])`` spreads calls over the
nodes and fails over as it does for ``RemoteHost`` members.

Ray places and restarts; it confines nothing (its resources are logical and its docs say to
run only trusted code in a cluster). The confinement is the ``Host``'s, on every node: the
actor runs our host, which runs each provider in its confined workers, as anywhere else.

What crosses Ray is plain data only: a call's input as the JSON text ``encode_input`` made
(decoded on the node with the strict :func:`sandbox.protocol.loads`), and its outcome as
``Outcome.to_dict()`` (decoded here with :func:`host.remote.wire.decode_outcome`). Nothing a
provider produced is ever unpickled on the caller's side.

Needs the ``ray`` extra: ``pip install 'actionsandbox[ray]'``.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import threading
import time
from collections.abc import Iterable
from typing import Any

import ray
from ray.exceptions import (
    ActorDiedError,
    ActorUnschedulableError,
    GetTimeoutError,
    RayError,
    TaskCancelledError,
)
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

from host.calling import CallingAPI, checked_timeout
from host.catalog import Catalog, CatalogInvalid
from host.errors import (
    Cancelled,
    HostUnavailable,
    Outcome,
    ProtocolViolation,
    ProviderUnavailable,
    SandboxError,
)
from host.futures import CallFuture
from host.host import Host, ProviderInfo
from host.inputs import encode_input
from host.remote import wire
from sandbox import protocol

DEFAULT_RESOURCE = "sandbox"
#: While an actor is unreachable its RayHost probes it this often (it is available again once
#: a probe answers: Ray has restarted it and its host has loaded its providers).
PROBE_INTERVAL_S = 0.5
#: A call with a timeout that has no answer this long after its timeout ends
#: ``HostUnavailable(delivered=True)``: the actor hangs (a stopped process, or a node Ray has not
#: noticed is unreachable), and Ray itself would wait for ever.
ANSWER_GRACE_S = 10.0
#: While calls are in flight their RayHost pings the actor this often; an actor that leaves a
#: ping unanswered ``HEARTBEAT_TIMEOUT_S`` hangs, and its calls end (they may have run).
HEARTBEAT_S = 1.0
HEARTBEAT_TIMEOUT_S = 10.0
DEFAULT_CONNECT_TIMEOUT_S = 60.0


#: An input longer than this (its JSON text) is decoded and checked off the actor's event loop.
INLINE_INPUT_CHARS = 16 * 1024


class SandboxActor:
    """The body of the Ray actor: a ``Host`` loaded from ``config`` (a path on the node).

    Every method returns plain JSON-shaped data. It is an async actor: calls run concurrently
    (each awaits its ``Host`` future), and a cancelled Ray task cancels its call.
    """

    def __init__(self, config: str, spawn: str | None = None) -> None:
        self.host = Host(spawn=spawn)
        try:
            self.host.load_config(config)
        except BaseException:
            self.host.close()
            raise

    async def call(self, action: str, encoded: str, timeout: float | None = None) -> dict[str, Any]:
        """Run one call; its outcome as ``Outcome.to_dict()``.

        Every call of the actor runs on its one event loop: an input that is large or costly
        to check against its schema (``Host.input_check_is_costly``) is decoded and submitted
        from a thread, or it would hold up every other call of the node (and the heartbeat,
        whose silence ends them all) for as long as its check takes."""
        future = None
        if len(encoded) <= INLINE_INPUT_CHARS:
            future = self._submit(action, encoded, timeout, True)
        if future is None:
            future = await asyncio.to_thread(self._submit, action, encoded, timeout, False)
        assert future is not None
        try:
            await asyncio.wrap_future(future)
        except asyncio.CancelledError:
            future.cancel()
            raise
        except Exception:  # the call's error: the outcome says it
            pass
        outcome = future.outcome or Outcome.failure(Cancelled("the call was cancelled"))
        data = outcome.to_dict()
        try:
            protocol.dumps(data)
        except (TypeError, ValueError):  # a detail that is not JSON: say so rather than drop it
            return Outcome.failure(ProtocolViolation("the outcome could not be encoded")).to_dict()
        return data

    def _submit(
        self, action: str, encoded: str, timeout: float | None, inline: bool
    ) -> CallFuture | None:
        """Decode and submit one call; None if ``inline`` and its input is costly to check."""
        try:
            value = protocol.loads(encoded.encode())
        except protocol.ProtocolError as exc:
            future = CallFuture()
            future.set_running_or_notify_cancel()
            future.settle(Outcome.failure(ProtocolViolation(f"call input: {exc}")))
            return future
        if inline and self.host.input_check_is_costly(action, value):
            return None
        return self.host.submit(action, value, timeout=timeout)

    def hello(self) -> list[dict[str, Any]]:
        return [d.to_dict() for d in self.host.catalog.find_all()]

    def providers(self) -> list[dict[str, Any]]:
        return [p.to_dict() for p in self.host.providers()]

    def stats(self) -> dict[str, Any]:
        return self.host.stats()

    def ping(self) -> dict[str, Any]:
        """The actor's pid and node (its host is up: ``__init__`` loaded the providers)."""
        return {"pid": os.getpid(), "node_id": ray.get_runtime_context().get_node_id()}

    def shutdown(self) -> None:
        """Stop the host's workers (before ``ray.kill``: a killed actor's workers only notice
        their parent is gone, a little later)."""
        self.host.close()


#: The Ray actor class (``SandboxActor`` as ``ray.remote``, no CPU reserved: the host's
#: workers are confined by the host's own limits, not counted by Ray).
RemoteSandboxActor = ray.remote(num_cpus=0)(SandboxActor)


def sandbox_nodes(resource: str = DEFAULT_RESOURCE) -> list[str]:
    """The ids of the live nodes that hold ``resource``."""
    return [
        node["NodeID"] for node in ray.nodes()
        if node.get("Alive") and node.get("Resources", {}).get(resource, 0) > 0
    ]  # fmt: skip


def deploy(
    config: str | os.PathLike[str],
    nodes_resource: str = DEFAULT_RESOURCE,
    max_restarts: int = -1,
    *,
    spawn: str | None = None,
    exclude_nodes: Iterable[str] = (),
) -> list[Any]:
    """One actor on each node holding ``nodes_resource`` (each takes one unit of it and is
    pinned to its node); Ray restarts a dead one ``max_restarts`` times (-1: for ever).

    ``config`` is a path that must exist on every node (as must the providers it names).
    ``exclude_nodes`` are node ids that get no actor: those already serving, when deploying
    again for nodes that joined later (a node's unit is taken by its actor, so a second actor
    there would wait for ever). Returns the actor handles (a node without the resource gets
    none; no node: ``[]``).
    """
    skipped = set(exclude_nodes)
    actors = []
    for node_id in sandbox_nodes(nodes_resource):
        if node_id in skipped:
            continue
        actors.append(
            RemoteSandboxActor.options(
                resources={nodes_resource: 1},
                scheduling_strategy=NodeAffinitySchedulingStrategy(node_id, soft=False),
                max_restarts=max_restarts,
                max_task_retries=0,  # a call that may have run is never re-run by Ray
            ).remote(os.fspath(config), spawn)
        )
    return actors


#: What says the actor will never answer again: its pinned node is gone, or Ray gave up on it
#: (restarts used up, killed for good, or its creation failed). ``ActorUnavailableError`` is
#: the transient kind (the actor is unreachable or restarting) and is not in here.
_GONE_FOR_GOOD = (ActorUnschedulableError, ActorDiedError)


class RayHost(CallingAPI):
    """One :class:`SandboxActor`'s providers, called like a local :class:`~host.Host`.

    The constructor waits (up to ``connect_timeout``) for the actor to load its providers and
    loads its catalog. A call the actor's death interrupts ends ``HostUnavailable`` with
    ``delivered=True`` (it may have run); the host is then not ``available`` until the actor
    answers again (Ray restarted it), so a ``HostGroup`` sends new calls elsewhere meanwhile.

    While it is not available, a call is not sent: it ends ``HostUnavailable(delivered=False)``
    at once (it never ran, so a group tries another host). An actor that can never come back
    (its pinned node left the cluster, or Ray stopped restarting it) makes the host ``gone``
    for good: ``gone`` then says why, and the probing stops. Ray's errors name why the actor
    died, not whether a call had reached it (``ActorUnschedulableError`` also ends a call that
    was running when its node left): a call Ray fails ends ``delivered=False`` only if this
    process's Ray already held the actor dead when it was sent (Ray then fails it unsent).

    An actor that hangs (a stopped process, an unreachable node Ray has not declared dead) is
    not noticed by Ray, which would wait for ever. So while calls are in flight the host pings
    the actor: one that leaves a ping unanswered ``heartbeat_timeout`` s hangs, and its calls
    end ``HostUnavailable(delivered=True)`` (as does a call with a ``timeout`` that has no answer
    ``answer_grace`` s after it); the host then probes the actor until it answers again.
    ``close()`` ends every call still without an outcome.
    """

    def __init__(
        self,
        actor: Any,
        *,
        connect_timeout: float = DEFAULT_CONNECT_TIMEOUT_S,
        answer_grace: float = ANSWER_GRACE_S,
        heartbeat_timeout: float = HEARTBEAT_TIMEOUT_S,
    ) -> None:
        self.actor = actor
        self.connect_timeout = connect_timeout
        self.answer_grace = answer_grace
        self.heartbeat_timeout = heartbeat_timeout
        self.endpoint = f"ray:{actor._actor_id.hex()[:12]}"
        self.catalog = Catalog()
        self._lock = threading.Lock()
        self._available = True
        self._closed = False
        #: How many times a call (or the heartbeat) found the actor lost: a probe's answer
        #: makes the host available only if no loss came after the probe was sent.
        self._losses = 0
        #: Why the actor will never answer again (None while it may).
        self.gone: str | None = None
        self._stopping = threading.Event()
        self._prober: threading.Thread | None = None
        self._watcher: threading.Thread | None = None
        #: The calls sent and not yet settled, with the time by which each must have its answer
        #: (None: no timeout). Whoever takes a call out of here (under the lock) settles it.
        self._in_flight: dict[CallFuture, float | None] = {}
        try:
            entries = ray.get(actor.hello.remote(), timeout=connect_timeout)
        except (RayError, GetTimeoutError) as exc:
            raise HostUnavailable(f"{self.endpoint}: {exc}", endpoint=self.endpoint,
                                  delivered=False) from None  # fmt: skip
        descriptors = wire.decode_catalog(entries, self.endpoint)
        try:
            self.catalog.replace(descriptors)  # (empty until now)
        except CatalogInvalid as exc:  # two providers claim one name
            raise ProtocolViolation(f"{self.endpoint} sent an invalid catalog: {exc}") from None

    @property
    def available(self) -> bool:
        """The actor answered its last call or probe (False while Ray restarts it, and for
        good once it is ``gone``; and while Ray is not running in this process)."""
        return (
            self._available and not self._closed and self.gone is None and ray.is_initialized()
        )

    def submit(
        self, action: str, input: Any = None, *, timeout: float | None = None
    ) -> CallFuture:
        """Start a call on the actor and return its future at once, as ``Host.submit``."""
        if self._closed:
            raise RuntimeError("the RayHost is closed")
        future = CallFuture()
        future.set_running_or_notify_cancel()
        try:
            timeout = checked_timeout(timeout)
            if self.catalog.find(action) is None:
                raise ProviderUnavailable(f"no provider at {self.endpoint} offers {action!r}")
            _, encoded = encode_input(
                {} if input is None else input, limit=wire.MAX_MESSAGE_BYTES - 8192
            )
            if not self.available:  # not sent: it certainly never ran
                raise self._not_sent()
        except SandboxError as error:
            future.settle(Outcome.failure(error))
            return future
        # Ray's own verdict, read just before the call: a task for an actor this process's core
        # worker already holds dead is failed by Ray without being sent. Nothing else says a
        # call never ran: Ray's error names why the actor died, not whether the call had reached
        # it (a call running when its node leaves ends ActorUnschedulableError, too).
        try:
            dead_before = _held_dead(self.actor)
            ref = _send_quietly(self.actor.call, action, encoded.decode(), timeout)
        except Exception as exc:  # Ray did not take it (shut down meanwhile): it never ran
            future.settle(Outcome.failure(HostUnavailable(
                f"{self.endpoint}: the call could not be sent: {_describe(exc)}",
                endpoint=self.endpoint, delivered=False,
            )))  # fmt: skip
            return future
        future._canceller = lambda _: _cancel_quietly(ref)
        answer_by = None if timeout is None else time.monotonic() + timeout + self.answer_grace
        with self._lock:
            self._in_flight[future] = answer_by
            if self._watcher is None:
                self._watcher = threading.Thread(target=self._watch, daemon=True,
                                                 name=f"watch {self.endpoint}")  # fmt: skip
                self._watcher.start()
        ref.future().add_done_callback(lambda done: self._settle(future, done, dead_before))
        return future

    def _settle(self, future: CallFuture, done: Any, dead_before: bool = False) -> None:
        with self._lock:
            if self._in_flight.pop(future, False) is False:  # already ended (watch or close)
                return
        try:
            outcome = wire.decode_outcome(done.result())
        except TaskCancelledError:
            outcome = Outcome.failure(Cancelled("the call was cancelled"))
        except wire.BadRequest as exc:
            outcome = Outcome.failure(ProtocolViolation(f"{self.endpoint}: {exc}"))
        except Exception as exc:  # the actor died or cannot be reached: the call may have run
            self._lost(exc)
            never_sent = dead_before and isinstance(exc, RayError)  # Ray failed it unsent
            outcome = Outcome.failure(HostUnavailable(
                f"{self.endpoint}: {_describe(exc)}", endpoint=self.endpoint,
                delivered=not never_sent,
            ))  # fmt: skip
        future.settle(outcome)

    def _not_sent(self) -> HostUnavailable:
        if self.gone is not None:
            why = f"its actor is gone for good ({self.gone})"
        elif self._closed:
            why = "the RayHost is closed"
        elif not ray.is_initialized():
            why = "Ray is not running in this process"
        else:
            why = "its actor is unreachable (Ray may be restarting it)"
        return HostUnavailable(f"{self.endpoint}: {why}; the call was not sent",
                               endpoint=self.endpoint, delivered=False)  # fmt: skip

    def _lost(self, cause: BaseException) -> None:
        with self._lock:
            self._available = False
            self._losses += 1
            if isinstance(cause, _GONE_FOR_GOOD):
                self.gone = self.gone or _describe(cause)
            if self._prober is not None or self._closed or self.gone is not None:
                return
            self._prober = threading.Thread(target=self._probe, daemon=True,
                                            name=f"probe {self.endpoint}")  # fmt: skip
        self._prober.start()

    def _take(self, futures: list[CallFuture]) -> list[CallFuture]:
        """Those of ``futures`` still without an outcome, taken out of ``_in_flight``."""
        with self._lock:
            return [f for f in futures if self._in_flight.pop(f, False) is not False]

    def _watch(self) -> None:
        """While calls are in flight: ping the actor, and end the calls of an actor that hangs
        (a ping unanswered too long) and those whose answer is overdue (they may have run)."""
        ping: Any = None
        ping_sent = time.monotonic()  # (the first ping a beat later: short calls need none)
        while not self._stopping.wait(0.1):
            now = time.monotonic()
            with self._lock:
                if not self._in_flight:
                    self._watcher = None
                    return
                overdue = [f for f, by in self._in_flight.items() if by is not None and by < now]
                everything = list(self._in_flight)
            why = (f"the actor does not answer (it hangs, or its node is unreachable): "
                   f"no answer {self.answer_grace:g}s after the call's timeout")  # fmt: skip
            try:
                if not ray.is_initialized():
                    raise SystemExit
                if ping is not None and _wait_quietly(ping):
                    ping = None  # answered (an error too: Ray then ends the calls itself)
                elif ping is not None and now - ping_sent > self.heartbeat_timeout:
                    why = (f"the actor does not answer (it hangs, or its node is unreachable): "
                           f"a ping had no answer in {self.heartbeat_timeout:g}s")  # fmt: skip
                    overdue, ping = everything, None
                elif ping is None and now - ping_sent >= HEARTBEAT_S:
                    ping, ping_sent = _send_quietly(self.actor.ping), now
            except (Exception, SystemExit):  # Ray is shutting down (it raises SystemExit then)
                if ray.is_initialized():
                    ping = None
                else:  # Ray was shut down: no answer will ever come
                    why = "Ray was shut down in this process"
                    overdue = everything
            overdue = self._take(overdue)
            if not overdue:
                continue
            hang = TimeoutError(why)
            self._lost(hang)
            for future in overdue:
                future.settle(Outcome.failure(HostUnavailable(
                    f"{self.endpoint}: {why}; the call may have run",
                    endpoint=self.endpoint, delivered=True,
                )))  # fmt: skip
                with contextlib.suppress(Exception):
                    future._canceller and future._canceller(future)  # tell Ray, if it can

    def _probe(self) -> None:
        """Ping the actor until it answers (available again) or is gone for good; ends at once
        when the host closes (or Ray is shut down)."""
        try:
            while not self._stopping.is_set() and ray.is_initialized():
                try:
                    # One ping at a time: Ray answers it or fails it (a restarting actor gets
                    # it once it is back), so pings do not pile up in its queue meanwhile.
                    with self._lock:
                        losses = self._losses
                    ref = _send_quietly(self.actor.ping)
                    asked, ready = time.monotonic(), False
                    while not self._stopping.is_set():
                        ready = _wait_quietly(ref, 0.25)
                        if ready or time.monotonic() - asked > self.connect_timeout:
                            break
                    if not ready:
                        continue  # closing, or no word from Ray for long: ask again
                    _get_quietly(ref)
                except _GONE_FOR_GOOD as exc:
                    with self._lock:
                        self.gone = self.gone or _describe(exc)
                    return
                except Exception:
                    self._stopping.wait(PROBE_INTERVAL_S)
                    continue
                with self._lock:
                    if self._losses != losses:  # lost again since it was sent: ask again
                        continue
                    self._available = True
                return
        except SystemExit:  # what Ray raises in a thread that waits on it when it shuts down
            return
        finally:
            with self._lock:
                self._prober = None

    def _ask(self, method: str, timeout: float) -> Any:
        """One of the actor's read-only methods; Ray's errors become ``HostUnavailable``."""
        if self.gone is not None:
            raise self._not_sent()
        try:
            return ray.get(getattr(self.actor, method).remote(), timeout=timeout)
        except (RayError, GetTimeoutError) as exc:
            if isinstance(exc, _GONE_FOR_GOOD):
                self._lost(exc)
            raise HostUnavailable(f"{self.endpoint}: {_describe(exc)}", endpoint=self.endpoint,
                                  delivered=True) from None  # fmt: skip

    def ping(self, timeout: float = 10.0) -> dict[str, Any]:
        """The actor's pid and node id."""
        value: dict[str, Any] = self._ask("ping", timeout)
        return value

    def providers(self) -> list[ProviderInfo]:
        """The actor's providers, with the layers their workers reported on its node."""
        found = self._ask("providers", self.connect_timeout)
        return [ProviderInfo.from_dict(p) for p in found]

    def stats(self) -> dict[str, Any]:
        """The actor's ``Host.stats()``."""
        value = self._ask("stats", self.connect_timeout)
        if not isinstance(value, dict):
            raise ProtocolViolation(f"{self.endpoint} answered stats with {type(value).__name__}")
        return value

    def close(self, timeout: float = 5.0) -> None:
        """Let calls in flight finish for up to ``timeout`` s, then cancel the rest; a call
        that still has no outcome a second later (its actor hangs) ends ``Cancelled``. The
        probing stops before this returns. The actor lives on (it is Ray's: stop it with
        :func:`stop`)."""
        if self._closed:
            return
        self._closed = True  # no new calls: those in flight are all there is to end
        deadline = time.monotonic() + timeout
        while self._in_flight and time.monotonic() < deadline:
            time.sleep(0.01)
        with self._lock:
            left = list(self._in_flight)
        for future in left:
            future.cancel()
        deadline = time.monotonic() + (1.0 if timeout > 0 else 0.0)
        while self._in_flight and time.monotonic() < deadline:
            time.sleep(0.01)
        with self._lock:
            left = list(self._in_flight)
        for future in self._take(left):
            future.settle(Outcome.failure(Cancelled(
                f"{self.endpoint}: the RayHost was closed before its actor answered"
            )))  # fmt: skip
        self._stopping.set()
        for thread in (self._prober, self._watcher):
            if thread is not None and thread is not threading.current_thread():
                thread.join(timeout=5)

    def __enter__(self) -> RayHost:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def _send_quietly(method: Any, *args: Any) -> Any:
    """``method.remote()`` for this module's own threads, without Ray's auto-init: after
    ``ray.shutdown()``, ``.remote()`` (and ``ray.wait``, ``ray.get``) call ``ray.init()``, which
    joins the cluster again (or starts one) from that thread. Raises if Ray is not running."""
    remote = getattr(type(method)._remote, "__wrapped__", None)
    if remote is None:  # (another Ray's layout: at least never from a Ray that is down)
        if not ray.is_initialized():
            raise RuntimeError("Ray is not running")
        return method.remote(*args)
    return remote(method, list(args), {})


# Ray's functions without their auto-init wrapper (``ray._private.worker``, Ray 2.x). These and
# the two other private names used here (``_remote.__wrapped__``, ``_get_local_state``) are read
# defensively: on a Ray laid out otherwise the public function is used, and only while Ray is
# running, and a call is never taken for unsent on a guess.
_RAW = getattr(getattr(ray, "_private", None), "worker", None)


def _unwrapped(name: str) -> Any:
    raw = getattr(_RAW, name, None)
    if raw is not None:
        return raw
    if not ray.is_initialized():
        raise RuntimeError("Ray is not running")
    return getattr(ray, name)


def _cancel_quietly(ref: Any) -> None:
    """``ray.cancel(ref)``, if Ray still runs (``ray.cancel`` would call ``ray.init()``)."""
    if ray.is_initialized():
        with contextlib.suppress(Exception):
            _unwrapped("cancel")(ref)


def _wait_quietly(ref: Any, timeout: float = 0.0) -> bool:
    """Whether ``ref`` is ready, waiting up to ``timeout`` (``ray.wait`` without auto-init)."""
    ready, _ = _unwrapped("wait")([ref], timeout=timeout)
    return bool(ready)


def _get_quietly(ref: Any) -> Any:
    """``ray.get(ref)`` of a ready ``ref``, without auto-init."""
    return _unwrapped("get")(ref)


def _held_dead(actor: Any) -> bool:
    """Whether this process's Ray already holds ``actor`` dead (then it fails a new task for it
    without sending it). False when this Ray cannot say: the call then counts as delivered."""
    try:
        from ray.core.generated.gcs_pb2 import ActorTableData

        return bool(actor._get_local_state() == ActorTableData.DEAD)
    except Exception:
        return False


def _describe(exc: BaseException) -> str:
    """Ray's error on one line (its messages run over many)."""
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text[:300]}"


def stop(actors: list[Any], timeout: float = 30.0) -> None:
    """Stop the actors for good: each host's workers first, then the actor (no restart)."""
    refs = [actor.shutdown.remote() for actor in actors]
    try:
        ray.get(refs, timeout=timeout)
    except Exception:  # a dead or hung actor: killing it is all that is left
        pass
    for actor in actors:
        ray.kill(actor, no_restart=True)
