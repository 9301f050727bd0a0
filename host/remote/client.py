"""``RemoteHost``: ``Host``'s calling API for the providers of a ``sandbox serve`` elsewhere.

One thread owns the DEALER socket, its monitor and a wake pipe; callers hand it requests
through a deque. Two facts about CURVE shape it:

* A refused key is invisible to ``send``: the only sign is ``HANDSHAKE_FAILED_AUTH`` on the
  socket monitor. So the monitor is watched, and a refusal ends every waiting request (and the
  constructor) with :class:`HostUnavailable` at once, instead of a wait for ever.
* A server that dies or hangs: ZMTP heartbeats (``HEARTBEAT_IVL``/``TIMEOUT``) turn silence into
  ``DISCONNECTED`` within a few seconds, and every request sent on that connection ends with
  ``HostUnavailable(delivered=True)``: it may have run, so it is not re-sent here.

Requests are only written to the socket while a handshake has succeeded (``ZMQ_IMMEDIATE``
keeps libzmq from queueing them for a connection that does not exist yet): a request that was
never written certainly never ran, and says so (``delivered=False``) if it cannot be sent in
``connect_timeout``. Replies are strict JSON (``host.remote.wire``), never pickles.
"""

from __future__ import annotations

import collections
import itertools
import logging
import os
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

import zmq
from zmq.utils.monitor import recv_monitor_message

from host.calling import CallingAPI
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
from host.host import ProviderInfo
from host.inputs import encode_input
from host.logs import LOGGER
from host.remote import wire
from host.remote.keys import load_public, load_secret

log = logging.getLogger(f"{LOGGER}.{__name__}")

#: Client heartbeats: a server silent this long is taken for dead (its calls end).
HEARTBEAT_IVL_MS = 1000
HEARTBEAT_TIMEOUT_MS = 3000
DEFAULT_CONNECT_TIMEOUT_S = 10.0
_MONITORED = (
    zmq.EVENT_HANDSHAKE_SUCCEEDED
    | zmq.EVENT_DISCONNECTED
    | zmq.EVENT_HANDSHAKE_FAILED_AUTH
    | zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL
    | zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL
)


@dataclass(eq=False)
class _Request:
    id: str
    frames: list[bytes]
    future: Future[Any]
    action: str = ""
    created: float = field(default_factory=time.monotonic)
    sent: bool = False


#: While it has calls in flight a client pings this often, so the server can tell it is alive
#: (a server cancels the calls of a client silent for its CLIENT_SILENCE_S).
PING_INTERVAL_S = 1.0


def _input_limits(providers: Any) -> dict[str, int]:
    """Each provider's input limit from a ``providers`` answer; none for an odd answer."""
    try:
        return {p.namespace: p.policy.input for p in map(ProviderInfo.from_dict, providers)}
    except (KeyError, TypeError, ValueError, AttributeError):
        return {}


class RemoteHost(CallingAPI):
    """The providers of one ``sandbox serve``, called like a local :class:`~host.Host`.

    ``server_key`` is the server's public ``.key`` file, ``client_key`` this client's
    ``.key_secret`` (its ``.key`` must be in the server's ``--authorized`` directory). With
    ``insecure=True`` neither is used (a server started with ``--insecure``). The constructor
    connects and loads the catalog; it raises :class:`HostUnavailable` within
    ``connect_timeout`` if the server cannot be reached or refuses the key (at once, then).
    """

    def __init__(
        self,
        endpoint: str,
        *,
        server_key: str | os.PathLike[str] | None = None,
        client_key: str | os.PathLike[str] | None = None,
        insecure: bool = False,
        connect_timeout: float = DEFAULT_CONNECT_TIMEOUT_S,
    ) -> None:
        self.endpoint = endpoint
        self.connect_timeout = connect_timeout
        if not insecure and (server_key is None or client_key is None):
            raise ValueError("RemoteHost needs server_key and client_key (or insecure=True)")
        curve = None if insecure else (load_public(server_key), load_secret(client_key))  # type: ignore[arg-type]
        self.catalog = Catalog()
        self._ids = itertools.count(1)
        self._inbox: collections.deque[_Request | tuple[str, _Request]] = collections.deque()
        self._pending: dict[str, _Request] = {}
        self._unsent: collections.deque[_Request] = collections.deque()
        self._connected = False
        self._draining = False
        self._refused: str | None = None
        self._problem = ""
        self._closed = False
        self._stopping = False
        self._next_ping = 0.0
        self._handshakes = 0
        self._input_limits: dict[str, int] = {}
        self._context = zmq.Context()
        sock = self._socket = self._context.socket(zmq.DEALER)
        sock.linger = 0
        sock.setsockopt(zmq.IMMEDIATE, 1)
        sock.setsockopt(zmq.MAXMSGSIZE, wire.MAX_MESSAGE_BYTES)
        sock.setsockopt(zmq.HEARTBEAT_IVL, HEARTBEAT_IVL_MS)
        sock.setsockopt(zmq.HEARTBEAT_TIMEOUT, HEARTBEAT_TIMEOUT_MS)
        sock.setsockopt(zmq.HEARTBEAT_TTL, HEARTBEAT_TIMEOUT_MS)
        sock.setsockopt(zmq.RECONNECT_IVL, 100)
        sock.setsockopt(zmq.RECONNECT_IVL_MAX, 2000)
        if curve is not None:
            sock.curve_serverkey = curve[0]
            sock.curve_publickey, sock.curve_secretkey = curve[1]
        self._monitor = sock.get_monitor_socket(_MONITORED)
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_w, False)
        try:
            sock.connect(endpoint)
        except zmq.ZMQError as exc:
            self._release()
            raise ValueError(f"bad endpoint {endpoint!r}: {exc.strerror}") from None
        self._thread = threading.Thread(target=self._loop, name="sandbox-remote", daemon=True)
        self._thread.start()
        try:
            self._load_catalog(self._query("hello"))
            # Each provider's input limit, so that an input too big for it is refused here,
            # as the server would: the server drops a frame bigger than its largest limit
            # with the connection (and so every call in flight on it).
            self._input_limits = _input_limits(self._query("providers"))
        except BaseException:
            self.close(timeout=0)
            raise

    # ------------------------------------------------------------------ API

    @property
    def available(self) -> bool:
        """Connected now (a handshake succeeded and the connection has not been lost), and the
        server has not said it is draining (it refuses new calls until a new connection)."""
        return self._connected and not self._closed and not self._draining

    def submit(
        self, action: str, input: Any = None, *, timeout: float | None = None
    ) -> CallFuture:
        """Start a call and return its future at once, as ``Host.submit``."""
        self._check_open()
        future = CallFuture()
        future.set_running_or_notify_cancel()
        try:
            # As the server checks it (a bool or an integer too big for a float was sent, the
            # server refused it without the call's id, and the call never ended); infinity,
            # which JSON cannot carry, is no deadline.
            timeout = wire.client_timeout(timeout)
            descriptor = self.catalog.find(action)
            if descriptor is None:
                known = ", ".join(d.full_name for d in self.catalog.find_all(limit=20))
                raise ProviderUnavailable(
                    f"no provider at {self.endpoint} offers {action!r}"
                    + (f" (known: {known})" if known else "")
                )
            limit = self._input_limits.get(descriptor.namespace, wire.MAX_MESSAGE_BYTES - 8192)
            _, encoded = encode_input({} if input is None else input, limit=limit)
        except SandboxError as error:
            future.settle(Outcome.failure(error))
            return future
        request_id = f"c{next(self._ids)}"
        envelope = wire.request("call", request_id, action=action, timeout=timeout)
        request = _Request(request_id, [envelope, encoded], future, action)
        future._canceller = lambda _: self._post(("cancel", request))
        self._post(request)
        return future

    def providers(self) -> list[ProviderInfo]:
        """The server's providers, with the layers their workers reported there."""
        return [ProviderInfo.from_dict(p) for p in self._query("providers")]

    def stats(self) -> dict[str, Any]:
        """The server's ``Host.stats()``."""
        value = self._query("stats")
        if not isinstance(value, dict):
            raise ProtocolViolation(f"{self.endpoint} answered stats with {type(value).__name__}")
        return value

    def close(self, timeout: float = 5.0) -> None:
        """Let calls in flight finish for up to ``timeout`` s, cancel the rest, disconnect."""
        if self._closed:
            return
        self._closed = True
        deadline = time.monotonic() + timeout
        while self._pending_futures() and time.monotonic() < deadline:
            time.sleep(0.01)
        for future in self._pending_futures():
            future.cancel()
        deadline = time.monotonic() + (1.0 if timeout > 0 else 0.0)
        while self._pending_futures() and time.monotonic() < deadline:
            time.sleep(0.01)
        self._stopping = True
        self._wake()
        self._thread.join(timeout=10)

    def __enter__(self) -> RemoteHost:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # ------------------------------------------------------------------ callers' side

    def _check_open(self) -> None:
        if self._closed:
            raise RuntimeError("the remote host is closed")

    def _pending_futures(self) -> list[Future[Any]]:
        requests = list(self._pending.values()) + [
            r for r in list(self._inbox) if isinstance(r, _Request)
        ]
        return [r.future for r in requests if not r.future.done()]

    def _post(self, item: _Request | tuple[str, _Request]) -> None:
        self._inbox.append(item)
        self._wake()

    def _wake(self) -> None:
        try:
            os.write(self._wake_w, b"x")
        except OSError:
            pass

    def _query(self, op: str) -> Any:
        future: Future[Any] = Future()
        future.set_running_or_notify_cancel()
        request_id = f"q{next(self._ids)}"
        self._post(_Request(request_id, [wire.request(op, request_id)], future))
        return future.result(timeout=self.connect_timeout + 30)

    def _load_catalog(self, entries: Any) -> None:
        """Make ``catalog`` what the server announced (all or nothing)."""
        descriptors = wire.decode_catalog(entries, self.endpoint)
        try:
            self.catalog.replace(descriptors)
        except CatalogInvalid as exc:  # two providers claim one name
            raise ProtocolViolation(f"{self.endpoint} sent an invalid catalog: {exc}") from None

    def _refresh_catalog(self) -> None:
        """After a reconnection, ask again what the server offers: it may be another process
        now (restarted with another configuration, or another pod behind the same address).
        Until the answers come, the catalog and the input limits are the ones from before.
        (The limits were kept for ever: an input over a new, smaller one was sent, and the
        server dropped the connection with every call on it, as delivered.)"""

        def loaded(result: Any) -> None:
            try:
                self._load_catalog(result)
            except ProtocolViolation as exc:
                log.warning("%s: %s (the previous catalog is kept)", self.endpoint, exc)

        def limits(result: Any) -> None:
            self._input_limits = _input_limits(result)

        self._ask("hello", loaded)
        self._ask("providers", limits)

    def _ask(self, op: str, then: Callable[[Any], None]) -> None:
        """From the loop thread: send ``op`` and run ``then`` with its answer's value."""
        future: Future[Any] = Future()
        future.set_running_or_notify_cancel()
        request_id = f"q{next(self._ids)}"
        request = _Request(request_id, [wire.request(op, request_id)], future)
        self._pending[request_id] = request
        self._unsent.append(request)

        def answered(done: Future[Any]) -> None:
            if done.cancelled() or done.exception() is not None:
                log.warning("%s: %r was not asked again after a reconnection: %s", self.endpoint,
                            op, "cancelled" if done.cancelled() else done.exception())
                return
            then(done.result())

        future.add_done_callback(answered)

    # ------------------------------------------------------------------ the loop thread

    def _loop(self) -> None:
        poller = zmq.Poller()
        poller.register(self._socket, zmq.POLLIN)
        poller.register(self._monitor, zmq.POLLIN)
        poller.register(self._wake_r, zmq.POLLIN)
        try:
            while not self._stopping:
                events = dict(poller.poll(5 if self._unsent and self._connected else 100))
                if self._wake_r in events:
                    os.read(self._wake_r, 65536)
                self._take_inbox()
                if self._socket in events:
                    self._receive()
                if self._monitor in events:
                    self._watch()
                self._flush()
                self._ping()
                self._expire()
        finally:
            self._fail_all(Cancelled("the remote host was closed"), delivered=None)
            self._release()

    def _take_inbox(self) -> None:
        while self._inbox:
            item = self._inbox.popleft()
            if isinstance(item, _Request):
                self._pending[item.id] = item
                if self._refused is not None and not self._connected:
                    self._settle(item, self._unavailable(self._refused, delivered=False))
                else:
                    self._unsent.append(item)
            else:
                request = item[1]
                if request.id not in self._pending:
                    continue
                if request.sent:
                    self._send([wire.request("cancel", request.id)])
                else:
                    self._settle(request, Cancelled("the call was cancelled before it was sent"))

    def _send(self, frames: list[bytes]) -> bool:
        try:
            self._socket.send_multipart(frames, zmq.NOBLOCK, copy=False)
        except zmq.Again:
            return False
        return True

    def _flush(self) -> None:
        while self._unsent and self._connected:
            request = self._unsent[0]
            if request.id not in self._pending:  # settled while waiting
                self._unsent.popleft()
                continue
            if not self._send(request.frames):
                return
            self._unsent.popleft()
            request.sent = True

    def _receive(self) -> None:
        while True:
            try:
                frames = self._socket.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                return
            try:
                body = wire.parse_reply(frames[0])
            except wire.BadRequest:
                continue
            try:
                self._on_reply(body)
            except Exception as exc:  # a reply this client cannot read ends its call, not the loop
                log.warning("%s: a reply could not be read: %s: %s",
                            self.endpoint, type(exc).__name__, str(exc)[:200])
                request = self._pending.get(body.get("id"))  # type: ignore[arg-type]
                if request is not None:
                    self._settle(request, ProtocolViolation(
                        f"{self.endpoint} sent a reply this client cannot read "
                        f"({type(exc).__name__})"
                    ))  # fmt: skip

    def _on_reply(self, body: dict[str, Any]) -> None:
        """One reply (a checked JSON object with an id): the end of its request."""
        if body.get("ack") is True:  # a draining server waits for this before it closes
            self._send([wire.request("ack", body["id"])])
        request = self._pending.get(body["id"])
        if request is None:
            return  # an answer to a request already ended (e.g. after a reconnect)
        if "value" in body and not isinstance(request.future, CallFuture):
            self._pending.pop(request.id)
            request.future.set_result(body["value"])
        elif "outcome" in body:
            try:
                outcome = wire.decode_outcome(body["outcome"])
            except (wire.BadRequest, TypeError, ValueError, OverflowError) as exc:
                outcome = Outcome.failure(ProtocolViolation(f"bad reply: {exc}"))
            self._settle(request, outcome)
        elif "refused" in body:
            self._draining = True
            reason = f"{self.endpoint} refused the call: {body['refused']}"
            self._settle(request, self._unavailable(reason, delivered=False))
        else:
            error = ProtocolViolation(f"{self.endpoint}: {str(body.get('error'))[:300]}")
            self._settle(request, error)

    def _watch(self) -> None:
        while True:
            try:
                event = recv_monitor_message(self._monitor, zmq.NOBLOCK)
            except zmq.Again:
                return
            kind = event["event"]
            if kind == zmq.EVENT_HANDSHAKE_SUCCEEDED:
                self._connected, self._refused, self._problem = True, None, ""
                self._draining = False
                self._handshakes += 1
                if self._handshakes > 1:  # (the first catalog is asked for by __init__)
                    self._refresh_catalog()
            elif kind == zmq.EVENT_DISCONNECTED:
                # Replies the server sent before it went away may still wait in the socket
                # (the poll may have reported only this event): take them first, so a call
                # that finished is not reported lost.
                self._receive()
                was = self._connected
                self._connected = False
                if was:
                    self._fail_all(
                        self._unavailable(
                            f"lost the connection to {self.endpoint} during the call (the "
                            "server died, stopped, or missed its heartbeats); it may have run",
                            delivered=True,
                        ),
                        delivered=True,
                    )
            elif kind == zmq.EVENT_HANDSHAKE_FAILED_AUTH:
                self._refused = (
                    f"the server at {self.endpoint} refused this client's key "
                    f"(HANDSHAKE_FAILED_AUTH, ZAP status {event['value']}): is its .key in "
                    "the server's --authorized directory?"
                )
                self._fail_all(self._unavailable(self._refused, delivered=False), delivered=False)
            else:
                self._problem = (
                    "the CURVE handshake failed (is server_key the key of this server?)"
                )

    def _ping(self) -> None:
        """Say we are alive while calls we sent are running there."""
        now = time.monotonic()
        if now < self._next_ping or not self._connected:
            return
        self._next_ping = now + PING_INTERVAL_S  # the scan below at most once an interval
        if any(r.sent for r in self._pending.values()):
            self._send([wire.request("ping", "ping")])

    def _expire(self) -> None:
        """Requests that could not be sent within ``connect_timeout``: never delivered."""
        limit = time.monotonic() - self.connect_timeout
        while self._unsent and self._unsent[0].created < limit:
            request = self._unsent.popleft()
            if request.id in self._pending:
                reason = f"could not reach {self.endpoint} within {self.connect_timeout:g}s"
                if self._problem:
                    reason += f": {self._problem}"
                self._settle(request, self._unavailable(reason, delivered=False))

    def _unavailable(self, message: str, *, delivered: bool) -> HostUnavailable:
        return HostUnavailable(message, endpoint=self.endpoint, delivered=delivered)

    def _settle(self, request: _Request, result: Outcome | SandboxError) -> None:
        self._pending.pop(request.id, None)
        outcome = result if isinstance(result, Outcome) else Outcome.failure(result)
        future = request.future
        if isinstance(future, CallFuture):
            future.settle(outcome)
        elif outcome.error is not None:
            future.set_exception(outcome.error)

    def _fail_all(self, error: SandboxError, *, delivered: bool | None) -> None:
        """End the pending requests that were sent (``delivered=True``), not sent (False) or
        all (None) with ``error``."""
        for request in list(self._pending.values()):
            if delivered is None or request.sent is delivered:
                self._settle(request, error)

    def _release(self) -> None:
        try:
            self._socket.disable_monitor()
        except zmq.ZMQError:
            pass
        self._monitor.close()
        self._socket.close()
        self._context.term()
        for fd in (self._wake_r, self._wake_w):
            try:
                os.close(fd)
            except OSError:
                pass
