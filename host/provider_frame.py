"""Where a provider's import failed, as ``file:line``, from the traceback text its worker sent.

"RuntimeError: database not reachable at import" alone does not say where to look. The worker
sends the formatted traceback with its UNAVAILABLE message; this picks the frame a provider's
author needs: the *last* one in the provider's own code - not the loader's (``providers/``,
``sandbox/``, ``policies/`` of this project, ``<frozen importlib...>``), and preferably not a
library's (the interpreter's standard library and site-packages), so a provider whose import of
a driver fails is shown at its own ``import`` line. A provider installed in site-packages has no
other frames: then its last frame outside this project's runtime is shown.

The text comes from a worker that ran provider code, so it is untrusted: it is only parsed
(bounded), and the result is one short line.
"""

from __future__ import annotations

import os
import re
import sys

from sandbox.own_root import RUNTIME_PACKAGES, project_root

#: Longest traceback kept in ``ProviderUnavailable.details["traceback"]`` (as the worker caps it).
MAX_TRACEBACK_CHARS = 16_000
#: Longest ``file`` shown; a longer one is a fabrication or not worth a line.
MAX_PATH_CHARS = 1_000

_FRAME = re.compile(
    rf'^  File "([^"\n]{{1,{MAX_PATH_CHARS}}})", line (\d{{1,9}}), in ', re.MULTILINE
)


def _is_runtime(path: str) -> bool:
    """A frame of this project's loader or worker runtime (the SDK's modules, not the example
    providers beneath ``providers/examples``)."""
    root = project_root()
    for package in RUNTIME_PACKAGES:
        directory = os.path.join(root, package)
        if package == "providers":
            if os.path.dirname(path) == directory:
                return True
        elif path.startswith(directory + os.sep):
            return True
    return False


def _is_library(path: str) -> bool:
    prefixes = {sys.prefix, sys.base_prefix, sys.exec_prefix}
    return any(path.startswith(p.rstrip(os.sep) + os.sep) for p in prefixes if p)


def provider_frame(traceback_text: str) -> str | None:
    """``path:line`` of the provider's own frame where the import failed, or None."""
    frames = [
        (path, line)
        for path, line in _FRAME.findall(traceback_text[-MAX_TRACEBACK_CHARS:])
        if path.startswith(os.sep) and not _is_runtime(path)
    ]
    own = [frame for frame in frames if not _is_library(frame[0])]
    candidates = own or frames
    if not candidates:
        return None
    path, line = candidates[-1]
    return f"{path}:{line}"
