"""Which paths a worker's Landlock rule may name: never ``/``, a home, or the host's own state.

A Landlock rule grants everything *beneath* its path, so one rule on ``/`` (or on ``/home``, or
on the directory holding the host's ipc sockets) undoes the whole filesystem confinement while
every report still says "landlock applied". Rules come from several places: the policy's
``read``/``write``, the runtime the host and the worker derive (the interpreter, site-packages,
this project's own directory), and the provider's own files. Each of them goes through
:func:`check_rule_path` before a worker starts; a refusal stops the worker and names the path,
the rule it came from and why.

A path is refused when, after resolving symlinks (a rule follows them: ``open(O_PATH)``):

- it is relative, or empty (``os.path.abspath("")`` silently meant "the current directory");
- it is ``/``;
- it is a home directory or holds one: ``/root``, ``/home``, ``$HOME``, and the home of every
  account in the user database that a person logs in to (uid 0, or uid >= 1000 but not
  ``nobody``). System accounts' "homes" (``/usr/sbin``, ``/bin``, ``/var/www``...) are not
  private places and are not refused;
- it is, or holds, a directory of the host's own state (``state``: its ipc directory, the root
  of the workers' work directories, the cgroup tree). A worker's own workdir lies *beneath*
  that state and is allowed.

Self-contained (no imports from the rest of the repo), like the rest of :mod:`policies`.
"""

from __future__ import annotations

import functools
import os
import pwd
from collections.abc import Iterable

#: First uid of accounts people log in to (``UID_MIN`` of login.defs on most distributions).
FIRST_PERSON_UID = 1000
#: ``nobody``: its home (``/nonexistent``) is no one's.
NOBODY_UID = 65534
#: Directories that hold homes even when the user database does not say so.
HOME_ROOTS = ("/root", "/home")


class UnsafeRulePath(ValueError):
    """A Landlock rule would grant a path that undoes the confinement; the worker must not start.

    ``path`` is the path as given, ``rule`` where it came from (``policy.read``, ``runtime``,
    ``provider``...) and ``reason`` why it is refused; the message names all three.
    """

    def __init__(self, path: str, rule: str, reason: str) -> None:
        self.path = path
        self.rule = rule
        self.reason = reason
        super().__init__(f"refusing the {rule} rule {path!r}: {reason}")

    def __reduce__(self) -> tuple[object, ...]:
        return (type(self), (self.path, self.rule, self.reason))


def _normal(path: str) -> str:
    return os.path.normpath(path) if path else path


def _database_key() -> tuple[int, int, int] | None:
    """What says the user database changed: ``/etc/passwd``'s inode, mtime and size."""
    try:
        status = os.stat("/etc/passwd")
    except OSError:
        return None
    return (status.st_ino, status.st_mtime_ns, status.st_size)


@functools.lru_cache(maxsize=4)
def _database_homes(key: tuple[int, int, int] | None) -> frozenset[str]:
    """Homes of uid 0 and of person accounts in the user database, read again only when
    ``/etc/passwd`` changed (``key``). The zygote reads it once, so that the launchers it forks
    find it here instead of each reading the database through NSS (a few milliseconds of every
    worker's start); a worker reads it before confinement, when ``/etc/passwd`` is readable.
    (Accounts NSS takes from elsewhere than ``/etc/passwd`` are read again when that changes,
    or when a new zygote starts.)"""
    homes = set()
    try:
        entries = pwd.getpwall()
    except OSError:
        entries = []
    for entry in entries:
        person = entry.pw_uid == 0 or (
            entry.pw_uid >= FIRST_PERSON_UID and entry.pw_uid != NOBODY_UID
        )
        if person and entry.pw_dir.startswith("/"):
            homes.add(_normal(entry.pw_dir))
    return frozenset(homes)


def preload() -> None:
    """Read the user database now (the zygote calls this; see :func:`_database_homes`)."""
    _database_homes(_database_key())


@functools.lru_cache(maxsize=8)
def _homes(database: frozenset[str], env_home: str) -> frozenset[str]:
    """The homes and what each resolves to, once per process and inputs: a worker checks
    every rule path against every home."""
    homes = set(HOME_ROOTS) | database
    if env_home.startswith("/"):
        homes.add(_normal(env_home))
    homes.discard("/")  # "/" is refused on its own; as a "home" it would say the wrong thing
    return frozenset(os.path.realpath(h) for h in homes) | frozenset(homes)


def home_directories() -> frozenset[str]:
    """Every directory this module treats as a home (see the module docstring)."""
    return _homes(_database_homes(_database_key()), os.environ.get("HOME", ""))


def _holds(outer: str, inner: str) -> bool:
    """Whether ``inner`` is ``outer`` or lies beneath it (both normalised, absolute)."""
    return inner == outer or inner.startswith(outer.rstrip("/") + "/")


def unsafe_reason(path: str, state: Iterable[str] = ()) -> str | None:
    """Why a rule on ``path`` must be refused, or None when it may be granted."""
    if not path or not path.startswith("/"):
        return "a rule path must be absolute"
    if "\0" in path:
        return "a rule path cannot contain a NUL character"
    candidates = [_normal(path)]
    real = os.path.realpath(path)
    if real != candidates[0]:
        candidates.append(real)
    for candidate in candidates:
        via = "" if candidate == candidates[0] else f" (it resolves to {candidate})"
        if candidate == "/":
            return f"it is the root directory{via}: the rule would grant the whole filesystem"
        for home in sorted(home_directories()):
            if _holds(candidate, home):
                what = "is a home directory" if candidate == home else f"holds the home {home}"
                return f"it {what}{via}"
        for place in state:
            place = _normal(place)
            if place and place.startswith("/") and _holds(candidate, place):
                return f"it holds the host's own state ({place}){via}"
    return None


def check_rule_path(path: str, rule: str, state: Iterable[str] = ()) -> str:
    """``path`` normalised, or :class:`UnsafeRulePath` naming it, ``rule`` and the reason."""
    reason = unsafe_reason(path, state)
    if reason is not None:
        raise UnsafeRulePath(path, rule, reason)
    return _normal(path)
