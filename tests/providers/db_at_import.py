"""A provider whose import fails the way a real one does: a module-level connection attempt.

The host must say where: ``ProviderUnavailable`` carries the traceback, and its message names
this file and the line of the ``raise`` (the provider's own frame), not the loader's.
"""

from providers import Provider

provider = Provider("db_at_import")


def connect() -> None:
    raise RuntimeError("database not reachable at import")  # RAISE_LINE


connect()
