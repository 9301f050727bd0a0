"""``SandboxExecutor``: a ``concurrent.futures.Executor`` that runs any callable confined.

An engine delegating a risky function uses this instead of ``ProcessPoolExecutor``: each callable
is shipped with cloudpickle to a worker under a policy (every confinement layer on by default),
and a worker that crashes fails only its own future. Results come back as JSON-compatible values
(or bytes) by default, so a worker taken over by a hostile input still cannot run code in the
host; ``results="pickle"`` is an explicit opt-in that trusts the worker.
"""

from __future__ import annotations

import base64
import dataclasses
import os
import sys
import sysconfig
import threading
from collections.abc import Callable
from concurrent.futures import Executor
from concurrent.futures import wait as futures_wait
from typing import Any

from host.errors import Outcome, OutputInvalid
from host.futures import CallFuture
from host.host import Host
from policies import Policy

_PROVIDER = "sandbox.executor_provider"
_ACTION = "executor.call"
#: How long ``shutdown(wait=True)`` lets running callables finish.
_SHUTDOWN_WAIT_S = 24 * 3600.0


class _ExecutorFuture(CallFuture):
    """Unwraps the worker's result envelope into the callable's return value."""

    def __init__(self, results: str) -> None:
        super().__init__()
        self._results = results

    def settle(self, outcome: Outcome) -> None:
        if outcome.ok:
            try:
                value = _unwrap(outcome.value, self._results)
            except Exception as exc:
                error = OutputInvalid(f"malformed executor result: {exc}", usage=outcome.usage)
                outcome = dataclasses.replace(outcome, ok=False, value=None, error=error)
            else:
                outcome = dataclasses.replace(outcome, value=value)
        super().settle(outcome)


def _unwrap(envelope: Any, results: str) -> Any:
    kind = envelope["kind"]
    if kind == "json":
        return envelope["value"]
    if kind == "bytes":
        return base64.b64decode(envelope["data"], validate=True)
    if kind == "pickle" and results == "pickle":
        import cloudpickle

        return cloudpickle.loads(base64.b64decode(envelope["data"], validate=True))
    raise ValueError(f"result kind {kind!r} was not asked for")


def _installed_paths() -> tuple[str, ...]:
    paths = sysconfig.get_paths()
    return tuple(
        os.path.realpath(p) for p in {paths["stdlib"], paths["purelib"], paths["platlib"]}
    )


def _pickle_by_value(fn: Callable[..., Any]) -> None:
    """Functions from the caller's own modules travel by value: the worker need not (and, under
    Landlock, cannot) import the caller's source tree. Installed packages go by reference."""
    import cloudpickle

    module = sys.modules.get(getattr(fn, "__module__", "") or "")
    filename = getattr(module, "__file__", None)
    if module is None or filename is None or module.__name__ == "__main__":
        return  # __main__ and built-ins: cloudpickle already does the right thing
    if not os.path.realpath(filename).startswith(_installed_paths()):
        cloudpickle.register_pickle_by_value(module)


class SandboxExecutor(Executor):
    """Run callables in confined workers, like ``ProcessPoolExecutor`` but sandboxed.

    ``max_workers`` bounds the workers (default: one per CPU); ``policy`` is the confinement and
    resource policy (default: the strict default). An exception raised by the callable surfaces
    as ``ActionFailed`` carrying the original type name, message and traceback text; a worker
    that dies fails that future with ``WorkerCrashed`` and the executor goes on.

    ``results="pickle"`` returns any picklable value, at a price: the host then unpickles what a
    worker sends, so a worker taken over by hostile input could run code in the host. Use it
    only for callables and inputs you trust.
    """

    def __init__(
        self,
        max_workers: int | None = None,
        policy: Policy | None = None,
        *,
        results: str = "json",
    ) -> None:
        if max_workers is not None and max_workers < 1:
            raise ValueError("max_workers must be greater than 0")
        if results not in ("json", "pickle"):
            raise ValueError('results must be "json" or "pickle"')
        policy = policy or Policy()
        limit = max_workers or policy.workers.max
        policy = policy.merged({"workers": {"min": 0, "max": limit}})
        self._results = results
        self._host = Host()
        self._host.add_provider(_PROVIDER, policy=policy, name="executor")
        self._lock = threading.Lock()
        self._shutdown = False
        self._futures: set[CallFuture] = set()

    def submit(
        self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any
    ) -> CallFuture:
        import cloudpickle

        with self._lock:
            if self._shutdown:
                raise RuntimeError("cannot schedule new futures after shutdown")
            _pickle_by_value(fn)
            payload = cloudpickle.dumps((fn, args, kwargs))
            future = _ExecutorFuture(self._results)
            self._host._submit_with(
                _ACTION, {"results": self._results}, future=future, payload=payload
            )
            self._futures.add(future)
            future.add_done_callback(self._futures.discard)
            return future

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        """Like ``concurrent.futures``: pending futures still run unless ``cancel_futures``."""
        with self._lock:
            self._shutdown = True
            if cancel_futures:
                for future in list(self._futures):
                    if not future.running():
                        future.cancel()
            pending = list(self._futures)
        if wait:
            self._finish(pending)
        else:
            threading.Thread(target=self._finish, args=(pending,), daemon=True).start()

    def _finish(self, pending: list[CallFuture]) -> None:
        futures_wait(pending)
        self._host.close(timeout=_SHUTDOWN_WAIT_S)
