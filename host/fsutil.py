"""Removing a directory tree that untrusted code built, without trusting anything in it.

``shutil.rmtree`` (Python 3.11) recurses once per directory level, so a worker that leaves a
chain of a few thousand nested directories in its workdir makes it raise ``RecursionError`` -
not an ``OSError``, so ``ignore_errors=True`` does not catch it - on whichever thread removes the
workdir (the host's loop, which then dies). :func:`remove_tree` walks the tree with an explicit
stack instead and holds one directory descriptor at a time, so neither the depth nor the width of
a tree can exhaust the stack or the descriptor table.

It never follows a symbolic link (every open is ``O_NOFOLLOW``, relative to the directory it is
in, so a path is never resolved again from the top and a link planted anywhere is removed, not
its target), never leaves the tree's file system (a directory on another device is a mount point
and is left alone), climbs back with ``..`` only after checking that it reaches the very
directory it came from (device and inode), makes directories the worker made unreadable or
unwritable (mode 000) removable again, and never raises: what it could not remove is counted and
logged.
"""

from __future__ import annotations

import errno
import logging
import os
import stat
from dataclasses import dataclass, field

from host.logs import LOGGER

log = logging.getLogger(f"{LOGGER}.{__name__}")

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_PATH_FLAGS = os.O_PATH | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


@dataclass
class _Level:
    """One directory on the way down: how to find it again and what is left to visit."""

    name: str  # its name in the directory above
    dev: int
    ino: int
    #: Subdirectories still to visit (names), found by the one scan of this directory.
    subdirs: list[str] = field(default_factory=list)
    scanned: bool = False


@dataclass
class RemovalReport:
    """What :func:`remove_tree` did: entries removed and entries it had to leave."""

    removed: int = 0
    failed: int = 0
    #: The first few problems, for the log.
    problems: list[str] = field(default_factory=list)

    @property
    def complete(self) -> bool:
        return self.failed == 0

    def problem(self, what: str) -> None:
        self.failed += 1
        if len(self.problems) < 5:
            self.problems.append(what)


def _open_dir(name: str, dir_fd: int) -> int:
    """Open a subdirectory for listing, making it listable first if its mode forbids it."""
    try:
        return os.open(name, _DIR_FLAGS, dir_fd=dir_fd)
    except PermissionError:
        pass
    # Mode 000 (or 0300...): reach it without reading it (O_PATH), then chmod it through
    # /proc (fchmod does not take an O_PATH descriptor; chmod of the magic link does not
    # follow any link of the tree: it names the very inode we opened).
    path_fd = os.open(name, _PATH_FLAGS, dir_fd=dir_fd)
    try:
        os.chmod(f"/proc/self/fd/{path_fd}", 0o700)
    finally:
        os.close(path_fd)
    return os.open(name, _DIR_FLAGS, dir_fd=dir_fd)


def _unlink(name: str, dir_fd: int, report: RemovalReport, *, inside: bool = True) -> bool:
    """Remove a non-directory entry; False if it turned out to be a directory.

    ``inside``: ``dir_fd`` is a directory of the tree (it may be chmodded to allow the
    removal); False for the directory holding the tree's top, which is never changed.
    """
    try:
        os.unlink(name, dir_fd=dir_fd)
    except FileNotFoundError:
        return True
    except IsADirectoryError:
        return False
    except PermissionError as exc:
        if not inside:
            report.problem(f"{name!r}: {exc.strerror}")
            return True
        # The directory itself is not writable (the worker chmodded it): make it so, once.
        try:
            os.fchmod(dir_fd, 0o700)
            os.unlink(name, dir_fd=dir_fd)
        except IsADirectoryError:
            return False
        except OSError as exc:
            report.problem(f"{name!r}: {exc.strerror}")
            return True
    except OSError as exc:
        if exc.errno == errno.EISDIR:
            return False
        report.problem(f"{name!r}: {exc.strerror}")
        return True
    report.removed += 1
    return True


def _scan(fd: int, level: _Level, report: RemovalReport) -> None:
    """One pass over a directory: unlink every non-directory, note the subdirectories."""
    level.scanned = True
    try:
        with os.scandir(fd) as entries:
            for entry in entries:
                try:
                    is_dir = entry.is_dir(follow_symlinks=False)
                except OSError:
                    is_dir = False
                if is_dir or not _unlink(entry.name, fd, report):
                    level.subdirs.append(entry.name)
    except OSError as exc:
        report.problem(f"listing a directory: {exc.strerror}")


def remove_tree(path: str) -> RemovalReport:
    """Remove ``path`` and everything below it, iteratively, never following a link.

    ``path`` itself may be a symlink (it is unlinked, its target untouched), a file, a directory
    or absent. Never raises; the report says what was left (also logged at WARNING).
    """
    report = RemovalReport()
    try:
        _remove(path, report)
    except Exception as exc:  # never: every step handles its own errors; but never raise
        report.problem(f"unexpected {type(exc).__name__}: {exc}")
    if not report.complete:
        log.warning(
            "could not remove all of %s: %d entries left (%s)",
            path, report.failed, "; ".join(report.problems),
        )
    return report


def _remove(path: str, report: RemovalReport) -> None:
    parent_path, name = os.path.split(os.path.abspath(path))
    try:
        parent = os.open(parent_path or "/", _DIR_FLAGS & ~os.O_NOFOLLOW)
    except FileNotFoundError:
        return
    except OSError as exc:
        report.problem(f"{parent_path}: {exc.strerror}")
        return
    try:
        if _unlink(name, parent, report, inside=False):
            return
        try:
            top = _open_dir(name, parent)
        except FileNotFoundError:
            return
        except OSError as exc:
            if exc.errno in (errno.ENOTDIR, errno.ELOOP):  # replaced by a file or link meanwhile
                _unlink(name, parent, report, inside=False)
            else:
                report.problem(f"{path}: {exc.strerror}")
            return
        _remove_contents(top, report)  # closes top
        _rmdir(name, parent, path, report)
    finally:
        os.close(parent)


def _rmdir(name: str, dir_fd: int, label: str, report: RemovalReport) -> None:
    """Remove the (emptied) directory ``name`` of ``dir_fd``; a failure is reported as ``label``."""
    try:
        os.rmdir(name, dir_fd=dir_fd)
        report.removed += 1
    except FileNotFoundError:
        pass
    except OSError as exc:
        report.problem(f"{label}: {exc.strerror}")


def _remove_contents(top: int, report: RemovalReport) -> None:
    """Empty the directory open as ``top`` (closed on return), depth first, one fd at a time."""
    fd = top
    try:
        info = os.fstat(top)
        device = info.st_dev
        stack = [_Level("", info.st_dev, info.st_ino)]
        while stack:
            level = stack[-1]
            if not level.scanned:
                _scan(fd, level, report)
            if level.subdirs:  # go down into the next subdirectory
                name = level.subdirs.pop()
                try:
                    child = _open_dir(name, fd)
                except FileNotFoundError:
                    continue
                except OSError as exc:
                    if exc.errno in (errno.ENOTDIR, errno.ELOOP):
                        _unlink(name, fd, report)
                    else:
                        report.problem(f"{name!r}: {exc.strerror}")
                    continue
                child_info = os.fstat(child)
                if child_info.st_dev != device or not stat.S_ISDIR(child_info.st_mode):
                    os.close(child)  # a mount point (or not a directory): not ours to empty
                    report.problem(f"{name!r}: on another file system, left alone")
                    continue
                os.close(fd)
                fd = child
                stack.append(_Level(name, child_info.st_dev, child_info.st_ino))
                continue
            # This directory is empty (or has what we could not remove): go up and remove it.
            stack.pop()
            if not stack:
                return
            parent = stack[-1]
            try:
                up = os.open("..", _DIR_FLAGS, dir_fd=fd)
            except OSError as exc:
                report.problem(f"climbing back: {exc.strerror}")
                return
            up_info = os.fstat(up)
            if (up_info.st_dev, up_info.st_ino) != (parent.dev, parent.ino):
                os.close(up)  # the tree was moved under us: stop rather than go astray
                report.problem("the tree changed while it was being removed")
                return
            os.close(fd)
            fd = up
            _rmdir(level.name, fd, repr(level.name), report)
    finally:
        os.close(fd)
