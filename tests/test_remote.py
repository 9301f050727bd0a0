"""Remote hosts: real ``sandbox serve`` processes on 127.0.0.1, real CURVE, real kills."""

from __future__ import annotations

import collections
import contextlib
import itertools
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Iterator
from concurrent.futures import wait
from pathlib import Path

import psutil
import pytest
import zmq
from prometheus_client.parser import text_string_to_metric_families

from host import (
    CallFuture,
    Cancelled,
    HostGroup,
    HostUnavailable,
    InputInvalid,
    Overloaded,
    RemoteHost,
    Timeout,
)
from host.remote import wire
from host.remote.connections import MAX_HANDSHAKING_PER_ADDRESS
from host.remote.keys import keygen, load_public, load_secret
from host.remote.metrics import MAX_METRICS_CONNECTIONS, METRICS_CONNECTION_S

ECHO = Path(__file__).parent / "providers" / "echo.py"
TEXT = Path(__file__).parent.parent / "providers" / "examples" / "text.py"
LEDGER = Path(__file__).parent / "providers" / "ledger.py"
HOSTILE = Path(__file__).parent.parent / "providers" / "examples" / "hostile.py"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def keys(tmp_path: Path) -> Path:
    keygen(tmp_path / "keys", "server")
    keygen(tmp_path / "keys", "client")
    keygen(tmp_path / "keys", "stranger")
    (tmp_path / "auth").mkdir()
    (tmp_path / "auth" / "client.key").write_bytes((tmp_path / "keys" / "client.key").read_bytes())
    (tmp_path / "sandbox.toml").write_text(f'[providers.echo]\nsource = "{ECHO}"\n')
    return tmp_path


class Servers:
    def __init__(self, base: Path) -> None:
        self.base = base
        self.procs: list[subprocess.Popen[bytes]] = []
        self.before = {p.pid for p in psutil.process_iter()}

    def start(
        self,
        *extra: str,
        endpoint: str | None = None,
        config: str = "sandbox.toml",
        constants: dict[str, int] | None = None,
    ) -> tuple[str, subprocess.Popen[bytes]]:
        """A server; ``constants``: host.remote.server's figures this one has instead (a
        bound a test reaches in seconds)."""
        endpoint = endpoint or f"tcp://127.0.0.1:{free_port()}"
        python = ["-m", "host.cli"]
        if constants:
            python = ["-c", (
                "import host.remote.server as s\n"
                + "".join(f"s.{name} = {value!r}\n" for name, value in constants.items())
                + "from host.cli import main\nraise SystemExit(main())"
            )]  # fmt: skip
        proc = subprocess.Popen(
            [sys.executable, *python, "serve", "--bind", endpoint,
             "--config", str(self.base / config),
             "--server-key", str(self.base / "keys" / "server.key_secret"),
             "--authorized", str(self.base / "auth"), "--drain-timeout", "1", *extra],
            stderr=subprocess.PIPE, start_new_session=True,
        )  # fmt: skip
        self.procs.append(proc)
        assert proc.stderr is not None
        line = proc.stderr.readline().decode()
        assert "serving" in line, line
        return endpoint, proc

    def client(self, endpoint: str, key: str = "client", **kw: object) -> RemoteHost:
        return RemoteHost(
            endpoint, server_key=self.base / "keys" / "server.key",
            client_key=self.base / "keys" / f"{key}.key_secret", **kw,  # type: ignore[arg-type]
        )  # fmt: skip

    def close(self) -> None:
        for proc in self.procs:  # a drain stops its workers; a kill only if that fails
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self.procs:
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=30)
        # A SIGKILLed server's workers notice it is gone (host.orphans) and exit; wait for
        # them, and kill what remains of them after a bound.
        # They are re-parented to this process (pid 1 of the run's namespace), which reaps
        # them here as an init would.
        deadline = time.monotonic() + 15
        while (left := self._new_processes()) and time.monotonic() < deadline:
            for process in left:
                with contextlib.suppress(ChildProcessError):
                    os.waitpid(process.pid, os.WNOHANG)
            time.sleep(0.1)
        for process in left:
            try:
                process.kill()
            except psutil.Error:
                pass
        psutil.wait_procs(left, timeout=10)

    def _new_processes(self) -> list[psutil.Process]:
        return [
            p for p in psutil.Process().children(recursive=True)
            if p.pid not in self.before
        ] + [
            p for p in psutil.process_iter()
            if p.pid != os.getpid() and p.pid not in self.before and _parent(p) == os.getpid()
        ]


def _parent(process: psutil.Process) -> int | None:
    """The parent's pid, or None for a process that exited while the table was read.

    An orphaned worker exits on its own while close() looks at it (CI run of a294d53: a
    NoSuchProcess from ppid() ended the cleanup early and its processes were counted as
    leaked)."""
    try:
        return process.ppid()
    except psutil.Error:
        return None


@pytest.fixture
def servers(keys: Path) -> Iterator[Servers]:
    s = Servers(keys)
    try:
        yield s
    finally:
        s.close()


def test_calls_and_outcomes_cross_the_wire(servers: Servers) -> None:
    endpoint, _ = servers.start()
    with servers.client(endpoint) as remote:
        assert remote.call("echo.echo", {"value": "hi"}) == "hi"
        assert remote.catalog.find("echo.add") is not None
        with pytest.raises(InputInvalid) as caught:
            remote.call("echo.add", {"a": "x"})
        assert "$.a" in str(caught.value.details["path"])
        assert remote.run("echo.slow", {"seconds": 5}, timeout=0.5).error.type == "Timeout"
        shouted = remote.run("echo.shout", {"text": "hi"})  # its two streams, kept apart
        assert (shouted.stdout, shouted.stderr) == ("out:hi\nout:hi!\n", "err:hi\nerr:hi!\n")
        assert [p.name for p in remote.providers()] == ["echo"]
        assert remote.stats()["echo"]["calls"]["ok"] == 2


def test_a_server_restarted_with_another_config_is_seen_after_the_reconnection(
    servers: Servers,
) -> None:
    """The catalog was read once, at connect: a server that came back on the same address
    with other providers was called through a stale catalog (its new actions refused locally
    as unknown, its old ones sent to a server without them)."""
    endpoint, proc = servers.start()
    (servers.base / "other.toml").write_text(
        f'[defaults]\ninput = "64KiB"\n[providers.text]\nsource = "{TEXT}"\n'
        f'[providers.echo]\nsource = "{ECHO}"\n'
    )
    with servers.client(endpoint) as remote:
        assert remote.call("echo.echo", {"value": "hi"}) == "hi"
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
        deadline = time.monotonic() + 10  # (the server's heartbeat timeout is 3 s)
        while remote.available and time.monotonic() < deadline:
            time.sleep(0.05)
        servers.start(endpoint=endpoint, config="other.toml")
        deadline = time.monotonic() + 20
        while remote.catalog.find("text.upper") is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert remote.catalog.find("text.upper") is not None
        assert remote.call("text.upper", {"text": "hi"}) == "HI"
        # Its input limits are read again too: an input over the new 64 KiB is refused
        # here, as the server would; sent (the old limit, 1 MiB, was kept), the server
        # dropped the connection, and every call on it ended HostUnavailable.
        deadline = time.monotonic() + 20
        while remote._input_limits.get("echo") != 64 * 1024 and time.monotonic() < deadline:
            time.sleep(0.05)
        slow = remote.submit("text.upper", {"text": "still"})
        with pytest.raises(InputInvalid):
            remote.call("echo.echo", {"value": "x" * 600_000})
        assert slow.result(timeout=30) == "STILL"
        assert remote.call("echo.echo", {"value": "hi"}) == "hi"


def test_refused_key_is_a_clear_error_within_seconds(servers: Servers) -> None:
    endpoint, _ = servers.start()
    started = time.monotonic()
    with pytest.raises(HostUnavailable, match="refused this client's key"):
        servers.client(endpoint, "stranger")
    assert time.monotonic() - started < 5


def test_killed_server_ends_calls_in_flight(servers: Servers) -> None:
    endpoint, proc = servers.start()
    with servers.client(endpoint) as remote:
        futures = [remote.submit("echo.slow", {"seconds": 30}) for _ in range(3)]
        time.sleep(1)
        os.killpg(proc.pid, signal.SIGKILL)
        started = time.monotonic()
        done, _ = wait(futures, timeout=10)
        assert len(done) == 3
        for f in futures:
            assert isinstance(f.exception(), HostUnavailable)
            assert f.exception().details["delivered"] is True  # type: ignore[union-attr]
        assert time.monotonic() - started < 10


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGHUP], ids=["sigterm", "sighup"])
def test_sigterm_drains(servers: Servers, signum: signal.Signals) -> None:
    """A running call finishes during the drain; a new one is refused as never delivered.
    SIGHUP (the terminal went away) drains too: it did not, and the call in flight ended
    HostUnavailable."""
    endpoint, proc = servers.start("--drain-timeout", "30")
    with servers.client(endpoint) as remote:
        running = remote.submit("echo.slow", {"seconds": 1.5})
        time.sleep(0.5)
        proc.send_signal(signum)
        time.sleep(0.3)
        late = remote.run("echo.echo", {"value": "late"})
        assert running.result(timeout=30) == 1.5
        assert isinstance(late.error, HostUnavailable)
        assert late.error.details["delivered"] is False
        assert not remote.available  # a draining server gets no more calls
    assert proc.wait(timeout=20) == 0


def test_a_drained_server_closes_only_after_its_last_replies_are_read(
    servers: Servers,
) -> None:
    """Calls that finish as the drain ends reach every client: the server waits for their
    acknowledgements, since a client's socket discards replies it had not read yet when the
    connection drops (so an outcome sent just before the close could be lost)."""
    endpoint, proc = servers.start("--drain-timeout", "30")
    clients = [servers.client(endpoint) for _ in range(2)]
    interval = sys.getswitchinterval()
    try:
        running = [c.submit("echo.slow", {"seconds": 1.0}) for c in clients]
        time.sleep(0.3)
        proc.send_signal(signal.SIGTERM)
        # A busy engine: this thread keeps the GIL for up to 1 s at a time, so the clients'
        # threads read the replies late, after the server would have closed.
        sys.setswitchinterval(1.0)
        spin_until = time.monotonic() + 2.0
        while time.monotonic() < spin_until:
            pass
        sys.setswitchinterval(interval)
        done, _ = wait(running, timeout=60)
        assert len(done) == len(running)
        errors = [f.outcome.error for f in running if f.outcome is None or not f.outcome.ok]
        assert not errors, errors
    finally:
        sys.setswitchinterval(interval)
        for c in clients:
            c.close()
    assert proc.wait(timeout=20) == 0


def test_drain_timeout_cancels_and_the_client_hears_it(servers: Servers) -> None:
    """Past ``--drain-timeout`` a running call is cancelled, and its ``Cancelled`` outcome
    reaches the client before the server closes (not a lost connection)."""
    endpoint, proc = servers.start("--drain-timeout", "0.5")
    with servers.client(endpoint) as remote:
        running = remote.submit("echo.slow", {"seconds": 30})
        time.sleep(1.0)
        proc.send_signal(signal.SIGTERM)
        done, _ = wait([running], timeout=30)
        assert done
        outcome = running.outcome
        assert outcome is not None and isinstance(outcome.error, Cancelled), outcome
    assert proc.wait(timeout=20) == 0


def test_a_drain_that_times_out_answers_the_calls_whose_inputs_wait_to_be_decoded(
    servers: Servers,
) -> None:
    """Large inputs are decoded on a thread of their own, one after another. A drain that
    timed out cancelled only the calls already running; the others were still decoded first,
    and the server gave up 10 s later: 57 of 64 calls got no answer at all. Each gets its
    one answer now (Cancelled, or the outcome it reached)."""
    endpoint, proc = servers.start("--drain-timeout", "0.5", "--client-timeout", "60")
    body = b'{"value":[' + b",".join([b"[]"] * 300_000) + b"]}"  # ~0.9 MB, slow to decode
    with zmq.Context() as context:
        sock = raw_dealer(context, servers, endpoint)
        ids = [f"L{i}" for i in range(24)]
        for request_id in ids:
            sock.send_multipart([wire.request("call", request_id, action="echo.echo"), body])
        time.sleep(1.0)
        proc.send_signal(signal.SIGTERM)
        answers: collections.Counter[str] = collections.Counter()
        deadline = time.monotonic() + 60
        while sum(answers.values()) < len(ids) and time.monotonic() < deadline:
            if sock.poll(200):
                reply = json.loads(sock.recv())
                answers[reply["id"]] += 1
                if reply.get("ack"):
                    sock.send(wire.request("ack", reply["id"]))
        sock.close()
    assert answers == dict.fromkeys(ids, 1), answers
    assert proc.wait(timeout=30) == 0


@pytest.fixture
def ledger(keys: Path) -> Iterator[Path]:
    """A config with the ledger provider, writing to a directory every worker uid may write
    (outside /tmp: each worker has a private /tmp)."""
    directory = Path(tempfile.mkdtemp(prefix="sandbox-ledger-", dir="/var/tmp"))
    directory.chmod(0o777)
    (keys / "ledger.toml").write_text(
        f'[providers.ledger]\nsource = "{LEDGER}"\n'
        f'[providers.ledger.policy]\nwrite = ["{directory}"]\n'
    )
    yield directory
    shutil.rmtree(directory, ignore_errors=True)


def _runs(directory: Path) -> collections.Counter[str]:
    """How many times each token's call really ran."""
    return collections.Counter(p.name.split(".")[0] for p in directory.iterdir())


def test_group_survives_a_killed_server(servers: Servers, ledger: Path) -> None:
    """One server of three killed under load: every call ends in one outcome, no call that
    may have run is re-sent (the provider's own count says each ran at most once), and what
    never ran fails over."""
    config = str(servers.base / "ledger.toml")
    started = [servers.start("--config", config) for _ in range(3)]
    remotes = [servers.client(e) for e, _ in started]
    tokens = (f"t{i}" for i in itertools.count())

    def mark(seconds: float) -> tuple[str, CallFuture]:
        token = next(tokens)
        call = {"directory": str(ledger), "token": token, "seconds": seconds}
        return token, group.submit("ledger.mark", call)

    with HostGroup(remotes) as group:
        first = [mark(0.2) for _ in range(30)]
        time.sleep(0.3)
        os.killpg(started[0][1].pid, signal.SIGKILL)
        # Submitted at once: some may be written to the dying connection before the client
        # hears of the death; those may have run, so they end HostUnavailable(delivered=True)
        # (ledger.mark is not safe_rerun); every other one fails over and succeeds.
        racing = [mark(0.05) for _ in range(20)]
        deadline = time.monotonic() + 15
        while remotes[0].available and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not remotes[0].available
        later = [mark(0.05) for _ in range(20)]
        done, _ = wait([f for _, f in first + racing + later], timeout=60)
        assert len(done) == 70  # every call has an outcome
        # The survivors' providers (before, the dead member's error escaped providers()).
        assert [p.name for p in group.providers()] == ["ledger", "ledger"]
        remotes[0].connect_timeout = 1.0  # (asked only when no member is available)
        with pytest.raises(HostUnavailable):
            HostGroup(remotes[:1]).providers()
    runs = _runs(ledger)
    assert max(runs.values()) == 1, runs  # none ran twice
    for token, f in first + racing:
        assert f.outcome is not None
        if f.outcome.ok:
            assert f.outcome.value == token and runs[token] == 1
        else:
            assert isinstance(f.outcome.error, HostUnavailable), f.outcome.error
            assert f.outcome.error.details["delivered"] is True, f.outcome.error
    # once the group knows the server is gone, no call is sent there
    for token, f in later:
        assert f.outcome is not None and f.outcome.ok, f.outcome
        assert runs[token] == 1


def test_a_group_resends_a_safe_rerun_call_lost_with_its_server(
    servers: Servers, ledger: Path
) -> None:
    """A safe_rerun call that was running on a killed server is sent again elsewhere and ends
    ok, once as far as the caller sees, though it ran on both."""
    config = str(servers.base / "ledger.toml")
    started = [servers.start("--config", config) for _ in range(2)]
    remotes = [servers.client(e) for e, _ in started]
    with HostGroup(remotes) as group:
        calls = [
            group.submit("ledger.mark_idempotent",
                         {"directory": str(ledger), "token": f"s{i}", "seconds": 0.5})
            for i in range(6)
        ]  # fmt: skip
        time.sleep(0.25)  # both servers are running some of them
        os.killpg(started[0][1].pid, signal.SIGKILL)
        done, _ = wait(calls, timeout=60)
        assert len(done) == 6
        assert [c.outcome.value for c in calls if c.outcome] == [f"s{i}" for i in range(6)]
    runs = _runs(ledger)
    assert sorted(runs) == [f"s{i}" for i in range(6)]
    assert max(runs.values()) == 2  # the killed server's were run again


def test_metrics_scraped_and_parsed(servers: Servers) -> None:
    port = free_port()
    endpoint, _ = servers.start("--metrics", f"127.0.0.1:{port}")
    with servers.client(endpoint) as remote:
        remote.call("echo.echo", {"value": "x"})
        remote.run("echo.add", {"a": "x"})
    with pytest.raises(HostUnavailable):
        servers.client(endpoint, "stranger")
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }
    ok = ("sandbox_calls_total", (("action", "echo.echo"), ("outcome", "ok"), ("provider", "echo")))
    assert samples[ok] == 1
    assert samples[("sandbox_refused_connections_total", ())] >= 1
    assert any(name == "sandbox_workers" for name, _ in samples)


def test_busy_port_and_bad_key_exit_2(keys: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        base = [sys.executable, "-m", "host.cli", "serve", "--config", str(keys / "sandbox.toml"),
                "--authorized", str(keys / "auth")]  # fmt: skip
        proc = subprocess.run(
            [*base, "--bind", f"tcp://127.0.0.1:{port}",
             "--server-key", str(keys / "keys" / "server.key_secret")],
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert proc.returncode == 2 and "cannot bind" in proc.stderr, proc.stderr
        assert "Traceback" not in proc.stderr
    bad = subprocess.run(
        [*base, "--bind", "tcp://127.0.0.1:1", "--server-key", str(keys / "sandbox.toml")],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert bad.returncode == 2 and "sandbox.toml" in bad.stderr and "Traceback" not in bad.stderr
    # A key file that is not there says so (pyzmq's own words were "Invalid certificate file").
    missing = subprocess.run(
        [*base, "--bind", "tcp://127.0.0.1:1", "--server-key", str(keys / "nowhere.key_secret")],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert missing.returncode == 2 and "No such file or directory" in missing.stderr, missing
    # Not an address at all (a byte that is no UTF-8): a UnicodeEncodeError traceback, exit 1.
    odd = subprocess.run(
        [*base, "--bind", "tcp://\udcff:5555", "--server-key",
         str(keys / "keys" / "server.key_secret")],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert odd.returncode == 2 and "cannot bind" in odd.stderr, odd.stderr
    assert "Traceback" not in odd.stderr
    # A config that never ends (/dev/zero) was read until memory ran out.
    endless = subprocess.run(
        [sys.executable, "-m", "host.cli", "serve", "--config", "/dev/zero", "--authorized",
         str(keys / "auth"), "--bind", "tcp://127.0.0.1:1", "--server-key",
         str(keys / "keys" / "server.key_secret")],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert endless.returncode == 2 and "at most 16 MiB" in endless.stderr, endless.stderr


ABANDONING_CLIENT = """
import sys, time
from host import RemoteHost
remote = RemoteHost(sys.argv[1], server_key=sys.argv[2], client_key=sys.argv[3])
remote.submit("echo.slow", {"seconds": 60})
time.sleep(0.5)
print("submitted", flush=True)
time.sleep(120)
"""


def test_the_calls_of_a_client_that_died_are_cancelled(servers: Servers) -> None:
    """A client killed with a call running: the server notices its silence (no pings) and
    cancels the call, so an abandoned call does not hold a worker for its whole wall time."""
    endpoint, _ = servers.start("--client-timeout", "2")
    client = subprocess.Popen(
        [sys.executable, "-c", ABANDONING_CLIENT, endpoint,
         str(servers.base / "keys" / "server.key"),
         str(servers.base / "keys" / "client.key_secret")],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert client.stdout is not None
        assert client.stdout.readline().strip() == "submitted"
        with servers.client(endpoint) as observer:
            assert observer.stats()["echo"]["workers"]["busy"] == 1
            client.kill()
            client.wait()
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                calls = observer.stats()["echo"]["calls"]
                if calls.get("Cancelled"):
                    break
                time.sleep(0.2)
            assert calls.get("Cancelled") == 1, calls
            assert observer.stats()["echo"]["workers"]["busy"] == 0
            # a live client's long call is not cancelled: it pings
            assert observer.call("echo.slow", {"seconds": 3.5}) == 3.5
    finally:
        if client.poll() is None:
            client.kill()
            client.wait()


# ---------------------------------------------------------------------- hostile clients


def raw_dealer(
    context: zmq.Context[zmq.Socket[bytes]],
    servers: Servers,
    endpoint: str,
    key: str = "client",
    routing_id: bytes | None = None,
) -> zmq.Socket[bytes]:
    """A DEALER speaking CURVE with ``key``, written by hand: it sends whatever a test says
    (and names itself ``routing_id``, as any client may)."""
    sock = context.socket(zmq.DEALER)
    sock.linger = 0
    # A DEALER blocks a send while it has no connection, and one whose handshake was refused
    # has none until it reconnects: a test fails after 30 s rather than hanging (CI run 16).
    sock.sndtimeo = 30_000
    if routing_id is not None:
        sock.routing_id = routing_id
    sock.curve_serverkey = load_public(servers.base / "keys" / "server.key")
    sock.curve_publickey, sock.curve_secretkey = load_secret(
        servers.base / "keys" / f"{key}.key_secret"
    )
    sock.connect(endpoint)
    return sock


def test_a_timeout_too_big_for_a_float_is_refused_and_the_server_stays_up(
    servers: Servers,
) -> None:
    """A call whose timeout was a 400-digit JSON integer killed the server (OverflowError
    from math.isfinite, raised out of its loop): every client lost its calls."""
    endpoint, proc = servers.start()
    with zmq.Context() as context, servers.client(endpoint) as remote:
        hostile = raw_dealer(context, servers, endpoint)
        huge = b'{"op":"call","id":"h1","action":"echo.echo","timeout":' + b"9" * 400 + b"}"
        hostile.send_multipart([huge, b'{"value": "x"}'])
        assert hostile.poll(10_000), "no answer"
        reply = json.loads(hostile.recv())
        assert "timeout must be a positive number" in reply["error"], reply
        assert reply["id"] == "h1", reply  # (with its id, so a client's call ends)
        big = b'{"op":"call","id":"h2","action":"echo.echo","timeout":100000000000000000000}'
        hostile.send_multipart([big, b'{"value": "x"}'])  # big, but a float: accepted
        assert hostile.poll(10_000), "no answer"
        assert json.loads(hostile.recv())["outcome"]["result"] == "x"
        hostile.close()
        assert proc.poll() is None
        assert remote.call("echo.echo", {"value": "still"}) == "still"
        # A RemoteHost refuses what the server would, at once: a bool or a 400-digit
        # timeout was sent, refused without its id, and the call never ended. Infinity is
        # no deadline (JSON cannot carry it; it raised ValueError from the encoder).
        for bad in (True, 10**400, 0, -1.0, float("nan")):
            with pytest.raises(ValueError, match="timeout"):
                remote.submit("echo.echo", {"value": "x"}, timeout=bad)  # type: ignore[arg-type]
        assert remote.call("echo.echo", {"value": "inf"}, timeout=float("inf")) == "inf"


def test_hello_replies_carry_each_requests_id_and_the_whole_catalog(servers: Servers) -> None:
    """The catalog's JSON is encoded once per catalog and spliced into each ``hello`` reply
    (encoding it again cost the server's thread ~5 ms per MB for every request): each reply
    is still one JSON object with its own request's id, whatever characters the id holds,
    and the catalog RemoteHost reads."""
    endpoint, proc = servers.start()
    ids = [
        "h1", 'quote " and \\ backslash', "ünïcødé ✓", "\u2028 line sep", "x" * wire.MAX_ID_LENGTH
    ]
    with zmq.Context() as context, servers.client(endpoint) as remote:
        expected = sorted(
            (d.to_dict() for d in remote.catalog.find_all()), key=lambda d: d["full_name"]
        )
        assert expected, "the client read no catalog"
        sock = raw_dealer(context, servers, endpoint)
        for request_id in ids * 3:
            sock.send_multipart([wire.request("hello", request_id)])
            assert sock.poll(10_000), "no answer"
            (reply,) = sock.recv_multipart()
            body = json.loads(reply)
            assert body["id"] == request_id
            assert sorted(body["value"], key=lambda d: d["full_name"]) == expected
        sock.close()
    assert proc.poll() is None


FLOODER = """
import json, sys, time
import zmq
from host.remote.keys import load_public, load_secret
endpoint, server_key, client_key, seconds, frames = sys.argv[1:6]
frames = [f.encode() for f in json.loads(frames)]
context = zmq.Context()
sock = context.socket(zmq.DEALER)
sock.linger = 0
sock.sndhwm = 100_000
sock.curve_serverkey = load_public(server_key)
sock.curve_publickey, sock.curve_secretkey = load_secret(client_key)
sock.connect(endpoint)
print("flooding", flush=True)
end = time.monotonic() + float(seconds)
while time.monotonic() < end:
    try:
        sock.send_multipart(frames, zmq.NOBLOCK)
    except zmq.Again:
        time.sleep(0.001)
    while sock.poll(0):
        sock.recv_multipart()
"""


@contextlib.contextmanager
def flooding(servers: Servers, endpoint: str, seconds: float, *frames: str) -> Iterator[None]:
    """A hostile client process sending ``frames`` as fast as it can for ``seconds``."""
    proc = subprocess.Popen(
        [sys.executable, "-c", FLOODER, endpoint, str(servers.base / "keys" / "server.key"),
         str(servers.base / "keys" / "client.key_secret"), str(seconds), json.dumps(frames)],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "flooding"
        time.sleep(0.5)  # its handshake, and its first thousands of messages
        yield
    finally:
        proc.kill()
        proc.wait()


def latencies(remote: RemoteHost, seconds: float) -> list[float]:
    """A well-behaved client's call latencies over ``seconds`` of sequential echo calls.

    The tests bound the slowest (a stall), not how many calls fit (a rate: CI run 11 had 19
    where 20 were asked, under the hostile client's load on two cores)."""
    found = []
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        started = time.monotonic()
        assert remote.call("echo.echo", {"value": "x"}, timeout=30) == "x"
        found.append(time.monotonic() - started)
    return found


@pytest.mark.serial  # bounds a latency: alone, with --shards
def test_a_flood_of_pings_does_not_stall_another_clients_calls(servers: Servers) -> None:
    """The server read requests until none was left before it sent finished calls' outcomes:
    a client sending pings faster than it handles them kept every other client's outcomes
    (and every handshake) waiting for as long as the flood lasted."""
    endpoint, proc = servers.start()
    with servers.client(endpoint) as remote:
        with flooding(servers, endpoint, 6.0, '{"op": "ping", "id": "p"}'):
            found = latencies(remote, 4.0)
        assert proc.poll() is None
    assert len(found) >= 3 and max(found) < 1.5, (len(found), max(found))


@pytest.mark.serial  # bounds a latency: alone, with --shards
def test_frames_far_over_the_input_limit_are_dropped_unread(servers: Servers) -> None:
    """The server accepted frames of up to 256 MiB whatever its providers' input limits
    (1 MiB here), read each whole and decoded it on its one thread before the limit refused
    it: a client sending a few 60 MiB calls made it hold about a gigabyte and stalled every
    other client's calls for seconds. Now a frame over the largest input limit drops its
    connection unread; a well-behaved client refuses such an input itself, as the server
    would, and stays connected."""
    endpoint, proc = servers.start()
    server = psutil.Process(proc.pid)
    with zmq.Context() as context, servers.client(endpoint) as remote:
        with pytest.raises(InputInvalid, match="input limit is 1048576"):
            remote.call("echo.echo", {"value": "a" * (2 << 20)})
        assert remote.call("echo.echo", {"value": "a" * 1000}) == "a" * 1000
        baseline = server.memory_info().rss
        hostile = raw_dealer(context, servers, endpoint)
        body = b'{"value": "' + b"a" * (60 << 20) + b'"}'
        for i in range(3):
            envelope = json.dumps({"op": "call", "id": f"b{i}", "action": "echo.echo"})
            hostile.send_multipart([envelope.encode(), body], copy=False)
        peak, slowest = baseline, 0.0
        end = time.monotonic() + 8
        while time.monotonic() < end:
            peak = max(peak, server.memory_info().rss)
            started = time.monotonic()
            assert remote.call("echo.echo", {"value": "x"}, timeout=30) == "x"
            slowest = max(slowest, time.monotonic() - started)
        hostile.close()
        assert proc.poll() is None
    assert peak - baseline < 100 << 20, f"the server grew by {(peak - baseline) >> 20} MiB"
    assert slowest < 1.5, slowest


def test_a_client_that_reads_late_gets_every_outcome(servers: Servers) -> None:
    """Outcomes sent while a client's queue was full (it read late: a busy engine, a starved
    thread, thousands of calls ending meanwhile) were dropped by the ROUTER without a word:
    those calls never ended. Now they wait on the server and are sent when the client reads
    again."""
    endpoint, _ = servers.start()
    with zmq.Context() as context:
        client = raw_dealer(context, servers, endpoint)
        body = json.dumps({"value": "x" * 15_000}).encode()  # (under LARGE_INPUT_BYTES)
        sent = 0
        for _ in range(25):  # 2500 calls over 5 s, slower than the provider's queue fills
            for _ in range(100):
                envelope = json.dumps({"op": "call", "id": f"c{sent}", "action": "echo.echo"})
                client.send_multipart([envelope.encode(), body])
                sent += 1
            client.send(b'{"op": "ping", "id": "ping"}')  # alive, only busy
            time.sleep(0.2)
        with servers.client(endpoint) as observer:  # until every call has ended there
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline:
                if sum(observer.stats()["echo"]["calls"].values()) >= sent:
                    break
                client.send(b'{"op": "ping", "id": "ping"}')
                time.sleep(0.2)
        ids = set()
        while client.poll(3000):
            reply = json.loads(client.recv())
            ids.add(reply["id"])
        client.close()
    assert len(ids) == sent, f"{sent - len(ids)} of {sent} calls never ended"


@pytest.mark.serial  # bounds a latency: alone, with --shards
def test_large_inputs_of_one_client_do_not_stall_another_clients_calls(
    servers: Servers,
) -> None:
    """Each call input was decoded, copied and checked against its schema on the server's one
    thread: about 0.45 s for a 1 MiB array, so a client sending twenty of them held up every
    other client's requests and outcomes for nine seconds. Large inputs are now prepared on a
    thread of their own, clients in turn, a few per client at a time (more: Overloaded)."""
    endpoint, proc = servers.start()
    with zmq.Context() as context, servers.client(endpoint) as remote:
        big = "a" * 300_000  # a large input of a well-behaved client still goes through
        assert remote.call("echo.echo", {"value": big}) == big
        hostile = raw_dealer(context, servers, endpoint)
        body = b'{"value": [' + b"1," * 499_980 + b"1]}"  # not a string: InputInvalid
        for i in range(20):
            envelope = json.dumps({"op": "call", "id": f"h{i}", "action": "echo.echo"})
            hostile.send_multipart([envelope.encode(), body], copy=False)
        time.sleep(0.5)
        found = latencies(remote, 5.0)
        outcomes: collections.Counter[str] = collections.Counter()
        while sum(outcomes.values()) < 20 and hostile.poll(20_000):
            outcomes[json.loads(hostile.recv())["outcome"]["error"]["type"]] += 1
        hostile.close()
        assert proc.poll() is None
    assert len(found) >= 3 and max(found) < 1.5, (len(found), max(found))
    assert set(outcomes) <= {"InputInvalid", "Overloaded"}, outcomes


@pytest.mark.serial  # bounds a latency: alone, with --shards
def test_a_flood_of_medium_inputs_does_not_stall_another_clients_calls(
    servers: Servers,
) -> None:
    """A turn of the server's loop read up to 100 requests before it sent any outcome: with
    inputs of 60 KiB (~25 ms each to decode and check on its thread) a turn took seconds, and
    so did every other client's call. A turn now also ends after 20 ms, and inputs over
    16 KiB are prepared off the server's thread."""
    endpoint, proc = servers.start()
    body = b'{"value": [' + b"1," * 30_000 + b"1]}"
    with zmq.Context() as context, servers.client(endpoint) as remote:
        hostile = raw_dealer(context, servers, endpoint)
        for i in range(300):
            envelope = json.dumps({"op": "call", "id": f"m{i}", "action": "echo.echo"})
            hostile.send_multipart([envelope.encode(), body])
        time.sleep(0.3)
        found = latencies(remote, 4.0)
        hostile.close()
        assert proc.poll() is None
    assert len(found) >= 3 and max(found) < 1.5, (len(found), max(found))


STALL = Path(__file__).parent / "providers" / "stall.py"


@pytest.mark.serial  # bounds a latency: alone, with --shards
def test_small_inputs_with_costly_schemas_do_not_stall_another_clients_calls(
    servers: Servers,
) -> None:
    """An input under 16 KiB was checked against its schema on the server's one thread, with
    the whole validation budget: ``stall.take_many`` costs seconds for a 12 KB array, and each
    such request held every other client's requests and outcomes that long. Now an input the
    schema does not decide within a trial's budget is prepared off that thread, as a large
    one is, and still gets its verdict."""
    (servers.base / "both.toml").write_text(
        f'[providers.echo]\nsource = "{ECHO}"\n[providers.stall]\nsource = "{STALL}"\n'
    )
    # (the hostile client is silent while the other one measures: it must not count as gone)
    endpoint, proc = servers.start("--client-timeout", "60", config="both.toml")
    body = json.dumps({"items": [1] * 4000}).encode()
    assert len(body) < 16 * 1024
    with zmq.Context() as context, servers.client(endpoint) as remote:
        hostile = raw_dealer(context, servers, endpoint)
        for i in range(2):
            envelope = json.dumps({"op": "call", "id": f"s{i}", "action": "stall.take_many"})
            hostile.send_multipart([envelope.encode(), body])
        time.sleep(0.3)
        found = latencies(remote, 4.0)
        results = []
        while len(results) < 2 and hostile.poll(60_000):
            results.append(json.loads(hostile.recv())["outcome"])
        hostile.close()
        assert proc.poll() is None
    assert len(found) >= 3 and max(found) < 1.5, (len(found), max(found))
    assert [r.get("result") for r in results] == [4000] * 2, results


def test_a_group_member_closed_under_it_fails_over_and_never_raises() -> None:
    """A member closed after the group was made: its ``submit`` raises, which escaped the
    group's ``submit`` (and, on a fail-over from a done callback, left the call without an
    outcome). It is a host that did not take the call: it never ran, so the next one gets it."""
    from host import Host

    closed, live = Host(), Host()
    try:
        for member in (closed, live):
            member.add_provider(str(ECHO))
        closed.close()
        group = HostGroup([closed, live])
        outcome = group.run("echo.add", {"a": 1})  # not safe_rerun: it never ran on `closed`
        assert outcome.ok and outcome.value == 2 and outcome.attempts == 2, outcome
        alone = HostGroup([closed]).run("echo.add", {"a": 1})
        assert isinstance(alone.error, HostUnavailable), alone
        assert alone.error.details["delivered"] is False
    finally:
        live.close()


def _authorize(servers: Servers, name: str) -> None:
    """Make a client key ``name`` and authorize it (before the server starts)."""
    keygen(servers.base / "keys", name)
    shutil.copy(servers.base / "keys" / f"{name}.key", servers.base / "auth" / f"{name}.key")


def _flood(sock: zmq.Socket[bytes], action: str, count: int, body: bytes, prefix: str) -> None:
    for i in range(count):
        envelope = json.dumps({"op": "call", "id": f"{prefix}{i}", "action": action})
        sock.send_multipart([envelope.encode(), body])


def _refusals(sock: zmq.Socket[bytes], wanted: int, seconds: float) -> int:
    """Read replies until ``wanted`` of them were ``Overloaded`` (or ``seconds`` passed, or
    none came for 10 s: the server submits thousands of calls before its first refusal)."""
    overloaded = 0
    deadline = time.monotonic() + seconds
    while overloaded < wanted and time.monotonic() < deadline and sock.poll(10_000):
        reply = json.loads(sock.recv())
        overloaded += reply.get("outcome", {}).get("error", {}).get("type") == "Overloaded"
    return overloaded


@pytest.mark.serial  # bounds a latency: alone, with --shards
def test_a_client_that_fills_a_providers_queue_leaves_other_clients_their_share(
    servers: Servers,
) -> None:
    """One client's calls filled a provider's queue (1,000 waiting), and every other client's
    call then ended ``Overloaded`` at once, or waited behind all of them. The queue is now
    fair between client keys: another key's calls are taken beyond the bound, up to its share,
    and each waits for one of the hog's calls at most. A second connection of the hog's key
    is the same tenant: it gets no bigger share."""
    _authorize(servers, "hog")
    endpoint, proc = servers.start()
    with zmq.Context() as context, servers.client(endpoint) as remote:
        hog = raw_dealer(context, servers, endpoint, key="hog")
        _flood(hog, "echo.slow", 1300, json.dumps({"seconds": 0.05}).encode(), "h")
        overloaded = _refusals(hog, 250, 20)
        assert overloaded >= 250, f"the hog's queue never filled ({overloaded} refused)"
        # The hog's second connection is the hog: refused while the hog's waiting calls are
        # at the bound, else queued behind all of them (its FIFO), never served as another
        # client is. (Refused only was timing: once the server had read all 1,300 the queue
        # drained below the bound, and the call waited its ~6 s and succeeded.)
        with servers.client(endpoint, key="hog") as hog_again:
            again = hog_again.run("echo.echo", {"value": "x"}, timeout=1.5)
        assert isinstance(again.error, (Overloaded, Timeout)), again
        found = []
        for _ in range(5):
            started = time.monotonic()
            assert remote.call("echo.echo", {"value": "x"}, timeout=30) == "x"
            found.append(time.monotonic() - started)
        hog.close()
        assert proc.poll() is None
    assert max(found) < 1.5, found


def test_one_client_key_cannot_take_every_call_the_server_holds_in_flight(
    servers: Servers,
) -> None:
    """The server holds at most 10,000 calls in flight (MAX_IN_FLIGHT), across all clients:
    one key with calls waiting on a provider with a long queue (or on ten providers of the
    default 1,000) took all of them, and every other client's call, to any provider, ended
    ``Overloaded`` at once. The cap is now shared as the providers' queues are: another key
    below its share is taken beyond it."""
    _authorize(servers, "hog")
    (servers.base / "sink.toml").write_text(
        f'[providers.echo]\nsource = "{ECHO}"\n'
        f'[providers.hostile]\nsource = "{HOSTILE}"\n[providers.hostile.policy]\nqueue = 12000\n'
    )
    endpoint, proc = servers.start(config="sink.toml")
    with zmq.Context() as context, servers.client(endpoint) as remote:
        hog = raw_dealer(context, servers, endpoint, key="hog")
        hog.sndhwm = 20_000
        _flood(hog, "hostile.sleep", 10_300, json.dumps({"seconds": 30}).encode(), "h")
        overloaded = _refusals(hog, 200, 40)
        assert overloaded >= 200, f"the hog's calls never filled the server ({overloaded})"
        for _ in range(3):
            assert remote.call("echo.echo", {"value": "x"}, timeout=30) == "x"
        hog.close()
        assert proc.poll() is None


def test_a_routing_id_used_before_by_another_key_does_not_make_its_calls_that_keys(
    servers: Servers,
) -> None:
    """The server kept each connection's tenant by its routing id, which a client chooses
    (``ZMQ_ROUTING_ID``): a client that named its connection as another client later did (a
    fixed name) made that client's calls count as its own, for seconds after it left. With
    its calls filling its share of the queue, the other client's calls were ``Overloaded``
    at once; now they wait their turn (here, until their timeout: the hog's call runs)."""
    _authorize(servers, "hog")
    (servers.base / "short.toml").write_text(
        f'[providers.echo]\nsource = "{ECHO}"\n[providers.echo.policy]\nqueue = 10\n'
        "workers = { max = 1 }\n"
    )
    endpoint, proc = servers.start(config="short.toml")
    with zmq.Context() as context:
        squatter = raw_dealer(context, servers, endpoint, key="hog", routing_id=b"engine-1")
        squatter.send(b'{"op": "hello", "id": "h"}')
        assert squatter.poll(10_000)
        squatter.close()
        hog = raw_dealer(context, servers, endpoint, key="hog")
        _flood(hog, "echo.echo", 1, b'{"value": "x"}', "w")  # a worker is up, and idle
        assert hog.poll(20_000) and "result" in json.loads(hog.recv())["outcome"]
        _flood(hog, "echo.slow", 21, json.dumps({"seconds": 30}).encode(), "s")
        overloaded = _refusals(hog, 10, 60)
        assert overloaded == 10, overloaded  # 1 runs, 10 wait: the queue's bound
        time.sleep(0.3)  # the squatter's connection is gone: its routing id is free
        engine = raw_dealer(context, servers, endpoint, routing_id=b"engine-1")
        envelope = {"op": "call", "id": "e1", "action": "echo.echo", "timeout": 1.0}
        engine.send_multipart([json.dumps(envelope).encode(), b'{"value": "x"}'])
        assert engine.poll(20_000), "no answer"
        reply = json.loads(engine.recv())
        hog.close()
        engine.close()
        assert proc.poll() is None
    assert reply.get("outcome", {}).get("error", {}).get("type") == "Timeout", reply


def test_a_key_whose_connections_do_not_read_is_kept_one_backlog_not_one_each(
    servers: Servers,
) -> None:
    """Replies a client does not read wait on the server, up to MAX_BACKLOG_BYTES, and libzmq
    queued a thousand more before them: both per connection, so one key opening connections
    that asked for catalogs and never read them made the server hold that much again for each
    (here 16 MiB each, about 13 KiB a reply), as far as its memory went. The backlog is now
    the key's, across its connections, and libzmq holds 100 replies per connection."""
    (servers.base / "three.toml").write_text(
        f'[providers.echo]\nsource = "{ECHO}"\n[providers.text]\nsource = "{TEXT}"\n'
        f'[providers.hostile]\nsource = "{HOSTILE}"\n'
    )
    endpoint, proc = servers.start(config="three.toml", constants={"MAX_BACKLOG_BYTES": 16 << 20})
    server = psutil.Process(proc.pid)
    with zmq.Context() as context, servers.client(endpoint) as remote:
        assert remote.call("echo.echo", {"value": "x"}) == "x"
        hoarders = [raw_dealer(context, servers, endpoint) for _ in range(8)]
        for sock in hoarders:
            sock.rcvhwm = 1
        time.sleep(0.3)
        baseline = peak = server.memory_info().rss
        end = time.monotonic() + 6
        while time.monotonic() < end:
            for sock in hoarders:
                with contextlib.suppress(zmq.Again):
                    for _ in range(20):
                        sock.send(b'{"op": "hello", "id": "h"}', zmq.NOBLOCK)
            time.sleep(0.01)
            peak = max(peak, server.memory_info().rss)
        assert remote.call("echo.echo", {"value": "x"}, timeout=30) == "x"
        for sock in hoarders:
            sock.close()
        assert proc.poll() is None
    assert peak - baseline < 48 << 20, f"the server grew by {(peak - baseline) >> 20} MiB"


def test_a_few_keys_holding_every_large_input_place_leave_another_key_its_share(
    servers: Servers,
) -> None:
    """At most MAX_LARGE large inputs wait to be decoded, MAX_LARGE_PER_CLIENT of each key:
    the keys that held them all (four keys of 32, of 128; here two keys of 1, of 2) left
    every other key's large input ``Overloaded`` at once, however little it had sent. A key
    below its share of MAX_LARGE is now taken beyond it, as in the providers' queues."""
    for n in range(2):
        _authorize(servers, f"hog{n}")
    endpoint, proc = servers.start(constants={"MAX_LARGE": 2, "MAX_LARGE_PER_CLIENT": 1})
    body = b'{"value": [' + b"[]," * 200_000 + b"1]}"  # ~0.6 s to decode; then InputInvalid
    with zmq.Context() as context, servers.client(endpoint) as remote:
        hogs = []
        for n in range(2):
            hogs.append(raw_dealer(context, servers, endpoint, key=f"hog{n}"))
            hogs[-1].send(b'{"op": "hello", "id": "h"}')
            assert hogs[-1].poll(10_000)
            hogs[-1].recv()

        def send(hog: zmq.Socket[bytes], request_id: str) -> None:
            envelope = json.dumps({"op": "call", "id": request_id, "action": "echo.echo"})
            hog.send_multipart([envelope.encode(), body], copy=False)

        send(hogs[0], "first")  # being decoded: it holds no place
        time.sleep(0.2)
        for hog in hogs:
            send(hog, "waits")
            send(hog, "refused")
        for hog in hogs:  # each holds its one place, and its second call is refused
            assert hog.poll(10_000)
            reply = json.loads(hog.recv())
            assert reply["id"] == "refused" and reply["outcome"]["error"]["type"] == "Overloaded"
        value = "a" * 20_000
        assert remote.call("echo.echo", {"value": value}, timeout=30) == value
        for hog in hogs:
            hog.close()
        assert proc.poll() is None


def test_a_refused_client_that_keeps_reconnecting_does_not_flood_the_log(
    servers: Servers,
) -> None:
    """Anyone who can reach the port can offer an unknown key, as often as it likes: the
    server logged a line for each refused handshake, without end (and stopped once a stderr
    pipe nobody read was full). Now at most 20 connection lines per 10 s are logged, then
    one line says how many more there were."""
    endpoint, proc = servers.start()
    with zmq.Context() as context:
        strangers = [raw_dealer(context, servers, endpoint, key="stranger") for _ in range(60)]
        for stranger in strangers:  # (the handshake is tried on connect; this may not queue)
            with contextlib.suppress(zmq.Again):
                stranger.send(b'{"op": "ping", "id": "p"}', zmq.NOBLOCK)
        time.sleep(2)  # their handshakes, refused
        for stranger in strangers:
            stranger.close()
    with servers.client(endpoint) as remote:  # still served, and said
        assert remote.call("echo.echo", {"value": "x"}) == "x"
    proc.send_signal(signal.SIGTERM)
    assert proc.stderr is not None
    log = proc.stderr.read().decode()
    proc.wait(timeout=20)
    refused = log.count("refused connection from")
    assert refused == 20, log[-2000:]
    left_out = re.search(r"(\d+) more connection lines were left out", log)
    assert left_out is not None and int(left_out.group(1)) >= 40, log[-2000:]


def test_connections_that_never_handshake_cannot_use_up_the_servers_descriptors(
    servers: Servers,
) -> None:
    """Anyone who can reach the port may open TCP connections and send nothing. libzmq kept
    each for its 30 s handshake interval, a descriptor each: at the server's descriptor limit
    no client could connect (HostUnavailable after 10 s), and the host could not start a
    worker, which needs descriptors too. Now connections still in their handshake are bounded
    per address (the oldest is pushed out) and a handshake gets a few seconds."""
    metrics_port = free_port()
    endpoint, proc = servers.start("--metrics", f"127.0.0.1:{metrics_port}")
    server = psutil.Process(proc.pid)
    server.rlimit(psutil.RLIMIT_NOFILE, (300, 300))
    host, port = endpoint.removeprefix("tcp://").rsplit(":", 1)
    idle: list[socket.socket] = []
    try:
        failed = 0
        while len(idle) < 400 and failed < 20:
            try:
                idle.append(socket.create_connection((host, int(port)), timeout=0.05))
            except OSError:
                failed += 1
        time.sleep(1)  # what the server accepted, it has seen
        held = [c for c in server.net_connections(kind="tcp") if c.raddr]
        assert len(held) <= MAX_HANDSHAKING_PER_ADDRESS + 4, len(held)
        with servers.client(endpoint) as remote:  # (within its default connect_timeout)
            assert remote.call("echo.echo", {"value": "still served"}, timeout=20) == (
                "still served"
            )
        url = f"http://127.0.0.1:{metrics_port}/metrics"
        text = urllib.request.urlopen(url, timeout=10).read().decode()
        (closed,) = [
            s.value for family in text_string_to_metric_families(text) for s in family.samples
            if s.name == "sandbox_connections_closed_at_bounds_total"
        ]  # fmt: skip
        assert closed >= len(idle) - MAX_HANDSHAKING_PER_ADDRESS - 4
    finally:
        for sock in idle:
            sock.close()
    assert proc.poll() is None


#: A ZMTP 3.0 greeting offering CURVE as a client, then the start of a command frame that
#: says it is 2000 bytes long: libzmq waits for the rest, for its whole handshake interval.
SLOWLORIS = (
    b"\xff" + bytes(8) + b"\x7f" + b"\x03\x00" + b"CURVE".ljust(20, b"\x00") + b"\x00"
    + bytes(31) + b"\x06" + (2000).to_bytes(8, "big") + bytes(600)
)


@pytest.mark.serial  # a flood of connections for a few seconds
def test_connections_that_send_a_handshakes_bytes_and_stall_cannot_use_up_the_descriptors(
    servers: Servers,
) -> None:
    """A connection counted as handshaking while its peer had sent fewer bytes than a CURVE
    handshake: one that sent a greeting and the first 600 bytes of a long HELLO, then
    nothing, was no longer counted, and libzmq kept it its whole handshake interval. A
    hundred such a second from one address held every connection the server allows (half
    its descriptors): a real client was closed at accept each time it tried (HostUnavailable
    after 10 s). Now a connection is handshaking until the server has sent its READY (which
    it sends only to an authorized key), so these are pushed out like idle ones."""
    endpoint, proc = servers.start()
    psutil.Process(proc.pid).rlimit(psutil.RLIMIT_NOFILE, (300, 300))
    host, port = endpoint.removeprefix("tcp://").rsplit(":", 1)
    stop = threading.Event()
    opened = 0

    def flood() -> None:  # from another address than the client's
        nonlocal opened
        held: collections.deque[tuple[float, socket.socket]] = collections.deque()
        while not stop.is_set() and opened < 3000:
            now = time.monotonic()
            while held and held[0][0] < now - 6:
                held.popleft()[1].close()
            with contextlib.suppress(OSError):
                sock = socket.create_connection((host, int(port)), 0.5, ("127.0.0.2", 0))
                with contextlib.suppress(OSError):
                    sock.sendall(SLOWLORIS)
                held.append((now, sock))
                opened += 1
            if opened > 300:  # (a burst first: the server holds its bound at once)
                time.sleep(0.005)
        for _, sock in held:
            sock.close()

    flooder = threading.Thread(target=flood)
    flooder.start()
    try:
        time.sleep(1)  # the flood holds what it can
        with servers.client(endpoint, connect_timeout=3) as remote:
            assert remote.call("echo.echo", {"value": "served"}, timeout=20) == "served"
    finally:
        stop.set()
        flooder.join()
    assert opened > 200
    assert proc.poll() is None


def test_an_authorized_key_on_one_address_cannot_take_every_connection(
    servers: Servers,
) -> None:
    """An authorized key opened connections until the server's limit (half its descriptors):
    heartbeats kept them, and every other client was closed at accept. One address now
    holds at most a quarter of the connections."""
    endpoint, proc = servers.start()
    server = psutil.Process(proc.pid)
    server.rlimit(psutil.RLIMIT_NOFILE, (300, 300))  # 150 connections, 37 per address
    port = endpoint.rsplit(":", 1)[1]
    with zmq.Context() as context:
        hogs = [raw_dealer(context, servers, f"tcp://127.0.0.2:0;127.0.0.1:{port}")
                for _ in range(160)]  # fmt: skip
        for hog in hogs:
            hog.send(b'{"op": "ping", "id": "p"}')
        time.sleep(2)  # their handshakes, all authorized
        # The hogs reconnect as soon as they are closed, so a snapshot may also list one the
        # server has just accepted and is about to close (CI run 20 and a local run: 38 against 37):
        # what the server holds is in every snapshot, such a passer-by in few. (A connection
        # it shut down is still listed, closing, for a moment: only established ones count.)
        counts = []
        for _ in range(5):
            held = [c for c in server.net_connections(kind="tcp")
                    if c.raddr and c.status == psutil.CONN_ESTABLISHED]  # fmt: skip
            counts.append(sum(c.raddr.ip == "127.0.0.2" for c in held))
            time.sleep(0.2)
        assert min(counts) <= 150 // 4, counts
        with servers.client(endpoint) as remote:  # from 127.0.0.1, within connect_timeout
            assert remote.call("echo.echo", {"value": "mine"}, timeout=20) == "mine"
        for hog in hogs:
            hog.close()
    assert proc.poll() is None


def _scrape(port: int) -> str:
    return urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()


@pytest.mark.serial  # hundreds of connections for a few seconds
def test_idle_and_trickling_metrics_connections_cost_the_server_a_bounded_number_of_threads(
    servers: Servers,
) -> None:
    """prometheus_client's server starts a thread per connection and never times one out:
    300 connections that send nothing were 300 threads of the server's process, kept for as
    long as the peer liked (a pids limit reached that way also stops the host starting
    workers). Now connections are bounded (in all and per address), each has a deadline,
    and a scrape still gets through once the idle ones are cut off."""
    port = free_port()
    endpoint, proc = servers.start("--metrics", f"127.0.0.1:{port}")
    server = psutil.Process(proc.pid)
    assert "sandbox_calls" in _scrape(port)
    threads_before = server.num_threads()
    idle: list[socket.socket] = []
    try:
        for i in range(300):
            with contextlib.suppress(OSError):
                conn = socket.create_connection(("127.0.0.1", port), timeout=1)
                if i % 2:
                    conn.sendall(b"GET /metrics HTTP/1.1\r\n")  # a request it never finishes
                idle.append(conn)
        time.sleep(1)  # what the server accepted, it has seen
        assert server.num_threads() <= threads_before + MAX_METRICS_CONNECTIONS + 2
        held = [c for c in server.net_connections(kind="tcp") if c.laddr.port == port and c.raddr]
        assert len(held) <= MAX_METRICS_CONNECTIONS + 2, len(held)
        # The idle connections are cut off at their deadline: a scrape then gets through.
        deadline = time.monotonic() + METRICS_CONNECTION_S + 10
        while True:
            try:
                text = _scrape(port)
                break
            except OSError:
                assert time.monotonic() < deadline, "no scrape got through"
                time.sleep(0.5)
        assert "sandbox_workers" in text
        with servers.client(endpoint) as remote:
            assert remote.call("echo.echo", {"value": "served"}, timeout=20) == "served"
    finally:
        for conn in idle:
            conn.close()
    assert proc.poll() is None
    # Each connection cut off or hung up on was a traceback on stderr (socketserver's
    # handle_error): 408 lines in 30 s from four idle connections, without bound.
    proc.send_signal(signal.SIGTERM)
    assert proc.stderr is not None
    log_text = proc.stderr.read().decode(errors="replace")
    proc.wait(timeout=30)
    assert "Traceback" not in log_text, log_text[-2000:]


def test_a_reply_the_client_cannot_read_ends_its_call_not_the_client() -> None:
    """A reply whose usage held ``10**400`` raised OverflowError in the client's loop thread,
    which died: ``available`` stayed True, so a HostGroup kept sending calls to it, and no
    later call ever ended. A broken or hostile server is the client's to survive: the reply
    ends its own call as ProtocolViolation, and the next call is served."""
    context = zmq.Context()
    server = context.socket(zmq.ROUTER)
    server.linger = 0
    port = server.bind_to_random_port("tcp://127.0.0.1")
    catalog = [{
        "name": "echo", "namespace": "fake", "full_name": "fake.echo", "description": "",
        "input_schema": {"type": "object"}, "output_schema": {}, "provider": "fake",
        "safe_rerun": False,
    }]  # fmt: skip
    stop = threading.Event()
    calls: list[str] = []

    def serve() -> None:
        while not stop.is_set():
            if not server.poll(50):
                continue
            identity, envelope, *_ = server.recv_multipart()
            request = json.loads(envelope)
            if request["op"] == "hello":
                reply: dict[str, object] = {"id": request["id"], "value": catalog}
            elif request["op"] == "providers":
                reply = {"id": request["id"], "value": []}
            elif request["op"] == "call":
                calls.append(request["id"])
                usage = {"cpu_s": 10**400} if len(calls) == 1 else {}
                reply = {"id": request["id"], "outcome": {"ok": True, "result": len(calls),
                                                          "usage": usage}}
            else:
                continue
            server.send_multipart([identity, json.dumps(reply).encode()])

    thread = threading.Thread(target=serve)
    thread.start()
    try:
        with RemoteHost(f"tcp://127.0.0.1:{port}", insecure=True) as remote:
            error = remote.submit("fake.echo", {}).exception(timeout=10)
            assert error is not None and error.type == "ProtocolViolation", error
            assert remote.available
            assert remote.call("fake.echo", {}, timeout=10) == 2
    finally:
        stop.set()
        thread.join(10)
        server.close()
        context.term()


_HANDLER_CALLS_THE_REMOTE = """
import signal, sys, time
from host import RemoteHost

endpoint, keys, seconds = sys.argv[1], sys.argv[2], float(sys.argv[3])
seen = {"handler": 0, "main": 0}
with RemoteHost(endpoint, server_key=f"{keys}/server.key",
                client_key=f"{keys}/client.key_secret") as remote:
    busy = [False]

    def handler(signum, frame):
        if busy[0]:
            return
        busy[0] = True
        try:
            assert remote.call("echo.echo", {"value": "h"}) == "h"
            seen["handler"] += 1
        finally:
            busy[0] = False

    signal.signal(signal.SIGALRM, handler)
    signal.setitimer(signal.ITIMER_REAL, 0.002, 0.002)
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        assert remote.call("echo.echo", {"value": "m"}) == "m"
        seen["main"] += 1
    signal.setitimer(signal.ITIMER_REAL, 0, 0)
print(seen["main"], seen["handler"])
"""


def test_a_signal_handler_may_call_a_remote_host_the_main_thread_is_calling(
    servers: Servers,
) -> None:
    """As for a local host (``test_interrupt.py``): a handler calling ``remote.call`` while
    the main thread is in ``remote.call`` must not leave the client's I/O thread waiting for
    the lock of the future the interrupted wait holds (``CallFuture.latch``)."""
    endpoint, _ = servers.start()
    done = subprocess.run(
        [sys.executable, "-c", _HANDLER_CALLS_THE_REMOTE, endpoint, str(servers.base / "keys"),
         "5"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    main_calls, handler_calls = map(int, done.stdout.split())
    assert main_calls > 100 and handler_calls > 100, done.stdout
