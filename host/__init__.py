"""The trusted side: ``Host``, its catalog, the outcomes of a call, and the CLI.

from host import Host
with Host() as host:
    host.add_provider("providers.examples.text")
    host.call("text.word_count", {"text": "a b"})   # -> 2
"""

import logging
from importlib.metadata import PackageNotFoundError
from importlib.metadata import version as _dist_version

try:
    #: The installed distribution's version, read from its metadata (never a second copy).
    __version__ = _dist_version("actionsandbox")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0+unknown"

from host.catalog import ActionDescriptor, Catalog
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
from host.executor import SandboxExecutor
from host.futures import CallFuture
from host.host import Host, ProviderInfo
from host.logs import LOGGER
from host.remote import HostGroup, RemoteHost

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
