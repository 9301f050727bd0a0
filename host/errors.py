"""Outcomes of a call: the usage every outcome carries and one exception class per error.

Every call ends in exactly one :class:`Outcome`. ``host.call`` raises the outcome's error;
``host.run`` returns the outcome. The class names are the outcome names used on the CLI and in
JSON (``{"error": {"type": "Timeout", ...}}``), so they are part of the public interface.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Usage:
    """What a call cost: wall seconds (host clock), CPU seconds and peak memory of the worker.

    ``source`` says who measured ``cpu_s`` and ``max_rss_bytes``: ``"cgroup"`` - the host, from
    the kernel's counters for the worker's whole process tree (``max_rss_bytes`` is then the
    tree's peak cgroup memory, page cache included); ``"worker"`` - the worker's own report,
    which provider code can falsify (a worker without a cgroup); ``""`` - nothing ran. The
    worker's report is kept in ``worker_reported`` for comparison and is never used to decide.
    """

    wall_s: float = 0.0
    cpu_s: float = 0.0
    max_rss_bytes: int = 0
    source: str = ""
    #: The worker's own figures (cpu_s, max_rss_bytes), when it sent them: shown, not trusted.
    worker_reported: tuple[float, int] | None = None

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "wall_s": round(self.wall_s, 6),
            "cpu_s": round(self.cpu_s, 6),
            "max_rss_bytes": self.max_rss_bytes,
        }
        if self.source:
            data["source"] = self.source
        if self.worker_reported is not None:
            data["worker_reported"] = {
                "cpu_s": round(self.worker_reported[0], 6),
                "max_rss_bytes": self.worker_reported[1],
            }
        return data


class SandboxError(Exception):
    """Base of every call outcome that is not ``ok``.

    ``details`` holds what the outcome knows beyond its message: ``traceback`` and
    ``exception_type`` for :class:`ActionFailed`, ``path`` for validation errors, ``exit_code`` or
    ``signal`` for :class:`WorkerCrashed`, ``logs`` with the worker's captured output.
    """

    def __init__(self, message: str, *, usage: Usage | None = None, **details: Any) -> None:
        super().__init__(message)
        self.message = message
        self.usage = usage if usage is not None else Usage()
        self.details: dict[str, Any] = details

    @property
    def type(self) -> str:
        """The outcome name, e.g. ``"Timeout"``."""
        return type(self).__name__

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {"type": self.type, "message": self.message}
        data.update({k: v for k, v in self.details.items() if v not in (None, "")})
        return data

    def __reduce__(self) -> Any:  # keep details when an outcome crosses a process boundary
        return (_rebuild, (type(self), self.message, self.usage, self.details))


def _rebuild(cls: type[SandboxError], message: str, usage: Usage, details: dict[str, Any]) -> Any:
    return cls(message, usage=usage, **details)


class InputInvalid(SandboxError):
    """The input does not match the action's input schema; nothing was sent to a worker."""


class OutputInvalid(SandboxError):
    """The action returned something its output schema does not allow (or that is not JSON)."""


class ActionFailed(SandboxError):
    """The action raised; ``details`` has the exception type, message and traceback text."""

    @property
    def traceback(self) -> str:
        return str(self.details.get("traceback", ""))

    @property
    def exception_type(self) -> str:
        return str(self.details.get("exception_type", ""))


class Timeout(SandboxError):
    """The wall-time limit (or the caller's timeout) passed; the worker's tree was killed."""


class CpuExceeded(SandboxError):
    """The action used more CPU time than the policy allows."""


class MemoryExceeded(SandboxError):
    """The action needed more memory than the policy allows."""


class OutputTooLarge(SandboxError):
    """The result is larger than the policy's ``output`` limit."""


class WorkerCrashed(SandboxError):
    """The worker died during the call; ``details`` has ``exit_code`` or ``signal``."""


class ProtocolViolation(SandboxError):
    """The worker sent something that is not the protocol; it was killed."""


class ProviderUnavailable(SandboxError):
    """The provider cannot serve: it failed to load, a required layer failed, or it is gone."""


class Cancelled(SandboxError):
    """The call was cancelled before it finished."""


class Overloaded(SandboxError):
    """The provider's queue of waiting calls is full; the call was refused at once."""


class HostUnavailable(SandboxError):
    """A remote host could not be reached, refused this client, or went away during the call.

    ``details["delivered"]`` is False when the request never left this process (no connection,
    refused key, a draining server that refused it): the call certainly did not run and may be
    sent elsewhere. True means it was sent and may have run (``host.remote.HostGroup`` re-sends
    such a call only when its action is ``safe_rerun``).
    """


ERROR_TYPES: dict[str, type[SandboxError]] = {
    cls.__name__: cls
    for cls in (
        InputInvalid,
        OutputInvalid,
        ActionFailed,
        Timeout,
        CpuExceeded,
        MemoryExceeded,
        OutputTooLarge,
        WorkerCrashed,
        ProtocolViolation,
        ProviderUnavailable,
        Cancelled,
        Overloaded,
    )
}


@dataclass(frozen=True)
class Outcome:
    """The one result of a call: ``ok`` and ``value``, or ``error`` (a :class:`SandboxError`)."""

    ok: bool
    value: Any = None
    error: SandboxError | None = None
    usage: Usage = field(default_factory=Usage)
    logs: str = ""
    #: How many times the call ran: more than 1 when a safe_rerun action was retried.
    attempts: int = 1
    #: What the action printed, each stream apart (``logs`` has both as they arrived).
    stdout: str = ""
    stderr: str = ""

    def unwrap(self) -> Any:
        """The value, or raise the error."""
        if self.error is not None:
            raise self.error
        return self.value

    def to_dict(self) -> dict[str, Any]:
        """The CLI's ``--json`` shape."""
        data: dict[str, Any] = {"ok": self.ok}
        if self.ok:
            data["result"] = self.value
        else:
            assert self.error is not None
            data["error"] = self.error.to_dict()
        data["usage"] = self.usage.to_dict()
        if self.attempts != 1:
            data["attempts"] = self.attempts
        if self.logs:
            data["logs"] = self.logs
        if self.stdout:
            data["stdout"] = self.stdout
        if self.stderr:
            data["stderr"] = self.stderr
        return data

    @classmethod
    def failure(
        cls, error: SandboxError, logs: str = "", attempts: int = 1, *,
        stdout: str = "", stderr: str = "",
    ) -> Outcome:
        return cls(ok=False, error=error, usage=error.usage, logs=logs, attempts=attempts,
                   stdout=stdout, stderr=stderr)  # fmt: skip
