"""Workers forked from the zygote: confined exactly like fresh ones, isolated from one another,
and never leaving a process behind - not when the host closes, not when it is killed, not when
the zygote itself dies.

The rest of the suite runs with the default spawn mode (the zygote, unless ``--spawn`` or
``SANDBOX_SPAWN`` says otherwise); the escape catalog runs under both modes
(``tests/escapes/test_escapes.py``).
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Iterator

import psutil
import pytest

from host import Host
from host.reactor import WorkerHandle
from policies import Policy
from tests.conftest import provider_file

ECHO = provider_file("echo.py")
ENTROPY = provider_file("entropy.py")

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux sandbox")


def _wait_for(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out after {timeout}s waiting for {what}"
        time.sleep(0.02)


def _workers(host: Host, provider: str) -> list[WorkerHandle]:
    return list(host._reactor.providers[provider].workers)


def _zygote_pid(host: Host) -> int:
    _wait_for(lambda: host._reactor.zygotes.current is not None, 5, "the zygote to start")
    zygote = host._reactor.zygotes.current
    assert zygote is not None, "the host has no zygote"
    return zygote.pid


def _readd_until_zygote_spawned(host: Host) -> WorkerHandle:
    """Reload the echo provider until its worker comes from a zygote: a zygote that replaces
    another serves once it has imported the runtime, and workers start fresh until then (the
    loop never waits for it)."""
    kinds = []
    for _ in range(20):
        host.remove_provider("echo")
        _wait_for(lambda: "echo" not in host._reactor.providers, 10, "the provider to go")
        host.add_provider(ECHO)
        (worker,) = _workers(host, "echo")
        kinds.append(worker.process.spawn_kind)
        if kinds[-1] == "zygote":
            return worker
        time.sleep(0.05)
    raise AssertionError(f"no zygote-spawned worker after {len(kinds)} tries: {kinds}")


@pytest.fixture
def zhost() -> Iterator[Host]:
    with Host(spawn="zygote") as h:
        yield h


def _layers(host: Host) -> dict[str, bool]:
    (info,) = host.providers()
    return {str(r["name"]): bool(r["applied"]) for r in info.layers}


def test_zygote_workers_apply_the_same_layers_as_fresh_ones(zhost: Host) -> None:
    zhost.add_provider(ECHO)
    (worker,) = _workers(zhost, "echo")
    assert worker.process.spawn_kind == "zygote"
    assert psutil.Process(worker.process.pid).ppid() == _zygote_pid(zhost)
    assert zhost.call("echo.echo", {"value": "x"}) == "x"
    with Host(spawn="fresh") as fresh:
        fresh.add_provider(ECHO)
        (reference,) = _workers(fresh, "echo")
        assert reference.process.spawn_kind == "fresh"
        assert _layers(zhost) == _layers(fresh)
    assert all(_layers(zhost).get(name, True) for name in ("seccomp", "landlock", "uid_drop"))


def test_a_zygote_launcher_holds_only_its_own_descriptors_in_its_own_session(
    zhost: Host,
) -> None:
    """The control socket, the wake-up pipe and whatever the zygote's imports opened are closed
    before the launcher's code runs; 0-2 are its own spec and log pipes."""
    zhost.add_provider(ECHO)
    (worker,) = _workers(zhost, "echo")
    pid = worker.process.pid
    fds = {int(fd): os.readlink(f"/proc/{pid}/fd/{fd}") for fd in os.listdir(f"/proc/{pid}/fd")}
    assert set(fds) <= {0, 1, 2}, fds
    assert not any(target.startswith("socket:") for target in fds.values()), fds
    assert all(target.startswith("pipe:") for target in fds.values()), fds
    assert os.getsid(pid) == pid, "the launcher must lead a session of its own"
    zygote_fds = {os.readlink(f"/proc/{_zygote_pid(zhost)}/fd/{fd}")
                  for fd in os.listdir(f"/proc/{_zygote_pid(zhost)}/fd")}  # fmt: skip
    assert not (set(fds.values()) & zygote_fds), "the zygote kept a worker's pipe"


def test_zygote_worker_gets_exactly_the_policy_environment_and_its_workdir(
    zhost: Host, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SANDBOX_TEST_SECRET", "hunter2")
    monkeypatch.setenv("SANDBOX_TEST_PASSED", "visible")
    zhost.add_provider(ENTROPY, policy=Policy(env=["SANDBOX_TEST_PASSED"]))
    state = zhost.call("entropy.state", {})
    assert state["env"] == {"SANDBOX_TEST_PASSED": "visible"}
    (worker,) = _workers(zhost, "entropy")
    assert state["cwd"] == worker.process.workdir


def _memory_holds(pid: int, needle: bytes) -> bool:
    """Whether ``needle`` appears anywhere in ``pid``'s readable memory (we are root)."""
    found = False
    with open(f"/proc/{pid}/maps") as maps, open(f"/proc/{pid}/mem", "rb", 0) as mem:
        for line in maps:
            addresses, perms = line.split()[:2]
            if "r" not in perms or line.rstrip().endswith(("[vvar]", "[vsyscall]")):
                continue
            start, end = (int(x, 16) for x in addresses.split("-"))
            with contextlib.suppress(OSError, ValueError, OverflowError):
                mem.seek(start)
                if needle in mem.read(end - start):
                    found = True
                    break
    return found


@pytest.mark.skipif(os.geteuid() != 0, reason="reads another process's memory")
def test_two_zygote_workers_have_their_own_secrets_and_the_zygote_holds_none(
    zhost: Host, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Tokens and randomness differ per worker; the zygote never sees a token or a passed
    environment value: not in its environ, not in its argv, nowhere in its memory."""
    monkeypatch.setenv("SANDBOX_TEST_SECRET", "zygote-must-not-see-" + os.urandom(8).hex())
    zhost.add_provider(
        ENTROPY,
        policy=Policy(workers={"min": 2, "max": 2}, env=["SANDBOX_TEST_SECRET"]),
    )
    _wait_for(lambda: sum(w.pid is not None for w in _workers(zhost, "entropy")) == 2, 10,
              "two ready workers")  # fmt: skip
    workers = _workers(zhost, "entropy")
    assert {w.process.spawn_kind for w in workers} == {"zygote"}
    assert workers[0].token != workers[1].token
    # Pairs of concurrent calls until each worker has served one: a pair may land on one worker
    # when the first call ends before the second is dispatched (CI run 15 saw that).
    states: list[dict[str, object]] = []
    for _ in range(50):
        futures = [zhost.submit("entropy.state", {}) for _ in range(2)]
        states += [f.result() for f in futures]
        if all(w.calls for w in _workers(zhost, "entropy")):
            break
    assert all(w.calls for w in _workers(zhost, "entropy")), "one worker served every call"
    seen = {s["random"] for s in states}
    assert len(seen) == len(states), "two workers drew the same random numbers"
    zygote = _zygote_pid(zhost)
    with open(f"/proc/{zygote}/environ", "rb") as f:
        environ = f.read()
    with open(f"/proc/{zygote}/cmdline", "rb") as f:
        cmdline = f.read()
    secret = os.environ["SANDBOX_TEST_SECRET"].encode()
    for worker in workers:
        token = worker.token.encode()
        assert token not in environ and token not in cmdline
        assert not _memory_holds(zygote, token), "a worker's token is in the zygote's memory"
    assert secret not in environ
    assert not _memory_holds(zygote, secret), "a passed env value is in the zygote's memory"
    # the check itself works: the token is in the memory of the worker that holds it
    (worker_process,) = [p for p in psutil.Process(workers[0].process.pid).children(True)
                         if p.uids().real != 0]  # fmt: skip
    assert _memory_holds(worker_process.pid, workers[0].token.encode())


def test_the_zygote_stops_with_the_host(zhost: Host) -> None:
    zhost.add_provider(ECHO)
    zygote = _zygote_pid(zhost)
    zhost.close()
    assert not psutil.pid_exists(zygote), "the zygote outlived the host (or was not reaped)"


_KILLED_HOST = textwrap.dedent(
    """
    import sys, time
    from host import Host
    host = Host(spawn="zygote")
    host.add_provider(sys.argv[1])
    host.call("echo.echo", {"value": "x"})
    worker = host._reactor.providers["echo"].workers[0]
    time.sleep(0.3)  # the spare launcher is forked after the spawn, when the host is idle
    print(host._reactor.zygotes.current.pid, worker.process.pid, worker.pid, flush=True)
    time.sleep(60)
    """
)


def _reap_our_orphans(pids: set[int]) -> None:
    """Processes re-parented to this process (pid 1 of the test's pid namespace) are ours to
    reap once they die; elsewhere the machine's init does it."""
    for pid in pids:
        with contextlib.suppress(ChildProcessError, OSError):
            os.waitpid(pid, os.WNOHANG)


def _all_gone(pids: set[int]) -> Callable[[], bool]:
    def gone() -> bool:
        _reap_our_orphans(pids)
        return not any(psutil.pid_exists(p) for p in pids)

    return gone


def test_killing_the_host_leaves_no_zygote_and_no_worker() -> None:
    host = subprocess.Popen(
        [sys.executable, "-c", _KILLED_HOST, ECHO], stdout=subprocess.PIPE, text=True
    )
    try:
        assert host.stdout is not None
        line = host.stdout.readline()
        zygote, launcher, worker = (int(x) for x in line.split())
        tree = {p.pid for p in psutil.Process(zygote).children(recursive=True)}
        tree |= {zygote, launcher, worker}  # launchers (the spare too), inits, workers
    finally:
        host.kill()
        host.wait()
    _wait_for(_all_gone(tree), 10, "the zygote and the worker tree to die with the host")


def test_a_dead_zygote_is_replaced_and_no_call_is_lost(
    zhost: Host, caplog: pytest.LogCaptureFixture
) -> None:
    zhost.add_provider(ECHO, policy=Policy(workers={"min": 0, "max": 1}))
    assert zhost.call("echo.echo", {"value": "a"}) == "a"
    first = _zygote_pid(zhost)
    (worker,) = _workers(zhost, "echo")
    tree = {worker.process.pid, *(p.pid for p in psutil.Process(worker.process.pid).children(True))}
    os.kill(first, signal.SIGKILL)  # its launchers die with it (parent-death signal)
    _wait_for(lambda: not _workers(zhost, "echo"), 10, "the host to see its worker die")
    # the next call is served: by a fresh interpreter now, and a new zygote is started for later
    deadline = time.monotonic() + 20
    while True:
        outcome = zhost.run("echo.echo", {"value": "b"})
        if outcome.ok or time.monotonic() > deadline:
            break
    assert outcome.ok and outcome.value == "b", outcome.error
    assert any("zygote" in r.getMessage() for r in caplog.records), "the fallback was not logged"
    _wait_for(_all_gone(tree), 10, "the dead zygote's launcher tree to be gone")
    # Later workers come from the new zygote again, once it has imported the runtime.
    worker = _readd_until_zygote_spawned(zhost)
    assert _zygote_pid(zhost) != first
    assert zhost.call("echo.echo", {"value": "c"}) == "c"


def test_a_zygote_that_cannot_start_falls_back_to_fresh_interpreters(
    zhost: Host, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Kill the zygote before it is ever used and make its replacements fail: every worker
    still starts (fresh), and the host says so in its log."""
    from host import zygote as zygote_module

    monkeypatch.setattr(zygote_module, "MAX_FAILED_STARTS", 1)
    keeper = zhost._reactor.zygotes
    os.kill(_zygote_pid(zhost), signal.SIGKILL)
    assert keeper.current is not None
    zhost.add_provider(ECHO)
    (worker,) = _workers(zhost, "echo")
    assert worker.process.spawn_kind == "fresh"
    assert zhost.call("echo.echo", {"value": "x"}) == "x"


def test_spawn_mode_is_validated_and_defaults_to_the_zygote(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with pytest.raises(ValueError, match="spawn"):
        Host(spawn="vfork")
    monkeypatch.delenv("SANDBOX_SPAWN", raising=False)
    with Host() as host:
        assert host.spawn == "zygote"
    monkeypatch.setenv("SANDBOX_SPAWN", "fresh")
    with Host() as host:
        assert host.spawn == "fresh"
        assert host._reactor.zygotes.current is None


def test_zygote_is_replaced_after_its_fork_budget(
    zhost: Host, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A zygote forks at most MAX_FORKS launchers (bounding how many workers share its hash
    seed and layout); the retired one ends once its launchers have, and is reaped."""
    from host import zygote as zygote_module

    monkeypatch.setattr(zygote_module, "MAX_FORKS", 2)
    monkeypatch.setattr(zygote_module, "SUCCESSOR_LEAD", 1)
    zhost.add_provider(ECHO, policy=Policy(workers={"min": 2, "max": 3}))
    _wait_for(lambda: len(_workers(zhost, "echo")) == 2, 10, "two workers")
    parents = {psutil.Process(w.process.pid).ppid() for w in _workers(zhost, "echo")}
    assert len(parents) == 1, "both workers come from the first zygote (2 forks)"
    (first,) = parents
    worker = _readd_until_zygote_spawned(zhost)  # the successor, once it has imported
    assert psutil.Process(worker.process.pid).ppid() != first
    assert zhost.call("echo.echo", {"value": "x"}) == "x"

    def retired_exited() -> bool:
        try:
            return psutil.Process(first).status() == psutil.STATUS_ZOMBIE
        except psutil.NoSuchProcess:
            return True  # exited and already reaped by the host

    _wait_for(retired_exited, 10, "the retired zygote to exit once its launchers have")
    zhost.close()
    assert not psutil.pid_exists(first), "the retired zygote was not reaped"


@pytest.mark.skipif(os.geteuid() != 0, reason="cgroups v1 need root")
def test_a_spare_launcher_serves_the_next_spawn_with_that_workers_limits(zhost: Host) -> None:
    """After a spawn the host forks one spare launcher and moves it into a fresh cgroup while
    idle; the next worker takes it, and its cgroup gets that worker's policy limits."""
    if not zhost._reactor.cgroup_support.version:
        pytest.skip("no cgroups on this machine")
    zhost.add_provider(ECHO)
    _wait_for(lambda: zhost._reactor._spare is not None, 5, "a spare launcher")
    spare = zhost._reactor._spare
    assert spare is not None
    spare_pid = spare.forked.child.pid
    assert spare_pid in spare.cgroup.pids()
    assert {int(fd) for fd in os.listdir(f"/proc/{spare_pid}/fd")} <= {0, 1, 2, 3}
    zhost.add_provider(ENTROPY, policy=Policy(memory="96MiB", processes=7))
    (worker,) = _workers(zhost, "entropy")
    assert worker.process.pid == spare_pid
    assert worker.process.cgroup is spare.cgroup
    limits = {name: open(f"{d}/{name}").read().strip()  # noqa: SIM115
              for d in worker.process.cgroup.directories.values()
              for name in ("memory.limit_in_bytes", "pids.max") if os.path.exists(f"{d}/{name}")}
    assert limits["memory.limit_in_bytes"] == str(96 * 1024 * 1024)
    assert int(limits["pids.max"]) < 32
    assert zhost.call("entropy.state", {})["env"] == {}


def test_a_stalled_zygote_is_retired_without_taking_its_workers_along(zhost: Host) -> None:
    """A zygote that does not answer (here: stopped) costs a spawn at most the fork timeout;
    it is retired, not killed - its launchers, live workers, would die with it - and the
    worker starts fresh (or from the spare launcher forked before the stall)."""
    from host import zygote as zygote_module

    zhost.add_provider(ECHO, policy=Policy(workers={"min": 1, "max": 1}))
    (worker,) = _workers(zhost, "echo")
    assert worker.process.spawn_kind == "zygote"
    running = zhost.submit("echo.slow", {"seconds": 3})
    zygote = _zygote_pid(zhost)
    os.kill(zygote, signal.SIGSTOP)
    try:
        start = time.monotonic()
        zhost.add_provider(ENTROPY)
        took = time.monotonic() - start
        current = zhost._reactor.zygotes
        _wait_for(
            lambda: current.current is not None and current.current.pid != zygote,
            10,
            "a new zygote to take over",
        )
    finally:
        os.kill(zygote, signal.SIGCONT)
    assert took < zygote_module.FORK_TIMEOUT_S + 4.0, took  # (a fresh spawn on a loaded machine)
    assert running.result(timeout=30) == 3  # the stalled zygote's worker was not killed


def test_zygote_workers_load_the_seccomp_filter_their_policys_network_asks_for(
    zhost: Host,
) -> None:
    """The zygote builds both seccomp filters once (``seccomp.prebuild``) and each worker loads
    the one for its policy's ``network``: a mix-up would give a worker without network an
    inet socket, or refuse one to a worker with it."""
    seen = []
    for network in (False, True, False, True):
        zhost.add_provider(ENTROPY, policy=Policy(network=network))
        (worker,) = _workers(zhost, "entropy")
        assert worker.process.spawn_kind == "zygote"
        seen.append(zhost.call("entropy.inet_socket", {}))
        zhost.remove_provider("entropy")
        _wait_for(lambda: "entropy" not in zhost._reactor.providers, 10, "the provider to go")
    assert seen == ["EAFNOSUPPORT", "made", "EAFNOSUPPORT", "made"]
