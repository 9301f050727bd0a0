"""Hosts on other machines: ``sandbox serve`` (server), ``RemoteHost`` (client), ``HostGroup``.

See docs/architecture.md ("Remote hosts") for the wire, the keys and the failure rules.
"""

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from host.remote.client import RemoteHost
    from host.remote.group import HostGroup

#: Imported on first use (PEP 562), so the CLI's ``serve``/``keygen`` parsers
#: (``host.remote.commands``) cost nothing until a remote command runs.
_LAZY = {"RemoteHost": "host.remote.client", "HostGroup": "host.remote.group"}


def __getattr__(name: str) -> object:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'host.remote' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


__all__ = ["HostGroup", "RemoteHost"]
