"""Where this project's packages really are, from the location of this very module.

The host puts that directory on the launcher's ``sys.path`` and the worker grants it read-only
in Landlock. It must not come from ``import providers`` (or ``policies``, ``sandbox``) in the
host: a folder of the same name next to the engine's script or in its working directory shadows
the installed package, and a plain folder becomes a namespace package whose ``__file__`` is
None - ``abspath("")`` then turned into the working directory's grandparent, ``/`` for an engine
in ``/srv/engine``, and Landlock granted the whole filesystem. This module is running, so its
``__file__`` is the real one: the project's packages (installed together, see pyproject.toml)
are its siblings, and each is checked to be there, a regular package, before the directory is
used. Anything else raises :class:`~policies.paths.UnsafeRulePath`: no worker starts.
"""

from __future__ import annotations

import functools
import os

from policies.paths import UnsafeRulePath

#: The packages the worker runtime imports from the project's own directory.
RUNTIME_PACKAGES = ("policies", "providers", "sandbox")


@functools.cache
def project_root() -> str:
    """The directory holding this project's packages (site-packages for a normal install, the
    source checkout for an editable one)."""
    here = os.path.realpath(__file__)
    root = os.path.dirname(os.path.dirname(here))
    if not os.path.isabs(root) or os.path.basename(os.path.dirname(here)) != "sandbox":
        raise UnsafeRulePath(root, "runtime", f"cannot tell the project's directory from {here}")
    for package in RUNTIME_PACKAGES:
        marker = os.path.join(root, package, "__init__.py")
        if not os.path.isfile(marker):
            raise UnsafeRulePath(
                root, "runtime", f"the project's package {package!r} is not there ({marker})"
            )
    return root
