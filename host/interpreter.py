"""The command line of a fresh worker-runtime interpreter (the launcher), computed by the host.

The launcher runs ``python -I -S``: isolated (no ``PYTHON*`` variables, no user site directory,
neither the current directory nor the script's on ``sys.path``) and without the ``site`` module,
whose start-up work costs more than the rest of interpreter start-up: it executes the ``import``
lines of every ``.pth`` file (the editable-install finder, hooks that import certifi, ...), and
it imports ``sitecustomize``. Instead, the host hands the launcher the few directories the worker
runtime needs beyond the standard library, which ``-S`` keeps:

- the interpreter's site-packages (the virtual environment's when the host runs in one), as
  ``site`` would add them, with the directories listed in their ``.pth`` files (``import`` lines
  are not run);
- the directory holding this project's packages, which an editable install keeps outside
  site-packages (reached through a finder that a ``.pth`` import line installs). It comes from
  :func:`sandbox.own_root.project_root` (the location of that running module), never from
  ``import providers`` here, which a folder named ``providers`` beside the engine would shadow.

Every entry is also a read-only Landlock rule of the worker, so each is checked by
:func:`policies.paths.check_rule_path` (never ``/``, a home, ...): a refusal raises
:class:`~policies.paths.UnsafeRulePath` and no launcher starts.

The bootstrap also gives ``builtins`` the ``exit``/``quit``/``help`` that ``site`` would have
added, so provider code sees the builtins it would see under plain ``python -I``. The trailing
``-m sandbox`` is a label (``-c`` passes it on in ``sys.argv``, the bootstrap removes it): ``ps``
and the leak checks recognise a launcher by it; arguments for the module follow it.
"""

from __future__ import annotations

import functools
import os
import site
import sys

from policies.paths import check_rule_path
from sandbox.own_root import project_root

#: Runs in the fresh interpreter: drop the label from argv (the arguments stay), set the
#: prefixes to the virtual environment's (``site`` does that, not ``-S``; before ``site`` is
#: imported, which reads them), extend sys.path, add the builtins ``site`` would have added, run
#: the module as ``-m`` would.
_BOOTSTRAP = (
    "import sys\n"
    "del sys.argv[1:3]\n"
    "sys.prefix, sys.exec_prefix = {prefix!r}, {exec_prefix!r}\n"
    "sys.path.extend({path!r})\n"
    "import runpy, site\n"
    "site.setquit(); site.setcopyright(); site.sethelper()\n"
    "runpy.run_module({module!r}, run_name='__main__', alter_sys=True)\n"
)


def _pth_directories(site_dir: str) -> list[str]:
    """The directories the ``.pth`` files of ``site_dir`` add, as ``site.addpackage`` finds
    them (path lines only; ``import`` lines are code, which the launcher does not run)."""
    found = []
    try:
        names = sorted(os.listdir(site_dir))
    except OSError:
        return []
    for name in names:
        if not name.endswith(".pth") or name.startswith("."):
            continue
        try:
            with open(os.path.join(site_dir, name), encoding="utf-8", errors="replace") as f:
                lines = f.read().splitlines()
        except OSError:
            continue
        for line in lines:
            if not line.strip() or line.startswith(("#", "import ", "import\t")):
                continue
            directory = os.path.abspath(os.path.join(site_dir, line.rstrip()))
            if os.path.exists(directory):
                found.append(directory)
    return found


@functools.cache
def launcher_path() -> tuple[str, ...]:
    """What the launcher appends to the standard library's ``sys.path`` entries, in order."""
    paths = []
    for site_dir in site.getsitepackages():
        if os.path.isdir(site_dir):
            paths += [os.path.abspath(site_dir), *_pth_directories(site_dir)]
    paths.append(project_root())
    return tuple(check_rule_path(p, "runtime") for p in dict.fromkeys(paths))


def launcher_command(*args: str, module: str = "sandbox") -> list[str]:
    """``argv`` that runs ``module`` as ``__main__`` in a fresh, isolated interpreter, as
    ``python -I -m module *args`` would (``sys.argv[1:]`` is ``args``), but without ``site``."""
    code = _BOOTSTRAP.format(
        prefix=sys.prefix, exec_prefix=sys.exec_prefix, path=list(launcher_path()), module=module
    )
    return [sys.executable, "-I", "-S", "-c", code, "-m", module, *args]
