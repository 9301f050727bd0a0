"""What the worker runtime looks like from inside: its imports, sys.path and interpreter flags.

Imports nothing beyond the SDK, so ``modules`` shows what the runtime itself imported.
"""

from __future__ import annotations

import builtins
import sys

from providers import Provider

provider = Provider("runtime", version="1.0")


@provider.action(output={"type": "array", "items": {"type": "string"}})
def modules() -> list[str]:
    """Every module loaded in the worker, sorted."""
    return sorted(sys.modules)


@provider.action(output={"type": "object"})
def interpreter() -> dict[str, object]:
    """sys.path, the prefixes, the isolation flags, and whether site's builtins exist."""
    return {
        "path": list(sys.path),
        "prefix": sys.prefix,
        "exec_prefix": sys.exec_prefix,
        "isolated": sys.flags.isolated,
        "ignore_environment": sys.flags.ignore_environment,
        "no_user_site": sys.flags.no_user_site,
        "safe_path": sys.flags.safe_path,
        "builtins": sorted(name for name in ("exit", "quit", "help") if hasattr(builtins, name)),
        "argv": list(sys.argv),
    }


@provider.action
def readable(paths: list[str]) -> dict[str, bool]:
    """Whether each path can be opened (a directory: listed) by the worker."""
    import os

    found = {}
    for path in paths:
        try:
            if os.path.isdir(path):
                os.listdir(path)
            else:
                with open(path, "rb") as f:
                    f.read(1)
            found[path] = True
        except OSError:
            found[path] = False
    return found
