"""The trusted side: ``Host``, its catalog, the outcomes of a call, and the CLI.

from host import Host
with Host() as host:
    host.add_provider("providers.examples.text")
    host.call("text.word_count", {"text": "a b"})   # -> 2
"""

import logging
from typing import TYPE_CHECKING

from host.errors import (
    ActionFailed,
    Cancelled,
    CpuExceeded,
    HostUnavailable,
    InputInvalid,
    MemoryExceeded,
    Outcome,
    OutputInvalid,
    OutputTooLarge,
    Overloaded,
    ProtocolViolation,
    ProviderUnavailable,
    SandboxError,
    Timeout,
    Usage,
    WorkerCrashed,
)
from host.logs import LOGGER

if TYPE_CHECKING:
    __version__: str
    from host.catalog import ActionDescriptor, Catalog
    from host.executor import SandboxExecutor
    from host.futures import CallFuture
    from host.host import Host, ProviderInfo
    from host.remote import HostGroup, RemoteHost

#: Imported on first use (PEP 562): ``import host`` alone, as ``python -m host.cli`` does,
#: must not cost jsonschema, pyzmq and the reactor (a CLI usage error needs none of them).
_LAZY = {
    "ActionDescriptor": "host.catalog",
    "Catalog": "host.catalog",
    "SandboxExecutor": "host.executor",
    "CallFuture": "host.futures",
    "Host": "host.host",
    "ProviderInfo": "host.host",
    "HostGroup": "host.remote",
    "RemoteHost": "host.remote",
}


def _installed_version() -> str:
    """The installed distribution's version, read from its metadata (never a second copy)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("actionsandbox")
    except PackageNotFoundError:  # running from a source tree that was never installed
        return "0+unknown"


def __getattr__(name: str) -> object:
    if name == "__version__":  # importlib.metadata costs ~0.1 s: read only when asked
        globals()[name] = value = _installed_version()
        return value
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'host' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


# A library stays quiet unless the application configures logging.
logging.getLogger(LOGGER).addHandler(logging.NullHandler())

__all__ = [
    "ActionDescriptor",
    "ActionFailed",
    "CallFuture",
    "Cancelled",
    "Catalog",
    "CpuExceeded",
    "Host",
    "HostGroup",
    "HostUnavailable",
    "InputInvalid",
    "MemoryExceeded",
    "Outcome",
    "OutputInvalid",
    "OutputTooLarge",
    "Overloaded",
    "ProtocolViolation",
    "ProviderInfo",
    "ProviderUnavailable",
    "RemoteHost",
    "SandboxError",
    "SandboxExecutor",
    "Timeout",
    "Usage",
    "WorkerCrashed",
    "__version__",
]
