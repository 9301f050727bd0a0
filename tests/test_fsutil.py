"""``host.fsutil.remove_tree`` on real trees of every awkward shape: deeper than any recursion
limit, wider than a descriptor table, unreadable, unwritable, full of links to things that must
survive. It must remove everything it may, follow nothing, and never raise."""

from __future__ import annotations

import os
import shutil
import socket
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from host.fsutil import remove_tree


@pytest.fixture
def scratch() -> Iterator[Path]:
    """A directory on tmpfs when there is one (deep trees are quick there), else in /tmp."""
    parent = "/dev/shm" if os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK) else None
    path = Path(tempfile.mkdtemp(prefix="fsutil-test-", dir=parent))
    yield path
    remove_tree(str(path))


def _chain(top: Path, depth: int) -> None:
    """A chain of ``depth`` nested directories under ``top``, built from the bottom up."""
    cwd = os.getcwd()
    os.chdir(top)
    try:
        os.mkdir("d")
        for _ in range(depth - 1):
            os.mkdir("n")
            os.rename("d", "n/d")
            os.rename("n", "d")
    finally:
        os.chdir(cwd)


@pytest.mark.parametrize("depth", [1500, 20000])
def test_a_chain_deeper_than_the_recursion_limit_is_removed(scratch: Path, depth: int) -> None:
    tree = scratch / "tree"
    tree.mkdir()
    _chain(tree, depth)
    report = remove_tree(str(tree))
    assert report.complete, report.problems
    assert not tree.exists()
    assert report.removed == depth + 1


def test_shutil_rmtree_cannot_remove_such_a_chain(scratch: Path) -> None:
    """Why the host has its own remover (Python 3.11's rmtree recurses per level)."""
    tree = scratch / "tree"
    tree.mkdir()
    _chain(tree, 1500)
    try:
        shutil.rmtree(tree, ignore_errors=True)
    except RecursionError:
        pass
    else:  # a Python whose rmtree is iterative (3.12+ on some paths) has no such problem
        assert not tree.exists()
    remove_tree(str(tree))
    assert not tree.exists()


def test_links_are_removed_never_followed(scratch: Path) -> None:
    target = scratch / "target"
    target.mkdir()
    (target / "keep.txt").write_text("keep")
    tree = scratch / "tree"
    (tree / "sub").mkdir(parents=True)
    (tree / "to_dir").symlink_to(target)
    (tree / "to_file").symlink_to(target / "keep.txt")
    (tree / "sub" / "deeper").symlink_to(target, target_is_directory=True)
    (tree / "dangling").symlink_to(scratch / "nowhere")
    (tree / "loop").symlink_to("loop")
    assert remove_tree(str(tree)).complete
    assert not os.path.lexists(tree)
    assert (target / "keep.txt").read_text() == "keep"
    link = scratch / "link_to_target"
    link.symlink_to(target)
    assert remove_tree(str(link)).complete  # the top itself a link: unlinked, not followed
    assert not os.path.lexists(link) and (target / "keep.txt").exists()


def test_locked_directories_and_odd_files_are_removed(scratch: Path) -> None:
    tree = scratch / "tree"
    locked = tree / "locked" / "inner"
    locked.mkdir(parents=True)
    (locked / "file").write_text("x")
    os.chmod(locked, 0)
    os.chmod(tree / "locked", 0)
    readonly = tree / "readonly"
    readonly.mkdir()
    (readonly / "f").write_text("x")
    os.chmod(readonly, 0o500)
    os.mkfifo(tree / "fifo")
    with socket.socket(socket.AF_UNIX) as sock:
        sock.bind(str(tree / "sock"))
    (tree / ("n" * 255)).write_text("x")
    os.chmod(tree / ("n" * 255), 0)
    report = remove_tree(str(tree))
    assert report.complete, report.problems
    assert not tree.exists()


def test_a_wide_directory_uses_one_descriptor(scratch: Path) -> None:
    tree = scratch / "tree"
    tree.mkdir()
    for i in range(20000):
        (tree / f"sub{i}").mkdir() if i % 10 == 0 else (tree / str(i)).touch()
    before = len(os.listdir("/proc/self/fd"))
    report = remove_tree(str(tree))
    assert report.complete and not tree.exists()
    assert len(os.listdir("/proc/self/fd")) == before


def test_absent_paths_and_files_need_nothing(scratch: Path) -> None:
    assert remove_tree(str(scratch / "absent")).complete
    single = scratch / "file"
    single.write_text("x")
    assert remove_tree(str(single)).complete and not single.exists()


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to mount a tmpfs")
def test_a_mount_point_inside_the_tree_is_left_alone(scratch: Path) -> None:
    """Another file system below the tree is not emptied (it is not the tree's)."""
    import subprocess

    tree = scratch / "tree"
    mount = tree / "mnt"
    mount.mkdir(parents=True)
    if subprocess.run(["mount", "-t", "tmpfs", "none", str(mount)]).returncode != 0:
        pytest.skip("cannot mount a tmpfs here")
    try:
        (mount / "other.txt").write_text("other")
        report = remove_tree(str(tree))
        assert not report.complete
        assert (mount / "other.txt").read_text() == "other"
    finally:
        subprocess.run(["umount", str(mount)])
    assert remove_tree(str(tree)).complete
