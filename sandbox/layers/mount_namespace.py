"""Mount namespace: every byte a worker writes lands on storage its policy bounds.

The launcher unshares it; the init process (first in the new pid namespace) then makes every
mount private and *read-only* (``_readonly``), mounts a ``/proc`` that shows only the worker's own
processes, covers ``/tmp`` with a new tmpfs (``policy.tmp``, :data:`TMP_INODES` inodes) so nothing
of the host's tmp is visible, and mounts a tmpfs of its own (``policy.workdir``,
:data:`WORKDIR_INODES` inodes) on the workdir's path. ``/dev/shm`` is covered with an empty
read-only tmpfs. What the worker writes - files, core dumps, socket files - therefore lives in
those two tmpfs (memory of the worker's cgroup, not the host's disk) and vanishes with the
namespace; the host's own workdir directory stays empty. The operator's ``write`` paths are made
writable again as far as they were on the host. The ipc socket and the read paths may live under
the host's ``/tmp``: they are bind-mounted back (read-only) at the same paths.

Without this layer there is no private storage: disk writes are bounded only by RLIMIT_FSIZE
per file (and Landlock decides where).
"""

from __future__ import annotations

import os

from policies import Policy
from policies.model import TMP_INODES, WORKDIR_INODES
from sandbox.layers import LayerContext, LayerError, Probe
from sandbox.layers._namespaces import probe_unshare
from sandbox.layers._readonly import host_readonly, restore, set_readonly, writable_again
from sandbox.libc import (
    CLONE_NEWNS,
    MS_BIND,
    MS_NODEV,
    MS_NOEXEC,
    MS_NOSUID,
    MS_PRIVATE,
    MS_RDONLY,
    MS_REC,
    mount,
    unshare,
)

NAME = "mount_namespace"
STAGE = "launcher"
PRIVATE_TMP = "/tmp"
#: POSIX shared memory (``shm_open``) lives here; a worker gets an empty read-only one.
DEV_SHM = "/dev/shm"
#: What a worker's disk writes are bounded by when this layer is not applied.
UNBOUNDED = "no private tmpfs: disk writes are bounded only by RLIMIT_FSIZE per file"


def probe() -> Probe:
    found = probe_unshare(CLONE_NEWNS, "a mount namespace")
    if found.available:
        return found
    return Probe(False, f"{found.reason}; {UNBOUNDED}", found.version)


def apply(policy: Policy, context: LayerContext) -> str:
    try:
        unshare(CLONE_NEWNS)
    except OSError as exc:
        raise LayerError(f"{exc}; {UNBOUNDED}") from None
    return (
        f"private /tmp (tmpfs, {_mib(policy.tmp)}, {TMP_INODES} inodes) and workdir (tmpfs,"
        f" {_mib(policy.workdir)}, {WORKDIR_INODES} inodes); every other mount read-only"
    )


def _mib(size: int) -> str:
    return f"{size / (1024 * 1024):g}MiB"


def _bind_back(handle: int, target: str) -> None:
    """Bind-mount what ``handle`` (an O_PATH descriptor) names onto ``target``, which is made
    first (a directory, or an empty file for a file or socket); then close the handle."""
    if os.path.isdir(f"/proc/self/fd/{handle}"):
        os.mkdir(target, 0o711)
    else:
        os.close(os.open(target, os.O_CREAT | os.O_WRONLY | os.O_CLOEXEC, 0o600))
    mount(f"/proc/self/fd/{handle}", target, None, MS_BIND | MS_REC, None)
    os.close(handle)


def prepare(
    policy: Policy,
    keep: list[str],
    *,
    new_proc: bool,
    workdir: str,
    writable: list[str],
    owner: tuple[int, int] | None,
) -> None:
    """In the init process: private read-only mounts, fresh /proc, private /tmp and workdir.

    ``keep`` holds absolute paths (a directory or a socket file) that must still be reachable
    at the same path after /tmp is covered. ``workdir`` gets its own tmpfs, owned by ``owner``
    (the uid/gid the worker drops to; None: the current ids), and becomes this process's cwd,
    so the worker forked next starts in it. ``writable`` (the policy's ``write`` paths) stay
    writable as far as the host's mounts let them be.
    """
    workdir = workdir.rstrip("/")
    try:
        mount("none", "/", None, MS_REC | MS_PRIVATE, None)
        writable = [p for p in dict.fromkeys(writable) if os.path.exists(p)]
        host_ro = {p: host_readonly(p) for p in writable}
        proc_ro = None if new_proc else host_readonly("/proc")
        set_readonly("/", True)
        if new_proc:
            mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, None)
        elif proc_ro is not None:  # the host's /proc stays as it was (the worker's own files)
            restore("/proc", proc_ro)
        under_tmp = sorted(
            {p.rstrip("/") for p in keep if p.startswith(PRIVATE_TMP + "/")} - {workdir}
        )
        # A path inside another kept directory comes along with it.
        under_tmp = [p for p in under_tmp if not any(p.startswith(q + "/") for q in under_tmp)]
        handles = {p: os.open(p, os.O_PATH | os.O_CLOEXEC) for p in under_tmp}
        options = f"size={policy.tmp},nr_inodes={TMP_INODES},mode=1777"
        mount("tmpfs", PRIVATE_TMP, "tmpfs", MS_NOSUID | MS_NODEV, options)
        for path, handle in handles.items():
            os.makedirs(os.path.dirname(path), mode=0o711, exist_ok=True)
            _bind_back(handle, path)
        _mount_workdir(policy, workdir, owner)
        if os.path.isdir(DEV_SHM):
            mount("tmpfs", DEV_SHM, "tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC | MS_RDONLY,
                  "size=4k,nr_inodes=2,mode=0755")  # fmt: skip
        for path in writable:
            readonly_inside = host_ro[path]
            if readonly_inside is not None:
                writable_again(path, readonly_inside)
        os.chdir(workdir)
    except OSError as exc:
        raise LayerError(str(exc)) from None


def _mount_workdir(policy: Policy, workdir: str, owner: tuple[int, int] | None) -> None:
    """A tmpfs of its own on the workdir's path: its size and inodes are the policy's bound.

    Under the private /tmp the path is made first; elsewhere the host's (empty) directory is
    covered. Either way the host's directory never receives a byte.
    """
    if workdir.startswith(PRIVATE_TMP + "/"):
        os.makedirs(workdir, mode=0o711, exist_ok=True)
    options = f"size={policy.workdir},nr_inodes={WORKDIR_INODES},mode=0700"
    mount("tmpfs", workdir, "tmpfs", MS_NOSUID | MS_NODEV, options)
    if owner is not None:
        os.chown(workdir, *owner)


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
            set_readonly(directory, True)  # a cover is a view, never a place to write
            covered.append(directory)
    return covered
