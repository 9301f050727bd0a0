"""A provider that tries to see what its Landlock rules should hide: files and directory listings
outside its own places. Each action reports what it got, or the error, instead of raising, so a
test can tell "denied" from "not there"."""

from __future__ import annotations

import os

from providers import Provider

provider = Provider("snoop", description="tries to read and list outside its rules")


@provider.action
def read(path: str) -> dict[str, str]:
    """The first 4 KiB of ``path``, or why not."""
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            return {"text": f.read(4096)}
    except OSError as exc:
        return {"error": f"{type(exc).__name__}: {exc.strerror}"}


@provider.action
def listdir(path: str) -> dict[str, object]:
    """The names in directory ``path``, or why not."""
    try:
        return {"names": sorted(os.listdir(path))[:200]}
    except OSError as exc:
        return {"error": f"{type(exc).__name__}: {exc.strerror}"}
