"""A provider for supervision tests: injected faults, slow calls, per-process tokens, and
actions that leave traces in a shared directory (granted with ``Policy(write=[...])``).

Three providers with the same actions under different namespaces (``faulty``, ``faulty_b``,
``faulty_c``) let one file be loaded three times: ``faulty.py:provider_b`` and so on.
"""

from __future__ import annotations

import os
import secrets
import signal
import threading
import time

from providers import Provider

#: Generated at import: a new value means a new worker process.
TOKEN = secrets.token_hex(8)
#: Memory kept alive across calls by ``leak``.
_LEAKED: list[bytes] = []


def fault_for(index: int) -> str:
    """The fault injected for call ``index``: 10% crash, 5% timeout, 5% error, else ok."""
    slot = index % 20
    if slot in (0, 1):
        return "crash"
    if slot == 2:
        return "timeout"
    if slot == 3:
        return "error"
    return "ok"


def _mark(directory: str, prefix: str) -> None:
    """Leave one new file named ``prefix-<random>`` in ``directory`` (one per run)."""
    path = os.path.join(directory, f"{prefix}-{secrets.token_hex(6)}")
    with open(path, "x") as handle:
        handle.write(str(os.getpid()))


def _install(provider: Provider) -> Provider:
    @provider.action
    def run(index: int) -> int:
        """Fail as ``fault_for(index)`` says, or return ``index * 3``."""
        fault = fault_for(index)
        if fault == "crash":
            os._exit(17)
        if fault == "timeout":
            time.sleep(60)
        if fault == "error":
            raise ValueError(f"injected error {index}")
        return index * 3

    @provider.action
    def sleep(seconds: float) -> float:
        """Sleep, then return."""
        time.sleep(seconds)
        return seconds

    @provider.action
    def slow_token(seconds: float) -> str:
        """Sleep, then return this worker process's token."""
        time.sleep(seconds)
        return TOKEN

    @provider.action
    def token() -> str:
        """This worker process's import-time token."""
        return TOKEN

    @provider.action
    def count(values: list[float]) -> int:
        """How many numbers it was given."""
        return len(values)

    @provider.action
    def boom(message: str) -> None:
        """Raise ValueError(message)."""
        raise ValueError(message)

    @provider.action
    def crash(code: int = 17) -> None:
        """Exit the worker at once."""
        os._exit(code)

    @provider.action
    def touch(directory: str, prefix: str, seconds: float = 0.0) -> str:
        """Leave a mark in ``directory``, then sleep."""
        _mark(directory, prefix)
        time.sleep(seconds)
        return TOKEN

    def _crash_on_first_run(directory: str, key: str) -> str:
        _mark(directory, key + "-run")
        path = os.path.join(directory, key)
        if not os.path.exists(path):
            with open(path, "x"):
                pass
            os._exit(9)
        return "second"

    @provider.action(safe_rerun=True)
    def crash_first(directory: str, key: str) -> str:
        """Crash on the first run for ``key`` (no ``key`` file yet), succeed afterwards."""
        return _crash_on_first_run(directory, key)

    @provider.action
    def crash_first_unsafe(directory: str, key: str) -> str:
        """Like crash_first, but not declared safe_rerun."""
        return _crash_on_first_run(directory, key)

    @provider.action(safe_rerun=True)
    def crash_counted(directory: str, key: str) -> None:
        """A safe_rerun action that always crashes (each run leaves a mark)."""
        _mark(directory, key + "-run")
        os._exit(9)

    @provider.action(safe_rerun=True)
    def fail_counted(directory: str, key: str) -> None:
        """A safe_rerun action that raises (each run leaves a mark)."""
        _mark(directory, key + "-run")
        raise RuntimeError("counted failure")

    @provider.action(safe_rerun=True)
    def sleep_counted(directory: str, key: str, seconds: float) -> None:
        """A safe_rerun action that sleeps past its limit (each run leaves a mark)."""
        _mark(directory, key + "-run")
        time.sleep(seconds)

    @provider.action
    def leak(mebibytes: int) -> int:
        """Keep ``mebibytes`` of touched memory alive in this worker."""
        _LEAKED.append(b"\x01" * (mebibytes * 1024 * 1024))
        return sum(len(chunk) for chunk in _LEAKED)

    @provider.action
    def freeze_after(seconds: float) -> str:
        """Return, then stop this whole process (SIGSTOP) from a thread: a hung idle worker."""

        def stop() -> None:
            time.sleep(seconds)
            os.kill(os.getpid(), signal.SIGSTOP)

        threading.Thread(target=stop, daemon=True).start()
        return TOKEN

    return provider


provider = _install(Provider("faulty", version="1.0", description="fault injection"))
provider_b = _install(Provider("faulty_b", version="1.0", description="fault injection"))
provider_c = _install(Provider("faulty_c", version="1.0", description="fault injection"))
