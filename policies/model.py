"""The confinement policy applied to one provider's workers.

A :class:`Policy` is an immutable, fully validated value: every limit is in
base units (seconds, bytes, counts) no matter how it was written, so the code
applying the limits never parses anything and two policies written
differently but meaning the same thing compare equal.
"""

from __future__ import annotations

import dataclasses
import math
import os
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from .paths import unsafe_reason
from .units import (
    MAX_SIZE,
    KiB,
    MiB,
    PolicyError,
    format_duration,
    format_size,
    join_path,
    parse_duration,
    parse_size,
    show_value,
)

__all__ = ["DEFAULT_REQUIRE", "LAYERS", "Policy", "Workers"]

LAYERS: Final[tuple[str, ...]] = (
    "pdeathsig",
    "rlimits",
    "user_namespace",
    "pid_namespace",
    "mount_namespace",
    "network_namespace",
    "ipc_uts_namespace",
    "no_new_privileges",
    "uid_drop",
    "landlock",
    "seccomp",
    "cgroups",
)
"""Known confinement layers, in the order the worker applies them."""

DEFAULT_REQUIRE: Final[tuple[str, ...]] = (
    "pdeathsig",
    "rlimits",
    "pid_namespace",
    "mount_namespace",
    "ipc_uts_namespace",
    "no_new_privileges",
    "uid_drop",
    "landlock",
    "seccomp",
)
"""Layers every strict policy requires, on any Linux machine.

With ``require`` left unset, the worker also requires the layers that depend on the machine and
the policy: ``network_namespace`` unless ``network`` is true, ``user_namespace`` when the host is
not root, ``cgroups`` when the host can create them. An explicit ``require`` or a non-empty
``skip`` that leaves any of these out must say ``allow_missing = true``: weakening confinement is
a visible, deliberate decision in the config.
"""

#: A worker may spend this many per-call CPU budgets over its life before it must retire.
CPU_BUDGET_CALLS: Final = 4
#: CPU seconds granted on top of those for interpreter start-up and provider import.
STARTUP_CPU_S: Final = 2

#: Entries of the private /tmp tmpfs (files and directories) a worker may create.
TMP_INODES: Final = 16384
#: Entries of the workdir's tmpfs (files and directories) a worker may create.
WORKDIR_INODES: Final = 16384

ENV_NAME_PATTERN: Final = r"^[A-Za-z_][A-Za-z0-9_]*$"
_ENV_NAME_RE: Final = re.compile(ENV_NAME_PATTERN)
LAYER_EXPECTED: Final = "a known layer name (one of: " + ", ".join(LAYERS) + ")"


# --- small validators (each raises PolicyError with the given path) ---------------------------


def _count(value: object, where: str, minimum: int) -> int:
    """An integer count; integral floats are accepted because JSON cannot tell 4 from 4.0."""
    if isinstance(value, float) and not isinstance(value, bool) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise PolicyError(where, f"an integer >= {minimum}", show_value(value))
    if value < minimum:
        raise PolicyError(where, f"an integer >= {minimum}", show_value(value))
    return value


def _flag(value: object, where: str) -> bool:
    # Only real booleans: 0/1 or "yes" in a security setting is more likely a mistake than intent.
    if not isinstance(value, bool):
        raise PolicyError(where, "a boolean (true or false)", show_value(value))
    return value


def _strings(value: object, where: str, what: str) -> list[str]:
    # A lone string is rejected rather than split into characters or wrapped, to surface typos.
    if isinstance(value, str | bytes | Mapping) or not isinstance(value, Iterable):
        raise PolicyError(where, f"a list of {what}", show_value(value))
    items = list(value)
    for index, item in enumerate(items):
        if not isinstance(item, str):
            raise PolicyError(f"{where}[{index}]", f"a string ({what})", show_value(item))
    return items


def _is_utf8(text: str) -> bool:
    """Whether ``text`` encodes to UTF-8 (not so with the surrogates of undecodable bytes)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _paths(value: object, where: str) -> tuple[str, ...]:
    items = _strings(value, where, "absolute paths")
    for index, item in enumerate(items):
        # Relative paths would be resolved against the worker's cwd, which is not the author's.
        if not item.startswith("/") or "\0" in item:
            raise PolicyError(f"{where}[{index}]", "an absolute path", show_value(item))
        if not item.isascii() and not _is_utf8(item):  # the worker is sent its rules as JSON
            raise PolicyError(f"{where}[{index}]", "a path in UTF-8", show_value(item))
        # A rule grants everything beneath it: "/" or a home would undo the confinement.
        reason = unsafe_reason(item)
        if reason is not None:
            raise PolicyError(
                f"{where}[{index}]",
                "a path that is not /, a home directory or a directory holding one",
                f"{show_value(item)} ({reason})",
            )
    return tuple(items)


def _env_names(value: object, where: str) -> tuple[str, ...]:
    items = _strings(value, where, "environment variable names")
    for index, item in enumerate(items):
        if not _ENV_NAME_RE.fullmatch(item):
            raise PolicyError(
                f"{where}[{index}]",
                "an environment variable name such as HOME or LANG",
                show_value(item),
            )
    return tuple(items)


def _optional_layers(value: object, where: str) -> tuple[str, ...] | None:
    return None if value is None else _layers(value, where)


def _uid(value: object, where: str) -> int | None:
    if value is None:
        return None
    number = _count(value, where, 1)
    if number >= 2**32 - 1:
        raise PolicyError(where, "a user id between 1 and 4294967294", show_value(value))
    return number


def _layers(value: object, where: str) -> tuple[str, ...]:
    items = _strings(value, where, "layer names")
    for index, item in enumerate(items):
        if item not in LAYERS:
            raise PolicyError(f"{where}[{index}]", LAYER_EXPECTED, show_value(item))
    # Canonical order (application order, no duplicates) so equal requirements compare equal.
    wanted = set(items)
    return tuple(layer for layer in LAYERS if layer in wanted)


def _minimum_size(minimum: int) -> Callable[[object, str], int]:
    def parse(value: object, where: str) -> int:
        size = parse_size(value, where=where)
        if size < minimum:
            raise PolicyError(where, f"a size of at least {format_size(minimum)}",
                              show_value(value))
        if size > MAX_SIZE:  # the kernel's limits (setrlimit, cgroups) are 64-bit
            raise PolicyError(where, "a size of at most 8EiB (2**63 - 1 bytes)",
                              show_value(value))
        return size

    return parse


def _positive_duration(value: object, where: str) -> float:
    seconds = parse_duration(value, where=where)
    if seconds <= 0:
        raise PolicyError(where, "a duration greater than zero, such as 2s", show_value(value))
    return seconds


# --- model ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Workers:
    """How many worker processes a provider may have: ``min`` kept warm, at most ``max``."""

    min: int = 0
    max: int = field(default_factory=lambda: os.cpu_count() or 1)

    def __post_init__(self) -> None:
        lowest = _count(self.min, "min", 0)
        highest = _count(self.max, "max", 1)
        if lowest > highest:
            raise PolicyError("min", f"a number no greater than workers.max ({highest})",
                              show_value(lowest))
        object.__setattr__(self, "min", lowest)
        object.__setattr__(self, "max", highest)

    @classmethod
    def from_value(cls, value: object, where: str = "workers") -> Workers:
        """Accept a :class:`Workers` or a ``{"min": .., "max": ..}`` mapping (strict keys)."""
        if isinstance(value, Workers):
            return value
        if not isinstance(value, Mapping):
            raise PolicyError(where, "a table with min and max worker counts", show_value(value))
        known = [f.name for f in dataclasses.fields(cls)]
        for key in value:
            if key not in known:
                raise PolicyError(join_path(where, str(key)),
                                  "one of the known keys: " + ", ".join(known),
                                  f"unknown key {show_value(key)}")
        try:
            return cls(**value)
        except PolicyError as error:
            raise error.relocated(where) from None

    def to_dict(self) -> dict[str, int]:
        return {"min": self.min, "max": self.max}


def _workers(value: object, where: str) -> Workers:
    if isinstance(value, Workers):
        return value
    return Workers.from_value(value, where)


_NORMALISERS: Final[dict[str, Callable[[object, str], object]]] = {
    "wall_time": _positive_duration,
    "cpu_time": _positive_duration,
    "memory": _minimum_size(16 * MiB),
    "processes": lambda v, w: _count(v, w, 1),
    "open_files": lambda v, w: _count(v, w, 16),
    "file_size": _minimum_size(0),
    "output": _minimum_size(1),
    "input": _minimum_size(2),
    "log": _minimum_size(0),
    "network": _flag,
    "read": _paths,
    "write": _paths,
    "env": _env_names,
    "workers": _workers,
    "require": _optional_layers,
    "skip": _layers,
    "allow_missing": _flag,
    "uid": _uid,
    "tmp": _minimum_size(1 * MiB),
    "workdir": _minimum_size(1 * MiB),
    "idle_timeout": _positive_duration,
    "queue": lambda v, w: _count(v, w, 0),
    "max_calls": lambda v, w: _count(v, w, 0),
    "max_memory_growth": _minimum_size(0),
    "retries": lambda v, w: _count(v, w, 0),
}

_MEANINGS: Final[dict[str, str]] = {
    "wall_time": "longest an action may run (wall clock) before its worker is killed",
    "cpu_time": "CPU time one call may use before its worker is killed",
    "memory": "memory a worker process may use",
    "processes": "most processes and threads a worker may have",
    "open_files": "most file descriptors a worker may have open",
    "file_size": "largest file a worker may write",
    "output": "largest result an action may return",
    "input": "largest input (encoded JSON) the host sends to an action",
    "log": "most stdout+stderr captured per action (the rest is dropped)",
    "network": "whether the worker may use the network",
    "read": "extra paths the worker may read",
    "write": "extra paths the worker may write",
    "env": "environment variables passed through from the host",
    "workers": "how many workers are kept warm (min) and allowed at once (max)",
    "require": "confinement layers that must be applied or the worker refuses to run "
    "(unset: every layer this machine and policy call for)",
    "skip": "layers not applied at all (needs allow_missing)",
    "allow_missing": "explicitly allow requiring fewer layers than the defaults",
    "uid": "user id the worker runs as when the host is root (unset: a dedicated id per worker)",
    "tmp": "size of the worker's private /tmp (tmpfs)",
    "workdir": "size of the worker's working directory (its own tmpfs)",
    "idle_timeout": "how long a worker above workers.min may stay idle before it stops",
    "queue": "calls that may wait for a worker; beyond it a call fails at once (Overloaded)",
    "max_calls": "calls a worker serves before it is replaced (0: no limit)",
    "max_memory_growth": "peak-memory growth over its first call after which a worker is "
    "replaced (0: no limit)",
    "retries": "re-runs of a safe_rerun action whose worker died (WorkerCrashed)",
}


@dataclass(frozen=True)
class Policy:
    """Resource limits and confinement requirements for a provider's workers.

    The constructor accepts user-friendly values (``memory="256MiB"``,
    ``workers={"min": 1, "max": 4}``, lists for tuples) and normalises them,
    raising :class:`PolicyError` with the field name as ``path`` on bad input.
    """

    wall_time: float = 30.0
    cpu_time: float = 10.0
    memory: int = 256 * MiB
    processes: int = 32
    open_files: int = 64
    file_size: int = 16 * MiB
    output: int = 1 * MiB
    #: Largest engine input (encoded JSON, plus any binary payload) the host sends to a worker.
    input: int = 1 * MiB
    log: int = 64 * KiB
    network: bool = False
    read: tuple[str, ...] = ()
    write: tuple[str, ...] = ()
    env: tuple[str, ...] = ()
    workers: Workers = field(default_factory=Workers)
    require: tuple[str, ...] | None = None
    skip: tuple[str, ...] = ()
    allow_missing: bool = False
    uid: int | None = None
    tmp: int = 64 * MiB
    workdir: int = 64 * MiB
    idle_timeout: float = 60.0
    queue: int = 1000
    max_calls: int = 0
    max_memory_growth: int = 0
    retries: int = 0

    def __post_init__(self) -> None:
        for name, normalise in _NORMALISERS.items():
            object.__setattr__(self, name, normalise(getattr(self, name), name))
        required = DEFAULT_REQUIRE if self.require is None else self.require
        missing = [layer for layer in DEFAULT_REQUIRE if layer not in required]
        missing += [layer for layer in self.skip if layer not in missing]
        if missing and not self.allow_missing:
            # Weakening confinement must be a visible, deliberate decision in the config.
            raise PolicyError(
                "skip" if self.skip else "require",
                "a policy that keeps the default-required layers "
                + ", ".join(DEFAULT_REQUIRE)
                + " (or set allow_missing = true to run without "
                + ", ".join(missing)
                + ")",
                show_value(list(self.skip or required)),
            )
        clash = [layer for layer in self.skip if layer in (self.require or ())]
        if clash:
            raise PolicyError(
                "skip", "no layer that require also names", show_value(list(clash))
            )

    def lifetime_cpu_seconds(self) -> int:
        """A worker's RLIMIT_CPU: whole seconds, as the kernel counts.

        A hard limit can never be raised again, so it cannot be per call; the per-call limit is
        a CPU timer the worker arms around each call. This lifetime budget is the backstop that
        provider code cannot lift: room for :data:`CPU_BUDGET_CALLS` calls' worth plus start-up,
        after which the worker retires itself.
        """
        return math.ceil(self.cpu_time * CPU_BUDGET_CALLS) + STARTUP_CPU_S

    def required_layers(self, *, host_is_root: bool, cgroups_available: bool) -> tuple[str, ...]:
        """The layers a worker under this policy must apply, on a host with these facts.

        An explicit ``require`` is taken as written. Unset, it is the strict default plus what
        this machine and policy call for (see :data:`DEFAULT_REQUIRE`), less ``skip``.
        """
        if self.require is not None:
            return self.require
        wanted = set(DEFAULT_REQUIRE)
        if not self.network:
            wanted.add("network_namespace")
        if not host_is_root:
            wanted.add("user_namespace")
        if cgroups_available:
            wanted.add("cgroups")
        wanted -= set(self.skip)
        return tuple(layer for layer in LAYERS if layer in wanted)

    @classmethod
    def field_names(cls) -> tuple[str, ...]:
        """The policy keys accepted in a config table, in display order."""
        return tuple(f.name for f in dataclasses.fields(cls))

    @classmethod
    def from_mapping(
        cls,
        data: Mapping[str, object],
        *,
        path: str = "policy",
        file: str | None = None,
    ) -> Policy:
        """Build a policy from a config table; unknown keys are errors, not silently ignored."""
        return cls._build({}, data, path=path, file=file)

    def merged(
        self,
        overrides: Mapping[str, object],
        *,
        path: str = "policy",
        file: str | None = None,
    ) -> Policy:
        """A copy with the keys in ``overrides`` replaced (whole values, not deep-merged)."""
        current = {name: getattr(self, name) for name in self.field_names()}
        return self._build(current, overrides, path=path, file=file)

    @classmethod
    def _build(
        cls,
        base: dict[str, object],
        overrides: Mapping[str, object],
        *,
        path: str,
        file: str | None,
    ) -> Policy:
        if not isinstance(overrides, Mapping):
            raise PolicyError(path, "a table of policy settings", show_value(overrides), file)
        known = cls.field_names()
        for key in overrides:
            if key not in known:
                raise PolicyError(
                    join_path(path, str(key)),
                    "one of the known keys: " + ", ".join(known),
                    f"unknown key {show_value(key)}",
                    file,
                )
        values: dict[str, Any] = {**base, **overrides}
        try:
            return cls(**values)
        except PolicyError as error:
            raise error.relocated(path, file) from None

    def to_dict(self) -> dict[str, object]:
        """Plain JSON-serialisable form (seconds, bytes); ``from_mapping`` inverts it.

        Unset optional keys (``require``, ``uid``) are left out, as they would be in a file.
        """
        data: dict[str, object] = {
            "wall_time": self.wall_time,
            "cpu_time": self.cpu_time,
            "memory": self.memory,
            "processes": self.processes,
            "open_files": self.open_files,
            "file_size": self.file_size,
            "output": self.output,
            "input": self.input,
            "log": self.log,
            "network": self.network,
            "read": list(self.read),
            "write": list(self.write),
            "env": list(self.env),
            "workers": self.workers.to_dict(),
            "require": None if self.require is None else list(self.require),
            "skip": list(self.skip),
            "allow_missing": self.allow_missing,
            "uid": self.uid,
            "tmp": self.tmp,
            "workdir": self.workdir,
            "idle_timeout": self.idle_timeout,
            "queue": self.queue,
            "max_calls": self.max_calls,
            "max_memory_growth": self.max_memory_growth,
            "retries": self.retries,
        }
        return {key: value for key, value in data.items() if value is not None}

    def describe(self) -> list[tuple[str, str, str]]:
        """Rows of (key, human-readable value, meaning) for ``sandbox``-style status output."""

        def listed(items: tuple[str, ...]) -> str:
            return ", ".join(items) if items else "(none)"

        shown: dict[str, str] = {
            "wall_time": format_duration(self.wall_time),
            "cpu_time": format_duration(self.cpu_time),
            "memory": format_size(self.memory),
            "processes": str(self.processes),
            "open_files": str(self.open_files),
            "file_size": format_size(self.file_size),
            "output": format_size(self.output),
            "input": format_size(self.input),
            "log": format_size(self.log),
            "network": "allowed" if self.network else "denied",
            "read": listed(self.read),
            "write": listed(self.write),
            "env": listed(self.env),
            "workers": f"min {self.workers.min}, max {self.workers.max}",
            "require": "(strict default)" if self.require is None else listed(self.require),
            "skip": listed(self.skip),
            "allow_missing": "yes" if self.allow_missing else "no",
            "uid": "(dedicated per worker)" if self.uid is None else str(self.uid),
            "tmp": format_size(self.tmp),
            "workdir": format_size(self.workdir),
            "idle_timeout": format_duration(self.idle_timeout),
            "queue": str(self.queue),
            "max_calls": str(self.max_calls) if self.max_calls else "no limit",
            "max_memory_growth": (
                format_size(self.max_memory_growth) if self.max_memory_growth else "no limit"
            ),
            "retries": str(self.retries),
        }
        return [(key, shown[key], _MEANINGS[key]) for key in self.field_names()]
