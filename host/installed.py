"""Providers installed as packages, found by entry point: ``pip install`` is all it takes.

A package declares ``[project.entry-points."actionsandbox.providers"] NAME = "pkg.mod:attr"``;
``entrypoint:NAME`` is then a provider reference anywhere one is accepted (``Host.add_provider``,
``--provider``, a config file's ``source``), and ``Host.add_installed()`` adds them all. The host
reads the entry point's *value* from the package metadata and never loads it: importing the
provider is the confined worker's job, like any other reference.
"""

from __future__ import annotations

from host.errors import ProviderUnavailable

#: The entry-point group installed providers declare themselves in.
GROUP = "actionsandbox.providers"
#: The reference prefix that names an installed provider.
PREFIX = "entrypoint:"


def installed_providers() -> dict[str, str]:
    """Installed providers: entry-point name -> its reference (``pkg.mod:attr``), by name.

    When two distributions declare the same name, the first one the import system finds
    (``sys.path`` order) wins, as for an import."""
    from importlib.metadata import entry_points  # (~45 ms: only when a reference needs it)

    found: dict[str, str] = {}
    for entry in entry_points(group=GROUP):
        found.setdefault(entry.name, entry.value.strip())
    return dict(sorted(found.items()))


def resolve(ref: str) -> str:
    """``ref`` itself, or for ``entrypoint:NAME`` the installed provider's reference.

    Raises :class:`ProviderUnavailable` naming what is installed when NAME is not."""
    if not ref.startswith(PREFIX):
        return ref
    name = ref[len(PREFIX):].strip()
    installed = installed_providers()
    if name not in installed:
        known = ", ".join(installed) or "none"
        raise ProviderUnavailable(
            f"no installed provider is named {name!r} (entry-point group {GROUP!r}; "
            f"installed: {known})"
        )
    return installed[name]
