"""The host: catalog semantics, naming, isolation of environment and workdir, concurrency,
hostile workers speaking garbage, and clean shutdown."""

from __future__ import annotations

import gc
import os
import socket
import threading
import time
import weakref

import pytest
import zmq

from host import Host, ProtocolViolation, ProviderUnavailable
from policies import Policy
from tests.conftest import provider_file

ECHO = provider_file("echo.py")


def test_add_provider_returns_declared_or_given_name(host: Host) -> None:
    assert host.add_provider(ECHO) == "echo"
    assert host.add_provider("providers.examples.text", name="text") == "text"
    with pytest.raises(ValueError, match="already loaded"):
        host.add_provider(ECHO, name="text")
    infos = {p.name: p for p in host.providers()}
    assert infos["echo"].version == "2.0"
    assert infos["text"].namespace == "text"
    word_count = host.catalog.find("text.word_count")
    assert word_count is not None and word_count.provider == "text"


def test_a_provider_loaded_under_another_name_cannot_announce_its_own_namespace(
    host: Host,
) -> None:
    host.add_provider(ECHO)
    with pytest.raises(ProviderUnavailable, match="outside its namespace 'again'"):
        host.add_provider(ECHO, name="again")
    assert [p.name for p in host.providers()] == ["echo"]
    assert host.call("echo.add", {"a": 1}) == 2


def test_catalog_find_and_find_all_honour_every_argument(host: Host) -> None:
    host.add_provider(ECHO)
    host.add_provider("providers.examples.text")
    d = host.catalog.find("echo.add")
    assert d is not None
    assert (d.name, d.namespace, d.full_name, d.provider) == ("add", "echo", "echo.add", "echo")
    assert d.description == "Add two integers."
    assert d.input_schema["required"] == ["a"]
    assert d.output_schema["type"] == "integer"
    assert host.catalog.find("add", namespace="echo") == d
    assert host.catalog.find("add", namespace="text") is None
    assert host.catalog.find("nope.nothing") is None

    echo_names = [x.name for x in host.catalog.find_all(namespace="echo")]
    assert echo_names == sorted(echo_names) and "echo" in echo_names
    assert {x.namespace for x in host.catalog.find_all()} == {"echo", "text"}
    safe = host.catalog.find_all(filters={"safe_rerun": True})
    assert safe and all(x.safe_rerun for x in safe)
    assert "echo.echo" in [x.full_name for x in safe]
    assert len(host.catalog.find_all(limit=2)) == 2
    assert host.catalog.find_all(limit=0) == []
    desc = [x.full_name for x in host.catalog.find_all(sort="-full_name")]
    assert desc == sorted(desc, reverse=True)
    by_ns_then_name = host.catalog.find_all(sort=["namespace", "-name"])
    keys = [(x.namespace, x.name) for x in by_ns_then_name]
    assert keys == sorted(keys, key=lambda k: (k[0], [-ord(c) for c in k[1]]))
    with pytest.raises(ValueError, match="cannot sort"):
        host.catalog.find_all(sort="colour")
    with pytest.raises(ValueError, match="cannot filter"):
        host.catalog.find_all(filters={"colour": "red"})


def test_unknown_action_is_provider_unavailable(host: Host) -> None:
    host.add_provider(ECHO)
    with pytest.raises(ProviderUnavailable, match="no loaded provider offers"):
        host.call("nothing.here", {})
    with pytest.raises(ProviderUnavailable, match="has no action"):
        host.call("echo.missing", {})


def test_worker_environment_has_only_the_names_the_policy_passes(
    host: Host, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SANDBOX_TEST_SECRET", "hunter2")
    monkeypatch.setenv("SANDBOX_TEST_PASSED", "visible")
    host.add_provider(ECHO, policy=Policy(env=["SANDBOX_TEST_PASSED"]))
    env = host.call("echo.environment", {})
    assert env["SANDBOX_TEST_PASSED"] == "visible"
    assert "SANDBOX_TEST_SECRET" not in env and "PATH" not in env
    # LC_CTYPE is the only addition: CPython's C-locale coercion (PEP 538) sets it in the child.
    assert set(env) <= {"SANDBOX_TEST_PASSED", "LC_CTYPE"}


def test_worker_runs_in_a_private_workdir_that_is_removed(host: Host) -> None:
    host.add_provider(ECHO)
    cwd = host.call("echo.cwd", {})
    assert os.path.isdir(cwd) and cwd != os.getcwd()
    assert os.stat(cwd).st_mode & 0o077 == 0
    host.close()
    assert not os.path.exists(cwd)


def test_logs_are_captured_per_call(host: Host) -> None:
    host.add_provider(ECHO)
    outcome = host.run("echo.shout", {"text": "hi"})
    assert outcome.value == "HI"
    assert "out:hi" in outcome.logs and "err:hi" in outcome.logs
    assert host.run("echo.add", {"a": 1}).logs == ""


def test_stdout_and_stderr_are_kept_apart_each_in_its_order(host: Host) -> None:
    host.add_provider(ECHO)
    outcome = host.run("echo.shout", {"text": "hi"})
    assert outcome.stdout == "out:hi\nout:hi!\n"
    assert outcome.stderr == "err:hi\nerr:hi!\n"
    data = outcome.to_dict()
    assert (data["stdout"], data["stderr"]) == (outcome.stdout, outcome.stderr)
    quiet = host.run("echo.add", {"a": 1, "b": 2})
    assert (quiet.stdout, quiet.stderr) == ("", "")
    assert "stdout" not in quiet.to_dict() and "stderr" not in quiet.to_dict()


def test_layers_are_reported_per_provider(host: Host) -> None:
    host.add_provider(ECHO)
    (info,) = host.providers()
    names = {layer["name"]: layer for layer in info.layers}
    assert names["rlimits"]["applied"] is True
    assert "DATA=" in names["rlimits"]["detail"]
    assert names["pdeathsig"]["applied"] is True


def test_concurrent_calls_from_threads_each_get_their_own_result(host: Host) -> None:
    host.add_provider(ECHO, policy=Policy(workers={"min": 0, "max": 2}))
    results: dict[int, object] = {}

    def worker(i: int) -> None:
        results[i] = host.call("echo.add", {"a": i, "b": 1000})

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(40)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert results == {i: i + 1000 for i in range(40)}


@pytest.mark.parametrize(
    "action", ["garbage", "unknown_kind", "pickled_result", "oversized", "foreign_result"]
)
def test_worker_speaking_garbage_is_killed_while_good_calls_succeed(
    host: Host, action: str
) -> None:
    host.add_provider(provider_file("takeover.py"), policy=Policy(wall_time=20, output="1MiB"))
    host.add_provider(ECHO, policy=Policy(workers={"min": 0, "max": 2}))
    stop = threading.Event()
    good: list[object] = []
    errors: list[BaseException] = []

    def good_calls() -> None:
        while not stop.is_set():
            try:
                good.append(host.call("echo.add", {"a": 1}))
            except BaseException as exc:
                errors.append(exc)

    thread = threading.Thread(target=good_calls)
    thread.start()
    try:
        with pytest.raises(ProtocolViolation) as info:
            host.call(f"takeover.{action}", {})
        assert info.value.usage.wall_s < 10  # killed, not timed out
    finally:
        stop.set()
        thread.join(30)
    assert errors == []
    assert good and all(v == 2 for v in good)
    assert host.call("takeover.fine", {"x": 1}) == 2  # a fresh worker serves the provider


def test_messages_from_an_outsider_on_the_ipc_socket_are_ignored(host: Host) -> None:
    host.add_provider(ECHO)
    directory = host._reactor.transport.directory
    # 0700, or 0711 under a root host whose workers have their own uids: each may reach its
    # own socket (its uid, mode 0600) by name, but not list the directory or open another's.
    expected = 0o711 if os.geteuid() == 0 else 0o700
    assert os.stat(directory).st_mode & 0o777 == expected
    # Each worker's endpoint takes exactly one connection (its own) and is then gone: an
    # outsider finds nothing to connect to.
    (worker,) = host._reactor._workers.values()
    path = worker.channel.path
    assert os.path.dirname(path) == directory and os.listdir(directory) == []
    raw = socket.socket(socket.AF_UNIX)
    with pytest.raises(FileNotFoundError):
        raw.connect(path)
    raw.close()
    context = zmq.Context()
    forger = context.socket(zmq.DEALER)
    forger.setsockopt(zmq.LINGER, 0)
    forger.setsockopt(zmq.IDENTITY, b"intruder")
    forger.connect(f"ipc://{path}")
    try:
        forger.send_multipart([b"HELLO", b'{"token": "guess"}'], flags=zmq.NOBLOCK)
        forger.send_multipart([b"RESULT", b"\x80\x04junk"], flags=zmq.NOBLOCK)
    except zmq.Again:
        pass  # (nothing to connect to: the messages cannot even be queued)
    try:
        assert host.call("echo.add", {"a": 41}) == 42
    finally:
        forger.close()
        context.term()


def test_close_removes_ipc_and_work_directories(host: Host) -> None:
    host.add_provider(ECHO)
    ipc = host._reactor.transport.directory
    work = host._reactor._workdir_root
    host.close()
    assert not os.path.exists(ipc)
    assert not os.path.exists(work)
    with pytest.raises(RuntimeError, match="closed"):
        host.call("echo.add", {"a": 1})


def test_calls_waiting_when_the_host_closes_are_cancelled(host: Host) -> None:
    host.add_provider(ECHO)
    outcomes = []
    t = threading.Thread(target=lambda: outcomes.append(host.run("echo.slow", {"seconds": 10})))
    t.start()
    import time

    time.sleep(0.3)
    host.close(timeout=0)
    t.join(10)
    assert outcomes and outcomes[0].error is not None
    assert outcomes[0].error.type == "Cancelled"


def test_a_second_close_returns_only_once_the_first_has_ended() -> None:
    """An engine's shutdown hook closing a host that another thread is closing: it returned
    at once, while the first still waited for a running call and 4 processes lived."""
    host = Host()
    host.add_provider(ECHO, policy=Policy(workers={"min": 1, "max": 1}))
    running = host.submit("echo.slow", {"seconds": 0.6})
    while not running.running():
        time.sleep(0.01)
    first = threading.Thread(target=host.close)
    first.start()
    while not host._closed:
        time.sleep(0.001)
    host.close()
    assert running.done() and running.outcome is not None and running.outcome.ok
    assert not host._thread.is_alive(), "the loop still ran: the first close had not ended"
    first.join(10)


def test_close_in_a_done_callback_does_not_stall_the_loop() -> None:
    """A done-callback is run by the loop (or by a caller holding its lock): a close there
    that waited for the loop waited for itself, 35 s, then raised TimeoutError. It returns at
    once now, the close goes on after the callback, and a later close waits for it."""
    host = Host()
    host.add_provider(ECHO, policy=Policy(workers={"min": 1, "max": 1}))
    raised: list[BaseException] = []
    returned = threading.Event()

    def close_here(_: object) -> None:
        try:
            host.close()
        except BaseException as exc:
            raised.append(exc)
        returned.set()

    future = host.submit("echo.slow", {"seconds": 0.05})
    future.add_done_callback(close_here)
    assert returned.wait(10), "close() in a done-callback did not return"
    assert not raised, raised
    host.close()  # (waits for the close the callback started)
    assert not host._thread.is_alive()
    assert future.result() == 0.05


def test_interpreter_exit_with_a_live_host_does_not_hang(tmp_path: os.PathLike[str]) -> None:
    import subprocess
    import sys

    script = (
        "from host import Host\n"
        "h = Host()\n"
        f"h.add_provider({ECHO!r})\n"
        "print(h.call('echo.add', {'a': 1}))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=30
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "2"


def test_relative_file_reference_resolves_against_the_host_cwd(
    host: Host, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(os.path.dirname(ECHO))
    assert host.add_provider("echo.py:provider") == "echo"
    assert host.call("echo.add", {"a": 2, "b": 3}) == 5


def test_protect_memory_makes_the_host_undumpable() -> None:
    import subprocess
    import sys

    script = (
        "from host import Host\n"
        "def dumpable():\n"
        "    import ctypes\n"
        "    return ctypes.CDLL(None).prctl(3, 0, 0, 0, 0)\n"
        "before = dumpable()\n"
        "with Host(protect_memory=True) as h:\n"
        "    print(before, dumpable())\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=30)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["1", "0"]


def test_a_schema_that_cannot_be_applied_fails_the_call_not_the_host(host: Host) -> None:
    from host import InputInvalid, OutputInvalid

    host.add_provider(provider_file("bad_ref_schema.py"))
    host.add_provider(ECHO)
    with pytest.raises(OutputInvalid, match="cannot be applied"):
        host.call("badref.answer", {})
    with pytest.raises(InputInvalid, match="cannot be applied"):
        host.call("badref.takes", {"x": 1})
    assert host.call("echo.add", {"a": 1}) == 2  # the host's loop is alive


def test_a_lone_surrogate_from_a_worker_is_a_protocol_violation(host: Host) -> None:
    host.add_provider(provider_file("takeover.py"), policy=Policy(wall_time=20))
    host.add_provider(ECHO)
    with pytest.raises(ProtocolViolation):
        host.call("takeover.lone_surrogate", {})
    assert host.call("echo.add", {"a": 1}) == 2
    assert host.call("takeover.fine", {"x": 1}) == 2


def test_a_call_submitted_while_the_host_closes_still_gets_an_outcome(host: Host) -> None:
    from host import Cancelled

    host.add_provider(ECHO)
    running = host.submit("echo.slow", {"seconds": 1})
    closer = threading.Thread(target=host.close, kwargs={"timeout": 5})
    closer.start()
    import time

    time.sleep(0.2)
    late = None
    try:
        late = host.submit("echo.add", {"a": 1})
    except RuntimeError:
        pass  # refused outright: also an answer
    closer.join(30)
    assert running.result(timeout=10) == 1
    if late is not None:
        with pytest.raises(Cancelled):
            late.result(timeout=10)


def test_commands_from_many_threads_all_run(host: Host) -> None:
    """The loop is woken once per batch of commands, not once per command: a lost wake-up
    would leave commands queued for good (and every later submit with them)."""
    reactor = host._reactor
    ran: list[int] = []
    total = 8 * 2000

    def submitter() -> None:
        for _ in range(2000):
            reactor.submit(lambda: ran.append(1))

    threads = [threading.Thread(target=submitter) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    deadline = time.monotonic() + 30
    while len(ran) < total and time.monotonic() < deadline:
        time.sleep(0.01)
    assert len(ran) == total


def test_finished_calls_are_not_kept_alive_by_their_deadlines(host: Host) -> None:
    """Every call arms a wall-time deadline (30 s by default). Once the call is finished the
    host must not keep it - its future, input and closures - until that deadline passes: at a
    few thousand calls a second that was hundreds of MiB."""
    host.add_provider(ECHO)
    futures = [host.submit("echo.add", {"a": i, "b": 1}, timeout=60) for i in range(600)]
    assert [f.result(timeout=60) for f in futures] == [i + 1 for i in range(600)]
    refs = [weakref.ref(f) for f in futures]
    del futures
    host.call("echo.add", {"a": 0, "b": 0})  # the loop has finished with every call by now
    gc.collect()
    assert sum(ref() is not None for ref in refs) == 0
    assert len(host._reactor._timers) < 600  # wall and caller deadlines: 1,200 armed


def test_waiting_twice_for_one_call_on_the_main_thread_returns_twice(host: Host) -> None:
    """The main thread waits on a future's latch (``CallFuture.latch``), not in the future:
    the first wait took the latch for good, and a second wait for the same call (the engine
    asking again) hung for ever."""
    from host.calling import wait_for_outcome

    assert threading.current_thread() is threading.main_thread()
    host.add_provider(ECHO)
    future = host.submit("echo.add", {"a": 1})
    assert future.latch is not None  # (made on the main thread)
    assert wait_for_outcome(future).value == 2
    assert future.result(timeout=5) == 2
    assert wait_for_outcome(future).value == 2
