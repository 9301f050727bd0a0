"""A hostile provider that leaves its workdir as hard to remove as it can, for the host's
clean-up tests: directory chains far deeper than a recursive remover can follow, directories
it makes unreadable and unwritable, links to the host's files, fifos and sockets, long names.

Every action works in the worker's own workdir (its current directory) and is bounded: the
deepest chain is 20,000 levels, the widest directory 100,000 empty files.
"""

from __future__ import annotations

import os
import stat

from providers import Provider

provider = Provider("litter", version="1.0")

MAX_DEPTH = 20_000
MAX_FILES = 100_000


def _chain(depth: int, name: str = "d") -> str:
    """Make a chain of ``depth`` nested directories named ``name`` in the workdir, built from
    the bottom up (each step nests the chain so far into a new directory at the top: Landlock
    checks every access against each directory up to the root, so descending to build it
    would cost quadratic time); return the workdir."""
    top = os.getcwd()
    os.mkdir(name)
    with open(os.path.join(name, "bottom"), "w") as f:
        f.write("deep")
    for _ in range(min(depth, MAX_DEPTH) - 1):
        os.mkdir("next")
        os.rename(name, os.path.join("next", name))
        os.rename("next", name)
    return top


@provider.action
def deep_chain(depth: int) -> str:
    """Leave a chain of ``depth`` nested directories in the workdir; return the workdir."""
    return _chain(depth)


@provider.action
def workdir() -> str:
    """The worker's workdir (the host's path: the init binds it back at the same place)."""
    return os.getcwd()


@provider.action
def obstacles(link_target: str, depth: int = 0) -> str:
    """Leave everything that trips a naive remover: links to ``link_target`` (a host path,
    at the top, inside a locked directory and at the bottom of a chain), a directory of mode
    000 and one of mode 0500 with files inside, a fifo, a socket, a 255-byte name, a file
    made read-only; return the workdir."""
    top = _chain(depth, name="c") if depth else os.getcwd()
    os.symlink(link_target, "link_to_host")
    os.symlink(os.path.join(link_target, "keep.txt"), "link_to_host_file")
    os.symlink("link_loop", "link_loop")
    os.mkdir("locked")
    os.mkdir("locked/inner")
    with open("locked/inner/file", "w") as f:
        f.write("x")
    os.symlink(link_target, "locked/inner/link")
    os.chmod("locked/inner", 0)
    os.chmod("locked", 0)
    os.mkdir("readonly")
    for i in range(3):
        with open(f"readonly/f{i}", "w") as f:
            f.write("x")
    os.chmod("readonly", 0o500)
    os.mkfifo("fifo")
    os.mknod("sock", stat.S_IFSOCK | 0o600)  # (seccomp refuses a new AF_UNIX socket)
    with open("n" * 255, "w") as f:
        f.write("x")
    os.chmod("n" * 255, 0)
    if depth:  # a link at the bottom of the chain too
        fd = os.open(".", os.O_RDONLY | os.O_DIRECTORY)
        try:
            for _ in range(min(depth, MAX_DEPTH)):
                deeper = os.open("c", os.O_RDONLY | os.O_DIRECTORY, dir_fd=fd)
                os.close(fd)
                fd = deeper
            os.symlink(link_target, "link_at_bottom", dir_fd=fd)
            os.fchmod(fd, 0)
        finally:
            os.close(fd)
    return top


@provider.action
def many_files(count: int) -> str:
    """Leave ``count`` empty files in one directory of the workdir; return the workdir."""
    os.mkdir("wide")
    for i in range(min(count, MAX_FILES)):
        os.close(os.open(f"wide/{i}", os.O_WRONLY | os.O_CREAT, 0o600))
    return os.getcwd()


@provider.action
def leave(code: int = 0) -> None:
    """End the worker at once (the host then removes its workdir)."""
    os._exit(code)
