"""A hostile provider that fills every place it may write, bounded by construction (300 MB,
20000 files), and reports what its own view of that place says."""

from __future__ import annotations

import os

from providers import Provider

provider = Provider("disk", version="1.0", description="fills its storage")

MiB = 1 << 20
MAX_MB = 300
MAX_FILES = 20_000


def _view(where: str) -> dict[str, int]:
    st = os.statvfs(where)
    return {"size": st.f_blocks * st.f_frsize, "free": st.f_bavail * st.f_frsize,
            "inodes": st.f_files, "inodes_free": st.f_favail}  # fmt: skip


@provider.action
def fill_bytes(where: str = ".", cap_mb: int = MAX_MB) -> dict[str, object]:
    """Write 1 MiB chunks into 4 MiB files under ``where`` until a write fails (or the cap);
    the files stay, so the storage is still full when the call returns."""
    written, files, error = 0, 0, None
    try:
        while written < min(cap_mb, MAX_MB) * MiB:
            with open(os.path.join(where, f"fill-{files}"), "wb") as f:
                files += 1
                for _ in range(4):
                    written += f.write(b"\xa5" * MiB)
                    f.flush()
    except OSError as exc:
        error = exc.errno
    return {"written": written, "errno": error, "view": _view(where), "cwd": os.getcwd()}


@provider.action
def fill_inodes(where: str = ".", cap: int = MAX_FILES) -> dict[str, object]:
    """Create empty files under ``where`` until that fails (or the cap); they stay."""
    made, error = 0, None
    base = os.path.join(where, "inodes")
    try:
        os.makedirs(base, exist_ok=True)
        while made < min(cap, MAX_FILES):
            os.close(os.open(os.path.join(base, str(made)), os.O_CREAT | os.O_WRONLY, 0o600))
            made += 1
    except OSError as exc:
        error = exc.errno
    return {"created": made, "errno": error, "view": _view(where)}


@provider.action
def shm_open(megabytes: int = 8) -> dict[str, object]:
    """Create a POSIX shared memory object (what multiprocessing.shared_memory does)."""
    from multiprocessing import shared_memory

    try:
        block = shared_memory.SharedMemory(create=True, size=megabytes * MiB)
    except OSError as exc:
        return {"created": False, "errno": exc.errno, "detail": str(exc)}
    block.buf[:] = b"\x5a" * (megabytes * MiB)
    block.close()
    block.unlink()
    return {"created": True, "errno": None, "detail": "created and filled"}
