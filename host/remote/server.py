"""``sandbox serve``: one ``Host`` served to remote engines over ZeroMQ, CURVE and ZAP.

One thread owns every socket: a ROUTER the clients' DEALERs connect to, the ZAP handler
(``inproc://zeromq.zap.01``, which libzmq asks about every CURVE handshake: only keys in
``--authorized`` pass) and a pipe that the host's done-callbacks write to. A client's request
is untrusted input: its envelope is checked (``host.remote.wire``) and its input goes through
``Host.submit`` exactly as a local engine's does (plain copy, size limit, schema), with the
client's key as its tenant, so the providers' queues are fair between clients.

SIGTERM drains: new calls are refused (the client may send them elsewhere, they never ran),
running ones get ``drain_timeout`` seconds, then are cancelled, and the host closes. Every reply
sent while draining asks the client to acknowledge it (``"ack": true``), and the server stays
up until each is acknowledged or ``ACK_WAIT_S`` passed: a reply is not read by the client's
application the moment it arrives, and the client's socket (``IMMEDIATE``, so that no call
waits in a dead connection's queue) discards what it holds unread when the connection drops,
so closing right after the last reply would lose finished calls' outcomes.
"""

from __future__ import annotations

import collections
import contextlib
import logging
import os
import signal
import struct
import sys
import threading
import time
from collections.abc import Callable, Hashable
from typing import Any

import zmq
from zmq.utils import z85

from host.errors import (
    Cancelled,
    InputInvalid,
    Outcome,
    Overloaded,
    SandboxError,
    Timeout,
)
from host.fairqueue import admits
from host.futures import CallFuture
from host.host import Host
from host.logs import LOGGER
from host.remote import wire
from host.remote.connections import (
    HANDSHAKE_BYTES,
    HANDSHAKE_IVL_MS,
    NULL_HANDSHAKE_BYTES,
    ConnectionGuard,
    raise_descriptor_limit,
)
from host.remote.metrics import Metrics
from sandbox import protocol

log = logging.getLogger(f"{LOGGER}.{__name__}")

#: ZMTP heartbeats: a silent peer is dropped after HEARTBEAT_TIMEOUT_MS (its calls ended).
HEARTBEAT_IVL_MS = 1000
HEARTBEAT_TIMEOUT_MS = 3000
#: Socket-monitor events queued unread (connections accepted and ended; see _watch_connections).
MONITOR_EVENTS_QUEUED = 100_000
#: Calls in flight across all clients; more are answered ``Overloaded`` at once, but for a
#: client key below its share (``host.fairqueue.admits``: up to twice as many in all), so one
#: key holding them all does not leave every other key only ``Overloaded``.
MAX_IN_FLIGHT = 10_000
#: How long a drained server waits for its last replies' acknowledgements before it closes.
ACK_WAIT_S = 3.0
#: A client with calls in flight pings every ``client.PING_INTERVAL_S``; silent this long (the
#: default of ``--client-timeout``), it is taken for gone and its calls are cancelled, so their
#: workers are free for live clients.
CLIENT_TIMEOUT_S = 5.0
ZAP_DOMAIN = b"sandbox"
#: Requests read per turn of the loop (at most so many, for at most so long) before finished
#: calls are answered and handshakes are.
RECV_BATCH = 100
RECV_BATCH_S = 0.02
#: Requests queued unread per client connection (libzmq's default is 1000).
RCVHWM = 100
#: Replies kept for a client key whose queues are full (it is not reading), across all its
#: connections; more are dropped. Per connection, a key opening many connections that did not
#: read made the server hold that much for each (and libzmq a thousand replies more each).
MAX_BACKLOG = MAX_IN_FLIGHT
MAX_BACKLOG_BYTES = 256 * 1024 * 1024
#: Replies libzmq queues per connection before a send would block (its default is 1000, of
#: replies up to the output limit each): beyond them they wait in the key's backlog, counted.
SNDHWM = 100
#: A call input bigger than this is decoded and checked (plain copy, schema: up to about half
#: a second for a MiB) on a thread of its own, clients in turn, not on the server's: one
#: client's big inputs must not hold up every other client's requests and outcomes. So is a
#: smaller one whose schema takes more than a trial's budget to apply (Server._costly).
LARGE_INPUT_BYTES = 16 * 1024
#: Large inputs waiting to be decoded, per client key and in all; more are answered
#: Overloaded, but for a key below its share of MAX_LARGE (``host.fairqueue.admits``: up to
#: twice as many in all), so that four keys holding them all do not leave the others nothing.
MAX_LARGE_PER_CLIENT = 32
MAX_LARGE = 128


#: A call of a client: (its connection's routing id, the request id).
Key = tuple[bytes, str]
#: A large input waiting to be decoded: key, action, input frame, timeout, when received.
_Large = tuple[Key, str, bytes, Any, float]


def _ended(error: SandboxError) -> CallFuture:
    """A call's future that already has its outcome: ``error``."""
    future = CallFuture()
    future.set_running_or_notify_cancel()
    future.settle(Outcome.failure(error))
    return future


def _submit(
    host: Host, action: str, frame: bytes | None, timeout: float | None, tenant: Hashable
) -> CallFuture:
    """Decode a call's input and hand it to the host, as a local engine's call; ``tenant``
    (the client's key) makes the providers' queues fair between clients."""
    try:
        value = {} if frame is None else protocol.loads(frame, max_depth=protocol.MAX_INPUT_DEPTH)
    except protocol.ProtocolError as exc:
        return _ended(InputInvalid(f"the input is not JSON: {exc}"))
    return host.submit(action, value, timeout=timeout, tenant=tenant)


class _LargeInputs:
    """Decodes and submits large inputs on a thread of its own, one tenant's after another's
    (each client key has its queue), and hands each call's future to the server's thread."""

    def __init__(self, host: Host, handover: Callable[[Key, str, CallFuture], None]) -> None:
        self._host = host
        self._handover = handover
        self._ready = threading.Condition()
        self._queues: dict[Hashable, collections.deque[_Large]] = {}
        self._count = 0
        self._closed = False
        self._thread = threading.Thread(target=self._run, name="sandbox-serve-inputs", daemon=True)
        self._thread.start()

    def put(self, tenant: Hashable, key: Key, action: str, frame: bytes, timeout: Any) -> bool:
        """Queue one; False if this tenant or all have as many waiting as they may."""
        with self._ready:
            queue = self._queues.get(tenant)
            mine = 0 if queue is None else len(queue)
            holding = len(self._queues)
            if mine >= MAX_LARGE_PER_CLIENT or not admits(self._count, mine, holding, MAX_LARGE):
                return False
            if queue is None:
                queue = self._queues[tenant] = collections.deque()
            queue.append((key, action, frame, timeout, time.monotonic()))
            self._count += 1
            self._ready.notify()
        return True

    def cancel_waiting(self) -> None:
        """End every call whose input still waits to be decoded as Cancelled, at once (the
        drain timed out: each would be decoded first, one after another, and a drain that
        gave up before the last left its clients without an answer: 57 of 64 calls)."""
        with self._ready:
            waiting = [item for queue in self._queues.values() for item in queue]
            self._queues.clear()
            self._count = 0
        for key, action, *_ in waiting:
            self._handover(key, action, _ended(Cancelled("the server is shutting down")))

    def close(self) -> None:
        with self._ready:
            self._closed = True
            self._ready.notify()

    def _run(self) -> None:
        while True:
            with self._ready:
                while not self._queues and not self._closed:
                    self._ready.wait()
                if self._closed:
                    return
                tenant = next(iter(self._queues))  # the one waiting longest for its turn
                queue = self._queues.pop(tenant)
                key, action, frame, timeout, received = queue.popleft()
                if queue:
                    self._queues[tenant] = queue  # back of the line
                self._count -= 1
            if timeout is not None and time.monotonic() - received >= timeout:
                future = _ended(
                    Timeout("the call's timeout passed while its input waited to be decoded")
                )
            else:
                left = None if timeout is None else timeout - (time.monotonic() - received)
                try:
                    future = _submit(self._host, action, frame, left, tenant)
                except Exception as exc:  # the host closed: the call still gets its outcome
                    future = _ended(Cancelled(f"the call was not run: {exc}"))
            self._handover(key, action, future)


#: Lines about connections (accepted or refused) logged per window; more are counted and said
#: in one line when the window ends. A refused client's libzmq reconnects every 100 ms, and
#: anyone who can reach the port can offer a refused key (no key is needed for that), so each
#: connection's line alone could fill the log, or block the server on a full stderr pipe.
LOG_LINES_PER_WINDOW = 20
LOG_WINDOW_S = 10.0


class _Limited:
    """One kind of log line, at most :data:`LOG_LINES_PER_WINDOW` per window; then a count."""

    def __init__(self, what: str) -> None:
        self.what = what
        self.window_ends = 0.0
        self.said = 0
        self.left_out = 0

    def say(self, text: str) -> None:
        self.flush()
        if self.said < LOG_LINES_PER_WINDOW:
            self.said += 1
            _say(text)
        else:
            self.left_out += 1

    def flush(self, *, last: bool = False) -> None:
        """At the end of a window, say how many lines were left out in it (checked each turn
        of the server's loop, so the count comes even when the flood has stopped; ``last``:
        the server stops, say it now)."""
        now = time.monotonic()
        if now < self.window_ends and not last:
            return
        if self.left_out:
            _say(
                f"{self.left_out} more {self.what} in the last {LOG_WINDOW_S:g}s "
                f"(at most {LOG_LINES_PER_WINDOW} are logged per {LOG_WINDOW_S:g}s)"
            )
        self.window_ends = now + LOG_WINDOW_S
        self.said = self.left_out = 0


class ServeError(Exception):
    """The server cannot start (busy port, bad bind address): one line, exit 2."""


def _say(text: str) -> None:
    """The operator's log: one line on stderr per event (and the logging module for embedders)."""
    print(f"sandbox serve: {text}", file=sys.stderr, flush=True)
    log.info(text)


class Server:
    """Serves ``host`` on ``bind``; ``authorized`` is None only for ``--insecure``."""

    def __init__(
        self,
        host: Host,
        bind: str,
        *,
        server_key: tuple[bytes, bytes] | None,
        authorized: dict[bytes, str] | None,
        metrics: Metrics | None = None,
        drain_timeout: float = 30.0,
        client_timeout: float = CLIENT_TIMEOUT_S,
    ) -> None:
        self.host = host
        self.metrics = metrics
        self.drain_timeout = drain_timeout
        self.client_timeout = client_timeout
        self._authorized = authorized
        self._context = zmq.Context()
        self._zap = self._context.socket(zmq.REP)
        self._zap.linger = 0
        self._zap.bind("inproc://zeromq.zap.01")
        self._router = self._context.socket(zmq.ROUTER)
        self._router.linger = 1000
        # No frame bigger than the largest input a provider here accepts (a bigger one
        # drops its connection unread), and few queued per client: what one client can make
        # this process hold is about RCVHWM such frames, not RCVHWM of MAX_MESSAGE_BYTES.
        self.input_limit = max((p.policy.input for p in host.providers()), default=0)
        self._router.setsockopt(zmq.MAXMSGSIZE, wire.frame_limit(self.input_limit))
        self._router.setsockopt(zmq.RCVHWM, RCVHWM)
        self._router.setsockopt(zmq.SNDHWM, SNDHWM)
        # A reply to a client whose queue is full fails (EAGAIN) instead of vanishing: it is
        # kept and sent later, so a client busy for a while still gets every outcome.
        self._router.setsockopt(zmq.ROUTER_MANDATORY, 1)
        self._router.setsockopt(zmq.HEARTBEAT_IVL, HEARTBEAT_IVL_MS)
        self._router.setsockopt(zmq.HEARTBEAT_TIMEOUT, HEARTBEAT_TIMEOUT_MS)
        self._router.setsockopt(zmq.HEARTBEAT_TTL, HEARTBEAT_TIMEOUT_MS)
        # A connection gets a few seconds for its handshake, not libzmq's 30: until then it
        # holds a descriptor, and anyone who can reach the port can open connections.
        self._router.setsockopt(zmq.HANDSHAKE_IVL, HANDSHAKE_IVL_MS)
        self._router.zap_domain = ZAP_DOMAIN
        raise_descriptor_limit()
        self._guard = ConnectionGuard(
            handshake_bytes=HANDSHAKE_BYTES if server_key is not None else NULL_HANDSHAKE_BYTES
        )
        # The socket monitor's events, with room for a flood's (a full queue drops events;
        # the guard survives lost ones, but should see them).
        monitor_address = f"inproc://sandbox-serve-monitor-{id(self):x}"
        self._router.monitor(
            monitor_address, zmq.EVENT_ACCEPTED | zmq.EVENT_DISCONNECTED | zmq.EVENT_CLOSED
        )
        self._monitor = self._context.socket(zmq.PAIR)
        self._monitor.linger = 0
        self._monitor.rcvhwm = MONITOR_EVENTS_QUEUED
        self._monitor.connect(monitor_address)
        if server_key is not None:
            self._router.curve_server = True
            self._router.curve_publickey, self._router.curve_secretkey = server_key
        try:
            self._router.bind(bind)
        except zmq.ZMQError as exc:
            self._close_sockets()
            raise ServeError(f"cannot bind {bind}: {exc.strerror}") from None
        except (UnicodeError, TypeError, ValueError) as exc:  # (not even an address)
            self._close_sockets()
            raise ServeError(f"cannot bind {bind!r}: {type(exc).__name__}") from None
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_w, False)
        self._done: collections.deque[tuple[bytes, str, CallFuture, str]] = collections.deque()
        self._in_flight: dict[tuple[bytes, str], CallFuture] = {}
        #: Calls in flight or preparing, per tenant, and whose each of them is (for the
        #: share of MAX_IN_FLIGHT each tenant may hold).
        self._held: dict[Hashable, int] = {}
        self._holder: dict[Key, Hashable] = {}
        #: Calls whose large input is being decoded (see _LargeInputs), and those of them a
        #: cancel (the client's, a drain's, a gone client's) came for meanwhile.
        self._preparing: set[Key] = set()
        self._cancel_early: set[Key] = set()
        self._cancel_all = False
        self._prepared: collections.deque[tuple[Key, str, CallFuture]] = collections.deque()
        self._large = _LargeInputs(host, self._hand_over)
        self._unacked: set[tuple[bytes, str]] = set()
        self._last_seen: dict[bytes, float] = {}
        self._backlog: dict[bytes, collections.deque[bytes]] = {}
        self._backlog_bytes: dict[bytes, int] = {}
        #: Whose each backlog is, and the replies and bytes each tenant's backlogs hold.
        self._backlog_tenant: dict[bytes, Hashable] = {}
        self._tenant_backlog: dict[Hashable, list[int]] = {}
        self._overflowed: set[bytes] = set()
        self._next_sweep = 0.0
        self._connections = _Limited("connection lines were left out")
        self._failures = _Limited("failed requests were not logged")
        self._bounded = _Limited("connections were closed at the bounds")
        #: The catalog as last encoded for ``hello``, and the descriptors it was encoded from.
        self._catalog_sent: tuple[tuple[Any, ...], bytes] = ((), b"[]")
        self._draining = False
        self._stop = False

    # ------------------------------------------------------------------ lifetime

    def request_drain(self, *_: object) -> None:
        """Signal-safe: start draining (a second request stops at once)."""
        if self._draining:
            self._stop = True
        self._draining = True
        self._wake()

    def _wake(self) -> None:
        try:
            os.write(self._wake_w, b"x")
        except (BlockingIOError, OSError):
            pass

    def serve_forever(self) -> None:
        """Run until SIGTERM/SIGINT (drain) or :meth:`request_drain`."""
        poller = zmq.Poller()
        poller.register(self._router, zmq.POLLIN)
        poller.register(self._zap, zmq.POLLIN)
        poller.register(self._wake_r, zmq.POLLIN)
        poller.register(self._monitor, zmq.POLLIN)
        drain_deadline: float | None = None
        ack_deadline: float | None = None
        cancelled = False
        while True:
            events = dict(poller.poll(10 if self._backlog else 200))
            if self._wake_r in events:
                os.read(self._wake_r, 65536)
            if self._monitor in events:
                self._watch_connections()
            if self._zap in events:
                self._answer_zap()
            # A bounded batch: a client that sends faster than this thread handles must not
            # keep it reading for ever while other clients' outcomes wait to be sent (and
            # handshakes to be answered); what is left is read on the next turn.
            turn_ends = time.monotonic() + RECV_BATCH_S
            for _ in range(RECV_BATCH if self._router in events else 0):
                if time.monotonic() > turn_ends:
                    break
                received = self._receive()
                if received is None:
                    break
                self._handle_guarded(*received)
            self._connections.flush()
            self._failures.flush()
            self._bounded.flush()
            self._send_backlog()
            self._take_prepared()
            self._send_done()
            self._cancel_abandoned()
            if self._draining:
                now = time.monotonic()
                if drain_deadline is None:
                    drain_deadline = now + self.drain_timeout
                    _say(
                        f"draining: {len(self._in_flight) + len(self._preparing)} calls running, "
                        "refusing new ones, "
                        f"waiting up to {self.drain_timeout:g}s"
                    )
                if not self._in_flight and not self._preparing:
                    if ack_deadline is None:
                        ack_deadline = now + ACK_WAIT_S
                    if not self._unacked or now >= ack_deadline:
                        break
                    continue
                if (now >= drain_deadline or self._stop) and not cancelled:
                    _say(
                        f"drain timeout: cancelling {len(self._in_flight) + len(self._preparing)}"
                        " calls"
                    )
                    cancelled = True
                    self._cancel_all = True
                    for future in list(self._in_flight.values()):
                        future.cancel()
                    self._large.cancel_waiting()
                    drain_deadline = now + 10.0  # their Cancelled outcomes, then give up
                elif cancelled and now >= drain_deadline:
                    self._cancel_preparing()
                    break
        self._connections.flush(last=True)
        self._bounded.flush(last=True)
        self._failures.flush(last=True)
        _say("drained; stopping")

    def _cancel_preparing(self) -> None:
        """Answer Cancelled for every call still being prepared when the drain gives up (the
        one whose input is being decoded right then), rather than leave its client waiting."""
        for identity, request_id in list(self._preparing):
            error = Cancelled("the server is shutting down")
            reply = wire.outcome_reply(request_id, Outcome.failure(error))
            with contextlib.suppress(zmq.ZMQError):
                self._router.send_multipart([identity, reply], zmq.NOBLOCK)
        self._preparing.clear()

    def close(self) -> None:
        self._large.close()
        self._close_sockets()
        for fd in (self._wake_r, self._wake_w):
            try:
                os.close(fd)
            except OSError:
                pass

    def _close_sockets(self) -> None:
        with contextlib.suppress(zmq.ZMQError):
            self._router.disable_monitor()
        self._monitor.close()
        self._router.close()
        self._zap.close()
        self._context.term()

    # ------------------------------------------------------------------ connections

    def _watch_connections(self) -> None:
        """The socket monitor's events so far: connections accepted and ended, bounded by
        ``host.remote.connections`` (all of them read first, so that a descriptor's end and
        its reuse are both known before one is shut down)."""
        events: list[tuple[int, int]] = []
        while len(events) < 10_000:
            try:
                frames = self._monitor.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                break
            if len(frames) >= 1 and len(frames[0]) >= 6:
                event, value = struct.unpack("=HI", frames[0][:6])
                events.append((event, value))
        for event, fd in events:
            if event == zmq.EVENT_ACCEPTED:
                for line in self._guard.accepted(fd):
                    self._bounded.say(line)
                    if self.metrics is not None:
                        self.metrics.closed_at_bounds.inc()
            else:
                self._guard.ended(fd)

    # ------------------------------------------------------------------ ZAP

    def _answer_zap(self) -> None:
        """Authenticate one handshake: one log line per connection, accepted or refused."""
        try:
            frames = self._zap.recv_multipart(zmq.NOBLOCK)
        except zmq.Again:
            return
        if len(frames) < 6:
            return
        version, request_id, _domain, address, _identity, mechanism = frames[:6]
        peer = address.decode("ascii", "replace")
        status, text, user = b"400", b"unknown key", b""
        if mechanism == b"CURVE" and len(frames) >= 7 and self._authorized is not None:
            public = z85.encode(frames[6])
            name = self._authorized.get(public)
            if name is not None:
                status, text, user = b"200", b"OK", name.encode()
                self._connections.say(
                    f"connection from {peer}: client key {name} ({public.decode()})"
                )
            else:
                self._connections.say(
                    f"refused connection from {peer}: key {public.decode()} is not authorized"
                )
                if self.metrics is not None:
                    self.metrics.refused.inc()
        elif mechanism == b"NULL" and self._authorized is None:
            status, text = b"200", b"OK"
            self._connections.say(
                f"connection from {peer} (INSECURE: no encryption, no authentication)"
            )
        else:
            self._connections.say(
                f"refused connection from {peer}: mechanism {mechanism.decode('ascii', '?')}"
            )
            if self.metrics is not None:
                self.metrics.refused.inc()
        self._zap.send_multipart([version, request_id, status, text, user, b""])

    # ------------------------------------------------------------------ requests

    def _reply(self, identity: bytes, body: bytes, tenant: Hashable = None) -> None:
        """Send ``body``; if the client's queue is full (it reads slower than its calls end),
        keep it, in order, until there is room (see :meth:`_send_backlog`), within what its
        tenant (``tenant``: the key it came with; None: the connection) may have kept."""
        backlog = self._backlog.get(identity)
        if backlog is None:
            try:
                self._router.send_multipart([identity, body], zmq.NOBLOCK)
                return
            except zmq.Again:
                backlog = self._backlog[identity] = collections.deque()
                owner = identity if tenant is None else tenant
                self._backlog_tenant[identity] = owner
                self._tenant_backlog.setdefault(owner, [0, 0])
            except zmq.ZMQError:  # EHOSTUNREACH: the client is gone, its loss
                return
        held = self._tenant_backlog[self._backlog_tenant[identity]]
        if held[0] >= MAX_BACKLOG or held[1] + len(body) > MAX_BACKLOG_BYTES:
            if identity not in self._overflowed:
                self._overflowed.add(identity)
                _say(
                    f"a client does not read its replies ({held[0]} replies, {held[1]} bytes "
                    "wait for its key): dropping more"
                )
            return
        backlog.append(body)
        self._backlog_bytes[identity] = self._backlog_bytes.get(identity, 0) + len(body)
        held[0] += 1
        held[1] += len(body)

    def _send_backlog(self) -> None:
        """Send what waits for clients whose queue was full, as far as there is room now."""
        for identity in list(self._backlog):
            backlog = self._backlog[identity]
            held = self._tenant_backlog[self._backlog_tenant[identity]]
            try:
                while backlog:
                    self._router.send_multipart([identity, backlog[0]], zmq.NOBLOCK)
                    size = len(backlog.popleft())
                    self._backlog_bytes[identity] -= size
                    held[0] -= 1
                    held[1] -= size
            except zmq.Again:
                continue
            except zmq.ZMQError:  # gone
                pass
            self._forget_backlog(identity)

    def _forget_backlog(self, identity: bytes) -> None:
        backlog = self._backlog.pop(identity, None)
        size = self._backlog_bytes.pop(identity, 0)
        self._overflowed.discard(identity)
        if backlog is None:
            return
        owner = self._backlog_tenant.pop(identity)
        held = self._tenant_backlog[owner]
        held[0] -= len(backlog)
        held[1] -= size
        if owner not in self._backlog_tenant.values():
            del self._tenant_backlog[owner]

    def _cancel_abandoned(self) -> None:
        """Cancel the calls of clients silent for ``client_timeout`` (checked once a second)."""
        now = time.monotonic()
        if now < self._next_sweep:
            return
        self._next_sweep = now + 1.0
        gone = {i for i, seen in self._last_seen.items() if now - seen > self.client_timeout}
        if not gone:
            return
        abandoned = [(key, f) for key, f in self._in_flight.items() if key[0] in gone]
        self._cancel_early.update(k for k in self._preparing if k[0] in gone)
        for identity in gone:
            del self._last_seen[identity]
            self._forget_backlog(identity)
        if abandoned:
            _say(
                f"cancelling {len(abandoned)} calls of {len({k[0] for k, _ in abandoned})} "
                f"clients silent for {self.client_timeout:g}s (gone)"
            )
        for _, future in abandoned:
            future.cancel()

    def _receive(self) -> tuple[list[bytes], Hashable] | None:
        """The next request's frames and whose it is (None if none waits).

        The tenant is read from each message (its connection's ZAP user id), not kept per
        routing id: a routing id is the client's to choose (``ZMQ_ROUTING_ID``), so one kept
        from a connection that had it before would count another key's calls as that one's
        (and one kept for each connection whose requests were all malformed was never
        forgotten)."""
        try:
            parts = self._router.recv_multipart(zmq.NOBLOCK, copy=False)
        except zmq.Again:
            return None
        frames = [part.bytes for part in parts]
        return frames, self._tenant_of(parts[-1], frames[0])

    def _tenant_of(self, part: zmq.Frame, identity: bytes) -> Hashable:
        """Whose calls a connection's are, for the providers' fair queues: the name of its
        client key (ZAP's user id), so that a client opening more connections gets no bigger
        share; without keys (``--insecure``), the connection."""
        try:
            user = part.get("User-Id")
        except (zmq.ZMQError, KeyError):
            user = ""
        return f"key:{user}" if user else identity

    def _handle_guarded(self, frames: list[bytes], tenant: Hashable) -> None:
        """:meth:`_handle`; a request it fails on (a bug) is answered with an error, and the
        server goes on serving the other clients rather than dying of one client's message."""
        try:
            self._handle(frames, tenant)
        except Exception as exc:
            log.exception("request from a client failed")
            self._failures.say(
                f"a request failed on the server: {type(exc).__name__}: {str(exc)[:200]}"
            )
            error = f"the server failed on this request: {type(exc).__name__}"
            self._reply(frames[0], protocol.dumps({"id": "", "error": error}), tenant)

    def _handle(self, frames: list[bytes], tenant: Hashable) -> None:
        identity, rest = frames[0], frames[1:]
        if not rest:
            return
        try:
            envelope = wire.parse_envelope(rest[0])
        except wire.BadRequest as exc:
            refusal = protocol.dumps({"id": exc.request_id, "error": str(exc)})
            self._reply(identity, refusal, tenant)
            return
        self._last_seen[identity] = time.monotonic()
        request_id, op = envelope["id"], envelope["op"]
        if op == "call":
            self._call(identity, request_id, envelope, rest[1:], tenant)
        elif op == "ack":
            self._unacked.discard((identity, request_id))
        elif op == "cancel":
            future = self._in_flight.get((identity, request_id))
            if future is not None:
                future.cancel()
            elif (identity, request_id) in self._preparing:
                self._cancel_early.add((identity, request_id))
        elif op == "hello":
            reply = b'{"id":%s,"value":%s}' % (protocol.dumps(request_id), self._catalog_json())
            self._reply(identity, reply, tenant)
        elif op == "providers":
            value = [p.to_dict() for p in self.host.providers()]
            self._reply(identity, protocol.dumps({"id": request_id, "value": value}), tenant)
        elif op == "stats":
            stats = self.host.stats()
            self._reply(identity, protocol.dumps({"id": request_id, "value": stats}), tenant)

    def _catalog_json(self) -> bytes:
        """The catalog's JSON for a ``hello``, encoded again only when the catalog changed
        (a descriptor is never changed in place: a reload makes new ones). Encoding it took
        about 5 ms per MB of catalog on this thread, which every client's requests wait for,
        and a client may ask in a loop."""
        descriptors = tuple(self.host.catalog.find_all())
        sent, encoded = self._catalog_sent
        if len(sent) != len(descriptors) or any(
            a is not b for a, b in zip(sent, descriptors, strict=True)
        ):
            encoded = protocol.dumps([d.to_dict() for d in descriptors])
            self._catalog_sent = (descriptors, encoded)
        return encoded

    def _call(
        self,
        identity: bytes,
        request_id: str,
        envelope: dict[str, Any],
        rest: list[bytes],
        tenant: Hashable,
    ) -> None:
        key = (identity, request_id)
        if self._draining:
            body = {"id": request_id, "refused": "the server is draining (shutting down)"}
            self._unacked.add(key)
            self._reply(identity, protocol.dumps({**body, "ack": True}), tenant)
            return
        if key in self._in_flight or key in self._preparing:
            duplicate = protocol.dumps({"id": request_id, "error": "duplicate id"})
            self._reply(identity, duplicate, tenant)
            return
        total, mine = len(self._in_flight) + len(self._preparing), self._held.get(tenant, 0)
        if not admits(total, mine, len(self._held), MAX_IN_FLIGHT):
            error = Overloaded(
                f"the server has {total} calls in flight, {mine} of them this client key's "
                f"(its share of {MAX_IN_FLIGHT}); try again later"
            )
            self._reply(identity, wire.outcome_reply(request_id, Outcome.failure(error)), tenant)
            return
        action: str = envelope["action"]
        frame = rest[0] if rest else None
        if frame is not None and (len(frame) > LARGE_INPUT_BYTES or self._costly(action, frame)):
            if not self._large.put(tenant, key, action, frame, envelope.get("timeout")):
                error = Overloaded(
                    f"the server is decoding {MAX_LARGE_PER_CLIENT} large inputs of this "
                    f"client key (or {MAX_LARGE} in all); try again later"
                )
                reply = wire.outcome_reply(request_id, Outcome.failure(error))
                self._reply(identity, reply, tenant)
                return
            self._hold(key, tenant)
            self._preparing.add(key)
            return
        self._hold(key, tenant)
        timeout = envelope.get("timeout")
        self._track(key, action, _submit(self.host, action, frame, timeout, tenant))

    def _costly(self, action: str, frame: bytes) -> bool:
        """True if checking this (small) input against its schema takes more than a trial's
        budget, so that it must be prepared off the server's thread like a large input: a
        schema can cost seconds for a small value (``stall.take_many``: 4.7 s for 12 KB), and on
        this thread every client's requests and outcomes waited for it, once per request."""
        try:
            value = protocol.loads(frame, max_depth=protocol.MAX_INPUT_DEPTH)
        except protocol.ProtocolError:
            return False  # (refused as not JSON, by _submit)
        return self.host.input_check_is_costly(action, value)

    def _hold(self, key: Key, tenant: Hashable) -> None:
        """A call is in flight (or preparing) until its outcome is sent: its tenant holds it."""
        self._holder[key] = tenant
        self._held[tenant] = self._held.get(tenant, 0) + 1

    def _release(self, key: Key) -> None:
        if key not in self._holder:
            return
        tenant = self._holder.pop(key)
        left = self._held[tenant] - 1
        if left:
            self._held[tenant] = left
        else:
            del self._held[tenant]

    def _hand_over(self, key: Key, action: str, future: CallFuture) -> None:
        """On the large inputs' thread: a call was submitted; the server's thread tracks it."""
        self._prepared.append((key, action, future))
        self._wake()

    def _take_prepared(self) -> None:
        while self._prepared:
            key, action, future = self._prepared.popleft()
            self._preparing.discard(key)
            self._track(key, action, future)
            if key in self._cancel_early or self._cancel_all:
                self._cancel_early.discard(key)
                future.cancel()

    def _track(self, key: Key, action: str, future: CallFuture) -> None:
        """Send the call's outcome when it ends."""
        identity, request_id = key
        self._in_flight[key] = future

        def done(_: object) -> None:  # on the host's loop thread: hand over, wake ours
            self._done.append((identity, request_id, future, action))
            self._wake()

        future.add_done_callback(done)

    def _send_done(self) -> None:
        while self._done:
            identity, request_id, future, action = self._done.popleft()
            self._in_flight.pop((identity, request_id), None)
            tenant = self._holder.get((identity, request_id))
            self._release((identity, request_id))
            outcome = future.outcome
            if outcome is None:
                outcome = Outcome.failure(Cancelled("the call was cancelled"))
            if self._draining:
                self._unacked.add((identity, request_id))
            reply = wire.outcome_reply(request_id, outcome, ack=self._draining)
            self._reply(identity, reply, tenant)
            if self.metrics is not None:
                # Labels only for actions the catalog has: a client must not be able to grow
                # the metrics without bound by inventing action names.
                descriptor = self.host.catalog.find(action)
                if descriptor is None:
                    self.metrics.record("", "(unknown)", outcome)
                else:
                    self.metrics.record(descriptor.provider, action, outcome)


def install_signals(server: Server) -> None:
    """SIGTERM, SIGINT and SIGHUP (unless ignored, as under nohup) drain; a second stops at
    once. SIGHUP was left to the CLI's handler: a server whose terminal went away did not
    drain (its running calls ended HostUnavailable), and one hung up during its close cut
    the close short."""
    signal.signal(signal.SIGTERM, server.request_drain)
    signal.signal(signal.SIGINT, server.request_drain)
    if signal.getsignal(signal.SIGHUP) is not signal.SIG_IGN:
        signal.signal(signal.SIGHUP, server.request_drain)
