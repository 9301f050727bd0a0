"""Hosts on other machines: ``sandbox serve`` (server), ``RemoteHost`` (client), ``HostGroup``.

See docs/architecture.md ("Remote hosts") for the wire, the keys and the failure rules.
"""

from host.remote.client import RemoteHost
from host.remote.group import HostGroup

__all__ = ["HostGroup", "RemoteHost"]
