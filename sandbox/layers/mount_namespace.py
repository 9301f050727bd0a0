"""Mount namespace: a private ``/tmp`` (tmpfs with a size and inode limit) and a fresh ``/proc``.

The launcher unshares it; the init process (first in the new pid namespace) then makes every
mount private, mounts a ``/proc`` that shows only the worker's own processes, and covers ``/tmp``
with a new tmpfs, so nothing of the host's tmp is visible. The worker's workdir and its ipc socket
may live under the host's ``/tmp``: they are bind-mounted back at the same paths first.
"""

from __future__ import annotations

import os

from policies import Policy
from policies.model import TMP_INODES
from sandbox.layers import LayerContext, LayerError, Probe
from sandbox.layers._namespaces import probe_unshare
from sandbox.libc import (
    CLONE_NEWNS,
    MS_BIND,
    MS_NODEV,
    MS_NOEXEC,
    MS_NOSUID,
    MS_PRIVATE,
    MS_REC,
    mount,
    unshare,
)

NAME = "mount_namespace"
STAGE = "launcher"
PRIVATE_TMP = "/tmp"


def probe() -> Probe:
    return probe_unshare(CLONE_NEWNS, "a mount namespace")


def apply(policy: Policy, context: LayerContext) -> str:
    try:
        unshare(CLONE_NEWNS)
    except OSError as exc:
        raise LayerError(str(exc)) from None
    return f"private /tmp (tmpfs, {policy.tmp // (1024 * 1024)}MiB, {TMP_INODES} inodes)"


def _bind_back(handle: int, target: str) -> None:
    """Bind-mount what ``handle`` (an O_PATH descriptor) names onto ``target``, which is made
    first (a directory, or an empty file for a file or socket); then close the handle."""
    if os.path.isdir(f"/proc/self/fd/{handle}"):
        os.mkdir(target, 0o711)
    else:
        os.close(os.open(target, os.O_CREAT | os.O_WRONLY | os.O_CLOEXEC, 0o600))
    mount(f"/proc/self/fd/{handle}", target, None, MS_BIND | MS_REC, None)
    os.close(handle)


def prepare(policy: Policy, keep: list[str], *, new_proc: bool) -> None:
    """In the init process: private mounts, fresh /proc, private /tmp; ``keep`` stays visible.

    ``keep`` holds absolute paths (a directory or a socket file) that must still be reachable
    at the same path after /tmp is covered.
    """
    try:
        mount("none", "/", None, MS_REC | MS_PRIVATE, None)
        if new_proc:
            mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, None)
        under_tmp = sorted({p.rstrip("/") for p in keep if p.startswith(PRIVATE_TMP + "/")})
        # A path inside another kept directory comes along with it.
        under_tmp = [p for p in under_tmp if not any(p.startswith(q + "/") for q in under_tmp)]
        handles = {p: os.open(p, os.O_PATH | os.O_CLOEXEC) for p in under_tmp}
        options = f"size={policy.tmp},nr_inodes={TMP_INODES},mode=1777"
        mount("tmpfs", PRIVATE_TMP, "tmpfs", MS_NOSUID | MS_NODEV, options)
        for path, handle in handles.items():
            os.makedirs(os.path.dirname(path), mode=0o711, exist_ok=True)
            _bind_back(handle, path)
    except OSError as exc:
        raise LayerError(str(exc)) from None


def _blocked_ancestor(path: str) -> str | None:
    """The highest directory on the way to ``path`` that other users may not traverse."""
    parts = path.strip("/").split("/")
    current = ""
    for part in parts[:-1]:
        current += "/" + part
        try:
            mode = os.stat(current).st_mode
        except OSError:
            return None
        if not mode & 0o001:
            return current
    return None


def expose(paths: list[str]) -> list[str]:
    """Make ``paths`` reachable for an unprivileged uid without opening anything else.

    A Python installed under ``/root`` (pyenv as root, common in containers) sits below a 0700
    directory that a dedicated uid cannot traverse. For each such directory, this covers it
    with a tmpfs of mode 0711 holding bind mounts of just the entries on the way to ``paths``:
    the runtime becomes reachable and the rest of ``/root`` disappears from view. Returns the
    directories it covered. Runs in the init, inside the new mount namespace, as root.
    """
    covered: list[str] = []
    for _ in range(8):  # one level per round; real layouts need one or two
        wanted: dict[str, set[str]] = {}
        for path in paths:
            blocked = _blocked_ancestor(path)
            if blocked is not None:
                child = path[len(blocked) + 1 :].split("/")[0]
                wanted.setdefault(blocked, set()).add(child)
        if not wanted:
            return covered
        for directory, children in sorted(wanted.items()):
            handles = {c: os.open(f"{directory}/{c}", os.O_PATH | os.O_CLOEXEC) for c in children}
            mount("tmpfs", directory, "tmpfs", MS_NOSUID | MS_NODEV, "size=64k,mode=0711")
            for child, handle in handles.items():
                _bind_back(handle, f"{directory}/{child}")
            covered.append(directory)
    return covered
