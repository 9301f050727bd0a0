"""Disk is a bounded resource: every byte a worker writes lands on storage its policy bounds.

A hostile provider (``tests/providers/disk_filler.py``, bounded by construction to 300 MB and
20000 files) fills its workdir, its inodes and POSIX shared memory; the tests check that the
writes stop at the policy's bound, that nothing reached the host's disk (the host-side workdir
stays empty while the worker's own view of it is full), and that another provider on the same
host - on a small shared temp file system, where an unbounded workdir once made another
provider's writes fail with ENOSPC - can still write.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from host import Host
from policies import Policy
from policies.model import WORKDIR_INODES
from sandbox.layers import probe_all
from sandbox.libc import MS_RDONLY, mount

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux sandbox")

FILLER = str(Path(__file__).parent / "providers" / "disk_filler.py")
ECHO = str(Path(__file__).parent / "providers" / "echo.py")
MiB = 1 << 20
FULL = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)
ROOT = os.geteuid() == 0

needs_mount_namespace = pytest.mark.skipif(
    not probe_all()["mount_namespace"].available, reason="no mount namespace on this machine"
)
needs_root = pytest.mark.skipif(not ROOT, reason="mounts a small tmpfs for the host (root only)")


def _bytes_below(directory: str) -> int:
    total = 0
    for top, _dirs, files in os.walk(directory):
        for name in files:
            with contextlib.suppress(OSError):
                total += os.lstat(os.path.join(top, name)).st_size
    return total


def _workdir(host: Host, provider: str) -> str:
    (worker,) = host._reactor.providers[provider].workers
    return worker.process.workdir


@pytest.fixture
def small_tmp() -> Iterator[str]:
    """A 48 MiB tmpfs as the host's temp dir (workdirs and ipc sockets go there): the small
    shared temp file system of the report. Mounted in this test run's mount namespace."""
    point = tempfile.mkdtemp(prefix="small-tmp-")
    os.chmod(point, 0o755)
    try:
        mount("tmpfs", point, "tmpfs", 0, "size=48m,mode=0755")
    except OSError as exc:
        os.rmdir(point)
        pytest.skip(f"cannot mount a tmpfs here: {exc}")
    old = tempfile.tempdir
    tempfile.tempdir = point
    try:
        yield point
    finally:
        tempfile.tempdir = old
        subprocess.run(["umount", "-l", point], check=False)
        os.rmdir(point)


@needs_mount_namespace
@pytest.mark.parametrize("spawn", ["zygote", "fresh"])
def test_a_full_workdir_stops_at_its_bound_and_the_host_disk_gets_nothing(spawn: str) -> None:
    with Host(spawn=spawn) as host:
        host.add_provider(FILLER, policy=Policy(workdir="32MiB"))
        root = host._reactor._workdir_root
        before = shutil.disk_usage(root).used
        value = host.call("disk.fill_bytes", {"cap_mb": 300})
        on_host = _bytes_below(_workdir(host, "disk"))  # the worker is alive and still full
        grown = shutil.disk_usage(root).used - before
    assert value["errno"] in FULL, value
    assert 28 * MiB <= value["written"] <= 32 * MiB, value
    assert value["view"]["size"] == 32 * MiB and value["view"]["free"] < MiB, value
    assert value["cwd"] == value["cwd"].rstrip("/") and on_host == 0
    # other processes share this disk: a generous bound, far below the 300 MB tried
    assert grown < 100 * MiB


@needs_mount_namespace
def test_the_workdir_runs_out_of_inodes_at_its_bound(host: Host) -> None:
    host.add_provider(FILLER)
    value = host.call("disk.fill_inodes", {"cap": 20_000})
    assert value["errno"] in FULL, value
    assert WORKDIR_INODES - 10 <= value["created"] < WORKDIR_INODES, value
    assert os.listdir(_workdir(host, "disk")) == []


@needs_root
@needs_mount_namespace
def test_a_full_provider_leaves_the_small_shared_tmp_to_the_others(small_tmp: str) -> None:
    with Host() as host:
        host.add_provider(FILLER, policy=Policy(workdir="32MiB"))
        host.add_provider(ECHO)
        full = host.call("disk.fill_bytes", {"cap_mb": 300})
        also_tmp = host.call("disk.fill_bytes", {"where": "/tmp", "cap_mb": 300})
        used = shutil.disk_usage(small_tmp).used
        # while the first provider's workdir and /tmp are full, the second one still writes
        assert host.call("echo.write_files", {"megabytes": 8}) == 8 * MiB
        assert host.call("echo.write_files", {"megabytes": 8, "where": "/tmp"}) == 8 * MiB
    assert full["errno"] in FULL and full["written"] <= 32 * MiB, full
    assert also_tmp["errno"] in FULL and also_tmp["written"] <= 64 * MiB, also_tmp
    assert used < 4 * MiB  # the host's small tmp saw directories and sockets, no data


@needs_mount_namespace
def test_posix_shared_memory_is_refused(host: Host) -> None:
    host.add_provider(FILLER)
    value = host.call("disk.shm_open", {"megabytes": 8})
    assert value["created"] is False and value["errno"] in (errno.EROFS, errno.EACCES), value


@needs_root
@needs_mount_namespace
def test_a_write_path_is_writable_only_as_far_as_the_host_allows(host: Host) -> None:
    """The operator's ``write`` path stays writable; a read-only mount inside it stays
    read-only (making the path writable again must not lift the host's own read-only)."""
    shared = tempfile.mkdtemp(prefix="write-path-")
    os.chmod(shared, 0o777)
    frozen = os.path.join(shared, "frozen")
    os.mkdir(frozen)
    try:
        mount("tmpfs", frozen, "tmpfs", MS_RDONLY, "size=1m,mode=0777")
    except OSError as exc:
        shutil.rmtree(shared)
        pytest.skip(f"cannot mount a tmpfs here: {exc}")
    try:
        host.add_provider(FILLER, policy=Policy(write=[shared]))
        into_shared = host.call("disk.fill_bytes", {"where": shared, "cap_mb": 4})
        into_frozen = host.call("disk.fill_bytes", {"where": frozen, "cap_mb": 4})
        assert into_shared["written"] == 4 * MiB, into_shared
        assert into_frozen["written"] == 0 and into_frozen["errno"] == errno.EROFS, into_frozen
    finally:
        subprocess.run(["umount", "-l", frozen], check=False)
        shutil.rmtree(shared, ignore_errors=True)


def test_without_a_mount_namespace_the_report_says_writes_are_unbounded(host: Host) -> None:
    """Degraded: no private tmpfs. The layer report says so plainly, and RLIMIT_FSIZE still
    bounds each file (the uid drop is skipped too: without the mount namespace's view, a
    dedicated uid may not reach a runtime below /root)."""
    policy = Policy(skip=("mount_namespace", "uid_drop"), allow_missing=True, file_size="2MiB")
    host.add_provider(FILLER, policy=policy)
    (info,) = host.providers()
    (report,) = [r for r in info.layers if r["name"] == "mount_namespace"]
    assert report["applied"] is False
    assert "bounded only by RLIMIT_FSIZE per file" in str(report["detail"])
    value = host.call("disk.fill_bytes", {"cap_mb": 8})
    assert value["errno"] == errno.EFBIG and value["written"] <= 2 * MiB, value


def _readonly_view(fallback: bool) -> dict[str, object]:
    """In a child with a mount namespace of its own: make everything read-only, then a write
    path writable again; what can be written where."""
    from sandbox.layers import _readonly
    from sandbox.libc import CLONE_NEWNS, MS_PRIVATE, MS_REC, unshare

    if fallback:  # a kernel before 5.12: one remount per mount
        def enosys(path: str, **flags: int) -> None:
            raise OSError(errno.ENOSYS, "mount_setattr")

        _readonly.mount_setattr = enosys  # type: ignore[assignment]
    unshare(CLONE_NEWNS)
    mount("none", "/", None, MS_REC | MS_PRIVATE, None)
    shared = tempfile.mkdtemp(prefix="ro-view-")
    other = tempfile.mkdtemp(prefix="ro-other-")
    keep = _readonly.host_readonly(shared)
    assert keep is not None
    _readonly.set_readonly("/", True)
    _readonly.writable_again(shared, keep)
    result: dict[str, object] = {}
    for name, where in (("shared", shared), ("other", other)):
        try:
            with open(os.path.join(where, "x"), "w") as f:
                f.write("x")
            result[name] = "written"
        except OSError as exc:
            result[name] = exc.errno
    return result


@needs_root
@needs_mount_namespace
@pytest.mark.parametrize("fallback", [False, True], ids=["mount_setattr", "remount"])
def test_every_host_mount_is_read_only_but_the_write_paths(fallback: bool) -> None:
    from tests.forking import in_child

    # the child's temp dirs live in its own namespace's view of the host's /tmp: remove later
    before = set(os.listdir(tempfile.gettempdir()))
    try:
        assert in_child(lambda: _readonly_view(fallback)) == {
            "shared": "written", "other": errno.EROFS}  # fmt: skip
    finally:
        for name in set(os.listdir(tempfile.gettempdir())) - before:
            if name.startswith(("ro-view-", "ro-other-")):
                shutil.rmtree(os.path.join(tempfile.gettempdir(), name), ignore_errors=True)
